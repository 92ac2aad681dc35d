/**
 * The cloud-revert journal (table `cloud_reverts`): every reversible cloud action firedrill takes
 * is written here with its revert BEFORE the AWS call (an `ec2-stop` with "StartInstances of
 * i-… in eu-west-1"), so that no revert lives only in memory. The reconciler
 * (cloud-reconciler.ts) carries out every wanted revert, retrying until AWS confirms it.
 *
 * Each entry names a revert `kind` and a JSON payload; a {@link CloudReverter} of that kind knows
 * how to undo it and how to tell that it is undone. Lifecycle:
 *
 *   pending ──(step ends / run ends / its due time passes)──▶ reverting ──▶ confirmed
 *      │                                                           └──────▶ failed (can never be undone)
 *      └──(AWS refused the action itself: nothing happened)──▶ cancelled
 */
import { EventEmitter } from "node:events";
import type { SqlDatabase } from "../store/sql/types.js";

/** Where a journal entry is. */
export type CloudRevertState = "pending" | "reverting" | "confirmed" | "cancelled" | "failed";

/** States an entry can still leave. */
export const OPEN_CLOUD_REVERT_STATES: readonly CloudRevertState[] = ["pending", "reverting"];

/** One reversible cloud action and its revert. Times are epoch ms. */
export interface CloudRevertEntry {
  id: number;
  runId: string | null;
  step: string | null;
  /** What was done, e.g. "ec2-stop". */
  action: string;
  /** The reverter that undoes it, e.g. "ec2-start". */
  kind: string;
  region: string;
  /** What the action hit, for people, e.g. "i-0abc…". */
  resource: string;
  /** What the reverter needs (parsed JSON). */
  payload: unknown;
  actor: string;
  createdAt: number;
  /** When the revert falls due on its own (the end of its step); null: when asked, or when its run ends. */
  dueAt: number | null;
  /** When the action's own call returned; null while it is in flight (the revert waits for it). */
  actedAt: number | null;
  state: CloudRevertState;
  revertRequestedAt: number | null;
  /** Why the revert was wanted ("step stop-db ended", "run run_… failed", …). */
  revertReason: string | null;
  /** Revert attempts so far. */
  attempts: number;
  lastAttemptAt: number | null;
  /** When the reconciler tries next (state reverting). */
  nextAttemptAt: number | null;
  /** The last attempt's error, e.g. "StartInstances: ServiceUnavailable: …". */
  lastError: string | null;
  /** What AWS showed last, e.g. "i-0abc is stopped" or "i-0abc is running". */
  detail: string | null;
  /** When it was confirmed, cancelled or failed. */
  endedAt: number | null;
  updatedAt: number;
}

/** A reversible action about to be taken (see {@link CloudJournal.record}). */
export interface NewCloudRevert {
  runId?: string;
  step?: string;
  action: string;
  kind: string;
  region: string;
  resource: string;
  payload: unknown;
  actor: string;
  now: number;
  /** When the revert falls due on its own (the end of its step). */
  dueAt?: number;
}

/** What a reverter found when it looked at AWS. */
export type CloudRevertCheck =
  /** The action is undone (e.g. the instance is running or pending). */
  | { confirmed: true; detail: string }
  /** Not undone yet; `gone` when it never can be (e.g. the instance was terminated). */
  | { confirmed: false; detail: string; gone?: boolean };

/** What a reverter gets with each call. */
export interface CloudRevertContext {
  entry: CloudRevertEntry;
  /** Aborted when the attempt takes too long or the control plane shuts down. */
  signal: AbortSignal;
}

/**
 * Undoes one kind of cloud action. Registered with the reconciler by `kind`; another kind
 * (e.g. restoring NACL associations) is another reverter.
 */
export interface CloudReverter {
  /** The journal's `kind`, e.g. "ec2-start". */
  readonly kind: string;
  /** The AWS call that undoes it, for messages, e.g. "StartInstances". */
  readonly call: string;
  /** What stays wrong until the revert is confirmed, for people: "i-0abc stopped". */
  describe(entry: CloudRevertEntry): string;
  /** Makes the call(s) that undo the action. Thrown: the AWS error (the reconciler retries). */
  revert(ctx: CloudRevertContext): Promise<void>;
  /** Reads AWS to tell whether the action is undone. Thrown: the AWS error (the reconciler retries). */
  confirm(ctx: CloudRevertContext): Promise<CloudRevertCheck>;
}

/** An entry changed state (or an attempt failed): for run timelines and logs. */
export interface CloudRevertChange {
  entry: CloudRevertEntry;
  previous: CloudRevertState;
  /** "acted" (the action's call returned), "requested", "attempt-failed", "confirmed", "cancelled", "failed". */
  cause: "acted" | "requested" | "attempt-failed" | "confirmed" | "cancelled" | "failed";
}

/** Which entries {@link CloudJournal.list} returns. */
export interface CloudRevertQuery {
  runId?: string;
  step?: string;
  states?: readonly CloudRevertState[];
  /** @default 1000 */
  limit?: number;
}

/** The journal's operations. Every write is one SQLite statement or transaction. */
export interface CloudJournal {
  /**
   * Writes an action with its revert as `pending`. Call it BEFORE the AWS call, in the same
   * transaction as the ledger row; thrown when the database fails (then do not act).
   */
  record(entry: NewCloudRevert): number;
  /**
   * The action's call returned (AWS accepted it, or its outcome is unknown): its revert may be
   * made from now on. Its due time moves by as long as the call took.
   */
  markActed(id: number, now: number): void;
  /**
   * Marks every action whose call was in flight as returned: at start-up, those belong to a process
   * that died mid-call. Returns how many.
   */
  releaseInFlight(now: number): number;
  /** AWS refused the action itself (nothing happened): nothing to revert. */
  cancel(id: number, reason: string, now: number): void;
  /**
   * Wants the reverts of the matching pending entries now (pending → reverting). Returns every
   * matching entry not yet ended (those already reverting included), so the caller can wait for them.
   */
  requestRevert(filter: { runId?: string; step?: string; ids?: readonly number[] }, reason: string, now: number): CloudRevertEntry[];
  /**
   * Wants the reverts of pending entries that belong to an ended run (or a run this database no
   * longer knows) or whose due time is `graceMs` past. Returns them.
   */
  sweep(now: number, graceMs: number): CloudRevertEntry[];
  /** Entries being reverted whose next attempt is due (and whose action's call has returned), oldest first, skipping `busy` ids. */
  due(now: number, limit: number, busy: ReadonlySet<number>): CloudRevertEntry[];
  /** Counts an attempt that starts now. */
  markAttempt(id: number, now: number): void;
  /** AWS shows the action undone. */
  markConfirmed(id: number, detail: string, now: number): void;
  /** The attempt did not confirm: try again at `nextAttemptAt`. `error` null when no call failed (e.g. still stopping). */
  markRetry(id: number, error: string | null, detail: string | null, nextAttemptAt: number, now: number): void;
  /** It can never be undone (e.g. the instance no longer exists). */
  markFailed(id: number, error: string, now: number): void;
  get(id: number): CloudRevertEntry | undefined;
  list(query?: CloudRevertQuery): CloudRevertEntry[];
  /**
   * Entries whose revert is wanted and not confirmed: reverting, failed, and pending ones whose run
   * has ended (until the next sweep picks them up).
   */
  unconfirmed(query?: { runId?: string }): CloudRevertEntry[];
  /** {@link unconfirmed} counted per run, for the given runs. */
  countUnconfirmedByRun(runIds: readonly string[]): Map<string, number>;
  /** {@link unconfirmed} counted by state ("reverting" includes pending ones of ended runs). */
  countUnconfirmed(): { reverting: number; failed: number };
  /**
   * Resolves when every one of `ids` has ended (confirmed, cancelled or failed), or at the
   * timeout, or when `signal` aborts; with the entries as they are then.
   */
  waitEnded(ids: readonly number[], timeoutMs: number, signal?: AbortSignal): Promise<CloudRevertEntry[]>;
  /** Every change, as it is stored. */
  readonly events: EventEmitter<{ change: [CloudRevertChange] }>;
}

interface Row {
  id: number;
  run_id: string | null;
  step: string | null;
  action: string;
  kind: string;
  region: string;
  resource: string;
  payload: string;
  actor: string;
  created_at: number;
  due_at: number | null;
  acted_at: number | null;
  state: CloudRevertState;
  revert_requested_at: number | null;
  revert_reason: string | null;
  attempts: number;
  last_attempt_at: number | null;
  next_attempt_at: number | null;
  last_error: string | null;
  detail: string | null;
  ended_at: number | null;
  updated_at: number;
}

function toEntry(row: Row): CloudRevertEntry {
  return {
    id: row.id,
    runId: row.run_id,
    step: row.step,
    action: row.action,
    kind: row.kind,
    region: row.region,
    resource: row.resource,
    payload: JSON.parse(row.payload) as unknown,
    actor: row.actor,
    createdAt: row.created_at,
    dueAt: row.due_at,
    actedAt: row.acted_at,
    state: row.state,
    revertRequestedAt: row.revert_requested_at,
    revertReason: row.revert_reason,
    attempts: row.attempts,
    lastAttemptAt: row.last_attempt_at,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    detail: row.detail,
    endedAt: row.ended_at,
    updatedAt: row.updated_at,
  };
}

const ENDED_RUN = "SELECT id FROM runs WHERE state IN ('completed', 'aborted', 'failed')";
/** Wanted and not confirmed (see {@link CloudJournal.unconfirmed}). */
const UNCONFIRMED = `(state IN ('reverting', 'failed') OR (state = 'pending' AND run_id IN (${ENDED_RUN})))`;
const MAX_TEXT = 1000;

function clip(text: string | null): string | null {
  return text !== null && text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT - 1)}…` : text;
}

/** The journal on the control plane's database (the migration creates the table). */
export function createCloudJournal(db: SqlDatabase): CloudJournal {
  const pg = db.engine === "postgres";
  // The few functions the engines spell differently.
  const greatest = pg ? "GREATEST" : "MAX";
  const isoTime = (ms: string) =>
    pg
      ? `to_char(to_timestamp(${ms} / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '.' || lpad(CAST(${ms} % 1000 AS TEXT), 3, '0') || 'Z'`
      : `strftime('%Y-%m-%dT%H:%M:%fZ', ${ms} / 1000.0, 'unixepoch')`;
  const jsonStrings = pg ? "SELECT json_array_elements_text(CAST(? AS json))" : "SELECT value FROM json_each(?)";
  const events = new EventEmitter<{ change: [CloudRevertChange] }>();
  events.setMaxListeners(0);
  const stmt = {
    insert: db.prepare<Record<string, string | number | null>, { id: number }>(`
      INSERT INTO cloud_reverts (run_id, step, action, kind, region, resource, payload, actor, created_at, due_at, state, updated_at)
      VALUES (@runId, @step, @action, @kind, @region, @resource, @payload, @actor, @now, @dueAt, 'pending', @now)
      RETURNING id`),
    get: db.prepare<[number], Row>("SELECT * FROM cloud_reverts WHERE id = ?"),
    acted: db.prepare(`
      UPDATE cloud_reverts SET acted_at = @now, updated_at = @now,
        due_at = CASE WHEN due_at IS NULL THEN NULL ELSE due_at + ${greatest}(0, @now - created_at) END
      WHERE id = @id AND acted_at IS NULL`),
    release: db.prepare("UPDATE cloud_reverts SET acted_at = @now, updated_at = @now WHERE acted_at IS NULL"),
    cancel: db.prepare(`
      UPDATE cloud_reverts SET state = 'cancelled', detail = @reason, ended_at = @now, updated_at = @now, next_attempt_at = NULL
      WHERE id = @id AND state IN ('pending', 'reverting')`),
    request: db.prepare(`
      UPDATE cloud_reverts SET state = 'reverting', revert_requested_at = @now, revert_reason = @reason,
        next_attempt_at = @now, updated_at = @now
      WHERE id = @id AND state = 'pending'`),
    sweepEnded: db.prepare<{ now: number }, Row>(`
      UPDATE cloud_reverts SET state = 'reverting', revert_requested_at = @now, next_attempt_at = @now, updated_at = @now,
        revert_reason = 'run ' || run_id || ' ' || COALESCE((SELECT state FROM runs WHERE runs.id = cloud_reverts.run_id), 'is unknown to this control plane')
      WHERE state = 'pending' AND run_id IS NOT NULL AND (run_id IN (${ENDED_RUN}) OR run_id NOT IN (SELECT id FROM runs))
      RETURNING *`),
    sweepDue: db.prepare<{ now: number; cutoff: number }, Row>(`
      UPDATE cloud_reverts SET state = 'reverting', revert_requested_at = @now, next_attempt_at = @now, updated_at = @now,
        revert_reason = 'its step' || COALESCE(' ' || step, '') || ' was due to end at ' || ${isoTime("due_at")}
      WHERE state = 'pending' AND due_at IS NOT NULL AND due_at <= @cutoff AND acted_at IS NOT NULL
      RETURNING *`),
    due: db.prepare<[number, number], Row>(
      "SELECT * FROM cloud_reverts WHERE state = 'reverting' AND acted_at IS NOT NULL AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
    ),
    attempt: db.prepare("UPDATE cloud_reverts SET attempts = attempts + 1, last_attempt_at = @now, updated_at = @now WHERE id = @id"),
    confirmed: db.prepare(`
      UPDATE cloud_reverts SET state = 'confirmed', detail = @detail, ended_at = @now, next_attempt_at = NULL, updated_at = @now
      WHERE id = @id AND state IN ('pending', 'reverting')`),
    retry: db.prepare(`
      UPDATE cloud_reverts SET last_error = COALESCE(@error, last_error), detail = COALESCE(@detail, detail),
        next_attempt_at = @next, updated_at = @now
      WHERE id = @id AND state = 'reverting'`),
    failed: db.prepare(`
      UPDATE cloud_reverts SET state = 'failed', last_error = @error, ended_at = @now, next_attempt_at = NULL, updated_at = @now
      WHERE id = @id AND state IN ('pending', 'reverting')`),
    unconfirmed: db.prepare<[], Row>(`SELECT * FROM cloud_reverts WHERE ${UNCONFIRMED} ORDER BY id`),
    unconfirmedOfRun: db.prepare<[string], Row>(`SELECT * FROM cloud_reverts WHERE run_id = ? AND ${UNCONFIRMED} ORDER BY id`),
    countByRun: db.prepare<[string], { run_id: string; n: number }>(
      `SELECT run_id, COUNT(*) AS n FROM cloud_reverts WHERE run_id IN (${jsonStrings}) AND ${UNCONFIRMED} GROUP BY run_id`,
    ),
    countByState: db.prepare<[], { failed: number; n: number }>(
      `SELECT state = 'failed' AS failed, COUNT(*) AS n FROM cloud_reverts WHERE ${UNCONFIRMED} GROUP BY state = 'failed'`,
    ),
  };

  const get = (id: number): CloudRevertEntry | undefined => {
    const row = stmt.get.get(id);
    return row ? toEntry(row) : undefined;
  };
  const emit = (id: number, previous: CloudRevertState, cause: CloudRevertChange["cause"]): void => {
    const entry = get(id);
    if (entry) events.emit("change", { entry, previous, cause });
  };

  function list(query: CloudRevertQuery = {}): CloudRevertEntry[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (query.runId !== undefined) {
      where.push("run_id = ?");
      args.push(query.runId);
    }
    if (query.step !== undefined) {
      where.push("step = ?");
      args.push(query.step);
    }
    if (query.states !== undefined) {
      where.push(`state IN (${query.states.map(() => "?").join(", ") || "NULL"})`);
      args.push(...query.states);
    }
    const sql = `SELECT * FROM cloud_reverts ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id LIMIT ?`;
    return db
      .prepare<(string | number)[], Row>(sql)
      .all(...args, query.limit ?? 1000)
      .map(toEntry);
  }

  const requestMany = db.transaction((entries: CloudRevertEntry[], reason: string, now: number): number[] => {
    const moved: number[] = [];
    for (const e of entries) {
      if (e.state === "pending" && stmt.request.run({ id: e.id, reason: clip(reason), now }).changes > 0) moved.push(e.id);
    }
    return moved;
  });

  const journal: CloudJournal = {
    events,
    record(entry) {
      const inserted = stmt.insert.get({
        runId: entry.runId ?? null,
        step: entry.step ?? null,
        action: entry.action,
        kind: entry.kind,
        region: entry.region,
        resource: entry.resource,
        payload: JSON.stringify(entry.payload ?? null),
        actor: entry.actor,
        now: entry.now,
        dueAt: entry.dueAt ?? null,
      });
      return Number(inserted!.id);
    },
    markActed(id, now) {
      if (stmt.acted.run({ id, now }).changes > 0) {
        const entry = get(id);
        if (entry) events.emit("change", { entry, previous: entry.state, cause: "acted" });
      }
    },
    releaseInFlight(now) {
      return stmt.release.run({ now }).changes;
    },
    cancel(id, reason, now) {
      const before = get(id);
      if (before && stmt.cancel.run({ id, reason: clip(reason), now }).changes > 0) emit(id, before.state, "cancelled");
    },
    requestRevert(filter, reason, now) {
      let entries: CloudRevertEntry[];
      if (filter.ids !== undefined) entries = filter.ids.map(get).filter((e): e is CloudRevertEntry => e !== undefined);
      else entries = list({ ...(filter.runId !== undefined ? { runId: filter.runId } : {}), ...(filter.step !== undefined ? { step: filter.step } : {}), states: OPEN_CLOUD_REVERT_STATES });
      entries = entries.filter((e) => OPEN_CLOUD_REVERT_STATES.includes(e.state));
      const moved = requestMany(entries, reason, now);
      for (const id of moved) emit(id, "pending", "requested");
      return entries.map((e) => get(e.id)!);
    },
    sweep(now, graceMs) {
      const rows = [...stmt.sweepEnded.all({ now }), ...stmt.sweepDue.all({ now, cutoff: now - graceMs })];
      for (const row of rows) events.emit("change", { entry: toEntry(row), previous: "pending", cause: "requested" });
      return rows.map(toEntry);
    },
    due(now, limit, busy) {
      if (limit <= 0) return [];
      // Ask for a few more than the free slots, as some may be busy.
      return stmt
        .due.all(now, limit + busy.size)
        .filter((r) => !busy.has(r.id))
        .slice(0, limit)
        .map(toEntry);
    },
    markAttempt(id, now) {
      stmt.attempt.run({ id, now });
    },
    markConfirmed(id, detail, now) {
      const before = get(id);
      if (before && stmt.confirmed.run({ id, detail: clip(detail), now }).changes > 0) emit(id, before.state, "confirmed");
    },
    markRetry(id, error, detail, nextAttemptAt, now) {
      const before = get(id);
      if (!before || stmt.retry.run({ id, error: clip(error), detail: clip(detail), next: nextAttemptAt, now }).changes === 0) return;
      if (error !== null) emit(id, before.state, "attempt-failed");
    },
    markFailed(id, error, now) {
      const before = get(id);
      if (before && stmt.failed.run({ id, error: clip(error), now }).changes > 0) emit(id, before.state, "failed");
    },
    get,
    list,
    unconfirmed(query = {}) {
      return (query.runId !== undefined ? stmt.unconfirmedOfRun.all(query.runId) : stmt.unconfirmed.all()).map(toEntry);
    },
    countUnconfirmedByRun(runIds) {
      const out = new Map<string, number>();
      if (runIds.length === 0) return out;
      for (const r of stmt.countByRun.all(JSON.stringify(runIds))) out.set(r.run_id, r.n);
      return out;
    },
    countUnconfirmed() {
      const out = { reverting: 0, failed: 0 };
      for (const r of stmt.countByState.all()) {
        if (r.failed) out.failed += r.n;
        else out.reverting += r.n;
      }
      return out;
    },
    waitEnded(ids, timeoutMs, signal) {
      const isEnded = (e: CloudRevertEntry | undefined) => e === undefined || !OPEN_CLOUD_REVERT_STATES.includes(e.state);
      const remaining = new Set(ids.filter((id) => !isEnded(get(id))));
      const current = () => ids.map(get).filter((e): e is CloudRevertEntry => e !== undefined);
      if (remaining.size === 0 || signal?.aborted) return Promise.resolve(current());
      return new Promise((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          events.off("change", onChange);
          signal?.removeEventListener("abort", finish);
          resolve(current());
        };
        const onChange = ({ entry }: CloudRevertChange) => {
          if (isEnded(entry) && remaining.delete(entry.id) && remaining.size === 0) finish();
        };
        const timer = setTimeout(finish, timeoutMs);
        events.on("change", onChange);
        signal?.addEventListener("abort", finish, { once: true });
      });
    },
  };
  return journal;
}

/** "i-0abc stopped, NOT reverted: retrying since …, 4 attempts, last error …" and the like, for one entry. */
export function describeUnconfirmed(entry: CloudRevertEntry, what: string): string {
  if (entry.state === "failed") return `NOT reverted: ${what}; it cannot be reverted: ${entry.lastError ?? entry.detail ?? "no reason recorded"}`;
  const since = entry.revertRequestedAt !== null ? `retrying since ${new Date(entry.revertRequestedAt).toISOString()}` : "its revert is not started yet";
  const attempts = entry.attempts > 0 ? `, ${entry.attempts} attempt${entry.attempts === 1 ? "" : "s"}` : "";
  const seen = entry.detail ? `, AWS shows: ${entry.detail}` : "";
  const error = entry.lastError ? `, last error: ${entry.lastError}` : "";
  return `NOT reverted: ${what}, ${since}${attempts}${seen}${error}`;
}
