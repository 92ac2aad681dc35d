/**
 * `@peculiar/x509`, ready to use: the Reflect polyfill its dependency injection needs is loaded
 * first, and it signs with Node's WebCrypto. Import x509 from here, never from the package.
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as Parameters<typeof x509.cryptoProvider.set>[1]);

export { x509 };
