/** File arguments resolved where the user typed the command (`pnpm firedrill` runs from the repo root). */
import { resolveCallerPath } from "@firedrill/protocol";

/**
 * A commander argument parser for a file or directory argument: relative to the directory the user
 * ran `pnpm firedrill` in (INIT_CWD), else to the working directory. See `resolveCallerPath`.
 */
export function callerPath(value: string): string {
  return resolveCallerPath(value);
}
