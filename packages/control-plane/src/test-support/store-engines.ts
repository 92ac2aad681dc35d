/**
 * Runs a store test on both engines: SQLite (a temp data dir) and PostgreSQL (a fresh database in
 * one private test cluster per describe block; test-support/postgres.ts).
 *
 *     describeEachEngine("run store", (engine) => {
 *       let store: Store;
 *       beforeEach(async () => { store = await engine.openStore(); });
 *       it("…", () => { … store.db … });   // store closed and files removed after the block
 *     });
 *
 * gives `run store [sqlite]` and `run store [postgres]`; the PostgreSQL block is skipped, with the
 * reason from {@link postgresSkipReason}, where a cluster cannot run. FIREDRILL_TEST_ENGINES
 * (`sqlite`, `postgres` or `sqlite,postgres`) limits the engines, e.g. for a quick local run.
 *
 * A test that reopens a store (a restart) takes {@link StoreEngine.freshStoreOptions} and passes
 * them to createStore itself, as often as it likes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe } from "vitest";
import type { SqlDatabase, SqlEngine } from "../store/sql/types.js";
import { createStore, type Store, type StoreOptions } from "../store/store.js";
import { postgresSkipReason, startPgCluster, type PgCluster } from "./postgres.js";

/** One engine, inside its describe block. */
export interface StoreEngine {
  readonly engine: SqlEngine;
  /**
   * Options for createStore naming a store no test has used: a new temp data dir, and on
   * PostgreSQL a new empty database. Removed after the block.
   */
  freshStoreOptions(): Promise<StoreOptions>;
  /** A fresh store, created and migrated (closed after the block if the test did not close it). */
  openStore(): Promise<Store>;
  /** A fresh store's database, for the stores built on one (auth, runs, schedules, …). */
  openDatabase(): Promise<SqlDatabase>;
  /**
   * Overrides for startTestControlPlane / startControlPlane that put its store on this engine:
   * `{}` on SQLite (the data dir's file), `{ store: <url of a new database> }` on PostgreSQL.
   */
  controlPlaneStore(): Promise<{ store?: string }>;
  /** The PostgreSQL test cluster (restart it, query it as the superuser); undefined on SQLite. */
  readonly cluster: PgCluster | undefined;
}

/** The engines to test, and why an engine is skipped (undefined: it runs). */
export function storeEngines(): { engine: SqlEngine; skip: string | undefined }[] {
  const wanted = (process.env["FIREDRILL_TEST_ENGINES"] ?? "sqlite,postgres").split(",").map((e) => e.trim());
  const engines: { engine: SqlEngine; skip: string | undefined }[] = [];
  if (wanted.includes("sqlite")) engines.push({ engine: "sqlite", skip: undefined });
  if (wanted.includes("postgres")) engines.push({ engine: "postgres", skip: postgresSkipReason() });
  return engines;
}

/**
 * Declares `describe("<name> [<engine>]", …)` once per engine and calls `body` inside it with the
 * engine's helpers (use them from hooks and tests, not while declaring).
 */
export function describeEachEngine(name: string, body: (engine: StoreEngine) => void): void {
  for (const { engine, skip } of storeEngines()) {
    const title = skip === undefined ? `${name} [${engine}]` : `${name} [${engine}] (skipped: ${skip})`;
    describe.skipIf(skip !== undefined)(title, () => {
      body(engineHelpers(engine));
    });
  }
}

/** The helpers of one engine in one describe block (registers its beforeAll/afterAll). */
function engineHelpers(engine: SqlEngine): StoreEngine {
  let cluster: PgCluster | undefined;
  const dirs: string[] = [];
  const stores: Store[] = [];
  if (engine === "postgres") {
    beforeAll(async () => {
      cluster = await startPgCluster();
    }, 90_000);
  }
  afterAll(() => {
    for (const store of stores) {
      try {
        store.close();
      } catch {
        // already closed, or its cluster is down
      }
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    cluster?.destroy();
  });
  const freshStoreOptions = async (): Promise<StoreOptions> => {
    const dataDir = mkdtempSync(join(tmpdir(), `firedrill-${engine}-`));
    dirs.push(dataDir);
    if (engine === "sqlite") return { dataDir };
    if (cluster === undefined) throw new Error("the PostgreSQL test cluster is not started: call the helpers from hooks or tests");
    return { dataDir, postgresUrl: await cluster.createDatabase("fd_store") };
  };
  const openStore = async (): Promise<Store> => {
    const store = createStore(await freshStoreOptions());
    stores.push(store);
    return store;
  };
  return {
    engine,
    freshStoreOptions,
    openStore,
    openDatabase: async () => (await openStore()).db,
    async controlPlaneStore() {
      if (engine === "sqlite") return {};
      if (cluster === undefined) throw new Error("the PostgreSQL test cluster is not started: call the helpers from hooks or tests");
      return { store: await cluster.createDatabase("fd_cp") };
    },
    get cluster() {
      return cluster;
    },
  };
}
