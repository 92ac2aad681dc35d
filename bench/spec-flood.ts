/**
 * Experiments flooding the API: a `firedrill server` process (lease TTL 3 s, renewals every 1 s)
 * with 5 simulated agents connected; `/healthz` is polled back to back on a keep-alive connection
 * while 20 maximal experiments (256 KiB, ~10,000 YAML nodes, 200 steps, 50 target groups) are
 * posted at once, half to `POST /api/v1/plan`, half to `POST /api/v1/runs` (sent from a worker
 * thread, so this process's loop stays free to time /healthz and receive renewals).
 * Goals: /healthz p99 < 50 ms during the flood, and no agent misses a lease (the longest gap
 * between two renewals stays under the TTL; it should stay near the 1 s interval).
 *
 * A second table is the reason the server checks experiments in worker threads: what checking
 * one experiment costs on the calling thread (here, this process), for a maximal valid one and
 * for the hostile inputs the limits stop.
 */
import { createRequire } from "node:module";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { parseExperiment } from "@firedrill/control-plane";
import { AGENT_TOKEN_METADATA_KEY, AgentService, ConnectRequestSchema, bearer, createClientConstructor, durationToMs, timestampFromMs } from "@firedrill/protocol";
import type { ClientOf, ConnectRequest, ConnectResponse } from "@firedrill/protocol";
// Test support of the control plane (not exported by the package).
import { HEAD, fill, maximalSpec } from "../packages/control-plane/src/test-support/spec-corpus.js";
import { postFromThread } from "../packages/control-plane/src/test-support/post-from-thread.js";
import { ROOT, killAll, sleep, startServer, tempDir, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

type AgentClient = ClientOf<typeof AgentService>;
type Metadata = NonNullable<Parameters<AgentClient["connect"]>[0]>;
const Client = createClientConstructor(AgentService);
type ChannelCredentials = ConstructorParameters<typeof Client>[1];
// grpc-js and protobuf-es as @firedrill/protocol loads them (see reconnect.ts).
const fromProtocol = createRequire(join(ROOT, "packages/protocol/package.json"));
const grpc = fromProtocol("@grpc/grpc-js") as { credentials: { createInsecure(): ChannelCredentials }; Metadata: new () => Metadata };
const { create } = fromProtocol("@bufbuild/protobuf") as {
  create(schema: typeof ConnectRequestSchema, init: { message: { case: "hello" | "heartbeat"; value: object } }): ConnectRequest;
};

/** Goal: /healthz p99 during the flood. */
const GOAL_HEALTHZ_P99_MS = 50;
const LEASE_TTL_MS = 3000;

/** A simulated agent that records when each lease renewal arrives. */
interface LeaseWatcher {
  readonly agentId: string;
  readonly welcomed: boolean;
  /** performance.now() of each renewal (and of the Welcome, which grants the first lease). */
  readonly renewals: number[];
  /** Whether the stream ended (the server closed the link). */
  readonly ended: boolean;
  close(): void;
}

function watchLeases(address: string, joinToken: string, agentId: string): LeaseWatcher {
  const client = new Client(address, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  const metadata = new grpc.Metadata();
  metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(joinToken));
  const stream = client.connect(metadata);
  const renewals: number[] = [];
  let welcomed = false;
  let ended = false;
  let heartbeats: NodeJS.Timeout | undefined;
  stream.on("data", (message: ConnectResponse) => {
    if (message.message.case === "welcome") {
      welcomed = true;
      renewals.push(performance.now());
      const every = Math.max(200, durationToMs(message.message.value.heartbeatInterval) || 1000);
      heartbeats = setInterval(() => stream.write(create(ConnectRequestSchema, { message: { case: "heartbeat", value: { time: timestampFromMs(Date.now()) } } })), every);
    } else if (message.message.case === "leaseRenewal") {
      renewals.push(performance.now());
    }
  });
  const end = () => {
    ended = true;
    clearInterval(heartbeats);
  };
  stream.on("error", end);
  stream.on("end", end);
  stream.write(
    create(ConnectRequestSchema, {
      message: {
        case: "hello",
        value: {
          agentId,
          version: "0.1.0-bench",
          facts: { hostname: `${agentId}.bench`, cpuCount: 2, memoryBytes: 4n * 1024n ** 3n },
          labels: { app: "bench", "firedrill:opt-in": "true" },
          capabilities: { faultKinds: ["cpu-burn"], root: false },
        },
      },
    }),
  );
  return {
    agentId,
    renewals,
    get welcomed() {
      return welcomed;
    },
    get ended() {
      return ended;
    },
    close() {
      clearInterval(heartbeats);
      stream.cancel();
      client.close();
    },
  };
}

/** Polls /healthz back to back on one keep-alive connection until stopped; each sample is [start, ms]. */
function pollHealthz(httpUrl: string): { samples: [number, number][]; stop(): Promise<void> } {
  const url = new URL(httpUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const samples: [number, number][] = [];
  let running = true;
  const once = () =>
    new Promise<void>((resolve, reject) => {
      const t0 = performance.now();
      const req = request({ host: url.hostname, port: Number(url.port), path: "/healthz", agent }, (res) => {
        res.on("data", () => {});
        res.on("end", () => {
          samples.push([t0, performance.now() - t0]);
          resolve();
        });
      });
      req.once("error", reject);
      req.end();
    });
  const loop = (async () => {
    while (running) {
      await once();
      await sleep(2);
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await loop;
      agent.destroy();
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (v: number) => `${v.toFixed(1)} ms`;

/** Median time of `fn` over `runs` runs on this thread, ms. */
function median(runs: number, fn: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

/** What checking one experiment costs on the calling thread (why the server uses workers). */
function benchParseCost(): void {
  const check = (text: string) => () => {
    try {
      parseExperiment(text);
    } catch {
      // refused: the cost is what counts
    }
  };
  const cases: [string, string][] = [
    ["maximal valid experiment (256 KiB, ~10,000 nodes)", maximalSpec(7)],
    ["60,000 keys in 256 KiB (refused at the node limit)", fill("a:\n", (i) => ` k${i}: 1\n`)],
    ["4,000 unknown fields (refused, 50 issues listed)", `${HEAD}${Array.from({ length: 4000 }, (_, i) => `  u${i}: 1\n`).join("")}`],
    ["billion laughs (refused at the node limit)", ["a0: &a0 [l, l, l, l, l, l, l, l, l]", ...Array.from({ length: 7 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(", ")}]`)].join("\n")],
    ["100,000 nested [ (refused at depth 32)", `a: ${"[".repeat(100_000)}${"]".repeat(100_000)}`],
    ["a small experiment (examples-sized)", HEAD],
  ];
  printTable(
    "checking one experiment on the calling thread (median of 5; the server does this in a worker thread, never on its event loop)",
    ["input", "size", "time"],
    cases.map(([name, text]) => {
      check(text)();
      return [name, `${(Buffer.byteLength(text) / 1024).toFixed(0)} KiB`, ms(median(5, check(text)))];
    }),
  );
}

/** 20 maximal experiments at once against /healthz latency and agent leases. */
export async function benchSpecFlood(count = 20, agentCount = 5): Promise<void> {
  benchParseCost();
  const dir = tempDir("bench-spec-flood");
  const agents: LeaseWatcher[] = [];
  try {
    const server = await startServer({ dataDir: dir.path, leaseTtl: `${LEASE_TTL_MS / 1000}s`, extraArgs: ["--insecure-agents"], env: { FIREDRILL_LOG_LEVEL: "warn" } });
    for (let i = 0; i < agentCount; i++) agents.push(watchLeases(server.grpcAddr, server.joinToken, `flood-agent-${i}`));
    await waitFor("the simulated agents welcomed", () => agents.every((a) => a.welcomed), 20_000);
    const post = (path: string, spec: string) => ({
      url: `${server.httpUrl}${path}`,
      headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ spec }),
    });
    // The server's checking thread loads on the first experiment (from source: seconds).
    const warm = await postFromThread([post("/api/v1/plan", HEAD), post("/api/v1/plan", maximalSpec(0))], { parallel: false });
    if (warm.some((r) => r.status !== 200)) throw new Error(`warm-up plan failed: ${JSON.stringify(warm.map((r) => r.body)).slice(0, 500)}`);

    const requests = Array.from({ length: count }, (_, i) => post(i % 2 === 0 ? "/api/v1/plan" : "/api/v1/runs", maximalSpec(1000 + i)));
    const healthz = pollHealthz(server.httpUrl);
    await sleep(3000);
    const floodStart = performance.now();
    const answers = await postFromThread(requests, { parallel: true });
    const floodEnd = performance.now();
    await sleep(1500);
    await healthz.stop();

    const phase = (from: number, to: number) => healthz.samples.filter(([t]) => t >= from && t < to).map(([, v]) => v).sort((a, b) => a - b);
    const rows = [
      ["before (idle)", phase(0, floodStart)],
      [`during the flood (${((floodEnd - floodStart) / 1000).toFixed(1)} s)`, phase(floodStart, floodEnd)],
    ] as const;
    printTable(
      `/healthz latency while ${count} maximal experiments are posted at once (server process on loopback, ${agentCount} agents connected; goal: p99 < ${GOAL_HEALTHZ_P99_MS} ms during the flood)`,
      ["phase", "requests", "p50", "p99", "max", "goal"],
      rows.map(([name, s], k) => [
        name,
        s.length,
        ms(percentile(s, 50)),
        ms(percentile(s, 99)),
        ms(s.at(-1) ?? Number.NaN),
        k === 0 ? "" : percentile(s, 99) < GOAL_HEALTHZ_P99_MS ? "met" : "MISSED",
      ]),
    );

    const heartbeatMs = LEASE_TTL_MS / 3;
    printTable(
      `lease renewals during the flood (TTL ${LEASE_TTL_MS / 1000} s, renewed every ${heartbeatMs / 1000} s; goal: no gap reaches the TTL)`,
      ["agent", "renewals", "longest gap", "link", "lease"],
      agents.map((a) => {
        // Gaps that overlap the flood, from the renewal before it to the first after it.
        const times = a.renewals;
        let longest = 0;
        for (let i = 1; i < times.length; i++) {
          if (times[i]! < floodStart || times[i - 1]! > floodEnd) continue;
          longest = Math.max(longest, times[i]! - times[i - 1]!);
        }
        const during = times.filter((t) => t >= floodStart && t <= floodEnd).length;
        return [a.agentId, during, ms(longest), a.ended ? "CLOSED" : "open", longest < LEASE_TTL_MS && !a.ended ? "kept" : "MISSED"];
      }),
    );

    const byStatus = new Map<number, number>();
    for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
    const latencies = answers.map((a) => a.ms).sort((a, b) => a - b);
    printTable(
      `the ${count} experiments (plan: 200 with the plan; run: 422, their groups match no agent)`,
      ["answers", "first answered", "last answered", "statuses"],
      [[answers.length, ms(latencies[0] ?? Number.NaN), ms(latencies.at(-1) ?? Number.NaN), [...byStatus].map(([s, n]) => `${n} x ${s}`).join(", ")]],
    );
  } finally {
    for (const a of agents) a.close();
    await killAll();
    dir.cleanup();
  }
}
