/**
 * What the leader of a replica set does (docs/ha.md), and the runner's view of its replicas.
 *
 * The leader (leader.ts) runs the scheduler and the cloud-revert reconciler, takes over the runs of
 * dead replicas (run-owners.ts → Runner.adopt), and marks disconnected the agents whose stream
 * died with its replica. When it loses the lease it stops all of that at once; the next leader
 * starts it within the lease's TTL.
 */
import type { Logger } from "pino";
import type { RunOwnership, Runner, RunnerPeers } from "../experiments/runner.js";
import type { SqlDatabase } from "../store/sql/types.js";
import type { Cluster } from "./cluster.js";
import { DB_NOW_MS } from "./schema.js";

/** A part only the leader runs. */
export interface LeaderDuty {
  name: string;
  start(): void;
  stop(): Promise<void> | void;
}

/** Options of {@link startLeaderDuties}. */
export interface LeaderDutiesOptions {
  cluster: Cluster;
  db: SqlDatabase;
  runner: Runner;
  duties: LeaderDuty[];
  logger: Logger;
  /** How often the leader looks for orphaned runs and agents. @default 1000 */
  scanMs?: number;
}

/** Runs the duties while this replica leads; returns a stop function. */
export function startLeaderDuties(options: LeaderDutiesOptions): () => Promise<void> {
  const { cluster, runner, db } = options;
  const log = options.logger.child({ component: "ha-leader" });
  const scanMs = options.scanMs ?? 1000;
  let leading = false;
  let scanTimer: NodeJS.Timeout | undefined;
  let lastAgentSweep = 0;
  const orphanAgents = db.prepare<[number]>(
    `UPDATE agents SET connected = 0 WHERE connected = 1 AND NOT EXISTS (
       SELECT 1 FROM agent_streams s JOIN replicas r ON r.id = s.replica_id
       WHERE s.agent_id = agents.id AND r.stopped_at IS NULL AND r.heartbeat_at > ${DB_NOW_MS} - CAST(? AS BIGINT))`,
  );

  const scan = () => {
    if (!leading || !cluster.leader.isLeader()) return;
    try {
      for (const orphan of cluster.runOwners.orphans()) {
        const taken = cluster.runOwners.takeOver(orphan.runId);
        if (!taken) continue;
        log.warn({ runId: taken.runId, from: taken.previousReplicaId, generation: taken.generation }, "took over a run whose replica died");
        if (!runner.adopt(taken.runId, taken.previousReplicaId)) cluster.runOwners.release(taken.runId);
      }
      if (Date.now() - lastAgentSweep >= 2000) {
        lastAgentSweep = Date.now();
        const n = orphanAgents.run(cluster.replica.deadAfterMs).changes;
        if (n > 0) log.warn({ agents: n }, "marked disconnected the agents whose replica died (they reconnect to a live one)");
      }
    } catch (err) {
      log.warn({ err }, "leader scan failed (PostgreSQL unreachable?); retrying");
    }
  };

  const onElected = (epoch: number) => {
    if (leading) return;
    leading = true;
    log.info({ epoch, replica: cluster.replica.id }, "this replica leads: starting the scheduler, the cloud reconciler and run takeovers");
    for (const duty of options.duties) {
      try {
        duty.start();
      } catch (err) {
        log.error({ err, duty: duty.name }, "could not start a leader duty");
      }
    }
    scanTimer = setInterval(scan, scanMs);
    scanTimer.unref();
    scan();
  };
  const stopDuties = async () => {
    if (!leading) return;
    leading = false;
    if (scanTimer) clearInterval(scanTimer);
    scanTimer = undefined;
    await Promise.allSettled(options.duties.map(async (duty) => duty.stop()));
  };
  const onDeposed = (epoch: number, reason: string) => {
    log.warn({ epoch, reason }, "this replica no longer leads: stopping the scheduler, the cloud reconciler and run takeovers");
    void stopDuties();
  };
  cluster.leader.on("elected", onElected);
  cluster.leader.on("deposed", onDeposed);
  if (cluster.leader.isLeader()) onElected(cluster.leader.epoch() ?? 0);
  return async () => {
    cluster.leader.off("elected", onElected);
    cluster.leader.off("deposed", onDeposed);
    await stopDuties();
  };
}

/** The runner's view of run ownership, backed by run_owners. */
export function runOwnershipOf(cluster: Cluster, db: SqlDatabase): RunOwnership {
  const owned = db.prepare<[string], { run_id: string }>("SELECT run_id FROM run_owners WHERE run_id = ?");
  return {
    unclaimed: (runIds) => runIds.filter((id) => owned.get(id) === undefined),
    claim(runId) {
      if (!cluster.runOwners.claim(runId)) throw new Error(`run ${runId} is owned by another replica`);
    },
    release: (runId) => cluster.runOwners.release(runId),
  };
}

/** The runner's view of the other replicas. */
export function runnerPeersOf(cluster: Cluster, db: SqlDatabase): RunnerPeers {
  const owner = db.prepare<[string], { replica_id: string }>("SELECT replica_id FROM run_owners WHERE run_id = ?");
  return {
    abortRemote(runId, reason, actor) {
      const row = owner.get(runId);
      if (!row || row.replica_id === cluster.replica.id || !cluster.replica.isLive(row.replica_id)) return false;
      cluster.signal({ kind: "run-abort", runId, reason, actor });
      return true;
    },
    halted(reason, actor) {
      cluster.signal({ kind: "halt", reason, actor });
    },
  };
}

/** Hands replica signals to the runner. */
export function followSignals(cluster: Cluster, runner: Runner, logger: Logger): void {
  cluster.onSignal((signal) => {
    if (signal.kind === "halt") {
      logger.warn({ actor: signal.actor }, "halt from another replica: aborting the runs driven here");
      void runner.haltFromPeer(signal.reason, signal.actor);
    } else if (signal.kind === "run-abort") {
      if (runner.abortFromPeer(signal.runId, signal.reason, signal.actor)) logger.warn({ runId: signal.runId, actor: signal.actor }, "abort from another replica");
    }
  });
}
