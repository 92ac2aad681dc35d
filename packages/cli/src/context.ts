/** What every command gets: output streams and the API client for `--server`. */
import type { ApiClient } from "./http-client.js";

/** Where the CLI writes. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

/** Shared by all commands. */
export interface CommandContext {
  io: CliIo;
  /** The API client for the global `--server` (or FIREDRILL_SERVER). */
  client(): ApiClient;
  /** Sets the process exit code for a command that succeeded in talking to the server (e.g. run: 2 = aborted). */
  setExitCode(code: number): void;
}

/** Prints a value as indented JSON. */
export function printJson(io: CliIo, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}
