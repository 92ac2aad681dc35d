/** The root pino logger of `firedrill server`. */
import { pino } from "pino";
import type { Level, Logger } from "pino";
import pretty from "pino-pretty";

/** Log paths that may carry a join token; their values never reach the log. */
export const REDACTED_LOG_PATHS = [
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "metadata.authorization",
];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Minimum level. @default "info" */
  level?: Level | "silent";
  /** Human-readable output instead of JSON lines. @default process.stdout.isTTY */
  pretty?: boolean;
}

/** Creates the root logger: JSON lines on stdout, pretty when stdout is a terminal; tokens redacted. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const redact = { paths: REDACTED_LOG_PATHS, censor: "[redacted]" };
  if (options.pretty ?? process.stdout.isTTY === true) {
    return pino({ level, redact }, pretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" }));
  }
  return pino({ level, redact });
}
