/**
 * Signalling a process by pid and start time, never a stranger that inherited the pid: what
 * process-kill and process-stop send, and what the revert of a process-stop sends from the journal
 * (see process-revert.ts). Only /proc: the guard loads this without the rest of the agent.
 */
import { readProcessStartTime } from "../proc.js";

/** One process for good: pid plus start time (clock ticks since boot), safe against pid reuse. */
export interface ProcessRef {
  pid: number;
  startTime: number;
}

/**
 * Sends `signal` to the process only if its pid still has the recorded start time (so a reused pid
 * is never hit). Returns true when delivered, false when the process is gone or the pid now belongs
 * to another process. The remaining window between the check and kill(2) is microseconds; a pid
 * cannot be reused within it unless the whole pid space wraps.
 */
export function signalProcess(
  ref: ProcessRef,
  signal: NodeJS.Signals,
  readStartTime: (pid: number) => number | undefined = readProcessStartTime,
): boolean {
  if (readStartTime(ref.pid) !== ref.startTime) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}
