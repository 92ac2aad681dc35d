/**
 * Fleet reconnect after a control-plane restart: N agents (default 1,000) connected to a
 * `firedrill server` process on loopback; the server is SIGKILLed and started again on the same
 * ports and data dir; we measure how long until `GET /api/v1/agents` shows all N connected again,
 * from the moment the new process answers `/healthz` and from the kill, and the server's CPU time
 * meanwhile. Once with TLS (enrolled agents, mTLS: every agent a TLS handshake and a client
 * certificate check) and once with `--insecure-agents` (plain gRPC, join token in metadata).
 * Goals: TLS costs < 2× plain, and every agent is back within 10 s.
 *
 * The agents are simulated in this process, one grpc-js channel each (its own connection and TLS
 * session, as separate hosts would have), with the agent's reconnect behaviour: Hello, heartbeats
 * at the interval the Welcome gives, and jittered exponential backoff (200 ms → 2 s) when the
 * stream ends.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { CLOCK_TICKS_PER_SECOND, backoffDelay, readProcessCpuTicks } from "@firedrill/agent";
import {
  AGENT_TOKEN_METADATA_KEY,
  AgentService,
  ConnectRequestSchema,
  bearer,
  createClientConstructor,
  durationToMs,
  timestampFromMs,
} from "@firedrill/protocol";
import type { ClientOf, ConnectRequest, ConnectResponse } from "@firedrill/protocol";
// Test support of the control plane (not exported by the package): enrollment as an agent does it.
import { enrollTestAgent } from "../packages/control-plane/src/test-support/test-agent.js";
import { api } from "../test/support/api.js";
import { ROOT, freePort, killAll, sleep, startServer, tempDir } from "../test/support/processes.js";
import type { ServerHandle } from "../test/support/processes.js";
import { printTable } from "./table.js";

type AgentClient = ClientOf<typeof AgentService>;
type Metadata = NonNullable<Parameters<AgentClient["connect"]>[0]>;
const Client = createClientConstructor(AgentService);
type ChannelCredentials = ConstructorParameters<typeof Client>[1];

// The root package depends on neither @grpc/grpc-js nor @bufbuild/protobuf: the few parts the
// bench needs come from @firedrill/protocol's own dependencies (for grpc-js, the very module its
// clients are built on: a second copy would not recognise the Metadata).
const fromProtocol = createRequire(join(ROOT, "packages/protocol/package.json"));
const grpc = fromProtocol("@grpc/grpc-js") as {
  credentials: { createInsecure(): ChannelCredentials };
  Metadata: new () => Metadata;
  status: Record<string, number>;
};
const { create } = fromProtocol("@bufbuild/protobuf") as {
  create(schema: typeof ConnectRequestSchema, init: { message: { case: "hello" | "heartbeat"; value: object } }): ConnectRequest;
};

/** Goal: TLS reconnect time at most this many times the plain one. */
const GOAL_RATIO = 2;
/** Goal: every agent back within this long. */
const GOAL_BACK_MS = 10_000;
/** Longest wait for the fleet to come back before the trial is recorded as incomplete. */
const BACK_TIMEOUT_MS = 60_000;
/** How often the API is polled for the connected count. */
const POLL_MS = 100;
/** Join tokens created for enrollment: each has its own rate bucket (50/s, burst 500). */
const JOIN_TOKENS = 10;
/** Enrollments in flight at once. */
const ENROLL_CONCURRENCY = 8;

/** One simulated agent: a channel of its own and a Connect stream kept alive. */
interface SimulatedAgent {
  readonly agentId: string;
  /** A Welcome arrived on the current stream. */
  readonly connected: boolean;
  /** When (performance.now()) the last Welcome arrived. */
  readonly welcomedAt: number;
  close(): void;
}

/**
 * Starts a simulated agent: dials, says Hello, heartbeats at the Welcome's interval, and
 * reconnects with jittered backoff (200 ms → 2 s, reset by a Welcome) whenever the stream ends.
 */
function startSimulatedAgent(options: { address: string; agentId: string; credentials: ChannelCredentials; metadata?: Metadata }): SimulatedAgent {
  const client = new Client(options.address, options.credentials, {
    // Its own connection, as a separate host would have (grpc-js otherwise shares one connection
    // between channels with equal credentials: every plain-gRPC agent would ride on one socket).
    "grpc.use_local_subchannel_pool": 1,
    // As the agent's link does: reconnect timing is ours, keep grpc's own short.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
  });
  let attempt = 0;
  let closed = false;
  let connected = false;
  let welcomedAt = 0;
  let stream: ReturnType<AgentClient["connect"]> | undefined;
  let heartbeats: NodeJS.Timeout | undefined;
  let welcomeTimer: NodeJS.Timeout | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;

  const connect = () => {
    if (closed) return;
    const current = client.connect(options.metadata ?? new grpc.Metadata());
    stream = current;
    let ended = false;
    const onEnd = () => {
      if (ended) return;
      ended = true;
      connected = false;
      clearInterval(heartbeats);
      clearTimeout(welcomeTimer);
      if (closed) return;
      reconnectTimer = setTimeout(connect, backoffDelay(attempt++, 200, 2000));
    };
    welcomeTimer = setTimeout(() => current.cancel(), 10_000);
    current.on("data", (message: ConnectResponse) => {
      if (message.message.case !== "welcome") return;
      clearTimeout(welcomeTimer);
      connected = true;
      welcomedAt = performance.now();
      attempt = 0;
      const every = Math.max(200, durationToMs(message.message.value.heartbeatInterval) || 5000);
      heartbeats = setInterval(() => {
        current.write(create(ConnectRequestSchema, { message: { case: "heartbeat", value: { time: timestampFromMs(Date.now()) } } }));
      }, every);
    });
    current.on("error", onEnd);
    current.on("end", onEnd);
    current.on("close", onEnd);
    current.write(
      create(ConnectRequestSchema, {
        message: {
          case: "hello",
          value: {
            agentId: options.agentId,
            version: "0.1.0-bench",
            facts: { hostname: `${options.agentId}.bench`, cpuCount: 2, memoryBytes: 4n * 1024n ** 3n },
            labels: { app: "bench", "firedrill:opt-in": "true" },
            capabilities: { faultKinds: ["cpu-burn"], root: false },
          },
        },
      }),
    );
  };
  connect();
  return {
    agentId: options.agentId,
    get connected() {
      return connected;
    },
    get welcomedAt() {
      return welcomedAt;
    },
    close() {
      closed = true;
      clearInterval(heartbeats);
      clearTimeout(welcomeTimer);
      clearTimeout(reconnectTimer);
      stream?.cancel();
      client.close();
    },
  };
}

/** Agents the API shows connected. */
async function connectedCount(server: ServerHandle): Promise<number> {
  // The listing is paginated: its `connected` count covers the whole fleet, whatever the page.
  const { status, body } = await api<{ connected: number }>(server, "GET", "/api/v1/agents?limit=1");
  if (status !== 200) throw new Error(`GET /api/v1/agents: HTTP ${status}`);
  return body.connected;
}

/** Polls until the API shows `n` connected or `timeoutMs` passes; resolves with when (performance.now()) and the last count. */
async function waitConnected(server: ServerHandle, n: number, timeoutMs: number): Promise<{ at: number | undefined; count: number; first: number }> {
  const deadline = performance.now() + timeoutMs;
  let first = -1;
  let count = 0;
  for (;;) {
    try {
      count = await connectedCount(server);
      if (first < 0) first = count;
      if (count >= n) return { at: performance.now(), count, first };
    } catch {
      // The server is still starting: keep polling.
    }
    if (performance.now() > deadline) return { at: undefined, count, first };
    await sleep(POLL_MS);
  }
}

/** Server CPU time (user + system) in seconds, from /proc. */
function cpuSeconds(pid: number): number {
  return (readProcessCpuTicks(pid) ?? NaN) / CLOCK_TICKS_PER_SECOND;
}

/** Enrolls `n` identities over `JOIN_TOKENS` join tokens, backing off when the server says RESOURCE_EXHAUSTED. */
async function enrollFleet(server: ServerHandle, n: number): Promise<{ agentId: string; credentials: ChannelCredentials }[]> {
  const caPem = readFileSync(join(server.dataDir, "pki", "ca.crt"), "utf8");
  const tokens: string[] = [];
  for (let i = 0; i < JOIN_TOKENS; i++) {
    const res = await api<{ token: string }>(server, "POST", "/api/v1/join-tokens", { ttl: "1h" });
    if (res.status !== 201) throw new Error(`could not create a join token: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    tokens.push(res.body.token);
  }
  const identities: { agentId: string; credentials: ChannelCredentials }[] = new Array(n);
  let next = 0;
  let refusedForRate = 0;
  const deadline = performance.now() + Math.max(120_000, n * 100);
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      for (let backoff = 100; ; backoff = Math.min(2000, backoff * 2)) {
        if (performance.now() > deadline) throw new Error(`enrollment of ${n} agents did not finish in time`);
        try {
          const identity = await enrollTestAgent(server.grpcAddr, caPem, tokens[i % tokens.length]!, `bench-${i}`);
          identities[i] = { agentId: identity.agentId, credentials: identity.credentials };
          break;
        } catch (err) {
          if ((err as { code?: number }).code !== grpc.status.RESOURCE_EXHAUSTED) throw err;
          refusedForRate += 1;
          await sleep(backoff);
        }
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: ENROLL_CONCURRENCY }, worker));
  console.log(`enrolled ${n} agents in ${((performance.now() - t0) / 1000).toFixed(1)} s over ${JOIN_TOKENS} join tokens (${refusedForRate} rate-limited attempts retried)`);
  return identities;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One trial's measurements. */
interface Trial {
  mode: string;
  trial: number;
  /** ms from /healthz answering to all connected (undefined: not all came back). */
  afterHealthz: number | undefined;
  afterKill: number | undefined;
  /** ms from the kill to /healthz answering. */
  startup: number;
  connectedAtHealthz: number;
  back: number;
  /** Median and last Welcome after /healthz, as the agents saw it (ms). */
  welcomeP50: number;
  welcomeLast: number;
  /** Server CPU seconds from /healthz to all back, and from its start to all back. */
  serverCpu: number;
  serverCpuTotal: number;
  /** CPU seconds of this process (the simulated agents and the poller) over the same window. */
  agentsCpu: number;
}

/** Starts a server, connects the fleet, restarts the server `trials` times and measures each comeback. */
async function measureMode(mode: "tls" | "plain", n: number, trials: number): Promise<Trial[]> {
  const dir = tempDir(`bench-reconnect-${mode}`);
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const extraArgs = ["--log-level", "warn", ...(mode === "plain" ? ["--insecure-agents"] : [])];
  const start = () => startServer({ dataDir: dir.path, grpcPort, httpPort, extraArgs });
  const agents: SimulatedAgent[] = [];
  const results: Trial[] = [];
  try {
    let server = await start();
    if (mode === "tls") {
      for (const identity of await enrollFleet(server, n)) {
        agents.push(startSimulatedAgent({ address: server.grpcAddr, agentId: identity.agentId, credentials: identity.credentials }));
      }
    } else {
      const metadata = new grpc.Metadata();
      metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(server.joinToken));
      const credentials = grpc.credentials.createInsecure();
      for (let i = 0; i < n; i++) {
        agents.push(startSimulatedAgent({ address: server.grpcAddr, agentId: `bench-plain-${String(i).padStart(5, "0")}`, credentials, metadata }));
      }
    }
    const t0 = performance.now();
    const initial = await waitConnected(server, n, Math.max(60_000, n * 60));
    if (initial.at === undefined) throw new Error(`${mode}: only ${initial.count}/${n} agents connected at first`);
    console.log(`${mode}: ${n} agents connected in ${seconds(initial.at - t0)} (first connect)`);

    for (let trial = 1; trial <= trials; trial++) {
      // Steady state first: every agent connected and heartbeating.
      await sleep(3000);
      const killedAt = performance.now();
      server.proc.kill("SIGKILL");
      await server.proc.exited;
      server = await start();
      const healthzAt = performance.now();
      const pid = server.proc.pid;
      const cpuAtHealthz = cpuSeconds(pid);
      const usageAtHealthz = process.cpuUsage();
      const back = await waitConnected(server, n, BACK_TIMEOUT_MS);
      const cpuAtBack = cpuSeconds(pid);
      const usage = process.cpuUsage(usageAtHealthz);
      const welcomes = agents.filter((a) => a.connected && a.welcomedAt >= killedAt).map((a) => a.welcomedAt - healthzAt);
      results.push({
        mode: mode === "tls" ? "TLS (mTLS, enrolled)" : "plain (--insecure-agents)",
        trial,
        afterHealthz: back.at === undefined ? undefined : back.at - healthzAt,
        afterKill: back.at === undefined ? undefined : back.at - killedAt,
        startup: healthzAt - killedAt,
        connectedAtHealthz: back.first,
        back: back.count,
        welcomeP50: welcomes.length ? median(welcomes) : NaN,
        welcomeLast: welcomes.length ? Math.max(...welcomes) : NaN,
        serverCpu: cpuAtBack - cpuAtHealthz,
        serverCpuTotal: cpuAtBack,
        agentsCpu: (usage.user + usage.system) / 1e6,
      });
      if (back.at === undefined) {
        console.log(`${mode} trial ${trial}: only ${back.count}/${n} back after ${BACK_TIMEOUT_MS / 1000} s; waiting for the rest before the next trial`);
        const rest = await waitConnected(server, n, BACK_TIMEOUT_MS);
        if (rest.at === undefined) throw new Error(`${mode}: ${rest.count}/${n} agents connected ${(2 * BACK_TIMEOUT_MS) / 1000} s after a restart`);
      }
    }
  } finally {
    for (const a of agents) a.close();
    await killAll();
    dir.cleanup();
  }
  return results;
}

/**
 * Runs the benchmark: `agents` simulated agents, `trials` restarts per mode, and prints the
 * table. @default agents 1000, trials 3
 */
export async function benchReconnect(agents = 1000, trials = 3): Promise<void> {
  if (!Number.isInteger(agents) || agents < 1 || agents > 20_000) throw new Error(`agents: ${agents} is not a whole number from 1 to 20000 (pnpm bench reconnect 200)`);
  const tls = await measureMode("tls", agents, trials);
  const plain = await measureMode("plain", agents, trials);
  const all = [...tls, ...plain];
  const orDash = (ms: number | undefined, t: Trial) => (ms === undefined ? `> ${BACK_TIMEOUT_MS / 1000} s (${t.back}/${agents})` : seconds(ms));
  printTable(
    `fleet reconnect after SIGKILL + restart of the control plane (${agents} agents on loopback, one channel each; API polled every ${POLL_MS} ms)`,
    ["mode", "trial", "agents", "kill → /healthz", "connected at /healthz", "back after /healthz", "back after kill", "Welcome p50 / last", "server CPU", "server CPU since start", "agents' CPU"],
    all.map((t) => [
      t.mode,
      t.trial,
      agents,
      seconds(t.startup),
      t.connectedAtHealthz,
      orDash(t.afterHealthz, t),
      orDash(t.afterKill, t),
      `${seconds(t.welcomeP50)} / ${seconds(t.welcomeLast)}`,
      `${t.serverCpu.toFixed(2)} s`,
      `${t.serverCpuTotal.toFixed(2)} s`,
      `${t.agentsCpu.toFixed(2)} s`,
    ]),
  );
  const med = (ts: Trial[], pick: (t: Trial) => number | undefined) => {
    const values = ts.map(pick);
    return values.some((v) => v === undefined) ? undefined : median(values as number[]);
  };
  const ratio = (pick: (t: Trial) => number | undefined) => {
    const a = med(tls, pick);
    const b = med(plain, pick);
    return a === undefined || b === undefined ? undefined : a / b;
  };
  const verdictRatio = (r: number | undefined) => (r === undefined ? "n/a (not all back)" : `${r.toFixed(2)}× ${r < GOAL_RATIO ? "within" : "OVER"} the goal`);
  const slowest = (ts: Trial[], pick: (t: Trial) => number | undefined) => (ts.some((t) => pick(t) === undefined) ? undefined : Math.max(...ts.map((t) => pick(t)!)));
  const back = (ms: number | undefined) => (ms === undefined ? "not all back" : seconds(ms));
  const verdictBack = (pick: (t: Trial) => number | undefined) => {
    const worst = slowest(all, pick);
    return worst === undefined ? "OVER the goal (not all back)" : `slowest ${seconds(worst)}: ${worst < GOAL_BACK_MS ? "within" : "OVER"} the goal of < ${GOAL_BACK_MS / 1000} s`;
  };
  printTable(
    `against the goals (TLS < ${GOAL_RATIO}× plain, on medians of ${trials} trials per mode; all back < ${GOAL_BACK_MS / 1000} s in every trial)`,
    ["measure", "TLS", "plain", "verdict"],
    [
      ["back after /healthz, median", back(med(tls, (t) => t.afterHealthz)), back(med(plain, (t) => t.afterHealthz)), `TLS/plain ${verdictRatio(ratio((t) => t.afterHealthz))}`],
      ["back after kill, median", back(med(tls, (t) => t.afterKill)), back(med(plain, (t) => t.afterKill)), `TLS/plain ${verdictRatio(ratio((t) => t.afterKill))}`],
      ["server CPU /healthz → all back, median", `${median(tls.map((t) => t.serverCpu)).toFixed(2)} s`, `${median(plain.map((t) => t.serverCpu)).toFixed(2)} s`, `TLS/plain ${verdictRatio(ratio((t) => t.serverCpu))}`],
      ["back after /healthz, slowest", back(slowest(tls, (t) => t.afterHealthz)), back(slowest(plain, (t) => t.afterHealthz)), verdictBack((t) => t.afterHealthz)],
      ["back after kill, slowest", back(slowest(tls, (t) => t.afterKill)), back(slowest(plain, (t) => t.afterKill)), verdictBack((t) => t.afterKill)],
    ],
  );
}
