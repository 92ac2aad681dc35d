#!/usr/bin/env node
import { main } from "./main.js";

// grpc-js names an IP-address server in TLS SNI, which Node flags (DEP0123) on every connect to a
// control plane given by address. The certificate is still checked against the address (IP SAN);
// only this one notice is dropped, every other warning is printed.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === "DEP0123") return;
  (emitWarning as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

void main(process.argv);
