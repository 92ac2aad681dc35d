/**
 * Real processes for end-to-end tests: the control plane and agents, run from source exactly as
 * `pnpm firedrill` and `pnpm firedrill-agent` run them. Every process a test starts is tracked
 * and killed by `killAll()`. The HTTP API needs a token: `startServer` returns the bootstrap
 * admin's, and CLI children get theirs through `cliEnv` (never the credentials of whoever runs
 * the tests: FIREDRILL_TOKEN and FIREDRILL_CONFIG are not inherited).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { api } from "./api.js";

export const ROOT = resolve(import.meta.dirname, "../..");
const NODE_ARGS = ["--conditions=@firedrill/source", "--import", "tsx"];
/** Labels an agent gets unless a test says otherwise: the default policy's opt-in label. */
export const OPT_IN_LABELS = "firedrill:opt-in=true";
export const CLI_BIN = join(ROOT, "packages/cli/src/bin.ts");
export const AGENT_BIN = join(ROOT, "packages/agent/src/bin.ts");

/** A process started by a test, with its output captured. */
export interface TestProcess {
  child: ChildProcess;
  pid: number;
  output: () => string;
  exited: Promise<number | null>;
  /** Sends a signal if the process is still running. */
  kill: (signal?: NodeJS.Signals) => void;
}

const started = new Set<TestProcess>();

/** Where a CLI child looks for its config file when the test gives none: a path no one writes. */
const NO_CLI_CONFIG_DIR = join(tmpdir(), `firedrill-test-cli-${process.pid}`);

/**
 * The environment of a child: this process's, without the credentials of whoever runs the tests
 * (FIREDRILL_TOKEN, FIREDRILL_CONFIG), then `env`.
 */
export function childEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const inherited = { ...process.env };
  delete inherited.FIREDRILL_TOKEN;
  delete inherited.FIREDRILL_CONFIG;
  return { ...inherited, FORCE_COLOR: "0", NO_COLOR: "1", FIREDRILL_CONFIG: join(NO_CLI_CONFIG_DIR, "config.json"), ...env };
}

/**
 * Spawns `node <script> ...args` from the repo root, from source. With `ipc`, the child also gets
 * an IPC channel (`process.send` in the child, `child.send` / "message" here).
 */
export function spawnNode(script: string, args: string[], env: Record<string, string> = {}, options: { ipc?: boolean; nodeArgs?: string[] } = {}): TestProcess {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...NODE_ARGS, script, ...args], {
    cwd: ROOT,
    env: childEnv(env),
    stdio: options.ipc ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe"],
  });
  const proc = captureProcess(child);
  started.add(proc);
  void proc.exited.then(() => started.delete(proc));
  return proc;
}

/** Wraps a spawned child (stdout and stderr piped): its output, its exit, a kill that is safe to repeat. */
export function captureProcess(child: ChildProcess): TestProcess {
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const proc: TestProcess = {
    child,
    pid: child.pid!,
    output: () => out,
    exited,
    kill: (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  return proc;
}

const agentStateDirs = new Set<string>();

/** The guard an agent started beside itself (detached, so not a child we track), if alive. */
export function guardPid(stateDir: string): number | undefined {
  try {
    const { pid } = JSON.parse(readFileSync(join(stateDir, "guard.json"), "utf8")) as { pid: number };
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("guard") ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Kills every process the tests started (agents' guards included) and waits for them to exit (bounded). */
export async function killAll(): Promise<void> {
  const dirs = [...agentStateDirs];
  const killGuards = () => {
    const pids: number[] = [];
    for (const dir of dirs) {
      const pid = guardPid(dir);
      if (pid === undefined) continue;
      try {
        process.kill(pid, "SIGKILL");
        pids.push(pid);
      } catch {
        // already gone
      }
    }
    return pids;
  };
  killGuards();
  agentStateDirs.clear();
  const procs = [...started];
  for (const p of procs) p.kill("SIGKILL");
  await Promise.race([Promise.all(procs.map((p) => p.exited)), sleep(5000)]);
  // A guard an agent was starting as it was killed names itself in guard.json only then: kill it
  // too, and wait until it is gone, so that it writes nothing into a state dir being removed.
  const late = killGuards();
  for (let i = 0; i < 50 && late.some((pid) => existsSync(`/proc/${pid}`)); i++) await sleep(50);
  rmSync(NO_CLI_CONFIG_DIR, { recursive: true, force: true });
}

/**
 * Runs a CLI command to completion. `env` is added to the child's environment: give it
 * {@link cliEnv} (server, token, config file), or the command talks to no server with no token.
 */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...NODE_ARGS, CLI_BIN, ...args], {
    cwd: ROOT,
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws with `what`). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 15_000, everyMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await sleep(everyMs);
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A temp dir removed by the returned cleanup. */
export function tempDir(prefix: string): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), `firedrill-${prefix}-`));
  // Retried: a process that was just killed may still have had a file being written in it.
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }) };
}

/** A control plane process on fixed loopback ports (so agents find it again after a restart). */
export interface ServerHandle {
  proc: TestProcess;
  dataDir: string;
  grpcAddr: string;
  httpUrl: string;
  /** The agents' join token (`<dataDir>/join-token`). */
  joinToken: string;
  /** The bootstrap admin's API token (`<dataDir>/admin-token`), written on the first start. */
  adminToken: string;
  /** The CLI config file for this server's tests (inside the test's temp dir; written only by `firedrill login`). */
  cliConfig: string;
}

/**
 * The environment for a CLI child talking to `server`: its URL, a token (the admin's unless
 * given) and a config file in the test's temp dir, so nothing reads or writes the real
 * ~/.config/firedrill.
 */
export function cliEnv(server: ServerHandle, token: string = server.adminToken): Record<string, string> {
  return { FIREDRILL_SERVER: server.httpUrl, FIREDRILL_TOKEN: token, FIREDRILL_CONFIG: server.cliConfig };
}

export async function startServer(opts: {
  dataDir: string;
  grpcPort?: number;
  httpPort?: number;
  leaseTtl?: string;
  heartbeatInterval?: string;
  extraArgs?: string[];
  /** Extra environment of the server process (e.g. NODE_OPTIONS for a bench). */
  env?: Record<string, string>;
  /** Options of node itself (e.g. --cpu-prof for a bench). */
  nodeArgs?: string[];
  /**
   * A replica joining a store another server created: it writes no join-token or admin-token file
   * (the store has them already), so the test uses that server's.
   */
  tokensFrom?: Pick<ServerHandle, "joinToken" | "adminToken">;
}): Promise<ServerHandle> {
  const grpcPort = opts.grpcPort ?? (await freePort());
  const httpPort = opts.httpPort ?? (await freePort());
  const grpcAddr = `127.0.0.1:${grpcPort}`;
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const args = ["server", "--data-dir", opts.dataDir, "--grpc-addr", grpcAddr, "--http-addr", `127.0.0.1:${httpPort}`];
  if (opts.leaseTtl) args.push("--lease-ttl", opts.leaseTtl);
  if (opts.heartbeatInterval) args.push("--heartbeat-interval", opts.heartbeatInterval);
  args.push(...(opts.extraArgs ?? []));
  const proc = spawnNode(CLI_BIN, args, { FIREDRILL_LOG_LEVEL: "debug", ...opts.env }, opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {});
  await waitFor(
    `the control plane at ${httpUrl} (output: ${proc.output().slice(-2000)})`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`server exited: ${proc.output()}`);
      const res = await fetch(`${httpUrl}/healthz`);
      return res.ok;
    },
    20_000,
  );
  const joinToken = opts.tokensFrom?.joinToken ?? readFileSync(join(opts.dataDir, "join-token"), "utf8").trim();
  const adminToken = opts.tokensFrom?.adminToken ?? readFileSync(join(opts.dataDir, "admin-token"), "utf8").trim();
  return { proc, dataDir: opts.dataDir, grpcAddr, httpUrl, joinToken, adminToken, cliConfig: join(opts.dataDir, "cli", "config.json") };
}

/**
 * An agent process. `labels` default to {@link OPT_IN_LABELS} (the policy lets faults onto it);
 * pass "" for an agent without any label.
 */
export function startAgentProcess(opts: {
  server: string;
  token: string;
  stateDir: string;
  labels?: string;
  extraArgs?: string[];
}): TestProcess {
  const args = [
    "--server", opts.server,
    "--token", opts.token,
    "--state-dir", opts.stateDir,
    "--imds", "off",
    "--reconnect-max", "1s",
    "--progress-interval", "1s",
    "--log-level", "debug",
  ];
  const labels = opts.labels ?? OPT_IN_LABELS;
  if (labels) args.push("--labels", labels);
  args.push(...(opts.extraArgs ?? []));
  agentStateDirs.add(opts.stateDir);
  return spawnNode(AGENT_BIN, args);
}

/** Waits until an agent is connected to `server` and returns its id. */
export async function connectedAgentId(server: ServerHandle, timeoutMs = 20_000): Promise<string> {
  return waitFor(
    `an agent connected to ${server.httpUrl}`,
    async () => {
      const { agents } = (await api(server, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
      return agents.find((a) => a.connected)?.id;
    },
    timeoutMs,
  );
}

/** A control plane with connected agents (labelled {@link OPT_IN_LABELS} unless `labels` says otherwise), in fresh temp dirs. */
export interface TestCluster {
  server: ServerHandle;
  /** The first agent (most tests need one). */
  agent: TestProcess;
  agentId: string;
  stateDir: string;
  /** Every agent, in start order. */
  agents: { proc: TestProcess; id: string; stateDir: string }[];
  /** Kills every process the tests started and removes the temp dirs. */
  close: () => Promise<void>;
}

export async function startCluster(
  opts: { leaseTtl?: string; labels?: string; agents?: number; serverArgs?: string[] } = {},
): Promise<TestCluster> {
  const cp = tempDir("cp");
  const dirs = [cp];
  const server = await startServer({ dataDir: cp.path, ...(opts.leaseTtl ? { leaseTtl: opts.leaseTtl } : {}), ...(opts.serverArgs ? { extraArgs: opts.serverArgs } : {}) });
  const agents: TestCluster["agents"] = [];
  for (let i = 0; i < (opts.agents ?? 1); i++) {
    const st = tempDir(`agent${i}`);
    dirs.push(st);
    const proc = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path, ...(opts.labels !== undefined ? { labels: opts.labels } : {}) });
    agents.push({ proc, id: "", stateDir: st.path });
  }
  await waitFor(`${agents.length} agents connected`, async () => {
    const { body } = await api(server, "GET", "/api/v1/agents");
    const list = (body as { agents: { id: string; connected: boolean }[] }).agents.filter((a) => a.connected);
    return list.length === agents.length;
  }, 30_000);
  for (const a of agents) a.id = readFileSync(join(a.stateDir, "agent-id"), "utf8").trim();
  return {
    server,
    agent: agents[0]!.proc,
    agentId: agents[0]!.id,
    stateDir: agents[0]!.stateDir,
    agents,
    close: async () => {
      await killAll();
      for (const d of dirs) d.cleanup();
    },
  };
}
