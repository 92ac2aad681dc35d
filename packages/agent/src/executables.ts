/**
 * Finding the programs the agent runs (tc, nft, ip, unshare...). Only node:fs: the guard loads
 * this (through the network faults' revert) without the rest of the agent.
 */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Where the program `name` is: PATH, then the sbin dirs root uses (a systemd PATH may lack them). */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter((d) => d !== ""), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // next
    }
  }
  return undefined;
}

/** Whether an executable named `name` is on PATH (or in the sbin dirs root uses). */
export function hasExecutable(name: string): boolean {
  return findExecutable(name) !== undefined;
}
