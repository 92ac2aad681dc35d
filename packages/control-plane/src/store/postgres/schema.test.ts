/**
 * The PostgreSQL schema (store/postgres/migrations.ts) against SQLite's (store/migrations.ts, all
 * applied): the same tables, with the same columns (name, type family, nullability), the same
 * named indexes and triggers — so the two never drift. The PostgreSQL side is a fresh database in
 * a private test cluster. Tables of other modules with their own migrations (HA) are not compared.
 */
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresSkipReason, startPgCluster, type PgCluster } from "../../test-support/postgres.js";
import { migrate } from "../migrations.js";
import { createPostgresDatabase } from "./database.js";
import { HA_MIGRATION } from "./ha-tables.js";
import { migratePostgres } from "./migrations.js";

interface Column {
  type: "integer" | "text" | "real";
  notNull: boolean;
}

/** The replicas' coordination tables: PostgreSQL only (a SQLite store has one control plane). */
const HA_TABLES = new Set([...HA_MIGRATION.matchAll(/CREATE TABLE (\w+)/g)].map((m) => m[1]!));

/** SQLite's implicit rowid, declared on PostgreSQL where SQL orders by it. */
const PG_ROWID_TABLES = new Set(["faults", "schedules", "run_samples"]);

function sqliteSchema() {
  const db = new Database(":memory:");
  try {
    migrate(db);
    const tables = db
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .all()
      .map((t) => t.name);
    const columns = new Map<string, Map<string, Column>>();
    for (const table of tables) {
      const info = db.prepare<[], { name: string; type: string; notnull: number; pk: number }>(`PRAGMA table_info(${table})`).all();
      columns.set(
        table,
        new Map(
          info.map((c) => [
            c.name,
            { type: c.type === "INTEGER" ? "integer" : c.type === "REAL" ? "real" : "text", notNull: c.notnull === 1 || c.pk > 0 } satisfies Column,
          ]),
        ),
      );
    }
    const indexes = db
      .prepare<[], { name: string; tbl_name: string }>("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'")
      .all()
      .map((i) => `${i.tbl_name}.${i.name}`)
      .sort();
    const triggers = db
      .prepare<[], { name: string; tbl_name: string }>("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
      .all()
      .map((i) => `${i.tbl_name}.${i.name}`)
      .sort();
    return { tables, columns, indexes, triggers };
  } finally {
    db.close();
  }
}

describe.skipIf(postgresSkipReason() !== undefined)("PostgreSQL schema matches SQLite's", () => {
  let cluster: PgCluster;
  beforeAll(async () => {
    cluster = await startPgCluster();
  }, 90_000);
  afterAll(() => cluster?.destroy());

  it("has the same tables, columns, indexes and triggers, and migrates once", async () => {
    const url = await cluster.createDatabase("fd_schema");
    const db = createPostgresDatabase({ url });
    try {
      migratePostgres(db);
      // A second replica starting on the migrated database applies nothing.
      migratePostgres(db);
      expect(db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM schema_migrations").get()?.n).toBeGreaterThan(0);

      const sqlite = sqliteSchema();
      const pgColumns = db
        .prepare<[], { table_name: string; column_name: string; data_type: string; is_nullable: string }>(
          `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
           WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`,
        )
        .all();
      for (const table of sqlite.tables) {
        const expected = sqlite.columns.get(table)!;
        const actual = pgColumns.filter((c) => c.table_name === table);
        expect(actual.length, `table ${table} exists on PostgreSQL`).toBeGreaterThan(0);
        const names = actual.map((c) => c.column_name).filter((n) => !(n === "rowid" && PG_ROWID_TABLES.has(table)));
        expect(names.sort(), `columns of ${table}`).toEqual([...expected.keys()].sort());
        for (const c of actual) {
          const want = expected.get(c.column_name);
          if (want === undefined) {
            expect(c.column_name).toBe("rowid");
            expect(c.data_type).toBe("bigint");
            continue;
          }
          const family = c.data_type === "integer" || c.data_type === "bigint" ? "integer" : c.data_type === "double precision" ? "real" : c.data_type;
          expect(family, `type of ${table}.${c.column_name} (${c.data_type})`).toBe(want.type);
          expect(c.is_nullable === "NO", `nullability of ${table}.${c.column_name}`).toBe(want.notNull);
        }
      }
      for (const table of PG_ROWID_TABLES) {
        expect(pgColumns.some((c) => c.table_name === table && c.column_name === "rowid"), `${table}.rowid`).toBe(true);
      }
      // Every table of the core schema is SQLite's (HA tables, added by their own module, are not here).
      expect(HA_TABLES.size, "HA tables found in HA_MIGRATION").toBeGreaterThan(0);
      const pgTables = [...new Set(pgColumns.map((c) => c.table_name))].filter((t) => t !== "schema_migrations" && !HA_TABLES.has(t));
      expect(pgTables.filter((t) => !sqlite.tables.includes(t))).toEqual([]);

      const pgIndexes = db
        .prepare<[], { tablename: string; indexname: string }>(
          "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
        )
        .all()
        .map((i) => `${i.tablename}.${i.indexname}`)
        .filter((i) => sqlite.tables.includes(i.split(".")[0]!))
        .sort();
      expect(pgIndexes).toEqual(sqlite.indexes);

      const pgTriggers = db
        .prepare<[], { tbl: string; name: string }>(
          "SELECT DISTINCT c.relname AS tbl, t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal",
        )
        .all()
        .map((t) => `${t.tbl}.${t.name}`);
      // PostgreSQL also refuses TRUNCATE, which SQLite does not have.
      expect(pgTriggers.filter((t) => t !== "audit_log.audit_log_no_truncate").sort()).toEqual(sqlite.triggers);
    } finally {
      db.close();
    }
  });

  it("keeps the audit log append-only", async () => {
    const db = createPostgresDatabase({ url: await cluster.createDatabase("fd_audit") });
    try {
      migratePostgres(db);
      db.prepare(
        `INSERT INTO audit_log (time, source, method, route, path, targets, status, outcome, prev_hash, hash)
         VALUES (1, 'test', 'POST', '/x', '/x', '[]', 200, 'ok', '', 'h')`,
      ).run();
      expect(() => db.prepare("UPDATE audit_log SET outcome = 'edited'").run()).toThrow(/append-only/);
      expect(() => db.prepare("DELETE FROM audit_log").run()).toThrow(/append-only/);
      expect(() => db.exec("TRUNCATE audit_log")).toThrow(/append-only/);
      expect(db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM audit_log").get()?.n).toBe(1);
    } finally {
      db.close();
    }
  });
});
