/** What every command gets: output streams, the resolved credentials and the API client. */
import type { CliSettings } from "./config.js";
import type { ApiClient } from "./http-client.js";

/** Where the CLI writes. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Whether `out` is a terminal (a person reads it, rather than a file or a pipe). @default false */
  outIsTerminal?: boolean;
}

/** Shared by all commands. */
export interface CommandContext {
  io: CliIo;
  /** The API client for the resolved server, token and pinned CA (see {@link settings}). */
  client(): ApiClient;
  /**
   * The server, token and pinned CA from `--server`, `--token-file`, FIREDRILL_SERVER,
   * FIREDRILL_TOKEN and the config file.
   * Thrown when they cannot be resolved (bad URL, unreadable token file, broken config file): CliError.
   */
  settings(): CliSettings;
  /** Sets the process exit code for a command that succeeded in talking to the server (e.g. run: 2 = aborted). */
  setExitCode(code: number): void;
}

/** Prints a value as indented JSON. */
export function printJson(io: CliIo, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}
