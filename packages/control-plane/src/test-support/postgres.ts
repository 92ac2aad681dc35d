/**
 * A private PostgreSQL cluster for tests: Debian's server binaries (`/usr/lib/postgresql/<v>/bin`,
 * installed by scripts/setup.sh), `initdb` into a fresh directory as the `postgres` user, started
 * with `pg_ctl` on a free loopback port and its own socket directory — never the system cluster.
 * Each test gets its own database from {@link PgCluster.createDatabase}.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/** A running test cluster. */
export interface PgCluster {
  port: number;
  /** The superuser's URL for a database (with the password). */
  url(database: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** Runs one statement as the superuser in `database`. */
  query<R = Record<string, unknown>>(database: string, sql: string, values?: unknown[]): Promise<R[]>;
  /** Stops the server (`fast`: clients disconnected, `immediate`: a crash) and starts it again. */
  restart(mode?: "fast" | "immediate", downMs?: number): Promise<void>;
  stop(mode?: "fast" | "immediate"): void;
  start(): void;
  /** Stops it for good and removes its files. */
  destroy(): void;
  log(): string;
}

const PASSWORD = "fd-test-password";

/** Where the server binaries are, or undefined. */
export function postgresBinDir(): string | undefined {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(base, versions[0], "bin");
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export function postgresSkipReason(): string | undefined {
  if (postgresBinDir() === undefined) return "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup.sh)";
  if (process.getuid?.() !== 0) return "starting a test cluster as the postgres user needs root";
  if (spawnSync("id", ["-u", "postgres"]).status !== 0) return "no postgres user (install the postgresql package)";
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** initdb + pg_ctl start; resolves once it accepts connections. */
export async function startPgCluster(): Promise<PgCluster> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/setup.sh");
  const root = mkdtempSync(join(tmpdir(), "fd-pg-"));
  chmodSync(root, 0o700);
  const data = join(root, "data");
  const sockets = join(root, "sock");
  const logFile = join(root, "server.log");
  const pwFile = join(root, "pw");
  writeFileSync(pwFile, PASSWORD, { mode: 0o600 });
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  chownSync(root, uid, gid);
  chownSync(pwFile, uid, gid);
  const asPostgres = (args: string[], timeout = 60_000) => {
    const r = spawnSync("runuser", ["-u", "postgres", "--", ...args], { encoding: "utf8", timeout, cwd: root });
    if (r.status !== 0) throw new Error(`${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  asPostgres(["mkdir", "-m", "0700", sockets]);
  asPostgres([join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=scram-sha-256", `--pwfile=${pwFile}`, "--no-sync", "-E", "UTF8", "--locale=C"]);
  const port = await freePort();
  const options = [
    `-p ${port}`,
    `-k ${sockets}`,
    "-c listen_addresses=127.0.0.1",
    // fsync off: the machine does not crash in a test (the page cache keeps what was written). A
    // commit is still written before it returns (synchronous_commit stays on): an `immediate` stop
    // — PostgreSQL killed — must lose nothing a client saw committed.
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=300",
    "-c shared_buffers=64MB",
  ].join(" ");
  const start = () => {
    asPostgres([join(bin, "pg_ctl"), "-D", data, "-l", logFile, "-o", options, "-w", "-t", "60", "start"], 90_000);
  };
  const stop = (mode: "fast" | "immediate" = "fast") => {
    asPostgres([join(bin, "pg_ctl"), "-D", data, "-m", mode, "-w", "-t", "60", "stop"], 90_000);
  };
  start();
  const url = (database: string) => `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/${database}`;
  const query = async <R>(database: string, sql: string, values?: unknown[]): Promise<R[]> => {
    const client = new pg.Client({ connectionString: url(database) });
    await client.connect();
    try {
      return (await client.query(sql, values)).rows as R[];
    } finally {
      await client.end();
    }
  };
  let count = 0;
  let destroyed = false;
  return {
    port,
    url,
    async createDatabase(prefix = "fd") {
      const name = `${prefix.replace(/[^a-z0-9_]/g, "_")}_${process.pid}_${++count}`;
      await query("postgres", `CREATE DATABASE ${name}`);
      return url(name);
    },
    query,
    async restart(mode = "fast", downMs = 0) {
      stop(mode);
      if (downMs > 0) await sleep(downMs);
      start();
    },
    stop,
    start,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        stop("immediate");
      } catch {
        // already stopped
      }
      rmSync(root, { recursive: true, force: true });
    },
    log: () => {
      try {
        return execFileSync("tail", ["-n", "60", logFile], { encoding: "utf8" });
      } catch {
        return "";
      }
    },
  };
}
