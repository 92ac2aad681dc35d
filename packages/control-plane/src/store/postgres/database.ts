/**
 * The PostgreSQL engine of {@link SqlDatabase}: synchronous, like SQLite's, so every store works
 * unchanged on either engine.
 *
 * One connection lives in a worker thread (worker-source.ts). A statement is posted to it and the
 * calling thread waits on a shared Int32 (Atomics.wait) for the answer — the same time SQLite
 * spends in its own synchronous calls, plus a loopback round trip. The wait is bounded: a
 * statement that takes longer than `statementTimeoutMs` is cancelled by the server, and the
 * thread stops waiting a second after that (StoreUnavailableError; the session is reset, so a
 * half-done transaction rolls back). While the connection is down a call fails at once
 * (StoreUnavailableError) instead of waiting, and the worker reconnects by itself: a PostgreSQL
 * restart costs errors for its duration, never a frozen event loop.
 *
 * `transaction(fn).immediate()` is SERIALIZABLE; a serialization failure or deadlock re-runs the
 * whole function (up to 12 times, a few ms apart), which is how the ledger's record-before-kill,
 * the schedule slot claims, the audit chain and token uses keep SQLite's guarantees with several
 * replicas writing. A plain `transaction(fn)()` is READ COMMITTED (PostgreSQL's default): the
 * hub's event batches, which each replica writes for the agents it holds, would otherwise fail
 * against each other's predicate locks under load (a deadlock still re-runs it).
 */
import { createRequire } from "node:module";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import { orderParameters, toPgPlaceholders } from "../sql/placeholders.js";
import { StoreUnavailableError, type SqlDatabase, type SqlRunResult, type SqlStatement, type SqlTransaction } from "../sql/types.js";
import { WORKER_SOURCE } from "./worker-source.js";

/** Options of {@link createPostgresDatabase}. */
export interface PostgresDatabaseOptions {
  /** `postgres://user:password@host:port/db` (or `postgresql://`; `?host=/socket/dir` for a Unix socket). */
  url: string;
  /** Server-side limit of one statement (and of waiting for a lock). @default 5000 */
  statementTimeoutMs?: number;
  /** How long opening waits for the first connection. @default 10000 */
  connectTimeoutMs?: number;
  /** Shown in pg_stat_activity. @default "firedrill" */
  applicationName?: string;
}

/** A PostgreSQL error as the stores see it (`code` is the SQLSTATE, e.g. 23505 unique_violation). */
export class PostgresError extends Error {
  readonly code: string | undefined;
  readonly detail: string | undefined;
  constructor(message: string, code: string | undefined, detail: string | undefined) {
    super(message);
    this.name = "PostgresError";
    this.code = code;
    this.detail = detail;
  }
}

interface Reply {
  seq: number;
  rows?: Record<string, unknown>[];
  rowCount?: number;
  error?: { message: string; code?: string; detail?: string };
  down?: boolean;
  state?: string;
}

const RETRYABLE = new Set(["40001", "40P01"]); // serialization_failure, deadlock_detected
const MAX_ATTEMPTS = 12;

/** The URL without its password, for messages and logs. */
export function redactPostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}

/** Opens a connection (waiting up to `connectTimeoutMs` for it) and returns the database. */
export function createPostgresDatabase(options: PostgresDatabaseOptions): SqlDatabase & { readonly state: () => "up" | "down" } {
  const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const location = redactPostgresUrl(options.url);
  const signalBuffer = new SharedArrayBuffer(4);
  const signal = new Int32Array(signalBuffer);
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    // The worker source is CommonJS and needs no loader: not the process's flags (a process run
    // with --input-type=module would parse it as a module and the worker would die unseen).
    execArgv: [],
    workerData: {
      url: options.url,
      pgPath: createRequire(import.meta.url).resolve("pg"),
      signal: signalBuffer,
      port: port2,
      statementTimeoutMs,
      connectTimeoutMs: Math.min(connectTimeoutMs, statementTimeoutMs),
      applicationName: options.applicationName ?? "firedrill",
    },
    transferList: [port2],
  });
  worker.unref();
  port1.unref();
  /** Why the worker died, if it did: every call then fails at once with it. */
  let workerGone: string | undefined;
  worker.on("error", (err) => {
    workerGone = `its worker thread failed: ${err.message}`;
  });
  worker.on("exit", (code) => {
    workerGone ??= `its worker thread exited (code ${code})`;
  });
  let seq = 0;
  let closed = false;
  let depth = 0;

  const call = (message: Record<string, unknown>, waitMs: number): Reply => {
    if (closed) throw new StoreUnavailableError(`the store ${location} is closed`);
    if (workerGone !== undefined) throw new StoreUnavailableError(`the PostgreSQL store ${location} is unusable: ${workerGone}; restart the server`);
    const mine = ++seq;
    Atomics.store(signal, 0, 0);
    port1.postMessage({ ...message, seq: mine });
    const deadline = performance.now() + waitMs;
    for (;;) {
      Atomics.store(signal, 0, 0);
      const got = receiveMessageOnPort(port1);
      if (got !== undefined) {
        const reply = got.message as Reply;
        if (reply.seq === mine) return reply;
        continue; // a late answer to a call that timed out
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        port1.postMessage({ op: "reset", seq: ++seq });
        throw new StoreUnavailableError(`PostgreSQL at ${location} did not answer within ${Math.round(waitMs)} ms; the session was reset`);
      }
      Atomics.wait(signal, 0, 0, left);
    }
  };

  const query = (text: string, values?: unknown[]): { rows: Record<string, unknown>[]; rowCount: number } => {
    const reply = call({ op: "query", text, values }, statementTimeoutMs + 1000);
    if (reply.error !== undefined) {
      if (reply.down === true && reply.error.code === undefined) {
        throw new StoreUnavailableError(`PostgreSQL at ${location} is unreachable (${reply.error.message}); reconnecting`);
      }
      throw new PostgresError(`${reply.error.message} (SQLSTATE ${reply.error.code ?? "?"}) in: ${text.replace(/\s+/g, " ").trim().slice(0, 160)}`, reply.error.code, reply.error.detail);
    }
    const rows = reply.rows ?? [];
    for (const row of rows) {
      for (const key in row) {
        const v = row[key];
        if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[key] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      }
    }
    return { rows, rowCount: reply.rowCount ?? 0 };
  };

  const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

  // Wait for the first connection (the worker connects on its own).
  {
    const until = performance.now() + connectTimeoutMs;
    for (;;) {
      const reply = call({ op: "state" }, connectTimeoutMs);
      if (reply.state === "up") break;
      if (performance.now() >= until) {
        call({ op: "close" }, 2000);
        closed = true;
        void worker.terminate();
        throw new StoreUnavailableError(`cannot connect to PostgreSQL at ${location}: ${reply.error ?? "no answer"} (check --store, that the server runs and accepts this user)`);
      }
      sleep(50);
    }
  }

  const db: SqlDatabase & { readonly state: () => "up" | "down" } = {
    engine: "postgres",
    location,
    get open() {
      return !closed;
    },
    state: () => (call({ op: "state" }, 2000).state === "up" ? "up" : "down"),
    prepare<P extends unknown[] | object = unknown[], R = unknown>(sql: string): SqlStatement<P, R> {
      const translated = toPgPlaceholders(sql);
      const isInsert = /^\s*INSERT\b/i.test(sql);
      const exec = (args: unknown[]) => query(translated.text, orderParameters(translated, args, sql));
      return {
        source: sql,
        run(...args: unknown[]): SqlRunResult {
          const { rowCount } = exec(args);
          return {
            changes: rowCount,
            get lastInsertRowid(): number {
              throw new Error(`lastInsertRowid is SQLite-only; use RETURNING${isInsert ? "" : " (not an INSERT)"}: ${sql.slice(0, 100)}`);
            },
          };
        },
        get: (...args: unknown[]) => exec(args).rows[0] as R | undefined,
        all: (...args: unknown[]) => exec(args).rows as R[],
      } as unknown as SqlStatement<P, R>;
    },
    exec(sql) {
      query(sql);
    },
    transaction<F extends (...args: never[]) => unknown>(fn: F): SqlTransaction<F> {
      const run = (serializable: boolean, ...args: Parameters<F>): ReturnType<F> => {
        if (depth > 0) {
          const name = `fd_sp${depth}`;
          query(`SAVEPOINT ${name}`);
          depth++;
          try {
            const result = fn(...args) as ReturnType<F>;
            query(`RELEASE SAVEPOINT ${name}`);
            return result;
          } catch (error) {
            query(`ROLLBACK TO SAVEPOINT ${name}`);
            query(`RELEASE SAVEPOINT ${name}`);
            throw error;
          } finally {
            depth--;
          }
        }
        for (let attempt = 1; ; attempt++) {
          query(serializable ? "BEGIN ISOLATION LEVEL SERIALIZABLE" : "BEGIN");
          depth = 1;
          try {
            const result = fn(...args) as ReturnType<F>;
            if (result instanceof Promise) throw new TypeError("a transaction function must not be async");
            query("COMMIT");
            depth = 0;
            return result;
          } catch (error) {
            depth = 0;
            try {
              query("ROLLBACK");
            } catch {
              // the connection is gone: the server rolled it back
            }
            if (error instanceof PostgresError && error.code !== undefined && RETRYABLE.has(error.code) && attempt < MAX_ATTEMPTS) {
              sleep(Math.min(2 ** attempt, 50) * (0.5 + Math.random()));
              continue;
            }
            throw error;
          }
        }
      };
      const t = ((...args: Parameters<F>) => run(false, ...args)) as SqlTransaction<F>;
      t.immediate = (...args: Parameters<F>) => run(true, ...args);
      return t;
    },
    close() {
      if (closed) return;
      try {
        call({ op: "close" }, 3000);
      } catch {
        // closing anyway
      }
      closed = true;
      port1.close();
      void worker.terminate();
    },
  };
  return db;
}
