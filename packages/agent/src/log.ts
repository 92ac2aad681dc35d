import pino from "pino";
import type { Logger } from "pino";

/**
 * The root logger: JSON lines on stdout, pretty-printed when stdout is a terminal. Tokens are
 * redacted wherever they appear in a logged object.
 */
export function createLogger(level = "info", name = "firedrill-agent"): Logger {
  const options = { name, level, redact: ["token", "*.token", "authorization", "*.authorization"] };
  if (process.stdout.isTTY) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l" } } });
  }
  return pino(options);
}
