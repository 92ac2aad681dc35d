/** Shared by the experiment commands: reading the experiment file, exit codes. */
import { readFileSync } from "node:fs";
import { resolveCallerPath } from "@firedrill/protocol";
import { ApiRequestError, CliError } from "../errors.js";

/**
 * Reads an experiment file, a relative path being relative to where the user ran the command (see
 * {@link resolveCallerPath}). Thrown when unreadable: CliError naming the file.
 */
export function readExperimentFile(file: string): string {
  const path = resolveCallerPath(file);
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new CliError(`cannot read the experiment file ${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
}

/**
 * The control plane's refusal of an experiment file as the CLI prints it: each problem once, as
 * `FILE:LINE: path: message` like `firedrill validate` (the API's message repeats the issues in
 * one line for other clients). Any other error is returned as it is.
 */
export function experimentError(err: unknown, file: string): unknown {
  if (!(err instanceof ApiRequestError)) return err;
  if (err.code === "invalid_experiment" && err.issues.length > 0) {
    const issues = err.issues.map((issue) => {
      const line = (issue as { line?: unknown }).line;
      return { field: typeof line === "number" ? `${file}:${line}` : file, message: `${issue.field}: ${issue.message}` };
    });
    return new CliError(`${file} is not a valid experiment (the control plane's check; \`firedrill validate ${file}\` checks it without one):`, issues);
  }
  if (err.code === "experiment_too_large") return new CliError(err.message.replace(/^the experiment\b/, file));
  return err;
}

/** `firedrill run` exit codes: 0 completed, 2 aborted, 1 failed. */
export function exitCodeFor(state: string): number {
  return state === "completed" ? 0 : state === "aborted" ? 2 : 1;
}

/** The exit code of a run that ended with a revert not confirmed (see {@link exitCodeForRun}). */
export const EXIT_UNREVERTED = 3;

/**
 * `firedrill run --follow` / `run show` exit codes: {@link EXIT_UNREVERTED} (3) when the run has
 * ended with a revert not confirmed — a cloud revert the journal keeps retrying, or a host fault
 * whose revert failed or is not confirmed — else {@link exitCodeFor} its state.
 */
export function exitCodeForRun(run: { state: string; cloudRevertsUnconfirmed?: number; faultRevertsUnconfirmed?: number }): number {
  if ((run.cloudRevertsUnconfirmed ?? 0) > 0 || (run.faultRevertsUnconfirmed ?? 0) > 0) return EXIT_UNREVERTED;
  return exitCodeFor(run.state);
}

/** HH:MM:SS of an ISO time, local. */
export function clock(iso: string): string {
  const d = new Date(iso);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}
