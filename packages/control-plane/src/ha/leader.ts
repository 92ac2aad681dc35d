/**
 * Leader election among replicas: a lease row (`leader_lease`) with a fencing epoch.
 *
 * Every `renewMs` each replica runs one UPDATE: the holder extends its lease; anyone takes it once
 * it has expired — on the DATABASE clock, so replica clock skew does not matter. Each new term
 * raises `epoch`; a leader-only write checks it in its transaction ({@link assertFenced},
 * {@link leaderFenceSql}) and is refused once a newer leader exists.
 *
 * A leader steps down LOCALLY when it has not renewed within its TTL (measured on its monotonic
 * clock from before the renew was sent, so it always ends before the database's lease does), even
 * with PostgreSQL unreachable: {@link LeaderElection.isLeader} turns false at that instant and
 * `deposed` is emitted at the next tick. After a leader dies, another takes over within
 * `ttlMs + renewMs`.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { SqlDatabase } from "../store/sql/types.js";
import { DB_NOW_MS } from "./schema.js";

/** Options of {@link createLeaderElection}. */
export interface LeaderElectionOptions {
  /** The PostgreSQL store (HA tables migrated). */
  db: SqlDatabase;
  /** This replica's id (see replica.ts). */
  replicaId: string;
  logger: Logger;
  /** How long a lease lasts without renewal. @default 5000 */
  ttlMs?: number;
  /** How often the lease is renewed or tried. @default 1000 */
  renewMs?: number;
}

/** Events of a {@link LeaderElection}. */
export interface LeaderEvents {
  /** This replica became leader for term `epoch`. */
  elected: [epoch: number];
  /** This replica is no longer leader of term `epoch` (`reason` says why). */
  deposed: [epoch: number, reason: string];
}

/** The lease as the table records it. */
export interface LeaderLease {
  replicaId: string | null;
  epoch: number;
  acquiredAt: number;
  expiresAt: number;
  /** The database clock when read. */
  now: number;
}

/** Thrown by {@link assertFenced} when a newer leader term exists. */
export class FencedError extends Error {
  /** The term the write was made under. */
  readonly epoch: number;
  /** The current term in the store. */
  readonly currentEpoch: number | undefined;
  constructor(epoch: number, currentEpoch: number | undefined) {
    super(`leader term ${epoch} is over (the store is at term ${currentEpoch ?? "unknown"}): this replica is no longer the leader, the write was refused`);
    this.name = "FencedError";
    this.epoch = epoch;
    this.currentEpoch = currentEpoch;
  }
}

/**
 * A SQL condition true only while term `placeholder` is current, for a leader-only statement:
 * `UPDATE schedule_slots SET … WHERE … AND ${leaderFenceSql()}` with the epoch as that parameter.
 * It takes a share lock on the lease row, so a new leader cannot start its term until the
 * statement's transaction ends.
 */
export function leaderFenceSql(placeholder = "?"): string {
  return `(SELECT epoch FROM leader_lease WHERE id = 1 FOR SHARE) = CAST(${placeholder} AS BIGINT)`;
}

/**
 * Throws {@link FencedError} unless `epoch` is the current leader term. Call it inside the
 * transaction of a leader-only write (before the write): it share-locks the lease row until that
 * transaction ends, so no newer leader's term starts before the write commits.
 */
export function assertFenced(db: SqlDatabase, epoch: number): void {
  const row = db.prepare<[], { epoch: number }>("SELECT epoch FROM leader_lease WHERE id = 1 FOR SHARE").get();
  if (row?.epoch !== epoch) throw new FencedError(epoch, row?.epoch);
}

/** Reads the lease (for status pages and tests). */
export function readLeaderLease(db: SqlDatabase): LeaderLease | undefined {
  const row = db
    .prepare<[], { replica_id: string | null; epoch: number; acquired_at: number; expires_at: number; now: number }>(
      `SELECT replica_id, epoch, acquired_at, expires_at, ${DB_NOW_MS} AS now FROM leader_lease WHERE id = 1`,
    )
    .get();
  return row === undefined ? undefined : { replicaId: row.replica_id, epoch: row.epoch, acquiredAt: row.acquired_at, expiresAt: row.expires_at, now: row.now };
}

/** One replica's view of the election. */
export interface LeaderElection extends EventEmitter<LeaderEvents> {
  /** True while this replica holds an unexpired lease (checked against the local clock at each call). */
  isLeader(): boolean;
  /** The current term while leader, else undefined. Pass it to {@link assertFenced}. */
  epoch(): number | undefined;
  /** Renews or tries the lease now (the timer does this every `renewMs`); returns {@link isLeader}. */
  tick(): boolean;
  /** Stops the timer and, when leader, releases the lease so another replica takes over at once. */
  close(): void;
}

interface AcquireParams {
  me: string;
  ttl: number;
  renewing: number;
  epoch: number;
}

class Election extends EventEmitter<LeaderEvents> implements LeaderElection {
  readonly #db: SqlDatabase;
  readonly #me: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  #epoch: number | undefined;
  /** performance.now() past which this replica must not act as leader. */
  #localExpiry = 0;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  #closed = false;

  constructor(options: LeaderElectionOptions) {
    super();
    this.#db = options.db;
    this.#me = options.replicaId;
    this.#ttlMs = options.ttlMs ?? 5000;
    const renewMs = options.renewMs ?? 1000;
    if (renewMs * 2 > this.#ttlMs) throw new Error(`the leader lease TTL (${this.#ttlMs} ms) must be at least twice the renew period (${renewMs} ms)`);
    this.#log = options.logger.child({ component: "ha-leader", replica: this.#me });
    // The first try after the caller has attached its listeners.
    const first = setTimeout(() => this.tick(), 0);
    first.unref();
    this.#timer = setInterval(() => this.tick(), renewMs);
    this.#timer.unref();
  }

  isLeader(): boolean {
    return this.#epoch !== undefined && performance.now() < this.#localExpiry;
  }

  epoch(): number | undefined {
    return this.isLeader() ? this.#epoch : undefined;
  }

  tick(): boolean {
    if (this.#closed) return false;
    const sentAt = performance.now();
    const renewing = this.isLeader();
    if (!renewing && this.#epoch !== undefined) this.#depose("the lease could not be renewed within its TTL");
    let row: { epoch: number } | undefined;
    try {
      // One statement: extend my own lease (same term), or take an expired one (or my own after a
      // local step-down) as a new term. Concurrent tries serialize on the row lock; the losers'
      // WHERE no longer matches.
      row = this.#db
        .prepare<AcquireParams, { epoch: number }>(
          `WITH now AS (SELECT ${DB_NOW_MS} AS ms)
           UPDATE leader_lease SET
             epoch = CASE WHEN @renewing = 1 AND replica_id = @me AND epoch = @epoch AND expires_at > now.ms THEN epoch ELSE epoch + 1 END,
             acquired_at = CASE WHEN @renewing = 1 AND replica_id = @me AND epoch = @epoch AND expires_at > now.ms THEN acquired_at ELSE now.ms END,
             replica_id = @me,
             expires_at = now.ms + CAST(@ttl AS BIGINT)
           FROM now
           WHERE id = 1 AND (replica_id = @me OR replica_id IS NULL OR expires_at <= now.ms)
           RETURNING epoch`,
        )
        .get({ me: this.#me, ttl: this.#ttlMs, renewing: renewing ? 1 : 0, epoch: this.#epoch ?? -1 });
      if (this.#failing) this.#log.info("leader lease reachable again");
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.#log.warn({ err, leader: renewing }, "cannot renew or try the leader lease (PostgreSQL unreachable?); retrying every tick");
      this.#failing = true;
      return this.isLeader();
    }
    if (row === undefined) {
      if (this.#epoch !== undefined) this.#depose("another replica holds the lease");
      return false;
    }
    // The database's lease ends at (statement time + TTL), and the statement arrived after sentAt.
    const expiry = sentAt + this.#ttlMs - Math.min(250, this.#ttlMs / 10);
    if (this.#epoch === row.epoch) {
      this.#localExpiry = expiry;
      return this.isLeader();
    }
    if (this.#epoch !== undefined) this.#depose("a new term began");
    this.#epoch = row.epoch;
    this.#localExpiry = expiry;
    if (!this.isLeader()) {
      // The statement took longer than the TTL: the lease is as good as gone.
      this.#depose("the lease statement took longer than the TTL");
      return false;
    }
    this.#log.info({ epoch: row.epoch }, "elected leader");
    this.emit("elected", row.epoch);
    return true;
  }

  #depose(reason: string): void {
    const epoch = this.#epoch;
    if (epoch === undefined) return;
    this.#epoch = undefined;
    this.#localExpiry = 0;
    this.#log.warn({ epoch, reason }, "no longer leader");
    this.emit("deposed", epoch, reason);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    const epoch = this.#epoch;
    if (epoch === undefined) return;
    this.#depose("closed");
    try {
      this.#db.prepare("UPDATE leader_lease SET expires_at = 0 WHERE id = 1 AND replica_id = ? AND epoch = ?").run(this.#me, epoch);
    } catch (err) {
      this.#log.warn({ err }, "could not release the leader lease; another replica takes over when it expires");
    }
  }
}

/** Starts taking part in the election (first try on the next tick of the event loop). */
export function createLeaderElection(options: LeaderElectionOptions): LeaderElection {
  return new Election(options);
}
