/**
 * High availability on PostgreSQL (docs/ha.md), with real processes: three control-plane replicas
 * on one real PostgreSQL that the test starts itself, and two real agents each given two of them
 * (`--server B,C` and `--server C,B`), so replica A holds no agent stream.
 *
 * - a run started on A, whose agents are held by B and C, completes;
 * - the leader SIGKILLed mid-run → another replica takes the run over within 10 s, still watches
 *   its stop condition, and the breach's abort reaches every agent;
 * - the replica holding an agent's stream SIGKILLed → the agent moves to the other address and
 *   keeps its fault (the lease outlives the move); a stop from any replica reaches it;
 * - PostgreSQL restarted under load → the replicas reconnect; the fault keeps running, a stop and
 *   a new run after it work;
 * - a halt on one replica stops the faults of agents held by the others.
 * Every replica, agent and cluster is killed and removed, even when a test fails.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { healthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import type { HealthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import { postgresSkipReason, startPgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import type { PgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { freePort, killAll, startAgentProcess, startServer, waitFor } from "./support/processes.js";
import type { ServerHandle, TestProcess } from "./support/processes.js";

const skip = postgresSkipReason();
const LABELS = "app=web,firedrill:opt-in=true";

const burnSpec = (name: string, duration: string, healthUrl?: string) => `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: ${name} }
spec:
  hypothesis: web keeps answering while its hosts burn a little CPU
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 10, cores: 1 }, duration: ${duration} }
${healthUrl ? `  stopConditions:\n    - { http: { url: "${healthUrl}", intervalMs: 300, failuresToAbort: 2 } }\n` : ""}`;

interface Replica {
  name: string;
  dataDir: string;
  grpcPort: number;
  httpPort: number;
  server: ServerHandle;
}

describe.skipIf(skip !== undefined)(`control-plane replicas on one PostgreSQL${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let pg: PgCluster;
  let url: string;
  const root = mkdtempSync(join(tmpdir(), "fd-ha-"));
  const replicas: Replica[] = [];
  const agents: { proc: TestProcess; stateDir: string; id: string }[] = [];
  let health: HealthEndpoint;
  let tokens: { joinToken: string; adminToken: string };

  const startReplica = async (r: Omit<Replica, "server"> & { server?: ServerHandle }): Promise<Replica> => {
    const server = await startServer({
      dataDir: r.dataDir,
      grpcPort: r.grpcPort,
      httpPort: r.httpPort,
      leaseTtl: "8s",
      extraArgs: ["--store", url, "--revert-wait", "10s"],
      ...(replicas.length > 0 || r.server ? { tokensFrom: tokens } : {}),
    });
    return { ...r, server };
  };
  const byName = (name: string) => replicas.find((r) => r.name === name)!;
  const q = <T = Record<string, unknown>>(sql: string, values?: unknown[]) => pg.query<T>(new URL(url).pathname.slice(1), sql, values);
  const replicaIdOf = async (r: Replica) =>
    (await q<{ id: string }>("SELECT id FROM replicas WHERE http_address = $1 AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1", [`127.0.0.1:${r.httpPort}`]))[0]?.id;
  const holderOf = async (agentId: string) => (await q<{ replica_id: string }>("SELECT replica_id FROM agent_streams WHERE agent_id = $1", [agentId]))[0]?.replica_id;
  const leaderId = async () => (await q<{ replica_id: string | null; expires_at: number }>("SELECT replica_id, expires_at FROM leader_lease WHERE id = 1"))[0]?.replica_id ?? undefined;
  const runOf = async (via: Replica, id: string) => (await api(via.server, "GET", `/api/v1/runs/${id}`)).body;
  const live = () => replicas.filter((r) => r.server.proc.child.exitCode === null && r.server.proc.child.signalCode === null);

  beforeAll(async () => {
    pg = await startPgCluster();
    url = await pg.createDatabase("ha_replicas");
    health = await healthEndpoint();
    for (const name of ["a", "b", "c"]) {
      const r = await startReplica({ name, dataDir: join(root, name), grpcPort: await freePort(), httpPort: await freePort() });
      if (name === "a") tokens = { joinToken: r.server.joinToken, adminToken: r.server.adminToken };
      replicas.push(r);
    }
    const [, b, c] = replicas as [Replica, Replica, Replica];
    for (const [i, servers] of [[0, `${b.server.grpcAddr},${c.server.grpcAddr}`], [1, `${c.server.grpcAddr},${b.server.grpcAddr}`]] as const) {
      const stateDir = join(root, `agent-${i}`);
      const proc = startAgentProcess({ server: servers, token: tokens.joinToken, stateDir, labels: LABELS, extraArgs: ["--reconnect-max", "500ms"] });
      agents.push({ proc, stateDir, id: "" });
    }
    const listed = await waitFor("both agents connected (listed by replica A)", async () => {
      const { body } = await api(replicas[0]!.server, "GET", "/api/v1/agents");
      const connected = (body.agents as { id: string; connected: boolean }[]).filter((a) => a.connected);
      return connected.length === 2 ? connected : undefined;
    }, 60_000, 200);
    // Which agent is which: each holds a stream on the first address it was given.
    for (const a of listed) {
      const holder = await waitFor(`the stream of ${a.id} recorded`, () => holderOf(a.id), 10_000);
      const onB = holder === (await replicaIdOf(b));
      agents[onB ? 0 : 1]!.id = a.id;
    }
    expect(agents.map((a) => a.id).every(Boolean)).toBe(true);
  }, 180_000);

  // Whatever a test left: its dead replicas started again, faults stopped, the halt lifted.
  afterEach(async () => {
    health.setStatus(200);
    for (const [i, r] of replicas.entries()) {
      if (r.server.proc.child.exitCode !== null || r.server.proc.child.signalCode !== null) replicas[i] = await startReplica(r);
    }
    const via = replicas[0]!.server;
    await api(via, "DELETE", "/api/v1/halt");
    for (const agent of agents) if (agent.id) await api(via, "DELETE", `/api/v1/agents/${agent.id}/faults`);
    await waitFor("no burn left", () => agents.every((x) => burnerThreads(x.proc.pid).length === 0), 30_000, 100);
    await waitFor("no active fault left", async () => {
      const { body } = await api(via, "GET", "/api/v1/faults?state=active");
      return (body.faults as unknown[]).length === 0;
    }, 30_000, 200);
  }, 120_000);

  afterAll(async () => {
    await killAll();
    await health?.close();
    pg?.destroy();
    rmSync(root, { recursive: true, force: true });
  });

  it("a run started on replica A, whose agents are held by B and C, completes; every replica serves it", { timeout: 90_000 }, async () => {
    const a = byName("a");
    expect(await holderOf(agents[0]!.id)).toBe(await replicaIdOf(byName("b")));
    expect(await holderOf(agents[1]!.id)).toBe(await replicaIdOf(byName("c")));
    const res = await api(a.server, "POST", "/api/v1/runs", { spec: burnSpec("ha-complete", "4s") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    const startedAt = Date.now();
    const done = await waitFor("the run completed", async () => {
      const { run, events } = await runOf(a, id);
      if (run.state === "failed" || run.state === "aborted") {
        const faults = await Promise.all(
          (events as { faultId: string | null }[]).filter((e) => e.faultId).map(async (e) => (await api(a.server, "GET", `/api/v1/faults/${e.faultId}`)).body),
        );
        throw new Error(`run ${run.state}: ${run.reason}\nrun events: ${JSON.stringify(events)}\nfaults: ${JSON.stringify(faults)}`);
      }
      return run.state === "completed" ? run : undefined;
    }, 60_000, 200);
    console.log(`[measure] a run driven by A on agents held by B and C completed in ${Date.now() - startedAt} ms`);
    expect(done.reason).toMatch(/every fault reverted/);
    for (const r of replicas) {
      const { run, events } = await runOf(r, id);
      expect(run.state).toBe("completed");
      const started = (events as { type: string; agentId: string | null }[]).filter((e) => e.type === "fault-started").map((e) => e.agentId).sort();
      expect(started).toEqual(agents.map((x) => x.id).sort());
    }
    for (const agent of agents) expect(burnerThreads(agent.proc.pid)).toEqual([]);
  });

  it("SIGKILL of the leader mid-run: another replica takes the run over within 10 s, watches its stop condition, and the breach's abort reaches every agent", { timeout: 120_000 }, async () => {
    health.setStatus(200);
    const leader = await waitFor("a leader", () => leaderId(), 15_000);
    const leaderReplica = (await Promise.all(replicas.map(async (r) => ((await replicaIdOf(r)) === leader ? r : undefined)))).find(Boolean)!;
    expect(leaderReplica).toBeDefined();
    const res = await api(leaderReplica.server, "POST", "/api/v1/runs", { spec: burnSpec("ha-takeover", "3m", health.url) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    await waitFor("the burn on both agents", () => agents.every((x) => burnerThreads(x.proc.pid).length > 0), 30_000, 100);
    const other = replicas.find((r) => r !== leaderReplica)!;
    leaderReplica.server.proc.kill("SIGKILL");
    await leaderReplica.server.proc.exited;
    const killedAt = Date.now();
    const takeover = await waitFor("another replica to take the run over", async () => {
      const { events } = await runOf(other, id);
      return (events as { type: string; message: string }[]).find((e) => e.message.startsWith("taken over:"));
    }, 20_000, 100);
    const takeoverMs = Date.now() - killedAt;
    console.log(`[measure] leader SIGKILLed mid-run: taken over after ${takeoverMs} ms: ${takeover.message}`);
    expect(takeoverMs).toBeLessThan(10_000);
    // The faults it started keep running under watch (the agents' leases were renewed by their own replicas).
    expect((await runOf(other, id)).run.state).toBe("running");
    for (const agent of agents) expect(burnerThreads(agent.proc.pid).length).toBeGreaterThan(0);
    // The stop condition is still watched: a breach aborts the run and every agent reverts.
    health.setStatus(500);
    const breachAt = Date.now();
    const aborted = await waitFor("the breach to abort the run", async () => {
      const { run } = await runOf(other, id);
      return run.state === "aborted" ? run : undefined;
    }, 30_000, 100);
    expect(aborted.reason).toMatch(/stop condition breached/);
    await waitFor("every burn reverted", () => agents.every((x) => burnerThreads(x.proc.pid).length === 0), 20_000, 100);
    console.log(`[measure] after the takeover, a breach aborted the run and reverted both agents in ${Date.now() - breachAt} ms`);
  });

  it("SIGKILL of a replica holding an agent's stream: the agent moves to its other address and keeps its fault; a stop from any replica reaches it", { timeout: 90_000 }, async () => {
    const agent = agents[0]!;
    const holderId = await holderOf(agent.id);
    const holder = (await Promise.all(replicas.map(async (r) => ((await replicaIdOf(r)) === holderId ? r : undefined)))).find(Boolean)!;
    const start = await api(byName("a").server, "POST", `/api/v1/agents/${agent.id}/faults`, { kind: "cpu-burn", params: { load: 10, cores: 1 }, duration: "3m" });
    expect(start.status, JSON.stringify(start.body)).toBe(201);
    const faultId = start.body.fault.id as string;
    await waitFor("the burn running", () => burnerThreads(agent.proc.pid).length > 0, 20_000, 50);
    await waitFor("the fault recorded running", async () => (await api(byName("a").server, "GET", `/api/v1/faults/${faultId}`)).body.fault.state === "running", 10_000, 50);
    const threads = burnerThreads(agent.proc.pid);
    holder.server.proc.kill("SIGKILL");
    await holder.server.proc.exited;
    const killedAt = Date.now();
    await waitFor("the agent's stream on another replica", async () => {
      const now = await holderOf(agent.id);
      return now !== undefined && now !== holderId;
    }, 15_000, 100);
    console.log(`[measure] the replica holding the agent was SIGKILLed; the agent's stream is on another replica after ${Date.now() - killedAt} ms`);
    // The same burner threads: the fault was never reverted.
    expect(burnerThreads(agent.proc.pid)).toEqual(threads);
    // Still running in the store too: the agent's Hello to the new replica holds it (a PROGRESS it
    // sent to the dead replica may be lost; the next one is stored).
    const stillRunning = await waitFor("the fault still running", async () => {
      const f = (await api(byName("a").server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state !== "accepted" ? f : undefined;
    }, 10_000, 100);
    expect(stillRunning.state).toBe("running");
    const stopped = await api(byName("a").server, "DELETE", `/api/v1/agents/${agent.id}/faults/${faultId}`);
    expect(stopped.status, JSON.stringify(stopped.body)).toBeLessThan(300);
    await waitFor("the burn reverted", () => burnerThreads(agent.proc.pid).length === 0, 15_000, 50);
    const fault = await waitFor("the fault recorded reverted", async () => {
      const f = (await api(byName("a").server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    }, 15_000, 100);
    expect(fault.reason).toBe("stopped");
  });

  it("PostgreSQL restarted under load: the replicas reconnect, the fault keeps running, and a stop and a new run after it work", { timeout: 120_000 }, async () => {
    const agent = agents[1]!;
    const start = await api(byName("b").server, "POST", `/api/v1/agents/${agent.id}/faults`, { kind: "cpu-burn", params: { load: 10, cores: 1 }, duration: "3m" });
    expect(start.status, JSON.stringify(start.body)).toBe(201);
    const faultId = start.body.fault.id as string;
    await waitFor("the burn running", () => burnerThreads(agent.proc.pid).length > 0, 20_000, 50);
    const threads = burnerThreads(agent.proc.pid);
    // Load: requests on every replica while the database goes away and comes back.
    let stop = false;
    const statuses: number[] = [];
    const load = (async () => {
      while (!stop) {
        for (const r of live()) statuses.push((await api(r.server, "GET", "/api/v1/agents").catch(() => ({ status: 0 }))).status);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const restartAt = Date.now();
    await pg.restart("fast", 2000);
    await waitFor("every replica answering from the store again", async () => {
      for (const r of live()) if ((await api(r.server, "GET", "/api/v1/agents")).status !== 200) return false;
      return true;
    }, 30_000, 200);
    stop = true;
    await load;
    console.log(`[measure] PostgreSQL down 2 s: every replica answers again ${Date.now() - restartAt} ms after the restart began; ${statuses.filter((s) => s !== 200).length} of ${statuses.length} requests failed meanwhile`);
    for (const r of live()) expect(r.server.proc.child.exitCode).toBeNull();
    expect(burnerThreads(agent.proc.pid)).toEqual(threads);
    expect((await api(byName("c").server, "GET", `/api/v1/faults/${faultId}`)).body.fault.state).toBe("running");
    expect((await api(byName("c").server, "DELETE", `/api/v1/agents/${agent.id}/faults/${faultId}`)).status).toBeLessThan(300);
    await waitFor("the burn reverted", () => burnerThreads(agent.proc.pid).length === 0, 15_000, 50);
    const res = await api(byName("a").server, "POST", "/api/v1/runs", { spec: burnSpec("ha-after-restart", "2s") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    await waitFor("the run after the restart completed", async () => {
      const { run } = await runOf(byName("a"), res.body.run.id);
      if (run.state === "failed" || run.state === "aborted") throw new Error(`run ${run.state}: ${run.reason}`);
      return run.state === "completed";
    }, 60_000, 200);
  });

  it("a halt on one replica stops the faults of agents held by the others at once; unhalt on another", { timeout: 60_000 }, async () => {
    for (const agent of agents) {
      const res = await api(byName("b").server, "POST", `/api/v1/agents/${agent.id}/faults`, { kind: "cpu-burn", params: { load: 10, cores: 1 }, duration: "3m" });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    await waitFor("both burns running", () => agents.every((x) => burnerThreads(x.proc.pid).length > 0), 20_000, 50);
    const haltAt = Date.now();
    const halted = await api(byName("a").server, "POST", "/api/v1/halt", { reason: "ha drill" });
    expect(halted.status, JSON.stringify(halted.body)).toBe(200);
    await waitFor("every burn reverted", () => agents.every((x) => burnerThreads(x.proc.pid).length === 0), 15_000, 20);
    console.log(`[measure] halt on A (holding no agent): both agents' burns gone ${Date.now() - haltAt} ms later`);
    const refused = await api(byName("c").server, "POST", "/api/v1/runs", { spec: burnSpec("ha-halted", "2s") });
    expect(refused.status).toBe(409);
    expect((await api(byName("b").server, "DELETE", "/api/v1/halt")).status).toBe(200);
  });
});
