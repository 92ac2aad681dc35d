import { describe, expect, it } from "vitest";
import { isLoopbackHost, tlsVerifyFailure } from "./tls.js";

describe("isLoopbackHost", () => {
  it("knows this machine's names and addresses", () => {
    for (const host of ["localhost", "LOCALHOST", "api.localhost", "127.0.0.1", "127.3.2.1", "[::1]", "::1", "[::ffff:127.0.0.1]"]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of ["cp.example.internal", "10.0.0.1", "128.0.0.1", "[::2]", "localhost.example.com", "0.0.0.0"]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });
});

describe("tlsVerifyFailure", () => {
  it("finds a verification error among the causes, and only those", () => {
    const cause = Object.assign(new Error("self-signed certificate in certificate chain"), { code: "SELF_SIGNED_CERT_IN_CHAIN" });
    expect(tlsVerifyFailure(new TypeError("fetch failed", { cause }))).toEqual({ code: "SELF_SIGNED_CERT_IN_CHAIN", detail: cause.message });
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(tlsVerifyFailure(new TypeError("fetch failed", { cause: refused }))).toBeUndefined();
  });
});
