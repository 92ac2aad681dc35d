/**
 * The one SQL interface every part of the control plane's store is written against, whatever the
 * engine: SQLite (embedded, the default) or PostgreSQL (shared by replicas; see docs/ha.md).
 *
 * It is the synchronous subset of better-sqlite3's API the stores use, so SQLite runs natively and
 * PostgreSQL runs behind it through a worker thread (store/postgres/). SQL written for it must be
 * portable: `?` or `@name` placeholders, no `rowid` except on tables that declare it for
 * PostgreSQL, `RETURNING` instead of lastInsertRowid, `ON CONFLICT … DO NOTHING` instead of
 * `INSERT OR IGNORE`, and `engine` branches for the few functions the two spell differently.
 */

/** Which engine a database runs on. */
export type SqlEngine = "sqlite" | "postgres";

/** What a write statement changed. */
export interface SqlRunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
  /** SQLite only (PostgreSQL throws when read): use `RETURNING` in portable code. */
  lastInsertRowid: number | bigint;
}

/** A prepared statement: positional parameters, or one object of named ones (`@name`). */
export interface SqlStatement<P extends unknown[] | object = unknown[], R = unknown> {
  /** The SQL as written. */
  readonly source: string;
  run(...params: SqlArgs<P>): SqlRunResult;
  get(...params: SqlArgs<P>): R | undefined;
  all(...params: SqlArgs<P>): R[];
}

/** A statement's call arguments: the positional list, or the one object of named parameters. */
export type SqlArgs<P> = P extends unknown[] ? P : [P];

/** A function wrapped in a transaction (nested calls become savepoints). */
export interface SqlTransaction<F extends (...args: never[]) => unknown> {
  (...args: Parameters<F>): ReturnType<F>;
  /**
   * The same, taking the write lock first: SQLite `BEGIN IMMEDIATE`; PostgreSQL SERIALIZABLE (a plain call is READ COMMITTED there),
   * re-run from the start on a serialization failure or deadlock (the function must only touch
   * the database, or be safe to repeat).
   */
  immediate(...args: Parameters<F>): ReturnType<F>;
}

/** A database the stores share. */
export interface SqlDatabase {
  readonly engine: SqlEngine;
  /** Where it is, for messages: a file path, or `postgres://user@host:port/db` (never the password). */
  readonly location: string;
  /** False once closed. */
  readonly open: boolean;
  prepare<P extends unknown[] | object = unknown[], R = unknown>(sql: string): SqlStatement<P, R>;
  /** Runs one or more statements with no parameters (migrations, DDL). */
  exec(sql: string): void;
  transaction<F extends (...args: never[]) => unknown>(fn: F): SqlTransaction<F>;
  close(): void;
}

/** The database cannot be reached (PostgreSQL down, restarting or too slow); the call did nothing it confirmed. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}
