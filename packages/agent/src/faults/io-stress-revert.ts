/**
 * The revert half of io-stress, from the journal record alone (restart, `recover`, the guard):
 * kills the io child by pid and start time (so that nothing writes the file any more), then frees
 * and removes the working file exactly as disk-fill's revert does — found by device and inode under
 * the agent's own `.firedrill-fill` folder. Only node:fs, /proc and kill(2): the guard loads this
 * without the rest of the agent. See io-stress.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { revertDiskFillRecord } from "./disk-fill-revert.js";
import { childFromRecord, killChild } from "./held-child.js";

/** What the io child is called in messages. */
export const IO_CHILD = "the io-stress workers";

/**
 * io-stress (`{file, dir, dev?, ino?, child?}`): SIGKILLs the workers' process if it is still that
 * process and waits until it is gone, then truncates and removes the working file (never another
 * file at its name). Idempotent: a child and a file already gone are success. Thrown: a malformed
 * record (nothing touched), a child still there after SIGKILL, or a file that could not be freed
 * (DiskFillRevertError); the revert is retried.
 */
export async function revertIoStressRecord(revert: JsonObject, { log }: { log: Logger }): Promise<void> {
  const child = childFromRecord(revert, "io-stress");
  const { file, dir, dev, ino } = revert;
  // Checked before anything is killed: the file part must name an io-stress file of the agent's.
  if (typeof file !== "string" || !file.endsWith(".io.fill")) {
    throw new Error(`the io-stress journal record does not name an io-stress working file (*.io.fill): ${JSON.stringify(revert)}`);
  }
  if (child) await killChild(child, IO_CHILD, log);
  await revertDiskFillRecord(
    { file, ...(dir !== undefined ? { dir } : {}), ...(dev !== undefined ? { dev } : {}), ...(ino !== undefined ? { ino } : {}) },
    { log },
  );
}
