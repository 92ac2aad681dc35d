/**
 * Which replica drives each run. The replica that starts a run claims it; it heartbeats all the
 * runs it owns in one statement (hooked on the replica heartbeat); a run whose owner stopped
 * heartbeating for `deadAfterMs` (or marked itself stopped) is an orphan, and exactly one other
 * replica takes it over — one conditional UPDATE, so concurrent takeovers serialize on the row and
 * only the first matches. `generation` rises at each takeover: a per-run fencing token
 * ({@link runOwnerFenceSql}).
 *
 * What to do with a run taken over (resume its watchers, or abort it) is the caller's.
 */
import type { Logger } from "pino";
import type { SqlDatabase } from "../store/sql/types.js";
import type { Replica } from "./replica.js";
import { DB_NOW_MS } from "./schema.js";

/** A run whose owner is dead. */
export interface OrphanRun {
  runId: string;
  replicaId: string;
  heartbeatAt: number;
  generation: number;
}

/** A run this replica took over. */
export interface TakenOverRun {
  runId: string;
  /** The dead owner. */
  previousReplicaId: string;
  /** The new generation (fencing token of the run). */
  generation: number;
}

/** Options of {@link createRunOwners}. */
export interface RunOwnersOptions {
  /** This replica (its db is the PostgreSQL store, HA tables migrated). */
  replica: Replica;
  logger: Logger;
  /**
   * Called with runs this replica believed it owned but another replica took over (this replica
   * was cut off longer than deadAfterMs): stop driving them.
   */
  onLost?: (runIds: string[]) => void;
}

/** Run ownership as seen by one replica. */
export interface RunOwners {
  /** Claims a new run for this replica; false when another replica owns it. Throws when PostgreSQL is down. */
  claim(runId: string): boolean;
  /** The run ended: forgets its ownership (only if this replica owns it). */
  release(runId: string): void;
  /** Heartbeats every run this replica owns (one statement); returns the runs found lost. Never throws. */
  heartbeat(): string[];
  /** Runs this replica owns, with their generation. */
  owned(): ReadonlyMap<string, number>;
  /** Runs whose owner is dead or stopped (this replica's excluded). */
  orphans(): OrphanRun[];
  /** Takes `runId` over if its owner is (still) dead; undefined when another replica won or it is alive. */
  takeOver(runId: string): TakenOverRun | undefined;
  /** Stops heartbeating (the runs become orphans once deadAfterMs has passed, or at once if the replica is marked stopped). */
  close(): void;
}

/**
 * A SQL condition true only while `generationPlaceholder` is the run's generation and this
 * replica owns it: `… AND ${runOwnerFenceSql("@runId", "@me", "@generation")}`.
 */
export function runOwnerFenceSql(runIdPlaceholder = "?", replicaPlaceholder = "?", generationPlaceholder = "?"): string {
  return `EXISTS (SELECT 1 FROM run_owners WHERE run_id = CAST(${runIdPlaceholder} AS TEXT) AND replica_id = CAST(${replicaPlaceholder} AS TEXT) AND generation = CAST(${generationPlaceholder} AS BIGINT) FOR SHARE)`;
}

/** Starts tracking this replica's runs; their heartbeat rides on the replica's. */
export function createRunOwners(options: RunOwnersOptions): RunOwners {
  const { replica } = options;
  const db: SqlDatabase = replica.db;
  const me = replica.id;
  const log = options.logger.child({ component: "ha-run-owners", replica: me });
  const mine = new Map<string, number>();
  let failing = false;

  const claimStmt = db.prepare<[string, string], { generation: number }>(
    `INSERT INTO run_owners (run_id, replica_id, claimed_at, heartbeat_at, generation)
     VALUES (?, ?, ${DB_NOW_MS}, ${DB_NOW_MS}, 1)
     ON CONFLICT (run_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at WHERE run_owners.replica_id = EXCLUDED.replica_id
     RETURNING generation`,
  );
  const beat = db.prepare<[string], { run_id: string; generation: number }>(
    `UPDATE run_owners SET heartbeat_at = ${DB_NOW_MS} WHERE replica_id = ? RETURNING run_id, generation`,
  );
  // Dead: the run's heartbeat is old, or its replica said it stopped.
  const deadCondition = `(o.heartbeat_at < ${DB_NOW_MS} - CAST(@dead AS BIGINT)
      OR EXISTS (SELECT 1 FROM replicas r WHERE r.id = o.replica_id AND r.stopped_at IS NOT NULL))`;
  const orphanStmt = db.prepare<{ me: string; dead: number }, { run_id: string; replica_id: string; heartbeat_at: number; generation: number }>(
    `SELECT run_id, replica_id, heartbeat_at, generation FROM run_owners o WHERE o.replica_id <> @me AND ${deadCondition} ORDER BY claimed_at`,
  );
  const takeStmt = db.prepare<{ me: string; dead: number; runId: string }, { previous_replica_id: string; generation: number }>(
    `UPDATE run_owners o SET previous_replica_id = o.replica_id, replica_id = @me, heartbeat_at = ${DB_NOW_MS}, generation = o.generation + 1
     WHERE o.run_id = @runId AND o.replica_id <> @me AND ${deadCondition}
     RETURNING previous_replica_id, generation`,
  );

  const heartbeat = (): string[] => {
    if (mine.size === 0) return [];
    let rows: { run_id: string; generation: number }[];
    try {
      rows = beat.all(me);
      if (failing) log.info("run heartbeats restored");
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err, runs: mine.size }, "cannot heartbeat this replica's runs (PostgreSQL unreachable?); retrying");
      failing = true;
      return [];
    }
    const still = new Map(rows.map((r) => [r.run_id, r.generation]));
    const lost: string[] = [];
    for (const [runId, generation] of mine) {
      if (still.get(runId) !== generation) lost.push(runId);
    }
    if (lost.length > 0) {
      for (const runId of lost) mine.delete(runId);
      log.error({ runs: lost }, "runs this replica drove were taken over by another replica (this one was cut off too long); no longer driving them");
      try {
        options.onLost?.(lost);
      } catch (err) {
        log.error({ err }, "the lost-runs handler failed");
      }
    }
    return lost;
  };
  const unhook = replica.onHeartbeat(() => void heartbeat());

  return {
    claim(runId) {
      const row = claimStmt.get(runId, me);
      if (row === undefined) return false;
      mine.set(runId, row.generation);
      return true;
    },
    release(runId) {
      mine.delete(runId);
      try {
        db.prepare("DELETE FROM run_owners WHERE run_id = ? AND replica_id = ?").run(runId, me);
      } catch (err) {
        log.warn({ err, runId }, "could not release the run's ownership; another replica will find it orphaned and see it has ended");
      }
    },
    heartbeat,
    owned: () => new Map(mine),
    orphans: () =>
      orphanStmt.all({ me, dead: replica.deadAfterMs }).map((r) => ({ runId: r.run_id, replicaId: r.replica_id, heartbeatAt: r.heartbeat_at, generation: r.generation })),
    takeOver(runId) {
      const row = takeStmt.get({ me, dead: replica.deadAfterMs, runId });
      if (row === undefined) return undefined;
      mine.set(runId, row.generation);
      log.warn({ runId, from: row.previous_replica_id, generation: row.generation }, "took over a run whose replica died");
      return { runId, previousReplicaId: row.previous_replica_id, generation: row.generation };
    },
    close() {
      unhook();
      mine.clear();
    },
  };
}
