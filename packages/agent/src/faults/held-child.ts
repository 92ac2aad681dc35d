/**
 * A child process a fault keeps running for its whole life (memory-stress's holder, io-stress's
 * workers), as the journal records it: pid plus start time, so that a revert in another process
 * (restart, `recover`, the guard) kills that very process and never a stranger that inherited the
 * pid. Only /proc and kill(2): the guard loads this without the rest of the agent.
 */
import { readFileSync } from "node:fs";
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { isProcessAlive } from "../proc.js";
import { signalProcess } from "./process-signal.js";
import type { ProcessRef } from "./process-signal.js";

/** How long a killed child may take to be gone before the revert fails (and is retried). */
export const CHILD_GONE_TIMEOUT_MS = 10_000;

/**
 * The child a journal record names (`child: {pid, startTime}`), or undefined when the record has
 * none yet (a crash before the child was started). Thrown: a malformed entry.
 */
export function childFromRecord(revert: JsonObject, kind: string): ProcessRef | undefined {
  const child = revert.child;
  if (child === undefined || child === null) return undefined;
  const c = child as { pid?: unknown; startTime?: unknown };
  if (
    typeof child !== "object" ||
    Array.isArray(child) ||
    typeof c.pid !== "number" ||
    !Number.isInteger(c.pid) ||
    c.pid <= 1 ||
    typeof c.startTime !== "number" ||
    !Number.isFinite(c.startTime)
  ) {
    throw new Error(`the ${kind} journal record holds a bad child entry: ${JSON.stringify(child)}`);
  }
  return { pid: c.pid, startTime: c.startTime };
}

function stateOf(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "?";
  } catch {
    return "gone";
  }
}

/**
 * SIGKILLs the child if it is still that process, and waits until it is gone (a zombie counts as
 * gone: its memory and files are released). Returns whether it was alive. Idempotent.
 * Thrown: the process is still there after `timeoutMs` (stuck in the kernel), with what to check.
 */
export async function killChild(ref: ProcessRef, what: string, log: Logger, timeoutMs = CHILD_GONE_TIMEOUT_MS): Promise<boolean> {
  if (ref.pid === process.pid) throw new Error(`refusing to kill pid ${ref.pid}: it is this process, not ${what}`);
  if (!isProcessAlive(ref.pid, ref.startTime)) return false;
  signalProcess(ref, "SIGKILL");
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(ref.pid, ref.startTime)) {
    if (Date.now() > deadline) {
      throw new Error(
        `${what} (pid ${ref.pid}) is still there ${Math.round(timeoutMs / 1000)} s after SIGKILL (state ${stateOf(ref.pid)}): ` +
          `it is stuck in the kernel, probably on I/O (see cat /proc/${ref.pid}/stack and dmesg); the revert is retried`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  log.info({ pid: ref.pid }, `${what} killed`);
  return true;
}
