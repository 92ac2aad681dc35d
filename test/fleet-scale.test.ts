/**
 * Fleet scale, correctness only (timings live in `pnpm bench fleet`): a real `firedrill server` and
 * simulated agents that speak the real protocol over real gRPC streams (test/support/sim-fleet.ts).
 *
 * First the simulator itself at 20 agents, against the control plane's own records: a run to its
 * end (ACCEPTED, STARTED, PROGRESS, REVERTED duration), a stop, a halt, and the lease (the control
 * plane SIGSTOPped past the lease TTL: every agent reverts locally and reports it once back). Then
 * 1,000 agents: a one-step cpu-burn run on all of them, every ack recorded, PROGRESS from every
 * fault for a few seconds, an abort, every fault reverted by its agent, and not one lease expired
 * nor link dropped on the way.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import type { ApiTarget } from "./support/api.js";
import { killAll, sleep, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";
import { startSimFleet } from "./support/sim-fleet.js";
import type { SimFleet } from "./support/sim-fleet.js";

interface FaultJson {
  id: string;
  agentId: string;
  runId: string | null;
  state: string;
  reason: string | null;
  endedAt: string | null;
}
interface AgentJson {
  id: string;
  connected: boolean;
  version: string;
  labels: Record<string, string>;
}

/**
 * Every item of a listing: follows `nextCursor` when the API pages, otherwise reads the single page.
 * `path` carries its own query (at least `limit`).
 */
async function listAll<T>(server: ApiTarget, path: string, key: "agents" | "faults"): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const url = cursor === undefined ? path : `${path}${path.includes("?") ? "&" : "?"}cursor=${encodeURIComponent(cursor)}`;
    const res = await api<Record<string, unknown>>(server, "GET", url);
    if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
    items.push(...(res.body[key] as T[]));
    cursor = typeof res.body.nextCursor === "string" && res.body.nextCursor !== "" ? res.body.nextCursor : undefined;
    if (cursor === undefined) return items;
  }
  throw new Error(`GET ${path}: more than 10000 pages`);
}

const connectedAgents = async (server: ApiTarget) => (await listAll<AgentJson>(server, "/api/v1/agents?limit=1000", "agents")).filter((a) => a.connected);
/** Faults of one run (newest first), or of every run with `runId` undefined. */
const faultsOf = async (server: ApiTarget, runId?: string) =>
  (await listAll<FaultJson>(server, "/api/v1/faults?state=all&limit=1000", "faults")).filter((f) => runId === undefined || f.runId === runId);

/** Counts per value of `key`, e.g. { running: 998, accepted: 2 }: what the error messages show. */
function tally<T>(items: T[], key: (item: T) => string | null): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) {
    const k = key(item) ?? "null";
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

/** Polls `check` (which says whether it is done and what it saw) until done, or throws with the last sighting. */
async function waitUntil(what: string, check: () => Promise<{ done: boolean; saw: string }>, timeoutMs: number, everyMs = 500): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let saw = "nothing yet";
  for (;;) {
    try {
      const result = await check();
      saw = result.saw;
      if (result.done) return;
    } catch (err) {
      if (err instanceof RunEnded) throw err;
      saw = `error: ${(err as Error).message}`;
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}; last seen: ${saw}`);
    await sleep(everyMs);
  }
}

/** A run that ended while the test waited for something else. */
class RunEnded extends Error {
  override name = "RunEnded";
}

function experiment(duration: string): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: fleet-scale
spec:
  hypothesis: "the control plane keeps every agent while a fault runs on all of them"
  targets:
    fleet:
      selector: { labels: { app: sim } }
      mode: { all: true }
  steps:
    - { name: burn, fault: cpu-burn, target: fleet, params: { load: 5 }, duration: ${duration} }
  stopConditions: []
`;
}

async function startRun(server: ApiTarget, spec: string): Promise<string> {
  const res = await api(server, "POST", "/api/v1/runs", { spec });
  expect(res.status, JSON.stringify(res.body).slice(0, 2000)).toBe(201);
  return res.body.run.id as string;
}

async function runState(server: ApiTarget, id: string): Promise<{ state: string; reason: string | null }> {
  const res = await api(server, "GET", `/api/v1/runs/${id}`);
  if (res.status !== 200) throw new Error(`GET /api/v1/runs/${id}: HTTP ${res.status}`);
  return { state: res.body.run.state, reason: res.body.run.reason };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe("the simulated fleet against a real control plane (20 agents)", () => {
  const N = 20;
  const dir = tempDir("sim-fleet");
  let server: ServerHandle;
  let fleet: SimFleet;

  beforeAll(async () => {
    // A short lease, renewed every second, so that the lease test is quick: a silent control plane
    // makes an agent drop its link after 3 s (2 heartbeats + 1 s), and its lease runs out at 5 s,
    // while the link is down: the REVERTED events wait for the next Welcome.
    server = await startServer({ dataDir: dir.path, leaseTtl: "5s", heartbeatInterval: "1s", extraArgs: ["--insecure-agents", "--log-level", "warn"] });
    fleet = await startSimFleet({ address: server.grpcAddr, joinToken: server.joinToken, agents: N, processes: 2, idPrefix: "small", progressEveryMs: 300 });
    await fleet.waitConnected(N, 30_000);
  });
  afterAll(async () => {
    server?.proc.kill("SIGCONT");
    await fleet?.close();
    await killAll();
    dir.cleanup();
  });

  it("registers every agent with its id, version and labels, over its own connection", async () => {
    const agents = await connectedAgents(server);
    expect(agents.map((a) => a.id).sort()).toEqual(Array.from({ length: N }, (_, i) => `small-${String(i).padStart(5, "0")}`));
    expect(new Set(agents.map((a) => a.version))).toEqual(new Set(["0.1.0-sim"]));
    for (const a of agents) expect(a.labels).toMatchObject({ app: "sim", "firedrill:opt-in": "true" });
    expect(fleet.pids).toHaveLength(2);
    const s = await fleet.stats();
    expect(s).toMatchObject({ connected: N, welcomes: N, linksDropped: 0, leasesExpired: 0, heldFaults: 0 });
  });

  it("a run on every agent reaches its end: accepted, started, progress, reverted (duration)", async () => {
    await fleet.resetCounters();
    const id = await startRun(server, experiment("2s"));
    await waitFor(`run ${id} to complete`, async () => (await runState(server, id)).state === "completed", 30_000, 200);
    const faults = await faultsOf(server, id);
    expect(faults).toHaveLength(N);
    expect(tally(faults, (f) => `${f.state}/${f.reason}`)).toEqual({ "reverted/duration": N });
    const { body } = await api(server, "GET", `/api/v1/faults/${faults[0]!.id}`);
    const types: string[] = body.events.map((e: { type: string }) => e.type);
    expect(types).toEqual(expect.arrayContaining(["accepted", "started", "progress", "reverted"]));
    expect(types.indexOf("accepted")).toBeLessThan(types.indexOf("started"));
    expect(types.at(-1)).toBe("reverted");
    const s = await fleet.stats();
    expect(s).toMatchObject({ startFaults: N, reverted: N, heldFaults: 0, failed: 0, linksDropped: 0, leasesExpired: 0 });
    expect(s.progress).toBeGreaterThan(0);
    expect(s.lastRevertAt).toBeGreaterThanOrEqual(s.lastStartFaultAt);
  });

  it("a stop reverts one fault (reason stopped); a halt sends every agent StopAll (reason halt)", async () => {
    await fleet.resetCounters();
    const started = await api(server, "POST", "/api/v1/agents/small-00003/faults", { kind: "cpu-burn", params: { load: 5 }, duration: "5m" });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const stopped = await api(server, "DELETE", `/api/v1/agents/small-00003/faults/${started.body.fault.id}`);
    expect(stopped.status, JSON.stringify(stopped.body)).toBe(200);
    expect(stopped.body.fault).toMatchObject({ state: "reverted", reason: "stopped" });

    const held: string[] = [];
    for (const agent of ["small-00001", "small-00012"]) {
      const res = await api(server, "POST", `/api/v1/agents/${agent}/faults`, { kind: "cpu-burn", params: { load: 5 }, duration: "5m" });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      held.push(res.body.fault.id);
    }
    expect((await fleet.stats()).heldFaults).toBe(2);
    try {
      expect((await api(server, "POST", "/api/v1/halt", { reason: "sim-fleet test" })).status).toBe(200);
      await waitFor("both faults reverted by the halt", async () => {
        const faults = (await faultsOf(server)).filter((f) => held.includes(f.id));
        return faults.every((f) => f.state === "reverted" && f.reason === "halt");
      }, 15_000, 200);
      const s = await fleet.stats();
      expect(s).toMatchObject({ heldFaults: 0, reverted: 3, linksDropped: 0 });
      expect(s.stopFaults).toBeGreaterThanOrEqual(1);
      expect(s.stopAlls).toBeGreaterThanOrEqual(N);
      expect(s.lastStopAllAt).toBeGreaterThanOrEqual(s.lastStopFaultAt);
    } finally {
      await api(server, "DELETE", "/api/v1/halt");
    }
  });

  it("a control plane frozen past the lease: every agent reverts on its own and reports it (reason lease) once back", async () => {
    for (let i = 0; i < N; i++) {
      const res = await api(server, "POST", `/api/v1/agents/small-${String(i).padStart(5, "0")}/faults`, { kind: "cpu-burn", params: { load: 5 }, duration: "5m" });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    expect((await fleet.stats()).heldFaults).toBe(N);
    await fleet.resetCounters();
    server.proc.kill("SIGSTOP");
    try {
      // The agents' view needs nothing from the frozen control plane.
      await waitUntil(
        "every lease to run out and every fault to be reverted locally",
        async () => {
          const s = await fleet.stats();
          return { done: s.leasesExpired >= N && s.heldFaults === 0, saw: `leasesExpired ${s.leasesExpired}, heldFaults ${s.heldFaults}` };
        },
        15_000,
        200,
      );
    } finally {
      server.proc.kill("SIGCONT");
    }
    await fleet.waitConnected(N, 30_000);
    await waitUntil(
      "the control plane to record every fault reverted with reason lease",
      async () => {
        const active = (await faultsOf(server)).filter((f) => f.runId === null && f.reason !== "stopped" && f.reason !== "halt");
        const counts = tally(active, (f) => `${f.state}/${f.reason}`);
        return { done: counts["reverted/lease"] === N, saw: JSON.stringify(counts) };
      },
      30_000,
    );
    const s = await fleet.stats();
    expect(s.heldFaults).toBe(0);
    expect(s.reverted).toBe(N);
    // Their links were silent too: each agent gave up its stream and dialed again.
    expect(s.linksDropped).toBeGreaterThanOrEqual(N);
  });
});

describe("a run on 1,000 simulated agents, then its abort", () => {
  const N = 1000;
  const dir = tempDir("fleet-scale");
  let server: ServerHandle;
  let fleet: SimFleet | undefined;

  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, extraArgs: ["--insecure-agents", "--log-level", "warn"] });
  });
  afterAll(async () => {
    await fleet?.close();
    await killAll();
    dir.cleanup();
  });

  it("every ack recorded, every fault reverted by the abort, no lease expired, no link dropped", { timeout: 420_000 }, async () => {
    const t0 = performance.now();
    fleet = await startSimFleet({ address: server.grpcAddr, joinToken: server.joinToken, agents: N, processes: 2 });
    await fleet.waitConnected(N, 90_000);
    await waitUntil(
      `${N} agents connected on the control plane`,
      async () => {
        const n = (await connectedAgents(server)).length;
        return { done: n === N, saw: `${n} connected` };
      },
      30_000,
    );
    const tConnected = performance.now();
    await fleet.resetCounters();

    const runId = await startRun(server, experiment("5m"));
    const tRun = performance.now();
    const notEnded = async () => {
      const run = await runState(server, runId);
      if (!["pending", "preflight", "running"].includes(run.state)) throw new RunEnded(`run ${runId} ended (${run.state}) before the test aborted it: ${run.reason}`);
    };
    let faults: FaultJson[] = [];
    await waitUntil(
      `every fault of run ${runId} acknowledged by its agent`,
      async () => {
        await notEnded();
        faults = await faultsOf(server, runId);
        const acked = faults.filter((f) => f.state === "accepted" || f.state === "running").length;
        const s = await fleet!.stats();
        return {
          done: faults.length === N && acked === N,
          saw: `${faults.length} faults, ${JSON.stringify(tally(faults, (f) => f.state))}; agents: ${s.startFaults} StartFault received, ${s.linksDropped} links dropped, ${s.leasesExpired} leases expired`,
        };
      },
      120_000,
    );
    const tAcked = performance.now();
    expect(new Set(faults.map((f) => f.agentId)).size).toBe(N);
    // A running run: every fault reports PROGRESS (every 2 s), the load the control plane must
    // carry without starving lease renewals. Hold it until each has reported twice on average.
    await waitUntil(
      `${2 * N} PROGRESS events from the fleet`,
      async () => {
        await notEnded();
        const s = await fleet!.stats();
        return { done: s.progress >= 2 * N, saw: `${s.progress} PROGRESS sent, ${s.linksDropped} links dropped, ${s.leasesExpired} leases expired` };
      },
      60_000,
    );

    const tAborting = performance.now();
    // The abort answers once the run is aborted (it may wait for the reverts): give it longer than api()'s 30 s.
    const abort = await fetch(`${server.httpUrl}/api/v1/runs/${runId}/abort`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "fleet-scale test" }),
      signal: AbortSignal.timeout(180_000),
    });
    expect(abort.status, await abort.clone().text()).toBe(200);
    const tAbort = performance.now();
    await waitUntil(
      `run ${runId} aborted and every fault reverted by its agent`,
      async () => {
        const run = await runState(server, runId);
        faults = await faultsOf(server, runId);
        const reverted = faults.filter((f) => f.state === "reverted" && f.reason !== "lease-assumed").length;
        return { done: run.state === "aborted" && reverted === N, saw: `run ${run.state}; faults ${JSON.stringify(tally(faults, (f) => `${f.state}/${f.reason}`))}` };
      },
      120_000,
    );
    const tReverted = performance.now();
    expect(tally(faults, (f) => `${f.state}/${f.reason}`)).toEqual({ "reverted/aborted": N });

    const s = await fleet.stats();
    console.log(
      `fleet-scale: ${N} agents connected in ${seconds(tConnected - t0)}; run → every ack recorded ${seconds(tAcked - tRun)}; ` +
        `abort answered in ${seconds(tAbort - tAborting)}, → every revert recorded ${seconds(tReverted - tAborting)}; agents saw ${JSON.stringify(s)}`,
    );
    expect(s).toMatchObject({ leasesExpired: 0, linksDropped: 0, heldFaults: 0, startFaults: N, reverted: N, failed: 0, connected: N });
    expect((await connectedAgents(server)).length).toBe(N);
  });
});
