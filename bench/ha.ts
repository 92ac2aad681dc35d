/**
 * High availability (docs/ha.md): failover times of three `firedrill server` replicas on one real
 * PostgreSQL (a private cluster this bench starts: packages/control-plane/src/test-support/postgres.ts)
 * with three real agents, each given two replicas (`--server B,C`, `--server C,B`, `--server B,C`),
 * so that replica A never holds an agent's stream. Measured, against the goals of issue 16:
 *
 * 1. a cross-replica command: a fault started on A for an agent held by B → recorded running, its
 *    burn seen on the agent; stopped on A → burn gone (and the same sent to the holder directly);
 * 2. a halt on A (holding no agent) → every agent's burn gone (goal < 1 s);
 * 3. SIGKILL of the leader while it drives a run → another replica elected leader, → the run taken
 *    over (goal < 10 s); the faults kept running through it; an abort after it → every burn gone;
 * 4. SIGKILL of the replica holding an agent's stream → the agent's stream on another replica
 *    (goal < the agents' lease TTL, 8 s here); the fault kept running;
 * 5. PostgreSQL stopped for 2 s and for 10 s (longer than the leader lease), then started →
 *    every replica answering from the store again, a leader again; /healthz latency while it was
 *    down (no event-loop freeze), failed store requests meanwhile.
 *
 * A killed replica is started again on the same ports and data dir before the next trial. The
 * cluster, every process and every temp dir are removed at the end, also on failure.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { postgresSkipReason, startPgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import type { PgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import { api } from "../test/support/api.js";
import { burnerThreads } from "../test/support/cpu.js";
import { freePort, killAll, sleep, startAgentProcess, startServer, tempDir, waitFor } from "../test/support/processes.js";
import type { ServerHandle, TestProcess } from "../test/support/processes.js";
import { printTable } from "./table.js";

const LEASE_TTL = "8s";
const LEASE_TTL_MS = 8000;
const GOAL = { takeoverMs: 10_000, streamMoveMs: LEASE_TTL_MS, haltMs: 1000 };
const DB_NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
const LABELS = "app=web,firedrill:opt-in=true";
const BURN = { kind: "cpu-burn", params: { load: 10, cores: 1 }, duration: "3m" };
const RUN_SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: bench-ha-takeover }
spec:
  hypothesis: web keeps answering while its hosts burn a little CPU
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 10, cores: 1 }, duration: 3m }
`;

interface Replica {
  name: string;
  dataDir: string;
  grpcPort: number;
  httpPort: number;
  server: ServerHandle;
}
interface Agent {
  proc: TestProcess;
  id: string;
  stateDir: string;
}

/** Samples (ms) of one measure. */
type Samples = number[];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const ms = (v: number) => (Number.isFinite(v) ? (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`) : "—");

/** `pnpm bench ha [--trials N]`. */
export async function benchHa(args: string[] = []): Promise<void> {
  const skip = postgresSkipReason();
  if (skip !== undefined) {
    console.log(`bench ha skipped: ${skip}`);
    return;
  }
  const t = args.indexOf("--trials");
  const trials = t >= 0 ? Number(args[t + 1]) : 3;
  if (!Number.isInteger(trials) || trials < 1 || trials > 20) throw new Error(`--trials: ${JSON.stringify(args[t + 1] ?? "")} is not a whole number from 1 to 20 (pnpm bench ha --trials 3)`);

  const root = tempDir("bench-ha");
  let pg: PgCluster | undefined;
  /** Every process's output, printed (the tail) when the bench fails. */
  const outputs: { name: string; output: () => string }[] = [];
  try {
    pg = await startPgCluster();
    const cluster = pg;
    const url = await cluster.createDatabase("bench_ha");
    const dbName = new URL(url).pathname.slice(1);
    const q = <T = Record<string, unknown>>(sql: string, values?: unknown[]) => cluster.query<T>(dbName, sql, values);
    const replicas: Replica[] = [];
    const agents: Agent[] = [];
    let tokens: { joinToken: string; adminToken: string } | undefined;

    const startReplica = async (r: Omit<Replica, "server">): Promise<Replica> => {
      const server = await startServer({
        dataDir: r.dataDir,
        grpcPort: r.grpcPort,
        httpPort: r.httpPort,
        leaseTtl: LEASE_TTL,
        extraArgs: ["--store", url, "--revert-wait", "10s", "--log-level", "warn"],
        ...(tokens ? { tokensFrom: tokens } : {}),
      });
      outputs.push({ name: `replica ${r.name} (pid ${server.proc.pid})`, output: server.proc.output });
      return { ...r, server };
    };
    const alive = (r: Replica) => r.server.proc.child.exitCode === null && r.server.proc.child.signalCode === null;
    const byName = (name: string) => replicas.find((r) => r.name === name)!;
    const replicaIdOf = async (r: Replica) =>
      (await q<{ id: string }>("SELECT id FROM replicas WHERE http_address = $1 AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1", [`127.0.0.1:${r.httpPort}`]))[0]?.id;
    const replicaById = async (id: string | undefined) => {
      for (const r of replicas) if (id !== undefined && (await replicaIdOf(r)) === id) return r;
      return undefined;
    };
    const holderOf = async (agentId: string) => (await q<{ replica_id: string }>("SELECT replica_id FROM agent_streams WHERE agent_id = $1", [agentId]))[0]?.replica_id;
    /** The replica id holding an unexpired leader lease (database clock), if any. */
    const leaderId = async () => (await q<{ replica_id: string | null }>(`SELECT replica_id FROM leader_lease WHERE id = 1 AND expires_at > ${DB_NOW_MS}`))[0]?.replica_id ?? undefined;
    const restartDead = async () => {
      for (const [i, r] of replicas.entries()) {
        if (!alive(r)) {
          replicas[i] = await startReplica(r);
          await waitFor(`replica ${r.name} registered again`, () => replicaIdOf(replicas[i]!), 20_000);
        }
      }
    };
    const mustApi = async (via: Replica, method: string, path: string, body: unknown, ok: number[]) => {
      const res = await api(via.server, method, path, body);
      if (!ok.includes(res.status)) throw new Error(`${method} ${path} on replica ${via.name}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
      return res.body;
    };
    const faultState = async (via: Replica, id: string) => (await api(via.server, "GET", `/api/v1/faults/${id}`)).body?.fault?.state as string | undefined;
    const noBurns = () => agents.every((a) => burnerThreads(a.proc.pid).length === 0);
    const settle = async () => {
      await waitFor("every burn gone", noBurns, 30_000, 50);
      await waitFor("no active fault left", async () => ((await api(byName("a").server, "GET", "/api/v1/faults?state=active")).body.faults as unknown[]).length === 0, 30_000, 200);
    };

    // Three replicas, then three agents that never name A.
    for (const name of ["a", "b", "c"]) {
      const r = await startReplica({ name, dataDir: join(root.path, name), grpcPort: await freePort(), httpPort: await freePort() });
      tokens ??= { joinToken: r.server.joinToken, adminToken: r.server.adminToken };
      replicas.push(r);
    }
    const [, b, c] = replicas as [Replica, Replica, Replica];
    for (const [i, servers] of [`${b.server.grpcAddr},${c.server.grpcAddr}`, `${c.server.grpcAddr},${b.server.grpcAddr}`, `${b.server.grpcAddr},${c.server.grpcAddr}`].entries()) {
      const stateDir = join(root.path, `agent-${i}`);
      const proc = startAgentProcess({ server: servers, token: tokens!.joinToken, stateDir, labels: LABELS, extraArgs: ["--reconnect-max", "500ms"] });
      agents.push({ proc, stateDir, id: "" });
      outputs.push({ name: `agent ${i} (pid ${proc.pid})`, output: proc.output });
    }
    const listed = await waitFor("every agent connected (listed by replica A)", async () => {
      const { body } = await api(byName("a").server, "GET", "/api/v1/agents");
      const connected = (body.agents as { id: string; connected: boolean }[]).filter((a) => a.connected);
      return connected.length === agents.length ? connected : undefined;
    }, 60_000, 200);
    for (const a of agents) a.id = readFileSync(join(a.stateDir, "agent-id"), "utf8").trim();
    if (!agents.every((a) => listed.some((l) => l.id === a.id))) throw new Error("the agents listed are not the agents started");
    for (const a of agents) await waitFor(`the stream of ${a.id} recorded`, () => holderOf(a.id), 10_000);
    console.log(`[ha] 3 replicas and ${agents.length} agents up; leader ${(await replicaById(await waitFor("a leader", leaderId, 15_000)))?.name}`);

    // 1. Cross-replica command round trip, and the same through the holder.
    const cmd = { crossRunning: [] as Samples, crossBurn: [] as Samples, crossGone: [] as Samples, directRunning: [] as Samples, directBurn: [] as Samples, directGone: [] as Samples };
    for (let i = 0; i < 2 * trials; i++) {
      const agent = agents[i % agents.length]!;
      const holder = (await replicaById(await holderOf(agent.id)))!;
      const cross = i % 2 === 0;
      const via = cross ? byName("a") : holder;
      const t0 = performance.now();
      const started = await mustApi(via, "POST", `/api/v1/agents/${agent.id}/faults`, BURN, [201]);
      const id = started.fault.id as string;
      let burnAt: number | undefined;
      await waitFor("the fault recorded running", async () => {
        if (burnAt === undefined && burnerThreads(agent.proc.pid).length > 0) burnAt = performance.now();
        return (await faultState(via, id)) === "running";
      }, 20_000, 10);
      const runningAt = performance.now();
      await waitFor("the burn on the agent", () => burnerThreads(agent.proc.pid).length > 0, 20_000, 10);
      burnAt ??= performance.now();
      const s0 = performance.now();
      await mustApi(via, "DELETE", `/api/v1/agents/${agent.id}/faults/${id}`, undefined, [200, 202, 204]);
      await waitFor("the burn gone", () => burnerThreads(agent.proc.pid).length === 0, 20_000, 10);
      const goneAt = performance.now();
      (cross ? cmd.crossRunning : cmd.directRunning).push(runningAt - t0);
      (cross ? cmd.crossBurn : cmd.directBurn).push(burnAt - t0);
      (cross ? cmd.crossGone : cmd.directGone).push(goneAt - s0);
      await settle();
    }
    console.log(`[ha] command round trips: through A ${cmd.crossRunning.map(ms).join(", ")}; on the holder ${cmd.directRunning.map(ms).join(", ")}`);

    // 2. Halt on A, which holds no agent.
    const halt = { burnsGone: [] as Samples, recorded: [] as Samples };
    for (let i = 0; i < trials; i++) {
      for (const agent of agents) await mustApi(byName("b"), "POST", `/api/v1/agents/${agent.id}/faults`, BURN, [201]);
      await waitFor("every burn running", () => agents.every((a) => burnerThreads(a.proc.pid).length > 0), 20_000, 20);
      await waitFor("every fault recorded running", async () => {
        const faults = (await api(byName("a").server, "GET", "/api/v1/faults?state=active")).body.faults as { state: string }[];
        return faults.length === agents.length && faults.every((f) => f.state === "running");
      }, 20_000, 50);
      const t0 = performance.now();
      const halted = api(byName("a").server, "POST", "/api/v1/halt", { reason: "bench ha" });
      await waitFor("every burn gone after the halt", noBurns, 15_000, 5);
      halt.burnsGone.push(performance.now() - t0);
      if ((await halted).status !== 200) throw new Error(`POST /api/v1/halt on A: HTTP ${(await halted).status}`);
      await waitFor("every fault recorded reverted", async () => ((await api(byName("a").server, "GET", "/api/v1/faults?state=active")).body.faults as unknown[]).length === 0, 15_000, 20);
      halt.recorded.push(performance.now() - t0);
      await mustApi(byName("c"), "DELETE", "/api/v1/halt", undefined, [200]);
      await settle();
    }
    console.log(`[ha] halt on A → burns gone: ${halt.burnsGone.map(ms).join(", ")}`);

    // 3. SIGKILL of the leader while it drives a run.
    const leader = { elected: [] as Samples, takeover: [] as Samples, abortGone: [] as Samples, kept: 0, names: [] as string[] };
    for (let i = 0; i < trials; i++) {
      const oldId = await waitFor("a leader", leaderId, 20_000);
      const old = (await replicaById(oldId))!;
      leader.names.push(old.name);
      const other = replicas.find((r) => r !== old)!;
      const run = await mustApi(old, "POST", "/api/v1/runs", { spec: RUN_SPEC }, [201]);
      const runId = run.run.id as string;
      await waitFor("the run's burn on every agent", () => agents.every((a) => burnerThreads(a.proc.pid).length > 0), 30_000, 50);
      await waitFor("the run's faults recorded running", async () => {
        const faults = (await api(other.server, "GET", `/api/v1/faults?runId=${runId}`)).body.faults as { state: string }[];
        return faults.length === agents.length && faults.every((f) => f.state === "running");
      }, 20_000, 100);
      const threads = agents.map((a) => burnerThreads(a.proc.pid).join(","));
      old.server.proc.kill("SIGKILL");
      await old.server.proc.exited;
      const killedAt = performance.now();
      let electedAt: number | undefined;
      await waitFor("another replica to take the run over", async () => {
        if (electedAt === undefined) {
          const now = await leaderId();
          if (now !== undefined && now !== oldId) electedAt = performance.now();
        }
        const { events } = (await api(other.server, "GET", `/api/v1/runs/${runId}`)).body as { events: { message: string }[] };
        return events.some((e) => e.message.startsWith("taken over:"));
      }, 30_000, 100);
      leader.takeover.push(performance.now() - killedAt);
      if (electedAt === undefined) {
        await waitFor("a new leader", async () => ((await leaderId()) ?? oldId) !== oldId, 20_000, 100);
        electedAt = performance.now();
      }
      leader.elected.push(electedAt - killedAt);
      const state = (await api(other.server, "GET", `/api/v1/runs/${runId}`)).body.run.state as string;
      if (state === "running" && agents.every((a, k) => burnerThreads(a.proc.pid).join(",") === threads[k])) leader.kept += 1;
      const a0 = performance.now();
      await mustApi(other, "POST", `/api/v1/runs/${runId}/abort`, { reason: "bench ha" }, [200]);
      await waitFor("every burn gone after the abort", noBurns, 20_000, 10);
      leader.abortGone.push(performance.now() - a0);
      await restartDead();
      await settle();
    }
    console.log(`[ha] leader SIGKILL → taken over: ${leader.takeover.map(ms).join(", ")} (leaders killed: ${leader.names.join(", ")})`);

    // 4. SIGKILL of the replica holding an agent's stream.
    const stream = { moved: [] as Samples, recorded: [] as Samples, kept: 0, names: [] as string[] };
    for (let i = 0; i < trials; i++) {
      const agent = agents[i % agents.length]!;
      const started = await mustApi(byName("a"), "POST", `/api/v1/agents/${agent.id}/faults`, BURN, [201]);
      const faultId = started.fault.id as string;
      await waitFor("the burn running", () => burnerThreads(agent.proc.pid).length > 0, 20_000, 20);
      await waitFor("the fault recorded running", async () => (await faultState(byName("a"), faultId)) === "running", 20_000, 50);
      const threads = burnerThreads(agent.proc.pid).join(",");
      const holderId = (await holderOf(agent.id))!;
      const holder = (await replicaById(holderId))!;
      stream.names.push(holder.name);
      holder.server.proc.kill("SIGKILL");
      await holder.server.proc.exited;
      const killedAt = performance.now();
      await waitFor("the agent's stream on another replica", async () => {
        const now = await holderOf(agent.id);
        return now !== undefined && now !== holderId;
      }, 20_000, 20);
      stream.moved.push(performance.now() - killedAt);
      if (burnerThreads(agent.proc.pid).join(",") === threads) stream.kept += 1;
      await mustApi(byName("a"), "DELETE", `/api/v1/agents/${agent.id}/faults/${faultId}`, undefined, [200, 202, 204]);
      await waitFor("the burn gone", () => burnerThreads(agent.proc.pid).length === 0, 20_000, 20);
      await restartDead();
      await settle();
    }
    console.log(`[ha] stream holder SIGKILL → agent on another replica: ${stream.moved.map(ms).join(", ")}`);

    // 5. PostgreSQL down, then back.
    const outages: { downMs: number; answering: number; leader: number; failed: number; requests: number; slowestHealthz: number; slowestFailure: number; kept: boolean }[] = [];
    for (const downMs of [2000, 10_000]) {
      const agent = agents[1]!;
      const started = await mustApi(byName("b"), "POST", `/api/v1/agents/${agent.id}/faults`, BURN, [201]);
      const faultId = started.fault.id as string;
      await waitFor("the burn running", () => burnerThreads(agent.proc.pid).length > 0, 20_000, 20);
      await waitFor("the fault recorded running", async () => (await faultState(byName("b"), faultId)) === "running", 20_000, 50);
      const threads = burnerThreads(agent.proc.pid).join(",");
      cluster.stop("fast");
      // While it is down: /healthz and a store read on every replica, back to back.
      let stop = false;
      let failed = 0;
      let requests = 0;
      let slowestHealthz = 0;
      let slowestFailure = 0;
      const load = (async () => {
        while (!stop) {
          for (const r of replicas.filter(alive)) {
            const h0 = performance.now();
            await fetch(`${r.server.httpUrl}/healthz`, { signal: AbortSignal.timeout(30_000) }).then((x) => x.text()).catch(() => undefined);
            slowestHealthz = Math.max(slowestHealthz, performance.now() - h0);
            const s0 = performance.now();
            const res = await api(r.server, "GET", "/api/v1/agents").catch(() => ({ status: 0 }));
            requests += 1;
            if (res.status !== 200) {
              failed += 1;
              slowestFailure = Math.max(slowestFailure, performance.now() - s0);
            }
          }
          await sleep(100);
        }
      })();
      await sleep(downMs);
      stop = true;
      await load;
      cluster.start();
      const backAt = performance.now();
      let answeringAt: number | undefined;
      let leaderAt: number | undefined;
      await waitFor("every replica answering from the store and a leader", async () => {
        if (answeringAt === undefined) {
          let all = true;
          for (const r of replicas.filter(alive)) if ((await api(r.server, "GET", "/api/v1/agents").catch(() => ({ status: 0 }))).status !== 200) all = false;
          if (all) answeringAt = performance.now();
        }
        if (leaderAt === undefined && (await leaderId().catch(() => undefined)) !== undefined) leaderAt = performance.now();
        return answeringAt !== undefined && leaderAt !== undefined;
      }, 60_000, 50);
      const kept = burnerThreads(agent.proc.pid).join(",") === threads && (await faultState(byName("c"), faultId)) === "running";
      outages.push({ downMs, answering: answeringAt! - backAt, leader: leaderAt! - backAt, failed, requests, slowestHealthz, slowestFailure, kept });
      await mustApi(byName("c"), "DELETE", `/api/v1/agents/${agent.id}/faults/${faultId}`, undefined, [200, 202, 204]);
      await waitFor("the burn gone", () => burnerThreads(agent.proc.pid).length === 0, 20_000, 20);
      await restartDead();
      await settle();
      console.log(`[ha] PostgreSQL down ${downMs / 1000} s → every replica answering ${ms(answeringAt! - backAt)} after it was back`);
    }

    const stat = (xs: Samples) => `${ms(Math.min(...xs))} / ${ms(median(xs))} / ${ms(Math.max(...xs))}`;
    const verdict = (xs: Samples, goal: number) => (Math.max(...xs) < goal ? "met" : "MISSED");
    printTable(
      `HA failover: 3 replicas on one PostgreSQL, ${agents.length} agents (agent lease TTL ${LEASE_TTL}; leader lease 5 s, replica dead after 5 s); min / median / max`,
      ["measure", "trials", "min / median / max", "goal", "verdict"],
      [
        ["leader SIGKILL → another replica elected leader", trials, stat(leader.elected), "—", "—"],
        ["leader SIGKILL → its run taken over", trials, stat(leader.takeover), "< 10 s", verdict(leader.takeover, GOAL.takeoverMs)],
        ["  faults kept running through the takeover", trials, `${leader.kept}/${trials}`, "all", leader.kept === trials ? "met" : "MISSED"],
        ["  abort of the taken-over run → every burn gone", trials, stat(leader.abortGone), "—", "—"],
        ["stream holder SIGKILL → agent on another replica", trials, stat(stream.moved), `< lease TTL (${LEASE_TTL})`, verdict(stream.moved, GOAL.streamMoveMs)],
        ["  fault kept running through the move", trials, `${stream.kept}/${trials}`, "all", stream.kept === trials ? "met" : "MISSED"],
        ...outages.map((o) => [`PostgreSQL down ${o.downMs / 1000} s: back → every replica answering`, 1, ms(o.answering), "—", o.kept ? "fault kept" : "FAULT LOST"]),
        ...outages.map((o) => [`PostgreSQL down ${o.downMs / 1000} s: back → a leader`, 1, ms(o.leader), "—", "—"]),
        ["halt on A (holds no agent) → every agent's burn gone", trials, stat(halt.burnsGone), "< 1 s", verdict(halt.burnsGone, GOAL.haltMs)],
        ["  halt → every fault recorded reverted", trials, stat(halt.recorded), "—", "—"],
        ["fault start on A, agent on B → recorded running", trials, stat(cmd.crossRunning), "—", "—"],
        ["  the same on the holder itself", trials, stat(cmd.directRunning), "—", "—"],
        ["fault start on A, agent on B → burn on the agent", trials, stat(cmd.crossBurn), "—", "—"],
        ["  the same on the holder itself", trials, stat(cmd.directBurn), "—", "—"],
        ["fault stop on A, agent on B → burn gone", trials, stat(cmd.crossGone), "—", "—"],
        ["  the same on the holder itself", trials, stat(cmd.directGone), "—", "—"],
      ],
    );
    printTable(
      "while PostgreSQL was down (every live replica polled back to back: /healthz, then GET /api/v1/agents)",
      ["down", "store requests failed", "slowest failure", "slowest /healthz"],
      outages.map((o) => [`${o.downMs / 1000} s`, `${o.failed}/${o.requests}`, ms(o.slowestFailure), ms(o.slowestHealthz)]),
    );
    console.log(`leaders killed: ${leader.names.join(", ")}; stream holders killed: ${stream.names.join(", ")}`);
  } catch (err) {
    for (const o of outputs) console.error(`\n--- ${o.name}, last lines:\n${o.output().split("\n").slice(-40).join("\n")}`);
    throw err;
  } finally {
    await killAll();
    pg?.destroy();
    root.cleanup();
  }
}
