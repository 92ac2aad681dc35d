/**
 * The floor of `pnpm bench footprint`: a bare grpc-js client holding one Connect stream to the
 * control plane as an enrolled agent (the key, certificate and CA an agent's state dir holds):
 * Hello, then a heartbeat every interval the Welcome gives, and nothing else — no faults, journal,
 * host facts or guard. What grpc-js, TLS and the protocol cost by themselves on this Node.
 *
 *   node bare-client.mjs --server 127.0.0.1:7070 --state-dir DIR
 *
 * Only run bundled (bench/footprint.ts bundles it like the agent, with @firedrill/protocol's own
 * grpc-js and protobuf runtime: the root package depends on neither), on the release's Node runtime.
 * Prints one line, "connected <epoch ms>", once welcomed; exits when the stream ends.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AgentService, ConnectRequestSchema, HeartbeatSchema, HelloSchema, createClientConstructor, durationToMs, timestampFromMs } from "@firedrill/protocol";
import type { ConnectRequest, ConnectResponse } from "@firedrill/protocol";

const Client = createClientConstructor(AgentService);
type ChannelCredentials = ConstructorParameters<typeof Client>[1];

// Bundled by esbuild from @firedrill/protocol's dependencies (see bench/footprint.ts).
const grpc = require("@grpc/grpc-js") as { credentials: { createSsl(ca: Buffer, key: Buffer, cert: Buffer): ChannelCredentials } };
const { create } = require("@bufbuild/protobuf") as { create(schema: unknown, init?: object): never };

const { values } = parseArgs({ options: { server: { type: "string" }, "state-dir": { type: "string" } } });
const stateDir = values["state-dir"]!;
const file = (name: string) => readFileSync(join(stateDir, name));
const client = new Client(values.server!, grpc.credentials.createSsl(file("ca.crt"), file("agent.key"), file("agent.crt")));
const agentId = file("agent-id").toString().trim();

const stream = client.connect();
const request = (message: ConnectRequest["message"]): ConnectRequest => create(ConnectRequestSchema, { message });
let heartbeats: NodeJS.Timeout | undefined;
stream.on("data", (message: ConnectResponse) => {
  if (message.message.case !== "welcome" || heartbeats) return;
  console.log(`connected ${Date.now()}`);
  const interval = durationToMs(message.message.value.heartbeatInterval) || 5000;
  heartbeats = setInterval(() => {
    stream.write(request({ case: "heartbeat", value: create(HeartbeatSchema, { time: timestampFromMs(Date.now()), activeFaults: 0 }) }));
  }, interval);
});
const end = (err?: Error) => {
  clearInterval(heartbeats);
  console.error(`stream ended${err ? `: ${err.message}` : ""}`);
  process.exit(1);
};
stream.on("error", end);
stream.on("end", () => end());
stream.write(request({ case: "hello", value: create(HelloSchema, { agentId, version: "bare-client" }) }));
