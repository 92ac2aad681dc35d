/**
 * This control-plane process as one replica among several on a PostgreSQL store: registered
 * under a random id, heartbeating every second, marked stopped when closed. Other replicas judge
 * it dead once its heartbeat is older than `deadAfterMs` (on the database clock).
 *
 * A heartbeat that fails (PostgreSQL down or slow) is logged once per outage and retried at the
 * next tick; it never throws out of the timer.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { SqlDatabase } from "../store/sql/types.js";
import { DB_NOW_MS } from "./schema.js";

/** Options of {@link registerReplica}. */
export interface ReplicaOptions {
  /** The PostgreSQL store (HA tables migrated). */
  db: SqlDatabase;
  logger: Logger;
  /** This replica's id. @default 16 random hex characters */
  id?: string;
  /** Where agents reach this replica's gRPC server (shown to operators). */
  grpcAddress?: string;
  /** Where this replica's HTTP API listens (shown to operators). */
  httpAddress?: string;
  /** Heartbeat period. @default 1000 */
  heartbeatMs?: number;
  /** A replica whose heartbeat is older than this is dead. @default 5000 */
  deadAfterMs?: number;
}

/** A replica as the table records it. */
export interface ReplicaInfo {
  id: string;
  grpcAddress: string | null;
  httpAddress: string | null;
  pid: number | null;
  hostname: string | null;
  startedAt: number;
  heartbeatAt: number;
  stoppedAt: number | null;
}

/** This process's registration. */
export interface Replica {
  readonly id: string;
  readonly db: SqlDatabase;
  /** Heartbeat age past which a replica is dead, in ms. */
  readonly deadAfterMs: number;
  /** Replicas alive now (recent heartbeat, not stopped), this one included while it heartbeats. */
  liveReplicas(): ReplicaInfo[];
  /** Whether replica `id` is alive now. */
  isLive(id: string): boolean;
  /** Beats once now; false when the store could not be reached (logged). */
  heartbeat(): boolean;
  /** Calls `fn` after every successful heartbeat (e.g. run-owner heartbeats); returns an unsubscribe. */
  onHeartbeat(fn: () => void): () => void;
  /** Stops the heartbeat and marks this replica stopped (best effort). */
  close(): void;
}

interface ReplicaRow {
  id: string;
  grpc_address: string | null;
  http_address: string | null;
  pid: number | null;
  hostname: string | null;
  started_at: number;
  heartbeat_at: number;
  stopped_at: number | null;
}

const toInfo = (r: ReplicaRow): ReplicaInfo => ({
  id: r.id,
  grpcAddress: r.grpc_address,
  httpAddress: r.http_address,
  pid: r.pid,
  hostname: r.hostname,
  startedAt: r.started_at,
  heartbeatAt: r.heartbeat_at,
  stoppedAt: r.stopped_at,
});

/** A new random replica id (16 hex characters, valid in a NOTIFY channel name). */
export function newReplicaId(): string {
  return randomBytes(8).toString("hex");
}

/**
 * Registers this replica (one INSERT; throws StoreUnavailableError when PostgreSQL cannot be
 * reached) and starts its heartbeat timer (unref'd).
 */
export function registerReplica(options: ReplicaOptions): Replica {
  const { db } = options;
  const id = options.id ?? newReplicaId();
  if (!/^[a-z0-9_]{1,40}$/.test(id)) throw new Error(`replica id ${JSON.stringify(id)} must be 1-40 characters a-z, 0-9 or _`);
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const deadAfterMs = options.deadAfterMs ?? 5000;
  const log = options.logger.child({ component: "ha-replica", replica: id });
  const upsert = db.prepare<[string, string | null, string | null, number, string]>(
    `INSERT INTO replicas (id, grpc_address, http_address, pid, hostname, started_at, heartbeat_at)
     VALUES (?, ?, ?, ?, ?, ${DB_NOW_MS}, ${DB_NOW_MS})
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, stopped_at = NULL`,
  );
  upsert.run(id, options.grpcAddress ?? null, options.httpAddress ?? null, process.pid, hostname());
  log.info({ grpcAddress: options.grpcAddress, httpAddress: options.httpAddress }, "replica registered");

  const beat = db.prepare<[string]>(`UPDATE replicas SET heartbeat_at = ${DB_NOW_MS}, stopped_at = NULL WHERE id = ?`);
  const live = db.prepare<[number], ReplicaRow>(
    `SELECT * FROM replicas WHERE stopped_at IS NULL AND heartbeat_at > ${DB_NOW_MS} - ? ORDER BY started_at, id`,
  );
  const isLive = db.prepare<[string, number], { one: number }>(
    `SELECT 1 AS one FROM replicas WHERE id = ? AND stopped_at IS NULL AND heartbeat_at > ${DB_NOW_MS} - ?`,
  );
  const hooks = new Set<() => void>();
  let failing = false;
  let closed = false;

  const heartbeat = (): boolean => {
    if (closed) return false;
    try {
      // A row missing (deleted by an operator) is recreated: the replica is alive, whatever the table says.
      if (beat.run(id).changes === 0) upsert.run(id, options.grpcAddress ?? null, options.httpAddress ?? null, process.pid, hostname());
      if (failing) log.info("replica heartbeat restored");
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err }, "replica heartbeat failed (PostgreSQL unreachable?); retrying every tick");
      failing = true;
      return false;
    }
    for (const fn of hooks) {
      try {
        fn();
      } catch (err) {
        log.error({ err }, "a heartbeat hook failed");
      }
    }
    return true;
  };
  const timer = setInterval(heartbeat, heartbeatMs);
  timer.unref();

  return {
    id,
    db,
    deadAfterMs,
    liveReplicas: () => live.all(deadAfterMs).map(toInfo),
    isLive: (other) => isLive.get(other, deadAfterMs) !== undefined,
    heartbeat,
    onHeartbeat(fn) {
      hooks.add(fn);
      return () => hooks.delete(fn);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      hooks.clear();
      try {
        db.prepare(`UPDATE replicas SET stopped_at = ${DB_NOW_MS} WHERE id = ?`).run(id);
        log.info("replica stopped");
      } catch (err) {
        log.warn({ err }, "could not mark this replica stopped; others will find it dead by its heartbeat");
      }
    },
  };
}
