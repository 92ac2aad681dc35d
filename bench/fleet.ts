/**
 * Fleet scale: N simulated agents (real protocol, one gRPC stream each, several processes; see
 * test/support/sim-fleet.ts) on one `firedrill server` process (plain gRPC on loopback,
 * `--insecure-agents`, 5 s heartbeats, 15 s lease), and the same fleet and measurements on the raw
 * grpc-js floor (bench/fleet-floor.ts), printed side by side against the goals of issue 12:
 *
 * 1. register N after a restart: connect the fleet, SIGKILL the process, start it again on the
 *    same ports and data dir; from the new spawn until every agent has a Welcome again.
 * 2. idle: CPU (% of one core, utime + stime from /proc/<pid>/stat) over 20 s, and VmRSS.
 * 3. GET one page of the agent list (the default page), p50 / p99 of 50 sequential requests.
 * 4. a run with one cpu-burn (30 min) on every agent: POST → the last StartFault an agent received,
 *    → every fault acked in the server's store (accepted or running); held 20 s with PROGRESS
 *    flowing; abort → every fault recorded reverted.
 * 5. a second such run, then a halt: POST /api/v1/halt → the last StopAll an agent received,
 *    → every fault of the run recorded reverted; then the halt is lifted.
 * 6. links dropped and leases expired in the agents during 4 and 5 (goal: none).
 *
 * With `--replicas N`, the control plane is N replicas on a private PostgreSQL cluster (started
 * and destroyed here), the fleet split evenly across them (one sim-fleet per replica); a restart
 * kills and starts them all; CPU and RSS are summed over them; the API is asked on the first.
 *
 * On the floor: "recorded" is the floor's in-memory count of the events that came back, the run is
 * a StartFault broadcast, the abort a StopFault per fault, the halt a StopAll broadcast.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { CLOCK_TICKS_PER_SECOND, readProcessCpuTicks } from "@firedrill/agent";
import { postgresSkipReason, startPgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import type { PgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import { startSimFleet } from "../test/support/sim-fleet.js";
import type { SimFleet, SimFleetStats } from "../test/support/sim-fleet.js";
import { api } from "../test/support/api.js";
import { freePort, killAll, sleep, startServer, tempDir } from "../test/support/processes.js";
import type { ServerHandle } from "../test/support/processes.js";
import { startFloor } from "./fleet-floor.js";
import type { FloorHandle } from "./fleet-floor.js";
import { printTable } from "./table.js";

/** Sizes `pnpm bench fleet` runs without `--agents`. */
const DEFAULT_SIZES = [1000, 5000, 10_000];
/** The goals of issue 12 (at 10,000 agents, on this machine). */
const GOAL = { registerMs: 20_000, idleCpuPercent: 25, idleRssMiB: 1024, haltStopAllMs: 1000, acksMs: 10_000, abortRevertsMs: 5000, pageMs: 100 };
/** How often the server (or the floor) is polled for the count of recorded acks and reverts. */
const POLL_MS = 200;
/** How often the fleet is asked how many agents are connected while it registers. */
const REGISTER_POLL_MS = 100;
/** Longest wait for the fleet's first connection (before the restart). */
const FIRST_CONNECT_TIMEOUT_MS = 180_000;
/** Longest wait for the fleet to register again after the restart. */
const REGISTER_TIMEOUT_MS = 90_000;
/** Pause between registration and the idle window (reconciliation after Hello, first renewals). */
const IDLE_SETTLE_MS = 10_000;
/** The idle CPU window. */
const IDLE_WINDOW_MS = 20_000;
/** Longest wait for a broadcast (StartFault, StopAll) to reach every agent. */
const BROADCAST_TIMEOUT_MS = 60_000;
/** Longest wait for every ack or revert to be recorded. */
const RECORD_TIMEOUT_MS = 60_000;
/** How long the run holds its faults (PROGRESS every 2 s from each agent) before the abort: longer than the 15 s lease. */
const HOLD_MS = 20_000;
/** Requests of the agent-list page latency (after 3 unmeasured ones). */
const PAGE_REQUESTS = 50;
/** The fault every agent gets. */
const FAULT = { kind: "cpu-burn", load: 5, durationMs: 30 * 60_000 };

const SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: bench-fleet }
spec:
  hypothesis: "the fleet takes a cpu-burn on every host"
  targets:
    all: { selector: { labels: { app: sim } }, mode: { all: true } }
  steps:
    - { name: burn, fault: ${FAULT.kind}, target: all, params: { load: ${FAULT.load} }, duration: 30m }
`;

/** A measured interval, or how far it got within its bound. */
interface Timed {
  /** ms, or undefined when the count did not reach `of` within `timeoutMs`. */
  ms: number | undefined;
  reached: number;
  of: number;
  timeoutMs: number;
}

/** What one target (firedrill or the floor) measured at one fleet size. */
interface Measured {
  firstConnectMs: number | undefined;
  /** Spawn of the new process → it answers (/healthz, or the floor's /stats). */
  spawnToReadyMs: number;
  register: Timed;
  idleCpuPercent: number;
  idleRssMiB: number;
  fleetIdleCpuPercent: number;
  page: { p50: number; p99: number; bytes: number; listed: number; nextCursor: boolean } | undefined;
  startReceived: Timed;
  acks: Timed;
  /** FAILED events the agents sent for the run's StartFaults (refusals). */
  runFailed: number;
  holdCpuPercent: number;
  abortReverts: Timed;
  /** Abort → the last REVERTED an agent sent; how many they sent. */
  abortAgentsRevertedAt: Timed;
  abortAgentsReverted: number;
  secondAcks: Timed;
  haltStopAll: Timed;
  haltReverts: Timed;
  linksDropped: number;
  leasesExpired: number;
  pollCost: ReturnType<NonNullable<Subject["pollCost"]>>;
  notes: string[];
}

/** What the bench drives on each target. */
interface Subject {
  readonly name: string;
  readonly address: string;
  /** With several replicas: every replica's gRPC address (the fleet is split evenly across them). */
  readonly addresses?: string[];
  readonly joinToken: string;
  pid(): number;
  /** Every process measured (several replicas: their CPU and RSS are summed). @default [pid()] */
  pids?(): number[];
  /** SIGKILLs the process and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same ports (and data dir); resolves once it answers. */
  start(): Promise<void>;
  /** Starts one fault on every agent; resolves once the request is answered. */
  startRun(): Promise<void>;
  /** The current run's faults acked (accepted or running) and recorded reverted. */
  counts(): Promise<{ acked: number; reverted: number }>;
  /** Aborts the current run (resolves when the request is answered). */
  abort(): Promise<void>;
  halt(): Promise<void>;
  unhalt(): Promise<void>;
  /** Latency of the default page of the agent list (undefined: the target has none). */
  page?(): Promise<Measured["page"]>;
  /** Where the counts come from, for the table. */
  countSource(): string;
  /** What polling the counts cost: polls, p50 and slowest (ms), the largest answer (bytes). */
  pollCost?(): { polls: number; p50: number; max: number; maxBytes: number } | undefined;
  close(): Promise<void>;
}

const nowEpoch = () => performance.timeOrigin + performance.now();

function cpuSeconds(pid: number): number {
  return (readProcessCpuTicks(pid) ?? NaN) / CLOCK_TICKS_PER_SECOND;
}

function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : NaN;
}

/** CPU of `pids` over `ms`, in % of one core. */
async function cpuPercent(pids: number[], ms: number): Promise<number> {
  const before = pids.map(cpuSeconds);
  const t0 = performance.now();
  await sleep(ms);
  const after = pids.map(cpuSeconds);
  const seconds = (performance.now() - t0) / 1000;
  return (after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0)) / seconds * 100;
}

/**
 * Polls `read` until it reaches `n` or `timeoutMs` passes since `since` (performance.now()); the
 * time is when the poll saw it. Polls are `everyMs` apart, or twice the last poll's own time when
 * that is longer, so that a slow answer (a busy server, a large body) is not asked for back to back.
 */
async function waitCount(read: () => Promise<number>, n: number, since: number, timeoutMs: number, everyMs = POLL_MS): Promise<Timed> {
  let reached = 0;
  for (;;) {
    const t0 = performance.now();
    try {
      reached = await read();
      if (reached >= n) return { ms: performance.now() - since, reached, of: n, timeoutMs };
    } catch {
      // Busy or restarting: poll again.
    }
    if (performance.now() - since > timeoutMs) return { ms: undefined, reached, of: n, timeoutMs };
    await sleep(Math.max(everyMs, 2 * (performance.now() - t0)));
  }
}

/**
 * Polls the fleet until `count(stats)` reaches `n`, then takes the time from `sinceEpoch` to
 * `at(stats)` (the last such message an agent received, epoch ms).
 */
async function waitFleet(fleet: SimFleet, n: number, sinceEpoch: number, count: (s: SimFleetStats) => number, at: (s: SimFleetStats) => number): Promise<Timed> {
  let last: SimFleetStats | undefined;
  const timed = await waitCount(async () => count((last = await fleet.stats())), n, performance.now(), BROADCAST_TIMEOUT_MS);
  return timed.ms === undefined || !last ? timed : { ...timed, ms: at(last) - sinceEpoch };
}

/** Runs `promise` in the background, logging (not throwing) its failure. */
function background(what: string, promise: Promise<unknown>): Promise<void> {
  return promise.then(
    () => undefined,
    (err: unknown) => console.log(`  ${what}: ${err instanceof Error ? err.message : String(err)}`),
  );
}

/** The control plane as a subject. */
async function firedrillSubject(cpuProfDir?: string, replicaCount = 1): Promise<Subject> {
  const dir = tempDir("bench-fleet");
  // Several replicas: a private PostgreSQL cluster (destroyed in close()) holds their one store.
  let pg: PgCluster | undefined;
  let storeUrl: string | undefined;
  try {
    if (replicaCount > 1) {
      const skip = postgresSkipReason();
      if (skip !== undefined) throw new Error(`--replicas ${replicaCount} needs a private PostgreSQL cluster: ${skip}`);
      pg = await startPgCluster();
      storeUrl = await pg.createDatabase("bench_fleet");
    }
  } catch (err) {
    pg?.destroy();
    dir.cleanup();
    throw err;
  }
  const ports = await Promise.all(Array.from({ length: replicaCount }, async () => ({ grpc: await freePort(), http: await freePort() })));
  let restarted = false;
  let tokens: Pick<ServerHandle, "joinToken" | "adminToken"> | undefined;
  // With --cpu-prof, the restarted server (the one measured) writes a V8 CPU profile when it exits.
  const startOne = (i: number) =>
    startServer({
      dataDir: replicaCount > 1 ? join(dir.path, `replica-${i}`) : dir.path,
      grpcPort: ports[i]!.grpc,
      httpPort: ports[i]!.http,
      extraArgs: ["--insecure-agents", "--log-level", "warn", ...(storeUrl ? ["--store", storeUrl] : [])],
      ...(tokens ? { tokensFrom: tokens } : {}),
      ...(cpuProfDir && restarted ? { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] } : {}),
    });
  /** Every replica (one without --replicas); the API is asked on the first. */
  let servers: ServerHandle[] = [];
  const start = async () => {
    // The first creates the store's tokens; the others join with them (and start together).
    const first = await startOne(0);
    tokens ??= { joinToken: first.joinToken, adminToken: first.adminToken };
    return [first, ...(await Promise.all(Array.from({ length: replicaCount - 1 }, (_, i) => startOne(i + 1))))];
  };
  try {
    servers = await start();
  } catch (err) {
    await killAll();
    pg?.destroy();
    dir.cleanup();
    throw err;
  }
  let server: ServerHandle = servers[0]!;
  restarted = true;
  let runId: string | undefined;
  let source: "runs list" | "run" | "fault pages" | "run report" | undefined;
  let byRun = true;
  /** Each counts() call: how long it took and how many bytes it read. */
  const polls: { ms: number; bytes: number }[] = [];
  let pollBytes = 0;

  /** GET with the admin token, counting the bytes read into `pollBytes`. */
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${server.httpUrl}${path}`, { headers: { authorization: `Bearer ${server.adminToken}` }, signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    pollBytes += Buffer.byteLength(text);
    return { status: res.status, body: JSON.parse(text) as T };
  };
  const mustGet = async <T>(path: string): Promise<T> => {
    const res = await get<T>(path);
    if (res.status !== 200) throw new Error(`GET ${path}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
    return res.body;
  };

  const must = async <T>(method: string, path: string, body: unknown, ok: number[]): Promise<T> => {
    const res = await api<T>(server, method, path, body);
    if (!ok.includes(res.status)) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
    return res.body;
  };

  /** Per-state counts of the run's faults, from the cheapest place the server offers them. */
  const faultCounts = async (id: string): Promise<Record<string, number>> => {
    // The newest run is the bench's: a list of one is the cheapest answer, if it carries the counts.
    if (source === undefined || source === "runs list") {
      const list = await mustGet<{ runs: { id: string; faultCounts?: Record<string, number> }[] }>("/api/v1/runs?limit=1");
      const counts = list.runs.find((r) => r.id === id)?.faultCounts;
      if (counts) return (source = "runs list"), counts;
      if (source === "runs list") throw new Error(`run ${id} is not the newest run`);
    }
    if (source === undefined || source === "run") {
      const { run } = await mustGet<{ run: { faultCounts?: Record<string, number> } }>(`/api/v1/runs/${id}`);
      if (run.faultCounts) return (source = "run"), run.faultCounts;
    }
    if (source === undefined || source === "fault pages") {
      const counts: Record<string, number> = {};
      let cursor: string | undefined;
      let pages = 0;
      for (;;) {
        // Filtered by run where the server can (`runId`), else every fault, counted here.
        const query = `state=all&limit=1000${byRun ? `&runId=${encodeURIComponent(id)}` : ""}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
        const res = await get<{ faults: { runId: string | null; state: string }[]; nextCursor?: string | null }>(`/api/v1/faults?${query}`);
        if (res.status === 400 && byRun) {
          byRun = false;
          continue;
        }
        if (res.status !== 200) throw new Error(`GET /api/v1/faults?${query}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
        const page = res.body;
        pages += 1;
        for (const f of page.faults) if (f.runId === id) counts[f.state] = (counts[f.state] ?? 0) + 1;
        if (page.nextCursor) cursor = page.nextCursor;
        else if (page.faults.length === 1000 && !("nextCursor" in page)) break; // no pagination: the fault list cannot count them all
        else return (source = "fault pages"), counts;
        if (pages > 1000) throw new Error("more than 1,000 pages of faults");
      }
    }
    const { report } = await mustGet<{ report: { hits: { state: string }[] } }>(`/api/v1/runs/${id}/report`);
    source = "run report";
    const counts: Record<string, number> = {};
    for (const h of report.hits) counts[h.state] = (counts[h.state] ?? 0) + 1;
    return counts;
  };

  return {
    name: replicaCount > 1 ? `firedrill ×${replicaCount}` : "firedrill",
    get address() {
      return server.grpcAddr;
    },
    get addresses() {
      return servers.map((s) => s.grpcAddr);
    },
    get joinToken() {
      return server.joinToken;
    },
    pid: () => server.proc.pid,
    pids: () => servers.map((s) => s.proc.pid),
    async kill() {
      for (const s of servers) s.proc.kill("SIGKILL");
      await Promise.all(servers.map((s) => s.proc.exited));
    },
    async start() {
      servers = await start();
      server = servers[0]!;
    },
    async startRun() {
      runId = undefined;
      const body = await must<{ run: { id: string } }>("POST", "/api/v1/runs", { spec: SPEC }, [201]);
      runId = body.run.id;
    },
    async counts() {
      if (runId === undefined) return { acked: 0, reverted: 0 };
      const t0 = performance.now();
      pollBytes = 0;
      const c = await faultCounts(runId);
      polls.push({ ms: performance.now() - t0, bytes: pollBytes });
      return { acked: (c.accepted ?? 0) + (c.running ?? 0), reverted: c.reverted ?? 0 };
    },
    async abort() {
      await must("POST", `/api/v1/runs/${runId}/abort`, { reason: "bench fleet: abort" }, [200]);
    },
    async halt() {
      await must("POST", "/api/v1/halt", { reason: "bench fleet: halt" }, [200]);
    },
    async unhalt() {
      await must("DELETE", "/api/v1/halt", undefined, [200]);
    },
    async page() {
      const samples: number[] = [];
      let bytes = 0;
      let listed = 0;
      let nextCursor = false;
      for (let i = 0; i < PAGE_REQUESTS + 3; i++) {
        const t0 = performance.now();
        const res = await fetch(`${server.httpUrl}/api/v1/agents`, { headers: { authorization: `Bearer ${server.adminToken}` }, signal: AbortSignal.timeout(30_000) });
        const text = await res.text();
        const ms = performance.now() - t0;
        if (res.status !== 200) throw new Error(`GET /api/v1/agents: HTTP ${res.status} ${text.slice(0, 300)}`);
        if (i < 3) continue;
        samples.push(ms);
        bytes = Buffer.byteLength(text);
        const body = JSON.parse(text) as { agents: unknown[]; nextCursor?: string | null };
        listed = body.agents.length;
        nextCursor = typeof body.nextCursor === "string";
      }
      samples.sort((a, b) => a - b);
      const at = (q: number) => samples[Math.min(samples.length - 1, Math.ceil(q * samples.length) - 1)]!;
      return { p50: at(0.5), p99: at(0.99), bytes, listed, nextCursor };
    },
    countSource: () =>
      source === "runs list" || source === "run"
        ? `faultCounts of GET /api/v1/runs${source === "run" ? "/:id" : ""}`
        : source === "fault pages"
          ? "GET /api/v1/faults?state=all pages"
          : "GET /api/v1/runs/:id/report hits",
    pollCost() {
      if (polls.length === 0) return undefined;
      const ms = polls.map((p) => p.ms).sort((a, b) => a - b);
      return { polls: polls.length, p50: ms[Math.floor((ms.length - 1) / 2)]!, max: ms[ms.length - 1]!, maxBytes: Math.max(...polls.map((p) => p.bytes)) };
    },
    async close() {
      if (cpuProfDir) {
        // A clean exit writes the profile.
        for (const s of servers) s.proc.kill("SIGTERM");
        await Promise.race([Promise.all(servers.map((s) => s.proc.exited)), sleep(30_000)]);
        console.log(`CPU profile of the control plane written to ${cpuProfDir} (open it in Chrome DevTools or speedscope)`);
      }
      await killAll();
      pg?.destroy();
      dir.cleanup();
    },
  };
}

/** The raw grpc-js floor as a subject. */
async function floorSubject(): Promise<Subject> {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  let floor: FloorHandle = await startFloor(grpcPort, httpPort);
  return {
    name: "floor",
    address: floor.grpcAddr,
    joinToken: "fdj_floor_ignores_it",
    pid: () => floor.proc.pid,
    async kill() {
      floor.proc.kill("SIGKILL");
      await floor.proc.exited;
    },
    async start() {
      floor = await startFloor(grpcPort, httpPort);
    },
    async startRun() {
      await floor.command(`start-fault?kind=${FAULT.kind}&durationMs=${FAULT.durationMs}`);
    },
    async counts() {
      const s = await floor.stats();
      return { acked: s.acked, reverted: s.reverted };
    },
    async abort() {
      await floor.command("stop-faults");
    },
    async halt() {
      await floor.command("stop-all");
    },
    async unhalt() {},
    countSource: () => "GET /stats of the floor",
    async close() {
      await killAll();
    },
  };
}

/**
 * The simulated fleet of `n` on `subject`: one fleet, or with several replicas one per replica
 * (agents `sim<i>-…`, split evenly), seen as one (stats summed, the latest of the last*At).
 */
async function startFleet(subject: Subject, n: number): Promise<SimFleet> {
  const addresses = subject.addresses && subject.addresses.length > 1 ? subject.addresses : [subject.address];
  if (addresses.length === 1) return startSimFleet({ address: addresses[0]!, joinToken: subject.joinToken, agents: n });
  const fleets: SimFleet[] = [];
  try {
    for (const [i, address] of addresses.entries()) {
      const share = Math.floor(n / addresses.length) + (i < n % addresses.length ? 1 : 0);
      if (share > 0) fleets.push(await startSimFleet({ address, joinToken: subject.joinToken, agents: share, idPrefix: `sim${i}` }));
    }
  } catch (err) {
    await Promise.all(fleets.map((f) => f.close()));
    throw err;
  }
  const stats = async (): Promise<SimFleetStats> => {
    const all = await Promise.all(fleets.map((f) => f.stats()));
    const total = { ...all[0]!, endedBy: { ...all[0]!.endedBy } };
    for (const s of all.slice(1)) {
      for (const key of Object.keys(s) as (keyof SimFleetStats)[]) {
        if (key === "endedBy") for (const [why, count] of Object.entries(s.endedBy)) total.endedBy[why] = (total.endedBy[why] ?? 0) + count;
        else if (key.startsWith("last")) total[key] = Math.max(total[key], s[key]);
        else total[key] += s[key];
      }
    }
    return total;
  };
  return {
    pids: fleets.flatMap((f) => f.pids),
    async waitConnected(count: number, timeoutMs: number) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const connected = (await stats()).connected;
        if (connected >= count) return;
        if (performance.now() > deadline) throw new Error(`only ${connected}/${count} agents connected within ${timeoutMs} ms`);
        await sleep(REGISTER_POLL_MS);
      }
    },
    stats,
    async resetCounters() {
      await Promise.all(fleets.map((f) => f.resetCounters()));
    },
    async close() {
      await Promise.all(fleets.map((f) => f.close()));
    },
  };
}

/** Adds the fleet's link drops and lease expiries since its last reset to `m`, then resets. */
async function collectAndReset(fleet: SimFleet, m: Pick<Measured, "linksDropped" | "leasesExpired">): Promise<void> {
  const s = await fleet.stats();
  m.linksDropped += s.linksDropped;
  m.leasesExpired += s.leasesExpired;
  await fleet.resetCounters();
}

/** The floor's column when `--no-floor` skips it: every figure "not measured". */
function notMeasured(n: number): Measured {
  const none = (timeoutMs: number): Timed => ({ ms: undefined, reached: 0, of: n, timeoutMs });
  return {
    firstConnectMs: undefined,
    spawnToReadyMs: NaN,
    register: none(0),
    idleCpuPercent: NaN,
    idleRssMiB: NaN,
    fleetIdleCpuPercent: NaN,
    page: undefined,
    startReceived: none(0),
    acks: none(0),
    runFailed: 0,
    holdCpuPercent: NaN,
    abortReverts: none(0),
    abortAgentsRevertedAt: none(0),
    abortAgentsReverted: 0,
    secondAcks: none(0),
    haltStopAll: none(0),
    haltReverts: none(0),
    linksDropped: 0,
    leasesExpired: 0,
    pollCost: undefined,
    notes: ["--no-floor: the floor was not measured"],
  };
}

/** Runs every measurement on one subject with a fleet of `n`. */
async function measure(subject: Subject, n: number): Promise<Measured> {
  const log = (line: string) => console.log(`[${subject.name} ${n}] ${line}`);
  const m: Measured = {
    firstConnectMs: undefined,
    spawnToReadyMs: NaN,
    register: { ms: undefined, reached: 0, of: n, timeoutMs: REGISTER_TIMEOUT_MS },
    idleCpuPercent: NaN,
    idleRssMiB: NaN,
    fleetIdleCpuPercent: NaN,
    page: undefined,
    startReceived: { ms: undefined, reached: 0, of: n, timeoutMs: BROADCAST_TIMEOUT_MS },
    acks: { ms: undefined, reached: 0, of: n, timeoutMs: RECORD_TIMEOUT_MS },
    runFailed: 0,
    holdCpuPercent: NaN,
    abortReverts: { ms: undefined, reached: 0, of: n, timeoutMs: RECORD_TIMEOUT_MS },
    abortAgentsRevertedAt: { ms: undefined, reached: 0, of: n, timeoutMs: BROADCAST_TIMEOUT_MS },
    abortAgentsReverted: 0,
    secondAcks: { ms: undefined, reached: 0, of: n, timeoutMs: RECORD_TIMEOUT_MS },
    haltStopAll: { ms: undefined, reached: 0, of: n, timeoutMs: BROADCAST_TIMEOUT_MS },
    haltReverts: { ms: undefined, reached: 0, of: n, timeoutMs: RECORD_TIMEOUT_MS },
    linksDropped: 0,
    leasesExpired: 0,
    pollCost: undefined,
    notes: [],
  };
  let fleet: SimFleet | undefined;
  try {
    // Connected on a stream that got a Welcome since the last reset (after the kill: a new one).
    const connectedAll = (since: number, timeoutMs: number) =>
      waitCount(
        async () => {
          const s = await fleet!.stats();
          return Math.min(s.connected, s.welcomes);
        },
        n,
        since,
        timeoutMs,
        REGISTER_POLL_MS,
      );

    // The fleet connects, then the process is SIGKILLed and started again: the fleet registers anew.
    const t0 = performance.now();
    fleet = await startFleet(subject, n);
    const first = await connectedAll(t0, FIRST_CONNECT_TIMEOUT_MS);
    if (first.ms === undefined) throw new Error(`only ${first.reached}/${n} agents connected within ${FIRST_CONNECT_TIMEOUT_MS / 1000} s of starting the fleet`);
    m.firstConnectMs = first.ms;
    log(`fleet connected in ${seconds(first.ms)} (${fleet.pids.length} processes); restarting`);
    await sleep(3000);
    await subject.kill();
    await fleet.resetCounters();
    const spawnedAt = performance.now();
    await subject.start();
    m.spawnToReadyMs = performance.now() - spawnedAt;
    const back = await connectedAll(spawnedAt, REGISTER_TIMEOUT_MS);
    m.register = back;
    log(`registered again: ${fmt(back)} after the spawn (${seconds(m.spawnToReadyMs)} to ready)`);
    if (back.ms === undefined) {
      const rest = await connectedAll(performance.now(), REGISTER_TIMEOUT_MS);
      m.notes.push(`after the restart only ${back.reached}/${n} were back within ${REGISTER_TIMEOUT_MS / 1000} s; ${rest.reached}/${n} ${REGISTER_TIMEOUT_MS / 1000} s later`);
    }

    // Idle.
    await sleep(IDLE_SETTLE_MS);
    const measured = subject.pids?.() ?? [subject.pid()];
    const pids = [...measured, ...fleet.pids];
    const before = pids.map(cpuSeconds);
    const w0 = performance.now();
    await sleep(IDLE_WINDOW_MS);
    const after = pids.map(cpuSeconds);
    const windowS = (performance.now() - w0) / 1000;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    m.idleCpuPercent = ((sum(after.slice(0, measured.length)) - sum(before.slice(0, measured.length))) / windowS) * 100;
    m.fleetIdleCpuPercent = ((sum(after.slice(measured.length)) - sum(before.slice(measured.length))) / windowS) * 100;
    m.idleRssMiB = sum(measured.map(rssMiB));
    log(`idle: ${m.idleCpuPercent.toFixed(1)} % of a core, ${m.idleRssMiB.toFixed(0)} MiB`);

    if (subject.page) {
      const page = await subject.page();
      m.page = page;
      if (page) log(`agent list page: p50 ${page.p50.toFixed(1)} ms, p99 ${page.p99.toFixed(1)} ms, ${page.listed} agents, ${(page.bytes / 1024).toFixed(0)} KiB`);
    }

    // A run on every agent, held, then aborted.
    await collectAndReset(fleet, { linksDropped: 0, leasesExpired: 0 });
    let sinceEpoch = nowEpoch();
    let since = performance.now();
    const posted = background("start the run", subject.startRun());
    // The server is polled only once the agents' side is done (no ack can be recorded before its
    // StartFault arrived), so that the polls do not compete with the broadcast they measure.
    m.startReceived = await waitFleet(fleet, n, sinceEpoch, (s) => s.startFaults, (s) => s.lastStartFaultAt);
    await posted;
    m.acks = await waitCount(async () => (await subject.counts()).acked, n, since, RECORD_TIMEOUT_MS);
    m.runFailed = (await fleet.stats()).failed;
    log(`run: last StartFault ${fmt(m.startReceived)}, all acks recorded ${fmt(m.acks)}${m.runFailed ? ` (${m.runFailed} refused by agents)` : ""}`);
    m.holdCpuPercent = await cpuPercent(subject.pids?.() ?? [subject.pid()], HOLD_MS);
    log(`held ${HOLD_MS / 1000} s: ${m.holdCpuPercent.toFixed(1)} % of a core`);
    await collectAndReset(fleet, m);
    sinceEpoch = nowEpoch();
    since = performance.now();
    const aborted = background("abort", subject.abort());
    m.abortAgentsRevertedAt = await waitFleet(fleet, n, sinceEpoch, (s) => s.reverted, (s) => s.lastRevertAt);
    m.abortReverts = await waitCount(async () => (await subject.counts()).reverted, n, since, RECORD_TIMEOUT_MS);
    await Promise.race([aborted, sleep(RECORD_TIMEOUT_MS)]);
    m.abortAgentsReverted = (await fleet.stats()).reverted;
    log(`abort: all reverts recorded ${fmt(m.abortReverts)} (${m.abortAgentsReverted} REVERTED sent by the agents)`);

    // A second run, then a halt.
    await collectAndReset(fleet, m);
    since = performance.now();
    const second = background("start the second run", subject.startRun());
    await waitFleet(fleet, n, nowEpoch(), (s) => s.startFaults, (s) => s.lastStartFaultAt);
    await second;
    m.secondAcks = await waitCount(async () => (await subject.counts()).acked, n, since, RECORD_TIMEOUT_MS);
    log(`second run: all acks recorded ${fmt(m.secondAcks)}`);
    await collectAndReset(fleet, m);
    sinceEpoch = nowEpoch();
    since = performance.now();
    const halted = background("halt", subject.halt());
    m.haltStopAll = await waitFleet(fleet, n, sinceEpoch, (s) => s.stopAlls, (s) => s.lastStopAllAt);
    m.haltReverts = await waitCount(async () => (await subject.counts()).reverted, n, since, RECORD_TIMEOUT_MS);
    await Promise.race([halted, sleep(RECORD_TIMEOUT_MS)]);
    log(`halt: last StopAll ${fmt(m.haltStopAll)}, all reverts recorded ${fmt(m.haltReverts)}`);
    await collectAndReset(fleet, m);
    await subject.unhalt();
    log(`links dropped ${m.linksDropped}, leases expired ${m.leasesExpired} during the runs`);
    m.pollCost = subject.pollCost?.();
  } finally {
    await fleet?.close();
    await subject.close();
  }
  return m;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
/** A timed measure as printed: its time, or "> T s (k/N)" when it did not get there. */
const fmt = (t: Timed) => (t.ms === undefined ? `> ${t.timeoutMs / 1000} s (${t.reached}/${t.of})` : seconds(t.ms));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0 ? "—" : `${(a / b).toFixed(1)}×`);
const pollText = (m: Measured) =>
  m.pollCost ? `${m.pollCost.p50.toFixed(0)} / ${m.pollCost.max.toFixed(0)} ms, ${(m.pollCost.maxBytes / 1024).toFixed(0)} KiB (${m.pollCost.polls} polls)` : "—";
const afterReady = (m: Measured) => (m.register.ms === undefined ? fmt(m.register) : seconds(Math.max(0, m.register.ms - m.spawnToReadyMs)));
const verdict = (value: number | undefined, goal: number) => (value === undefined || !Number.isFinite(value) ? "MISSED" : value < goal ? "met" : "MISSED");

/** Prints the tables of one fleet size. */
function printFleet(n: number, fd: Measured, floor: Measured, source: string, replicas = 1): void {
  const setup =
    replicas > 1
      ? `${replicas} firedrill server replicas on one PostgreSQL (agents split evenly; CPU and RSS summed over the replicas; the API asked on the first, commands to the others' agents through PostgreSQL)`
      : "firedrill server";
  const column = replicas > 1 ? `firedrill ×${replicas}` : "firedrill";
  const row = (measure: string, a: Timed, b: Timed, goal: string, judged?: number) => [
    measure,
    fmt(a),
    fmt(b),
    ratio(a.ms, b.ms),
    goal,
    judged === undefined ? "—" : verdict(a.ms, judged),
  ];
  const pct = (v: number) => `${v.toFixed(1)} %`;
  const mib = (v: number) => `${v.toFixed(0)} MiB`;
  const zero = (v: number) => (v === 0 ? "met" : "MISSED");
  printTable(
    `fleet of ${n.toLocaleString("en")} simulated agents: ${setup} vs the raw grpc-js floor (goals are for 10,000; acks and reverts counted from ${source}, polled every ${POLL_MS} ms or twice the poll's own time)`,
    ["measure", column, "floor", "× floor", "goal", "verdict"],
    [
      [
        "register N after a restart (spawn → all Welcomed)",
        fmt(fd.register),
        fmt(floor.register),
        ratio(fd.register.ms, floor.register.ms),
        "< 20 s, no agent gives up",
        verdict(fd.register.ms, GOAL.registerMs),
      ],
      ["idle CPU (% of one core, 20 s)", pct(fd.idleCpuPercent), pct(floor.idleCpuPercent), ratio(fd.idleCpuPercent, floor.idleCpuPercent), "< 25 %", verdict(fd.idleCpuPercent, GOAL.idleCpuPercent)],
      ["idle RSS", mib(fd.idleRssMiB), mib(floor.idleRssMiB), ratio(fd.idleRssMiB, floor.idleRssMiB), "< 1 GiB", verdict(fd.idleRssMiB, GOAL.idleRssMiB)],
      row("halt → last StopAll received", fd.haltStopAll, floor.haltStopAll, "p99 < 1 s (last ≥ p99)", GOAL.haltStopAllMs),
      row("halt → all reverts recorded", fd.haltReverts, floor.haltReverts, "—"),
      row("run → last StartFault received", fd.startReceived, floor.startReceived, "—"),
      row("run → all acks recorded", fd.acks, floor.acks, "< 10 s", GOAL.acksMs),
      row("abort → all reverts recorded", fd.abortReverts, floor.abortReverts, "< 5 s", GOAL.abortRevertsMs),
      [
        "GET one page of agents p50 / p99",
        fd.page ? `${fd.page.p50.toFixed(1)} / ${fd.page.p99.toFixed(1)} ms` : "—",
        "n/a",
        "—",
        "< 100 ms",
        fd.page ? verdict(fd.page.p99, GOAL.pageMs) : "MISSED",
      ],
      ["links dropped during the runs", fd.linksDropped, floor.linksDropped, "—", "0", zero(fd.linksDropped)],
      ["leases expired during the runs", fd.leasesExpired, floor.leasesExpired, "—", "0", zero(fd.leasesExpired)],
    ],
  );
  printTable(
    `fleet of ${n.toLocaleString("en")}: details`,
    ["measure", column, "floor"],
    [
      ["first connect of the fleet (before the restart)", fd.firstConnectMs === undefined ? "—" : seconds(fd.firstConnectMs), floor.firstConnectMs === undefined ? "—" : seconds(floor.firstConnectMs)],
      ["restart: spawn → answering (/healthz; the floor's /stats)", seconds(fd.spawnToReadyMs), seconds(floor.spawnToReadyMs)],
      ["restart: answering → all Welcomed", afterReady(fd), afterReady(floor)],
      ["simulated fleet's CPU while idle (% of one core)", pct(fd.fleetIdleCpuPercent), pct(floor.fleetIdleCpuPercent)],
      [`CPU while the run holds ${HOLD_MS / 1000} s (PROGRESS every 2 s per agent)`, pct(fd.holdCpuPercent), pct(floor.holdCpuPercent)],
      ["polls of the ack / revert counts: p50 / slowest, largest answer", pollText(fd), pollText(floor)],
      ["StartFaults the agents refused (FAILED)", fd.runFailed, floor.runFailed],
      ["REVERTED sent by the agents after the abort", `${fd.abortAgentsReverted}/${n}`, `${floor.abortAgentsReverted}/${n}`],
      ["abort → last REVERTED sent by an agent", fmt(fd.abortAgentsRevertedAt), fmt(floor.abortAgentsRevertedAt)],
      ["second run → all acks recorded (before the halt)", fmt(fd.secondAcks), fmt(floor.secondAcks)],
      [
        "agent list page (GET /api/v1/agents, default)",
        fd.page ? `${fd.page.listed} agents, ${(fd.page.bytes / 1024).toFixed(0)} KiB, ${fd.page.nextCursor ? "nextCursor" : "no nextCursor"}` : "—",
        "n/a",
      ],
    ],
  );
  for (const note of [...fd.notes.map((x) => `firedrill: ${x}`), ...floor.notes.map((x) => `floor: ${x}`)]) console.log(`note: ${note}`);
}

/**
 * `pnpm bench fleet [--agents N]`: with `--agents`, that size; without, 1,000, 5,000 and 10,000
 * in turn. Each size runs on the raw grpc-js floor first, then on the control plane.
 */
export async function benchFleet(args: string[] = []): Promise<void> {
  let sizes = DEFAULT_SIZES;
  const i = args.indexOf("--agents");
  if (i >= 0) {
    const n = Number(args[i + 1]);
    if (!Number.isInteger(n) || n < 1 || n > 50_000) throw new Error(`--agents: ${JSON.stringify(args[i + 1] ?? "")} is not a whole number from 1 to 50000 (pnpm bench fleet --agents 500)`);
    sizes = [n];
  }
  const p = args.indexOf("--cpu-prof");
  const cpuProfDir = p >= 0 ? resolvePath(args[p + 1] ?? "") : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  if (p >= 0 && !args[p + 1]) throw new Error("--cpu-prof needs a directory (pnpm bench fleet --agents 2000 --cpu-prof /tmp/prof)");
  const withFloor = !args.includes("--no-floor");
  const r = args.indexOf("--replicas");
  const replicas = r >= 0 ? Number(args[r + 1]) : 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 8) throw new Error(`--replicas: ${JSON.stringify(args[r + 1] ?? "")} is not a whole number from 1 to 8 (pnpm bench fleet --agents 1000 --replicas 2)`);
  for (const n of sizes) {
    const floor = withFloor ? await measure(await floorSubject(), n) : notMeasured(n);
    const subject = await firedrillSubject(cpuProfDir, replicas);
    const fd = await measure(subject, n);
    printFleet(n, fd, floor, subject.countSource(), replicas);
  }
}
