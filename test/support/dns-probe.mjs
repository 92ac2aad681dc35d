#!/usr/bin/env node
/**
 * A DNS client that keeps ONE UDP socket (one source port) open and asks for a name every 200 ms,
 * as a resolver library with a persistent socket would; for the dns-fault tests (plain JS: no loader).
 *
 *   node dns-probe.mjs --server 10.0.0.2 --name api.example.internal --ms 8000
 *
 * Prints one line when done: each query's rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN...), "-" for
 * no answer within 200 ms, "E" for a socket error (e.g. connection refused).
 */
import { createSocket } from "node:dgram";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const server = arg("server");
const name = arg("name");
const ms = Math.min(Number(arg("ms") ?? 5000), 60_000);

function query(id) {
  const parts = [Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const label of name.split(".")) parts.push(Buffer.from([label.length]), Buffer.from(label));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}

const socket = createSocket(server.includes(":") ? "udp6" : "udp4");
const answers = new Map();
let error = false;
socket.on("message", (m) => answers.set(m.readUInt16BE(0), m[3] & 15));
socket.on("error", () => (error = true));
await new Promise((resolve) => socket.connect(53, server, resolve));
const started = Date.now();
const out = [];
for (let id = 1; Date.now() - started < ms; id++) {
  error = false;
  socket.send(query(id));
  await new Promise((resolve) => setTimeout(resolve, 200));
  out.push(answers.has(id) ? String(answers.get(id)) : error ? "E" : "-");
}
socket.close();
console.log(out.join(""));
