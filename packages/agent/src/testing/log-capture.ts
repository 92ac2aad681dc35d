/** A pino logger whose lines a test can read. */
import pino from "pino";
import type { Logger } from "pino";

export interface CapturedLog {
  log: Logger;
  lines: Array<Record<string, unknown> & { level: number; msg: string }>;
  /** Lines whose message matches. */
  find(re: RegExp): Array<Record<string, unknown> & { level: number; msg: string }>;
}

export function captureLog(): CapturedLog {
  const lines: CapturedLog["lines"] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as CapturedLog["lines"][number]) });
  return { log, lines, find: (re) => lines.filter((l) => re.test(l.msg)) };
}
