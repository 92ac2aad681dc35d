/**
 * The revert halves of process-kill and process-stop, from the journal record alone (restart,
 * `recover`, the guard): resuming the processes a process-stop froze, by pid and start time. Only
 * /proc and kill(2): the guard loads this without the rest of the agent. See process-kill.ts and
 * process-stop.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { isProcessAlive } from "../proc.js";
import { signalProcess } from "./process-signal.js";
import type { ProcessRef } from "./process-signal.js";

/**
 * process-kill: killed processes cannot be revived, and the repeat loop died with its agent: nothing
 * to undo. Thrown while a live holder still runs the repeat loop.
 */
export async function revertProcessKillRecord(revert: JsonObject, { holderAlive }: { holderAlive: boolean }): Promise<void> {
  if (holderAlive && revert.repeat === true) {
    throw new Error(
      "the repeat-kill loop belongs to a live firedrill-agent process; stop the fault there, or stop that agent (its shutdown ends the loop)",
    );
  }
  // Killed processes cannot be revived, and the loop died with its agent: nothing to undo.
}

/** Reads the pid list out of a process-stop revert record; throws when the record is malformed. */
function refsFromRecord(revert: JsonObject): ProcessRef[] {
  const pids = revert.pids;
  if (!Array.isArray(pids)) throw new Error(`the process-stop journal record has no pid list: ${JSON.stringify(revert)}`);
  return pids.map((entry) => {
    const e = entry as { pid?: unknown; startTime?: unknown } | null;
    if (typeof e?.pid !== "number" || typeof e.startTime !== "number" || e.pid <= 1) {
      throw new Error(`the process-stop journal record holds a bad entry: ${JSON.stringify(entry)}`);
    }
    return { pid: e.pid, startTime: e.startTime };
  });
}

/** Sends SIGCONT to every listed process that is still the same process. Idempotent. */
export function resumeProcesses(refs: readonly ProcessRef[], log: Logger): number {
  let resumed = 0;
  for (const ref of refs) {
    if (isProcessAlive(ref.pid, ref.startTime) && signalProcess(ref, "SIGCONT")) resumed++;
  }
  log.info({ resumed, of: refs.length }, "resumed stopped processes");
  return resumed;
}

/** process-stop: resumes (SIGCONT) every process the record lists that is still the same process. */
export async function revertProcessStopRecord(revert: JsonObject, { log }: { log: Logger }): Promise<void> {
  resumeProcesses(refsFromRecord(revert), log);
}
