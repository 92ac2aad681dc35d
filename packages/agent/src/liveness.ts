/**
 * Liveness: the agent proves that its event loop runs. A timer on the agent's main loop writes
 * `<state-dir>/alive` every 500 ms (its pid, the time on the machine's monotonic clock, when its
 * lease ends); the guard reads it. A heartbeat that is not renewed means that nothing on the main
 * loop runs — no duration timer, no lease check, no StopFault — whether the agent is SIGSTOPped,
 * busy-looping, or blocked in a system call.
 *
 * The same timer notices its own stall: a gap between two ticks longer than the threshold means the
 * agent was frozen, and the agent reconciles its faults with the journal (the guard may have
 * reverted some meanwhile).
 */
import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The heartbeat file in the state dir. */
export const HEARTBEAT_FILE = "alive";
/**
 * How often the agent writes its heartbeat. A quarter of the default stall threshold: the guard
 * (which reads it every second) takes the agent for stalled only once its loop has run nothing
 * for 1.5 s past a due beat — a margin a loaded host's late timers stay well within — while an idle
 * agent wakes twice a second for it.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 500;
/** How long without a heartbeat makes an agent stalled. */
export const DEFAULT_STALL_AFTER_MS = 2000;

/**
 * Milliseconds on the machine's monotonic clock (CLOCK_MONOTONIC, as `process.hrtime`): the same
 * in every process of the host, and immune to wall-clock jumps.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** What the agent writes in `<state-dir>/alive`. */
export interface Heartbeat {
  pid: number;
  /** Process start time (clock ticks since boot), against pid reuse. */
  startTime: number;
  /** When it was written, on the monotonic clock ({@link monotonicMs}). */
  mono: number;
  /** When it was written, wall clock (for humans reading the file). */
  at: string;
  /** When the agent's lease ends (or ended), on the monotonic clock; null before the first lease. */
  leaseExpiresMono: number | null;
  /** How many faults the agent holds. */
  faults: number;
}

/** Reads the heartbeat, or undefined when there is none (or it is torn). */
export function readHeartbeat(stateDir: string): Heartbeat | undefined {
  try {
    const hb = JSON.parse(readFileSync(join(stateDir, HEARTBEAT_FILE), "utf8")) as Heartbeat;
    return typeof hb.pid === "number" && typeof hb.mono === "number" ? hb : undefined;
  } catch {
    return undefined;
  }
}

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  stateDir: string;
  self: { pid: number; startTime: number };
  /** How long the lease still runs, in ms (negative once expired), or undefined before the first lease. */
  leaseRemainingMs: () => number | undefined;
  /** How many faults the agent holds. */
  faults: () => number;
  /** A gap between two ticks longer than this means the agent was stalled. @default 2000 */
  stallAfterMs?: number;
  /** @default 500 */
  intervalMs?: number;
  /** Runs on every tick, after the heartbeat is written (e.g. reconcile faults with the journal). */
  onTick?: () => void;
  /** Runs when the agent finds it was stalled (a tick gap past the threshold, or SIGCONT). */
  onResume: (stalledForMs: number, how: "tick-gap" | "SIGCONT") => void;
}

/** A running heartbeat. */
export interface HeartbeatHandle {
  /** Writes a heartbeat now. */
  beat(): void;
  /** Stops the timer and the SIGCONT listener (the file stays: the guard checks the pid in it). */
  stop(): void;
}

/**
 * Starts writing the heartbeat (once now, then every `intervalMs`) and watching for stalls.
 * The write is a temp file renamed over the old one: atomic, not fsync'd (it is about the present).
 */
export function startHeartbeat(opts: HeartbeatOptions): HeartbeatHandle {
  const file = join(opts.stateDir, HEARTBEAT_FILE);
  const tmp = `${file}.tmp-${opts.self.pid}`;
  const intervalMs = opts.intervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const stallAfterMs = opts.stallAfterMs ?? DEFAULT_STALL_AFTER_MS;
  let last = monotonicMs();
  const beat = () => {
    const now = monotonicMs();
    const remaining = opts.leaseRemainingMs();
    const hb: Heartbeat = {
      pid: opts.self.pid,
      startTime: opts.self.startTime,
      mono: now,
      at: new Date().toISOString(),
      leaseExpiresMono: remaining === undefined ? null : Math.round(now + remaining),
      faults: opts.faults(),
    };
    try {
      writeFileSync(tmp, JSON.stringify(hb), { mode: 0o644 });
      renameSync(tmp, file);
    } catch {
      // A full or read-only disk must not stop the loop; the guard then sees a stale heartbeat,
      // which only matters once a fault is past its deadline.
    }
  };
  // Resume is handled once per stall, whichever of the tick gap and SIGCONT comes first.
  let resumeHandledAt = 0;
  const resumed = (gap: number, how: "tick-gap" | "SIGCONT") => {
    if (monotonicMs() - resumeHandledAt < stallAfterMs) return;
    resumeHandledAt = monotonicMs();
    opts.onResume(gap, how);
  };
  const tick = () => {
    const now = monotonicMs();
    const gap = now - last;
    last = now;
    beat();
    if (gap > stallAfterMs) resumed(gap, "tick-gap");
    opts.onTick?.();
  };
  const onCont = () => {
    const gap = monotonicMs() - last;
    beat();
    resumed(gap, "SIGCONT");
  };
  beat();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  process.on("SIGCONT", onCont);
  return {
    beat,
    stop() {
      clearInterval(timer);
      process.off("SIGCONT", onCont);
    },
  };
}

/**
 * The scheduler state of a process (the letter of /proc/PID/stat: R running, S sleeping, D
 * uninterruptible, T stopped, t traced, Z zombie), or undefined when it does not exist.
 */
export function readProcessState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

/**
 * Whether every thread of a process is stopped (SIGSTOP stops the whole thread group; a tracer may
 * stop one thread only), so that none of them runs anything. False when the process is gone.
 */
export function allThreadsStopped(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tids.length > 0 && tids.every((tid) => {
    const state = readThreadState(pid, tid);
    // A thread gone between the listing and the read runs nothing either.
    return state === undefined || state === "T" || state === "t";
  });
}

function readThreadState(pid: number, tid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}
