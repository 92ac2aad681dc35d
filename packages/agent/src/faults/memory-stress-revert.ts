/**
 * The revert half of memory-stress, from the journal record alone (restart, `recover`, the guard):
 * kills the holder process by pid and start time; its memory goes back to the kernel with it. Only
 * /proc and kill(2): the guard loads this without the rest of the agent. See memory-stress.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { childFromRecord, killChild } from "./held-child.js";

/** What the holder is called in messages. */
export const MEMORY_HOLDER = "the memory-stress holder";

/**
 * memory-stress: SIGKILLs the holder (`child: {pid, startTime}`) if it is still that process and
 * waits until it is gone. A record without a child (the agent died before starting it) or a holder
 * already gone is success. Thrown: a malformed record, or a holder still there after SIGKILL.
 */
export async function revertMemoryStressRecord(revert: JsonObject, { log }: { log: Logger }): Promise<void> {
  const child = childFromRecord(revert, "memory-stress");
  if (!child) {
    log.info("no memory-stress holder had been started");
    return;
  }
  const killed = await killChild(child, MEMORY_HOLDER, log);
  if (!killed) log.info({ pid: child.pid }, `${MEMORY_HOLDER} was already gone`);
}
