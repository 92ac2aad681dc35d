/** The SQLite engine of {@link SqlDatabase}: better-sqlite3, which already has this API. */
import type Database from "better-sqlite3";
import type { SqlDatabase, SqlTransaction } from "./types.js";

/** Wraps an open better-sqlite3 database. */
export function sqliteDatabase(db: Database.Database): SqlDatabase & { readonly sqlite: Database.Database } {
  return {
    engine: "sqlite",
    location: db.name,
    sqlite: db,
    get open() {
      return db.open;
    },
    prepare: (sql) => db.prepare(sql) as never,
    exec(sql) {
      db.exec(sql);
    },
    transaction: <F extends (...args: never[]) => unknown>(fn: F) => db.transaction(fn as never) as unknown as SqlTransaction<F>,
    close() {
      db.close();
    },
  };
}
