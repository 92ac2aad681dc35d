/**
 * Real processes for end-to-end tests: the control plane and agents, run from source exactly as
 * `pnpm firedrill` and `pnpm firedrill-agent` run them. Every process a test starts is tracked
 * and killed by `killAll()`.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
const NODE_ARGS = ["--conditions=@firedrill/source", "--import", "tsx"];
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

/** Spawns `node <script> ...args` from the repo root, from source. */
export function spawnNode(script: string, args: string[], env: Record<string, string> = {}): TestProcess {
  const child = spawn(process.execPath, [...NODE_ARGS, script, ...args], {
    cwd: ROOT,
    env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
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
  for (const dir of agentStateDirs) {
    const pid = guardPid(dir);
    if (pid !== undefined) process.kill(pid, "SIGKILL");
  }
  agentStateDirs.clear();
  const procs = [...started];
  for (const p of procs) p.kill("SIGKILL");
  await Promise.race([Promise.all(procs.map((p) => p.exited)), sleep(5000)]);
}

/** Runs a CLI command to completion. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...NODE_ARGS, CLI_BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1", ...env },
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
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A control plane process on fixed loopback ports (so agents find it again after a restart). */
export interface ServerHandle {
  proc: TestProcess;
  dataDir: string;
  grpcAddr: string;
  httpUrl: string;
  token: string;
}

export async function startServer(opts: {
  dataDir: string;
  grpcPort?: number;
  httpPort?: number;
  leaseTtl?: string;
  heartbeatInterval?: string;
  extraArgs?: string[];
}): Promise<ServerHandle> {
  const grpcPort = opts.grpcPort ?? (await freePort());
  const httpPort = opts.httpPort ?? (await freePort());
  const grpcAddr = `127.0.0.1:${grpcPort}`;
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const args = ["server", "--data-dir", opts.dataDir, "--grpc-addr", grpcAddr, "--http-addr", `127.0.0.1:${httpPort}`];
  if (opts.leaseTtl) args.push("--lease-ttl", opts.leaseTtl);
  if (opts.heartbeatInterval) args.push("--heartbeat-interval", opts.heartbeatInterval);
  args.push(...(opts.extraArgs ?? []));
  const proc = spawnNode(CLI_BIN, args, { FIREDRILL_LOG_LEVEL: "debug" });
  await waitFor(
    `the control plane at ${httpUrl} (output: ${proc.output().slice(-2000)})`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`server exited: ${proc.output()}`);
      const res = await fetch(`${httpUrl}/healthz`);
      return res.ok;
    },
    20_000,
  );
  const token = readFileSync(join(opts.dataDir, "join-token"), "utf8").trim();
  return { proc, dataDir: opts.dataDir, grpcAddr, httpUrl, token };
}

/** An agent process. */
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
  if (opts.labels) args.push("--labels", opts.labels);
  args.push(...(opts.extraArgs ?? []));
  agentStateDirs.add(opts.stateDir);
  return spawnNode(AGENT_BIN, args);
}

/** Waits until an agent is connected to `server` and returns its id. */
export async function connectedAgentId(server: ServerHandle, timeoutMs = 20_000): Promise<string> {
  return waitFor(
    `an agent connected to ${server.httpUrl}`,
    async () => {
      const res = await fetch(`${server.httpUrl}/api/v1/agents`);
      const { agents } = (await res.json()) as { agents: { id: string; connected: boolean }[] };
      return agents.find((a) => a.connected)?.id;
    },
    timeoutMs,
  );
}

/** A control plane with connected agents, in fresh temp dirs. */
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
    const proc = startAgentProcess({ server: server.grpcAddr, token: server.token, stateDir: st.path, ...(opts.labels ? { labels: opts.labels } : {}) });
    agents.push({ proc, id: "", stateDir: st.path });
  }
  await waitFor(`${agents.length} agents connected`, async () => {
    const res = await fetch(`${server.httpUrl}/api/v1/agents`);
    const list = ((await res.json()) as { agents: { id: string; connected: boolean }[] }).agents.filter((a) => a.connected);
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
