/** Helpers of the HA tests (src/ha): fresh databases with the HA tables, and replica child processes. */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { pino } from "pino";
import { HA_MIGRATION } from "../ha/schema.js";
import { createPostgresDatabase } from "../store/postgres/database.js";
import type { SqlDatabase } from "../store/sql/types.js";
import { afterAll, afterEach, beforeAll } from "vitest";
import { postgresSkipReason, startPgCluster, type PgCluster } from "./postgres.js";

export const silent = pino({ level: "silent" });

/** A new database with the HA tables; returns its URL. */
export async function haDatabase(cluster: PgCluster): Promise<string> {
  const url = await cluster.createDatabase("ha");
  const db = createPostgresDatabase({ url });
  try {
    db.exec(HA_MIGRATION);
  } finally {
    db.close();
  }
  return url;
}

/** Opens a store connection (one per simulated replica); closed by {@link closeAll}. */
export function openDb(url: string, opened: SqlDatabase[]): SqlDatabase {
  const db = createPostgresDatabase({ url, statementTimeoutMs: 3000 });
  opened.push(db);
  return db;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value other than undefined/false, or throws after `ms`. */
export async function waitFor<T>(fn: () => T | undefined | false, ms: number, what: string): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${String(last)})` : ""}`);
    await sleep(50);
  }
}

/** A child process running a module script from packages/control-plane, its stdout in lines. */
export interface ScriptChild {
  child: ChildProcess;
  lines: string[];
  output: () => string;
  exited: Promise<number | null>;
  /** Writes a line to its stdin. */
  send(line: string): void;
  /** Resolves with the first stdout line matching `re`. */
  line(re: RegExp, ms: number): Promise<string>;
  kill9(): Promise<void>;
}

/** Runs `script` (an ES module, imports relative to packages/control-plane) with `env`. */
export function runScript(script: string, env: Record<string, string>, children: ScriptChild[]): ScriptChild {
  const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", "--input-type=module", "-e", script], {
    cwd: join(import.meta.dirname, "../.."),
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let out = "";
  let partial = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    partial += d.toString();
    const parts = partial.split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let alive = true;
  void exited.then(() => (alive = false));
  const handle: ScriptChild = {
    child,
    lines,
    send: (line) => void child.stdin!.write(`${line}\n`),
    output: () => out,
    exited,
    async line(re, ms) {
      const until = Date.now() + ms;
      for (;;) {
        const found = lines.find((l) => re.test(l));
        if (found !== undefined) return found;
        if (!alive) throw new Error(`the child exited before printing ${re}: ${out}`);
        if (Date.now() > until) throw new Error(`the child did not print ${re} within ${ms} ms: ${out}`);
        await sleep(50);
      }
    },
    async kill9() {
      if (alive) child.kill("SIGKILL");
      await exited;
    },
  };
  children.push(handle);
  return handle;
}

/** Kills the children and closes the connections (afterEach). */
export async function cleanUp(children: ScriptChild[], dbs: SqlDatabase[], closers: (() => unknown)[] = []): Promise<void> {
  for (const close of closers.splice(0).reverse()) {
    try {
      await close();
    } catch {
      // cleaning up anyway
    }
  }
  for (const c of children.splice(0)) await c.kill9();
  for (const db of dbs.splice(0)) db.close();
}

/**
 * The fixture of an HA test file: one private cluster for the file (started unless PostgreSQL
 * cannot run here: `skip` says why), and the connections, child processes and closers each test
 * registers, cleaned up after it.
 */
export function haFixture(): {
  skip: string | undefined;
  readonly cluster: PgCluster;
  dbs: SqlDatabase[];
  children: ScriptChild[];
  closers: (() => unknown)[];
} {
  const skip = postgresSkipReason();
  let cluster: PgCluster | undefined;
  const dbs: SqlDatabase[] = [];
  const children: ScriptChild[] = [];
  const closers: (() => unknown)[] = [];
  beforeAll(async () => {
    if (skip === undefined) cluster = await startPgCluster();
  });
  afterAll(() => cluster?.destroy());
  afterEach(() => cleanUp(children, dbs, closers));
  return {
    skip,
    get cluster() {
      if (!cluster) throw new Error(`no PostgreSQL cluster: ${skip ?? "not started yet"}`);
      return cluster;
    },
    dbs,
    children,
    closers,
  };
}
