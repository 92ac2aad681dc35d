/**
 * The audit log: append-only rows in the store, each hash-chained to the one before it
 * (`hash = SHA-256(prev_hash ‖ canonical row)`), with the chain's head kept in settings. Editing
 * or deleting any row, or cutting the tail, breaks the chain at a row that `verify` names.
 */
import { createHash } from "node:crypto";
import type { SqlDatabase } from "../store/sql/types.js";

/** The hash the first row chains to. */
export const AUDIT_GENESIS = "0".repeat(64);

const HEAD_SETTING = "audit_head";

/** What is recorded about one call. */
export interface AuditInput {
  time: number;
  /** The authenticated principal; null when the call was not authenticated. */
  principal: string | null;
  role: string | null;
  tokenId: string | null;
  /** The caller's address. */
  source: string;
  method: string;
  /** The route pattern, e.g. `/api/v1/agents/:id/faults`. */
  route: string;
  /** The path called (without the query). */
  path: string;
  /** Ids the call acted on or created (agent, fault, run, schedule, token ids). */
  targets: string[];
  status: number;
  /** `ok`, or the error code (`unauthenticated`, `forbidden`, `policy_refused`, …). */
  outcome: string;
  /** A short note: the refusal's message, an override's reason. */
  detail: string | null;
}

/** A stored audit row. */
export interface AuditEntry extends AuditInput {
  id: number;
  prevHash: string;
  hash: string;
}

/** Which rows a listing returns (newest first). */
export interface AuditQuery {
  /** Epoch ms: only rows at or after it. */
  since?: number;
  principal?: string;
  /** @default 100 */
  limit?: number;
}

/** The result of checking the chain. */
export interface AuditVerification {
  ok: boolean;
  rows: number;
  /** The first row that does not fit the chain. */
  firstBad: { id: number; problem: string } | null;
  message: string;
}

/** The audit log. */
export interface AuditLog {
  /** Appends one row (in an IMMEDIATE transaction, so two processes on one database chain correctly). */
  append(input: AuditInput): AuditEntry;
  list(query: AuditQuery): AuditEntry[];
  /** Walks the whole chain, in batches that yield to the event loop. */
  verify(): Promise<AuditVerification>;
}

interface AuditRow {
  id: number;
  time: number;
  principal: string | null;
  role: string | null;
  token_id: string | null;
  source: string;
  method: string;
  route: string;
  path: string;
  targets: string;
  status: number;
  outcome: string;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

/** The canonical text a row's hash covers: every column but the hash itself, in a fixed order. */
function canonical(id: number, e: AuditInput, prevHash: string): string {
  return JSON.stringify([id, e.time, e.principal, e.role, e.tokenId, e.source, e.method, e.route, e.path, e.targets, e.status, e.outcome, e.detail, prevHash]);
}

/** The hash of a row. */
export function auditHash(id: number, entry: AuditInput, prevHash: string): string {
  return createHash("sha256").update(prevHash).update("\n").update(canonical(id, entry, prevHash)).digest("hex");
}

function toEntry(row: AuditRow): AuditEntry {
  let targets: string[];
  try {
    const parsed = JSON.parse(row.targets) as unknown;
    targets = Array.isArray(parsed) ? parsed.map(String) : [String(parsed)];
  } catch {
    targets = [row.targets];
  }
  return {
    id: row.id,
    time: row.time,
    principal: row.principal,
    role: row.role,
    tokenId: row.token_id,
    source: row.source,
    method: row.method,
    route: row.route,
    path: row.path,
    targets,
    status: row.status,
    outcome: row.outcome,
    detail: row.detail,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

const clip = (text: string | null, max: number): string | null => (text === null ? null : text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** The id in the recorded head of the chain (0 when none or unreadable). */
function headId(text: string | undefined): number {
  if (text === undefined) return 0;
  try {
    const id = (JSON.parse(text) as { id?: unknown }).id;
    return typeof id === "number" && Number.isSafeInteger(id) && id > 0 ? id : 0;
  } catch {
    return 0;
  }
}

/** Opens the audit log on the control plane's database. */
export function createAuditLog(db: SqlDatabase): AuditLog {
  const stmt = {
    last: db.prepare<[], { id: number; hash: string }>("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1"),
    // The highest id ever given (SQLite's AUTOINCREMENT counter); PostgreSQL's sequences are not
    // transactional (a rolled-back or re-run append would leave a gap verify reports as a
    // deletion), so there the recorded head of the chain (below) is the only counter.
    seq: db.engine === "sqlite" ? db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'") : undefined,
    insert: db.prepare(`
      INSERT INTO audit_log (id, time, principal, role, token_id, source, method, route, path, targets, status, outcome, detail, prev_hash, hash)
      VALUES (@id, @time, @principal, @role, @tokenId, @source, @method, @route, @path, @targets, @status, @outcome, @detail, @prevHash, @hash)`),
    head: db.prepare<[], { value: string }>(`SELECT value FROM settings WHERE key = '${HEAD_SETTING}'`),
    setHead: db.prepare<[string]>(
      `INSERT INTO settings (key, value) VALUES ('${HEAD_SETTING}', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
    ),
    batch: db.prepare<[number, number], AuditRow>("SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?"),
  };

  const append = db.transaction((input: AuditInput): AuditEntry => {
    const entry: AuditInput = {
      ...input,
      principal: clip(input.principal, 200),
      source: clip(input.source, 100)!,
      route: clip(input.route, 300)!,
      path: clip(input.path, 500)!,
      targets: input.targets.slice(0, 50).map((t) => clip(t, 200)!),
      outcome: clip(input.outcome, 100)!,
      detail: clip(input.detail, 1000),
    };
    const last = stmt.last.get();
    // Ids are never reused even after the last row is gone (the sequence, and the head recorded
    // in settings), so a deleted tail leaves a gap that verify reports.
    const id = Math.max(last?.id ?? 0, stmt.seq?.get()?.seq ?? 0, headId(stmt.head.get()?.value)) + 1;
    const prevHash = last?.hash ?? AUDIT_GENESIS;
    const hash = auditHash(id, entry, prevHash);
    // The head first: on PostgreSQL its row lock orders replicas appending at once (the later one
    // fails to serialize and its transaction re-runs on the new head).
    stmt.setHead.run(JSON.stringify({ id, hash }));
    stmt.insert.run({ ...entry, id, targets: JSON.stringify(entry.targets), prevHash, hash });
    return { ...entry, id, prevHash, hash };
  });

  return {
    append: (input) => append.immediate(input),

    list(query) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (query.since !== undefined) {
        where.push("time >= ?");
        args.push(query.since);
      }
      if (query.principal !== undefined) {
        where.push("principal = ?");
        args.push(query.principal);
      }
      const sql = `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
      return db
        .prepare<(string | number)[], AuditRow>(sql)
        .all(...args, query.limit ?? 100)
        .map(toEntry);
    },

    async verify() {
      const BATCH = 2000;
      let prevHash = AUDIT_GENESIS;
      let prevId = 0;
      let rows = 0;
      const bad = (id: number, problem: string): AuditVerification => ({
        ok: false,
        rows,
        firstBad: { id, problem },
        message: `the audit log was tampered with at row ${id}: ${problem}`,
      });
      for (;;) {
        const batch = stmt.batch.all(prevId, BATCH);
        for (const row of batch) {
          rows += 1;
          if (row.id !== prevId + 1) {
            return bad(prevId + 1, `row ${prevId + 1}${row.id > prevId + 2 ? `-${row.id - 1}` : ""} is missing (deleted); the next row is ${row.id}`);
          }
          if (row.prev_hash !== prevHash) return bad(row.id, "its link to the previous row does not match (the previous row was edited or deleted)");
          const entry = toEntry(row);
          if (auditHash(row.id, entry, row.prev_hash) !== row.hash) return bad(row.id, "its content does not match its hash (the row was edited)");
          prevHash = row.hash;
          prevId = row.id;
        }
        if (batch.length < BATCH) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      const headText = stmt.head.get()?.value;
      if (headText !== undefined) {
        let head: { id?: unknown; hash?: unknown } = {};
        try {
          head = JSON.parse(headText) as typeof head;
        } catch {
          head = {};
        }
        if (head.id !== prevId || head.hash !== prevHash) {
          const id = typeof head.id === "number" ? head.id : prevId + 1;
          return bad(id, id > prevId ? `rows after ${prevId} up to ${id} are missing (the end of the log was deleted)` : "it does not match the recorded head of the chain");
        }
      } else if (rows > 0) {
        return bad(1, "the recorded head of the chain is missing");
      }
      return { ok: true, rows, firstBad: null, message: `the audit log is intact: ${rows} row${rows === 1 ? "" : "s"}, each chained to the one before` };
    },
  };
}
