/**
 * The guard: a small watchdog process the agent starts beside itself. It closes the revert paths
 * the journal alone cannot:
 *
 * - an agent that is SIGKILLed (or OOM-killed) and not restarted: when the agent dies without a
 *   clean stop, the guard reverts whatever the journal holds — within a second or two — stores the
 *   recovery reports for the next agent to deliver, and exits;
 * - an agent that lives but is stuck (SIGSTOP, a busy loop or a blocked call on its event loop):
 *   its heartbeat (`<state-dir>/alive`, see liveness.ts) goes stale. Once it is stale past the
 *   threshold while a fault in the journal is past its deadline (`endsAt`) or the agent's lease has
 *   ended, the guard reverts those faults itself and stores their recovery reports. A stopped agent
 *   (every thread in state T) runs nothing: it is left to resume, and then ends its in-process part
 *   of those faults and reports them (runtime.reconcileWithJournal). An agent stuck any other way
 *   (R, S, D) may still run in-process effects — cpu-burn threads — so it is SIGKILLed first, and
 *   the guard then reverts the whole journal as for a dead agent.
 *
 * The guard learns of the agent's death at once: the agent starts it with a pipe on fd 3
 * (`--agent-fd 3`) whose other end only the agent holds, so the guard reads EOF the moment the agent
 * exits (its pid and start time are then checked, as by the poll). A slow poll (every second) checks
 * the pid too — a pipe closed any other way, a guard started without one — and the heartbeat: a
 * stopped agent keeps its pipe open, so stalls are found by the poll only.
 *
 * A restarted agent takes over: it finds the guard in `<state-dir>/guard.json`, sends it SIGTERM,
 * waits for it to exit, and replays the journal itself (reverts are idempotent).
 *
 * The guard process runs guard-bin.ts (lib/guard.mjs in the release), which loads this module, the
 * journal and the revert half of each fault kind (faults/revert-registry.ts) only.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { Socket } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type { RevertRegistry } from "./faults/revert-registry.js";
import { readOwnFile, removeFileDurable, writeFileDurable } from "./fs-util.js";
import { lockStateDir } from "./identity.js";
import { Journal } from "./journal.js";
import type { JournalRecord } from "./journal.js";
import { DEFAULT_STALL_AFTER_MS, allThreadsStopped, monotonicMs, readHeartbeat, readProcessState } from "./liveness.js";
import { isProcessAlive, readProcessStartTime } from "./proc.js";
import { recoverJournal } from "./recover.js";
import type { RecoveryResult } from "./recover.js";
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
    // Only a file this agent's user wrote: the pid it names is stopped (SIGTERM, then SIGKILL).
    const ref = JSON.parse(readOwnFile(join(stateDir, GUARD_FILE))) as ProcessRef;
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
  registry: RevertRegistry;
  log: Logger;
  /**
   * How often the agent's liveness (pid, heartbeat) is checked. @default 1000 with `agentFd`, 200
   * without (nothing else tells the guard of the agent's death then)
   */
  pollMs?: number;
  /**
   * A file descriptor of a pipe whose other end only the agent holds (`--agent-fd`): EOF on it
   * means the agent is gone, and the guard checks at once instead of at the next poll.
   */
  agentFd?: number;
  /** How long without a heartbeat makes the agent stalled (`--stall-after`). @default 2000 */
  stallAfterMs?: number;
}

/** How long the guard waits before retrying a revert that failed while the agent is stalled. */
const STALL_RETRY_MS = 5000;

/**
 * Runs the guard until the agent is gone (then reverts the journal) or the guard is told to stop.
 * Resolves with what it did.
 */
export async function runGuard(opts: GuardOptions): Promise<"agent-stopped-guard" | "recovered" | "recovery-failed"> {
  const { stateDir, agent, log } = opts;
  const self: ProcessRef = { pid: process.pid, startTime: readProcessStartTime(process.pid) ?? 0 };
  writeFileDurable(join(stateDir, GUARD_FILE), JSON.stringify(self), 0o644);
  let stopRequested = false;
  // Cuts the wait between two checks short: a stop signal, EOF on the agent's pipe.
  let wake: (() => void) | undefined;
  const onSignal = () => {
    stopRequested = true;
    wake?.();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // The agent's terminal or session going away must not take the guard with it.
  process.on("SIGHUP", () => {});
  const stallAfterMs = opts.stallAfterMs ?? DEFAULT_STALL_AFTER_MS;
  log.info({ agentPid: agent.pid, stallAfterMs }, "guard watching the agent");
  const watch = createStallWatch({ ...opts, stallAfterMs });
  const pipe = opts.agentFd === undefined ? undefined : watchAgentPipe(opts.agentFd, log, () => wake?.());
  const pollMs = opts.pollMs ?? (pipe?.open() ? 1000 : 200);
  try {
    while (!stopRequested && isProcessAlive(agent.pid, agent.startTime)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pipe?.open() === false ? Math.min(pollMs, 200) : pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      if (!stopRequested && isProcessAlive(agent.pid, agent.startTime)) await watch.check();
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
    pipe?.close();
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    const current = readGuard(stateDir);
    if (!current || current.pid === self.pid) removeFileDurable(join(stateDir, GUARD_FILE));
  }
}

/**
 * Reads the guard's end of the agent's pipe (the agent never writes to it): `onEnd` runs once when
 * it ends (the agent exited, or closed it), or at once when the fd is not a usable pipe.
 */
function watchAgentPipe(fd: number, log: Logger, onEnd: () => void): { open(): boolean; close(): void } {
  let open = true;
  let socket: Socket | undefined;
  const ended = () => {
    if (!open) return;
    open = false;
    onEnd();
  };
  try {
    socket = new Socket({ fd, readable: true, writable: false });
    socket.on("data", () => {});
    socket.on("end", ended);
    socket.on("close", ended);
    socket.on("error", (err) => {
      log.debug({ err: err.message, fd }, "the agent's pipe failed");
      ended();
    });
  } catch (err) {
    log.warn({ err: (err as Error).message, fd }, "no pipe from the agent on this fd; watching its pid every 200 ms instead");
    open = false;
  }
  return {
    open: () => open,
    close() {
      open = false;
      socket?.destroy();
    },
  };
}

/**
 * Watches the agent's heartbeat; on a stall past the threshold with a fault past its deadline or
 * its lease, reverts those faults (after SIGKILLing an agent that is not stopped).
 */
function createStallWatch(opts: GuardOptions & { stallAfterMs: number }) {
  const { stateDir, agent, log, stallAfterMs } = opts;
  const startedMono = monotonicMs();
  let stalledSince: number | undefined;
  const retryAt = new Map<string, number>();
  const journal = new Journal(stateDir);
  const reports = new PendingReports(stateDir);

  return {
    async check(): Promise<void> {
      const hb = readHeartbeat(stateDir);
      const ours = hb !== undefined && hb.pid === agent.pid && hb.startTime === agent.startTime;
      // No heartbeat of this agent yet: it writes one before it starts the guard, so count from
      // the guard's own start.
      const lastBeat = ours ? hb.mono : startedMono;
      const now = monotonicMs();
      const silentMs = now - lastBeat;
      if (silentMs <= stallAfterMs) {
        if (stalledSince !== undefined) log.info({ agentPid: agent.pid, stalledMs: now - stalledSince }, "the agent is alive again");
        stalledSince = undefined;
        retryAt.clear();
        return;
      }
      const state = readProcessState(agent.pid);
      if (stalledSince === undefined) {
        stalledSince = lastBeat;
        log.warn({ agentPid: agent.pid, state, silentMs }, "the agent's heartbeat is stale: its event loop is stalled");
      }
      const leaseExpiresMono = ours ? hb.leaseExpiresMono : null;
      const leaseOver = leaseExpiresMono !== null && now >= leaseExpiresMono;
      const wallNow = Date.now();
      const { records } = journal.readAll();
      const due = records.filter(
        (r) => (leaseOver || Date.parse(r.endsAt) <= wallNow) && (retryAt.get(r.faultId) ?? 0) <= now,
      );
      if (due.length === 0) return;

      // When each became due: its deadline, or the lease's end; the guard can act once the stall
      // is also past the threshold.
      const dueSince = (r: JournalRecord) => {
        const deadline = Date.parse(r.endsAt) - wallNow + now;
        const byLease = leaseOver && leaseExpiresMono !== null ? leaseExpiresMono : Infinity;
        return Math.max(Math.min(deadline, byLease), lastBeat + stallAfterMs);
      };
      const stopped = allThreadsStopped(agent.pid);
      const t0 = performance.now();
      let result: RecoveryResult;
      if (!stopped) {
        // Busy, or blocked in a call: its other threads (cpu-burn burners) may still run. End it,
        // then revert everything as for a dead agent (the process is killed, so nothing of it runs).
        log.error(
          { agentPid: agent.pid, state, silentMs, due: due.map((r) => r.faultId) },
          "the agent is stuck but not stopped (its threads may still run fault effects): killing it (SIGKILL) and reverting its journal",
        );
        try {
          process.kill(agent.pid, "SIGKILL");
        } catch {
          // gone already
        }
        result = await recoverJournal({
          journal,
          registry: opts.registry,
          log,
          reports,
          holderAlive: () => false,
          why: () => `the agent pid ${agent.pid} was stuck (state ${state ?? "?"}, no heartbeat for ${silentMs} ms) and was killed by the guard`,
        });
      } else {
        const ids = new Set(due.map((r) => r.faultId));
        result = await recoverJournal({
          journal,
          registry: opts.registry,
          log,
          reports,
          select: (r) => ids.has(r.faultId),
          // Every thread is stopped: the agent runs none of the fault's in-process part now, and
          // ends it when it resumes (it finds the record gone).
          holderAlive: () => false,
          why: (r) =>
            `the agent pid ${agent.pid} was stopped (no heartbeat for ${silentMs} ms) past ${leaseOver ? "its lease" : `the fault's end ${r.endsAt}`}`,
        });
      }
      const ms = Math.round(performance.now() - t0);
      for (const f of result.failed) retryAt.set(f.record.faultId, monotonicMs() + STALL_RETRY_MS);
      const afterDue = result.reverted.map((r) => Math.max(0, Math.round(monotonicMs() - dueSince(r))));
      if (result.reverted.length > 0) {
        log.warn(
          {
            agentPid: agent.pid,
            state,
            reverted: result.reverted.map((r) => r.faultId),
            ms,
            msAfterDue: Math.max(...afterDue),
            stalledMs: Math.round(now - lastBeat),
            agent: stopped ? "left stopped: it runs nothing, and ends its side of these faults when it resumes" : "killed",
          },
          "guard reverted the faults of a stalled agent",
        );
      }
      if (result.failed.length > 0) {
        log.error(
          { failed: result.failed.map((f) => ({ faultId: f.record.faultId, error: f.error })) },
          `the guard could not revert every fault of the stalled agent; retrying in ${STALL_RETRY_MS / 1000} s`,
        );
      }
    },
  };
}

/**
 * The guard's own entry beside the agent's, by how the agent runs: guard-bin.ts from source,
 * guard-bin.js built by tsc, guard.mjs in the release bundle (lib/agent.mjs beside lib/guard.mjs).
 */
const GUARD_ENTRIES: Record<string, string> = { ".ts": "guard-bin.ts", ".js": "guard-bin.js", ".mjs": "guard.mjs" };

/**
 * Node options the guard runs with, after the agent's own: V8's lite mode (no optimizing
 * compiler: the guard polls /proc and runs revert code, nothing hot) takes ~6 MiB off its idle RSS
 * (`pnpm bench footprint`); WebAssembly, which lite mode cannot run, is turned off so that V8 does
 * not warn about it at every start.
 */
export const GUARD_NODE_OPTIONS: readonly string[] = ["--lite-mode", "--no-expose-wasm"];

/**
 * The argv that starts the guard of an agent whose command line module is `entryUrl` (its
 * `import.meta.url`): `[node, ...execArgv, ...nodeOptions, <the guard entry beside it>]`, the small
 * entry that loads only what reverting needs (guard-bin.ts). When there is none (a build without
 * it), the agent's own command with the hidden `guard` subcommand.
 */
export function guardCommandFor(entryUrl: string, nodeOptions: readonly string[] = GUARD_NODE_OPTIONS): string[] {
  const file = fileURLToPath(entryUrl);
  const ext = file.slice(file.lastIndexOf("."));
  const entry = GUARD_ENTRIES[ext] === undefined ? undefined : join(dirname(file), GUARD_ENTRIES[ext]);
  if (entry !== undefined && existsSync(entry)) return [process.execPath, ...process.execArgv, ...nodeOptions, entry];
  return [process.execPath, ...process.execArgv, ...nodeOptions, process.argv[1]!, "guard"];
}

/** Options of {@link superviseGuard}. */
export interface GuardSupervisorOptions {
  /** argv of the guard command (without the guard's own flags), e.g. {@link guardCommandFor}. */
  command: string[];
  /** Passed to the guard as `--stall-after` (ms). @default the guard's default, 2000 */
  stallAfterMs?: number;
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
      [
        ...args,
        "--state-dir", opts.stateDir,
        "--agent-pid", String(self.pid),
        "--agent-start-time", String(self.startTime),
        "--agent-fd", "3",
        ...(opts.stallAfterMs !== undefined ? ["--stall-after", `${opts.stallAfterMs}ms`] : []),
      ],
      // fd 3: a pipe whose other end only this process holds (close-on-exec here, so no other child
      // of the agent inherits it): the guard reads EOF when the agent exits, however it exits.
      { detached: true, stdio: ["ignore", logFd, logFd, "pipe"] },
    );
    closeSync(logFd);
    // Neither keeps the other alive: the agent's end of the pipe does not hold its event loop.
    (child.stdio[3] as Socket | null)?.unref();
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
