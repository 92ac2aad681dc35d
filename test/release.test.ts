/**
 * `pnpm release` (scripts/release.ts) for real: built twice into temp dirs (same sources, same
 * SOURCE_DATE_EPOCH) and compared byte for byte; the .sha256 files checked with sha256sum; the
 * tarballs unpacked outside the checkout and run with nothing but what they hold — a PATH without
 * node, no NODE_PATH or NODE_OPTIONS, a cwd outside the repo:
 * - the agent prints its version, directly and through a symlink (as /usr/local/bin/firedrill-agent);
 * - the agent's guard bundle holds none of grpc-js, commander, systeminformation or zod, and a
 *   guard started by the bundled agent (lib/guard.mjs) resumes a process-stop when its agent is
 *   SIGKILLed, against a real control plane;
 * - the server serves /healthz from its SQLite store (native binding from the tarball), the
 *   agent tarballs it carries and the web console (lib/console);
 * - the server runs on a PostgreSQL store (`--store postgres://…`, the password in PGPASSWORD)
 *   with the pg client the tarball ships for the store's worker thread: its tables created, its
 *   replica row written and marked stopped on SIGTERM, the password in no output. Skipped without
 *   PostgreSQL's server binaries (scripts/setup.sh installs them).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { postgresSkipReason, startPgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import type { PgCluster } from "../packages/control-plane/src/test-support/postgres.js";
import { api } from "./support/api.js";
import { ROOT, captureProcess, freePort, killAll, sleep, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle, TestProcess } from "./support/processes.js";

const VERSION = (JSON.parse(readFileSync(join(ROOT, "packages/agent/package.json"), "utf8")) as { version: string }).version;
const ARCH = process.arch;
const AGENT = `firedrill-agent-${VERSION}-linux-${ARCH}`;
const SERVER = `firedrill-server-${VERSION}-linux-${ARCH}`;
const EPOCH = execFileSync("git", ["-C", ROOT, "log", "-1", "--format=%ct"], { encoding: "utf8" }).trim();

/** Runs `pnpm release --out <dir>` (the script itself, as the package script does). */
function release(outDir: string): void {
  const res = spawnSync(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", join(ROOT, "scripts/release.ts"), "--out", outDir], {
    cwd: ROOT,
    env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH },
    encoding: "utf8",
    timeout: 600_000,
  });
  if (res.status !== 0) throw new Error(`pnpm release failed (${res.status ?? res.signal}): ${res.stderr}\n${res.stdout}`);
}

const sha256 = (file: string) => execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0]!;

/**
 * A PATH holding every program of /usr/bin and /bin but node (and what runs it): what a host
 * without Node.js offers the installed agent.
 */
function pathWithoutNode(dir: string): string {
  mkdirSync(dir);
  for (const from of ["/usr/bin", "/bin"]) {
    for (const name of readdirSync(from)) {
      if (["node", "nodejs", "npm", "npx", "corepack", "pnpm"].includes(name) || existsSync(join(dir, name))) continue;
      symlinkSync(join(from, name), join(dir, name));
    }
  }
  return `/usr/sbin:/sbin:${dir}`;
}

describe("pnpm release", () => {
  const builds = tempDir("release");
  const host = tempDir("release-host");
  const a = join(builds.path, "a");
  const b = join(builds.path, "b");
  let env: NodeJS.ProcessEnv;
  let agentDir: string;
  let serverDir: string;

  beforeAll(() => {
    release(a);
    release(b);
    for (const name of [AGENT, SERVER]) execFileSync("tar", ["-xzf", join(a, `${name}.tar.gz`), "-C", host.path]);
    agentDir = join(host.path, AGENT);
    serverDir = join(host.path, SERVER);
    env = { PATH: pathWithoutNode(join(host.path, "path")), HOME: host.path, LANG: "C.UTF-8" };
    expect(spawnSync("sh", ["-c", "command -v node"], { env }).status).not.toBe(0);
  }, 900_000);

  afterAll(() => {
    builds.cleanup();
    host.cleanup();
  });

  it("builds the same bytes twice, each with a .sha256 that sha256sum verifies", () => {
    for (const name of [AGENT, SERVER]) {
      const file = `${name}.tar.gz`;
      expect(sha256(join(a, file)), file).toBe(sha256(join(b, file)));
      expect(readFileSync(join(a, `${file}.sha256`), "utf8")).toBe(`${sha256(join(a, file))}  ${file}\n`);
      const check = spawnSync("sha256sum", ["-c", `${file}.sha256`], { cwd: a, encoding: "utf8" });
      expect(check.stdout.trim()).toBe(`${file}: OK`);
      expect(check.status).toBe(0);
    }
  });

  it("lays the tarballs out as the install script expects: sorted, one mtime, owned by 0:0", () => {
    const list = (name: string) => execFileSync("tar", ["--numeric-owner", "--full-time", "-tvzf", join(a, `${name}.tar.gz`)], { encoding: "utf8" }).trim().split("\n");
    const agent = list(AGENT);
    const paths = agent.map((l) => l.split(/\s+/).pop()!);
    expect(paths).toEqual([...paths].sort());
    for (const p of ["bin/firedrill-agent", "lib/agent.mjs", "lib/guard.mjs", "node/bin/node", "share/firedrill-agent.service", "VERSION"]) {
      expect(paths, p).toContain(`${AGENT}/${p}`);
    }
    const server = list(SERVER).map((l) => l.split(/\s+/).pop()!);
    for (const p of [
      "bin/firedrill",
      "lib/firedrill.mjs",
      "lib/spec-worker.mjs",
      "lib/node_modules/better-sqlite3/build/Release/better_sqlite3.node",
      "lib/node_modules/bindings/bindings.js",
      // The PostgreSQL client, for the store's worker thread (and the bundle, which keeps pg external).
      "lib/node_modules/pg/package.json",
      "lib/node_modules/pg/lib/index.js",
      "lib/node_modules/pg/esm/index.mjs",
      "lib/node_modules/pg-pool/index.js",
      "lib/node_modules/pg-protocol/dist/index.js",
      "lib/node_modules/pg-types/index.js",
      "lib/node_modules/pg-connection-string/index.js",
      "lib/node_modules/pgpass/lib/index.js",
      "lib/console/index.html",
      "lib/console/app.js",
      "lib/console/app.css",
      "lib/console/report.js",
      "lib/console/report.css",
      "node/bin/node",
      `agent-releases/${AGENT}.tar.gz`,
      `agent-releases/${AGENT}.tar.gz.sha256`,
    ]) {
      expect(server, p).toContain(`${SERVER}/${p}`);
    }
    // pg's optional native binding and Cloudflare socket are not shipped.
    expect(server.filter((p) => /\/node_modules\/(pg-native|pg-cloudflare|libpq)\//.test(p))).toEqual([]);
    const mtime = new Date(Number(EPOCH) * 1000).toISOString().slice(0, 10);
    for (const line of agent) {
      const [mode, owner, , day] = line.split(/\s+/);
      expect(owner, line).toBe("0/0");
      expect(day, line).toBe(mtime);
      expect(["drwxr-xr-x", "-rwxr-xr-x", "-rw-r--r--"], line).toContain(mode);
    }
    expect(readFileSync(join(agentDir, "VERSION"), "utf8")).toBe(`${VERSION}\n`);
    expect(sha256(join(serverDir, "agent-releases", `${AGENT}.tar.gz`))).toBe(sha256(join(a, `${AGENT}.tar.gz`)));
  });

  it("the agent runs with only what its tarball holds: no node on PATH, from outside the repo, through a symlink", () => {
    const direct = spawnSync(join(agentDir, "bin/firedrill-agent"), ["--version"], { cwd: host.path, env, encoding: "utf8" });
    expect(direct.stderr).toBe("");
    expect(direct.stdout.trim()).toBe(VERSION);
    // The install script's layout: /usr/local/bin/firedrill-agent -> /opt/firedrill/agent/current/bin/firedrill-agent, current -> <v>.
    const opt = join(host.path, "opt");
    mkdirSync(opt);
    symlinkSync(agentDir, join(opt, "current"));
    symlinkSync(join(opt, "current", "bin", "firedrill-agent"), join(host.path, "firedrill-agent"));
    const linked = spawnSync(join(host.path, "firedrill-agent"), ["--version"], { cwd: "/", env, encoding: "utf8" });
    expect(linked.stdout.trim()).toBe(VERSION);
    // Its own Node, whatever is installed on the host.
    const node = spawnSync(join(agentDir, "node/bin/node"), ["-p", "process.version"], { env, encoding: "utf8" });
    expect(node.stdout.trim()).toBe(process.version);
  });

  it("the guard bundle holds only what reverting needs", () => {
    const agent = readFileSync(join(agentDir, "lib/agent.mjs"), "utf8");
    const guard = readFileSync(join(agentDir, "lib/guard.mjs"), "utf8");
    // One marker each, from the library's own strings (found in the agent, so the check means something).
    const markers = {
      "grpc-js": "grpc.keepalive_time_ms",
      commander: "error: unknown option",
      systeminformation: "/proc/cpuinfo",
      zod: "Invalid input",
    };
    for (const [lib, marker] of Object.entries(markers)) {
      expect(agent.includes(marker), `${lib} in agent.mjs`).toBe(true);
      expect(guard.includes(marker), `${lib} in guard.mjs`).toBe(false);
    }
    expect(guard.length).toBeLessThan(agent.length / 5);
  });

  describe("the bundled agent against a real control plane", () => {
    let server: ServerHandle | undefined;
    const cp = tempDir("release-cp");
    const state = tempDir("release-agent");
    const started: (TestProcess | ChildProcess)[] = [];

    afterEach(async () => {
      for (const p of started) p.kill("SIGKILL");
      try {
        const { pid } = JSON.parse(readFileSync(join(state.path, "guard.json"), "utf8")) as { pid: number };
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(agentDir)) process.kill(pid, "SIGKILL");
      } catch {
        // no guard left
      }
      await killAll();
      server = undefined;
    });

    afterAll(() => {
      cp.cleanup();
      state.cleanup();
    });

    it("its guard (lib/guard.mjs) resumes a stopped process when the agent is SIGKILLed", async () => {
      server = await startServer({ dataDir: cp.path });
      const agent = captureProcess(
        spawn(
          join(agentDir, "bin/firedrill-agent"),
          ["run", "--server", server.grpcAddr, "--token-file", join(cp.path, "join-token"), "--state-dir", state.path, "--labels", "firedrill:opt-in=true", "--imds", "off", "--reconnect-max", "1s"],
          { cwd: host.path, env, stdio: ["ignore", "pipe", "pipe"] },
        ),
      );
      started.push(agent);
      const agentId = await waitFor(`the bundled agent to connect (output: ${agent.output().slice(-2000)})`, async () => {
        const { agents } = (await api(server!, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
        return agents.find((x) => x.connected)?.id;
      }, 30_000);
      const guardPid = await waitFor("the guard", () => {
        try {
          return (JSON.parse(readFileSync(join(state.path, "guard.json"), "utf8")) as { pid: number }).pid;
        } catch {
          return undefined;
        }
      });
      const guardArgv = readFileSync(`/proc/${guardPid}/cmdline`, "utf8").split("\0");
      expect(guardArgv[0]).toBe(join(agentDir, "node/bin/node"));
      expect(guardArgv).toContain(join(agentDir, "lib/guard.mjs"));

      const sleeper = spawn("sleep", ["600"], { stdio: "ignore" });
      started.push(sleeper);
      const state0 = () => readFileSync(`/proc/${sleeper.pid}/stat`, "utf8").split(") ")[1]![0];
      const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "process-stop", params: { pid: sleeper.pid }, duration: "10m" });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      await waitFor("the process stopped", () => state0() === "T");

      agent.kill("SIGKILL");
      const killedAt = performance.now();
      await waitFor("the guard to resume it", () => state0() === "S", 5000, 20);
      const revertMs = Math.round(performance.now() - killedAt);
      await waitFor("the journal emptied", () => readdirSync(join(state.path, "journal")).length === 0, 5000);
      await waitFor("the guard to exit", () => !existsSync(`/proc/${guardPid}`) || readFileSync(`/proc/${guardPid}/stat`, "utf8").includes(") Z"), 5000);
      expect(readFileSync(join(state.path, "guard.log"), "utf8")).toContain("guard reverted the journal");
      console.log(`bundled guard: process-stop resumed ${revertMs} ms after SIGKILL of the bundled agent`);
    });

    it("the server runs from its tarball: /healthz, its SQLite store, the agent tarballs it carries", async () => {
      const dataDir = join(cp.path, "server");
      const grpcPort = await freePort();
      const httpPort = await freePort();
      const proc = captureProcess(
        spawn(join(serverDir, "bin/firedrill"), ["server", "--data-dir", dataDir, "--grpc-addr", `127.0.0.1:${grpcPort}`, "--http-addr", `127.0.0.1:${httpPort}`], {
          cwd: host.path,
          env,
          stdio: ["ignore", "pipe", "pipe"],
        }),
      );
      started.push(proc);
      const httpUrl = `http://127.0.0.1:${httpPort}`;
      await waitFor(`the bundled server (output: ${proc.output().slice(-2000)})`, async () => {
        if (proc.child.exitCode !== null) throw new Error(`exited: ${proc.output()}`);
        return (await fetch(`${httpUrl}/healthz`)).ok;
      }, 30_000);
      expect(existsSync(join(dataDir, "firedrill.db"))).toBe(true);
      const target = { httpUrl, adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim() };
      // A read through the store (the native binding loaded from lib/node_modules).
      const agents = await api(target, "GET", "/api/v1/agents");
      expect(agents.status).toBe(200);
      expect(agents.body.agents).toEqual([]);
      // Experiments are checked in a worker thread: lib/spec-worker.mjs (a bad one is refused with its issues, not a 500).
      const plan = await api(target, "POST", "/api/v1/plan", { spec: "apiVersion: firedrill/v1\nkind: Experiment\n" });
      expect(plan.status, JSON.stringify(plan.body)).toBe(400);
      // What the install script downloads: the agent tarball of agent-releases/, and the script beside the bundle.
      const sum = await fetch(`${httpUrl}/install/${AGENT}.tar.gz.sha256`);
      expect(sum.status).toBe(200);
      expect(await sum.text()).toBe(readFileSync(join(serverDir, "agent-releases", `${AGENT}.tar.gz.sha256`), "utf8"));
      const script = await fetch(`${httpUrl}/install/agent.sh`);
      expect(script.status).toBe(200);
      expect(await script.text()).toMatch(/^#!\/bin\/sh/);
      // The web console, from lib/console beside the bundle (its default --console-dir).
      const page = await fetch(`${httpUrl}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
      expect(await page.text()).toBe(readFileSync(join(serverDir, "lib/console/index.html"), "utf8"));
      expect((await fetch(`${httpUrl}/assets/app.js`)).status).toBe(200);
      // Having checked an experiment in its worker thread, the bundled server still exits 0 on SIGTERM.
      proc.kill("SIGTERM");
      expect(await Promise.race([proc.exited, sleep(5000).then(() => "still running")]), proc.output().slice(-2000)).toBe(0);
    });
  });
  const pgSkip = postgresSkipReason();
  if (pgSkip) console.log(`skipping the bundled server on PostgreSQL: ${pgSkip}`);

  describe.skipIf(!!pgSkip)("the bundled server on PostgreSQL", () => {
    let cluster: PgCluster | undefined;
    const cp = tempDir("release-pg");
    const started: TestProcess[] = [];

    beforeAll(async () => {
      cluster = await startPgCluster();
    }, 60_000);

    afterEach(() => {
      for (const p of started) p.kill("SIGKILL");
    });

    afterAll(() => {
      cluster?.destroy();
      cp.cleanup();
    });

    it("runs with --store postgres://…: /healthz, its tables, its replica row, no password in its output", async () => {
      const withPassword = new URL(await cluster!.createDatabase("release"));
      const password = decodeURIComponent(withPassword.password);
      const database = withPassword.pathname.slice(1);
      // As the systemd unit's EnvironmentFile gives it: the URL without the password, PGPASSWORD beside it.
      const store = new URL(withPassword.href);
      store.password = "";
      const dataDir = join(cp.path, "server");
      const grpcPort = await freePort();
      const httpPort = await freePort();
      const proc = captureProcess(
        spawn(join(serverDir, "bin/firedrill"), ["server", "--data-dir", dataDir, "--grpc-addr", `127.0.0.1:${grpcPort}`, "--http-addr", `127.0.0.1:${httpPort}`], {
          cwd: host.path,
          env: { ...env, FIREDRILL_STORE: store.href, PGPASSWORD: password },
          stdio: ["ignore", "pipe", "pipe"],
        }),
      );
      started.push(proc);
      const httpUrl = `http://127.0.0.1:${httpPort}`;
      await waitFor(`the bundled server on PostgreSQL (output: ${proc.output().slice(-2000)})`, async () => {
        if (proc.child.exitCode !== null) throw new Error(`exited: ${proc.output()}`);
        return (await fetch(`${httpUrl}/healthz`)).ok;
      }, 30_000);
      // Its store is PostgreSQL: the schema migrated there, no SQLite file in the data dir.
      expect(existsSync(join(dataDir, "firedrill.db"))).toBe(false);
      const tables = (await cluster!.query<{ name: string }>(database, "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'")).map((r) => r.name);
      for (const t of ["schema_migrations", "runs", "agents", "replicas", "leader_lease", "run_owners", "agent_commands"]) expect(tables, t).toContain(t);
      const replicas = await cluster!.query<{ grpc_address: string; stopped_at: number | null }>(database, "SELECT grpc_address, stopped_at FROM replicas");
      expect(replicas).toEqual([{ grpc_address: `127.0.0.1:${grpcPort}`, stopped_at: null }]);
      // A read through the store, on the worker thread's pg connection.
      const target = { httpUrl, adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim() };
      const agents = await api(target, "GET", "/api/v1/agents");
      expect(agents.status, JSON.stringify(agents.body)).toBe(200);
      expect(agents.body.agents).toEqual([]);
      proc.kill("SIGTERM");
      expect(await Promise.race([proc.exited, sleep(10_000).then(() => "still running")]), proc.output().slice(-2000)).toBe(0);
      const stopped = await cluster!.query<{ stopped_at: string | null }>(database, "SELECT stopped_at FROM replicas");
      expect(stopped[0]?.stopped_at).not.toBeNull();
      expect(proc.output()).not.toContain(password);
    });
  });
});

