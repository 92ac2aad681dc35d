/** Shared by the experiment commands: reading the experiment file, exit codes. */
import { readFileSync } from "node:fs";
import { CliError } from "../errors.js";

/** Reads an experiment file. Thrown when unreadable: CliError naming the file. */
export function readExperimentFile(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError(`cannot read the experiment file ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
}

/** `firedrill run` exit codes: 0 completed, 2 aborted, 1 failed. */
export function exitCodeFor(state: string): number {
  return state === "completed" ? 0 : state === "aborted" ? 2 : 1;
}

/** HH:MM:SS of an ISO time, local. */
export function clock(iso: string): string {
  const d = new Date(iso);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}
