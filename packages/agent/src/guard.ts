/**
 * The guard: a small watchdog process the agent starts beside itself. It closes the one revert path
 * the journal alone cannot: an agent that is SIGKILLed (or OOM-killed) and not restarted. When the
 * agent dies without a clean stop, the guard reverts whatever the journal holds — within a second
 * or two — stores the recovery reports for the next agent to deliver, and exits.
 *
 * A restarted agent takes over: it finds the guard in `<state-dir>/guard.json`, sends it SIGTERM,
 * waits for it to exit, and replays the journal itself (reverts are idempotent).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { FaultRegistry } from "./faults/index.js";
import { removeFileDurable, writeFileDurable } from "./fs-util.js";
import { lockStateDir } from "./identity.js";
import { Journal } from "./journal.js";
import { isProcessAlive, readProcessStartTime } from "./proc.js";
import { recoverJournal } from "./recover.js";
import { PendingReports } from "./reports.js";

/** A process named by pid and start time. */
export interface ProcessRef {
  pid: number;
  startTime: number;
}

const GUARD_FILE = "guard.json";

/** The live guard of a state dir, if any. */
export function readGuard(stateDir: string): ProcessRef | undefined {
  try {
    const ref = JSON.parse(readFileSync(join(stateDir, GUARD_FILE), "utf8")) as ProcessRef;
    return isProcessAlive(ref.pid, ref.startTime) ? ref : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Stops the live guard of a state dir (a restarted agent taking over). Resolves once it has exited,
 * or after `timeoutMs` (then it is SIGKILLed: its reverts are idempotent and the journal is intact).
 */
export async function stopGuard(stateDir: string, timeoutMs = 5000): Promise<ProcessRef | undefined> {
  const guard = readGuard(stateDir);
  if (!guard) return undefined;
  try {
    process.kill(guard.pid, "SIGTERM");
  } catch {
    return guard;
  }
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(guard.pid, guard.startTime) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (isProcessAlive(guard.pid, guard.startTime)) {
    try {
      process.kill(guard.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return guard;
}

/** Options of the guard process. */
export interface GuardOptions {
  stateDir: string;
  agent: ProcessRef;
  registry: FaultRegistry;
  log: Logger;
  /** How often the agent's liveness is checked. @default 200 */
  pollMs?: number;
}

/**
 * Runs the guard until the agent is gone (then reverts the journal) or the guard is told to stop.
 * Resolves with what it did.
 */
export async function runGuard(opts: GuardOptions): Promise<"agent-stopped-guard" | "recovered" | "recovery-failed"> {
  const { stateDir, agent, log } = opts;
  const self: ProcessRef = { pid: process.pid, startTime: readProcessStartTime(process.pid) ?? 0 };
  writeFileDurable(join(stateDir, GUARD_FILE), JSON.stringify(self), 0o644);
  let stopRequested = false;
  const onSignal = () => {
    stopRequested = true;
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // The agent's terminal or session going away must not take the guard with it.
  process.on("SIGHUP", () => {});
  log.info({ agentPid: agent.pid }, "guard watching the agent");
  try {
    while (!stopRequested && isProcessAlive(agent.pid, agent.startTime)) {
      await new Promise((resolve) => setTimeout(resolve, opts.pollMs ?? 200));
    }
    if (stopRequested) {
      log.info("guard stopped by the agent");
      return "agent-stopped-guard";
    }
    const diedAt = performance.now();
    log.warn({ agentPid: agent.pid }, "the agent died without a clean stop; reverting what its journal holds");
    // Hold the state dir while reverting, so that a second recover cannot run beside us; a
    // restarted agent stops the guard (SIGTERM) and takes over.
    const unlock = lockStateDir(stateDir);
    try {
      const result = await recoverJournal({
        journal: new Journal(stateDir),
        registry: opts.registry,
        log,
        reports: new PendingReports(stateDir),
      });
      const ms = Math.round(performance.now() - diedAt);
      if (result.failed.length > 0 || result.corrupt.length > 0) {
        log.error(
          { failed: result.failed.map((f) => ({ faultId: f.record.faultId, error: f.error })), corrupt: result.corrupt },
          "the guard could not revert everything; run firedrill-agent recover once the cause is fixed",
        );
        return "recovery-failed";
      }
      log.info({ reverted: result.reverted.map((r) => r.faultId), ms }, "guard reverted the journal");
      return "recovered";
    } finally {
      unlock();
    }
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    const current = readGuard(stateDir);
    if (!current || current.pid === self.pid) removeFileDurable(join(stateDir, GUARD_FILE));
  }
}

/** Options of {@link superviseGuard}. */
export interface GuardSupervisorOptions {
  /** argv of the guard command (without the guard's own flags), e.g. [node, ...execArgv, bin, "guard"]. */
  command: string[];
  stateDir: string;
  log: Logger;
}

/** A guard kept running beside the agent. */
export interface GuardSupervisor {
  /** The guard's pid, when it runs. */
  pid(): number | undefined;
  /** Stops the guard (clean agent stop: everything is reverted already). */
  stop(): Promise<void>;
}

/**
 * Starts the guard as a detached process (its own session, so a signal to the agent's process
 * group does not reach it) and restarts it if it dies while the agent runs (at most 10 times a
 * minute).
 */
export function superviseGuard(opts: GuardSupervisorOptions): GuardSupervisor {
  const self = { pid: process.pid, startTime: readProcessStartTime(process.pid) ?? 0 };
  let child: ChildProcess | undefined;
  let stopping = false;
  const restarts: number[] = [];
  const start = () => {
    const logFd = openSync(join(opts.stateDir, "guard.log"), "a", 0o600);
    const [cmd, ...args] = opts.command;
    child = spawn(
      cmd!,
      [...args, "--state-dir", opts.stateDir, "--agent-pid", String(self.pid), "--agent-start-time", String(self.startTime)],
      { detached: true, stdio: ["ignore", logFd, logFd] },
    );
    child.unref();
    const current = child;
    current.once("exit", (code, signal) => {
      if (stopping || child !== current) return;
      const now = Date.now();
      restarts.push(now);
      while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift();
      if (restarts.length > 10) {
        opts.log.error({ code, signal }, "the guard keeps dying; giving up on it (see guard.log in the state dir)");
        return;
      }
      opts.log.warn({ code, signal }, "the guard exited; restarting it");
      setTimeout(() => !stopping && start(), 1000).unref();
    });
  };
  start();
  return {
    pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
    async stop() {
      stopping = true;
      const current = child;
      if (!current || current.exitCode !== null || current.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => current.once("exit", () => resolve()));
      current.kill("SIGTERM");
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
    },
  };
}
