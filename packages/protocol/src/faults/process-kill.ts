import { constants } from "node:os";
import { parseDuration } from "../params.js";
import type { ParamReader } from "../params.js";
import { ProcessPatternError, compileProcessPattern } from "./process-pattern.js";

/** Which processes a process fault acts on: exactly one of `name`, `pattern` and `pid` is set. */
export interface ProcessSelectorParams {
  /** The exact process name (`/proc/PID/comm`, at most 15 characters). */
  name?: string;
  /**
   * An RE2 regular expression (linear-time matching: no backreferences or lookaround), at most 256
   * characters, matched against the first 4 KiB of the command line (arguments joined by spaces).
   */
  pattern?: string;
  /** One process id. */
  pid?: number;
  /** Refuse when more processes than this match (at most {@link MAX_PROCESSES}). @default 100 */
  maxProcesses: number;
}

/** Parameters of `process-kill`. */
export interface ProcessKillParams extends ProcessSelectorParams {
  /** The signal to send, as its name (`SIGTERM`, `SIGKILL`...). @default "SIGTERM" */
  signal: string;
  /** When set, keep killing matching processes (respawns included) every this many milliseconds. */
  repeatEveryMs?: number;
}

/** Parameters of `process-stop` (always SIGSTOP, SIGCONT on revert). */
export type ProcessStopParams = ProcessSelectorParams;

/** The kernel truncates process names (comm) to 15 characters. */
export const PROCESS_NAME_MAX = 15;
/** The most processes one process fault may act on. */
export const MAX_PROCESSES = 1000;
/** The shortest `repeatEvery`: 100 ms. */
export const MIN_REPEAT_EVERY_MS = 100;
/** The largest pid Linux can hand out (PID_MAX_LIMIT on 64-bit). */
const PID_MAX = 4_194_304;

/** Signals that would leave processes suspended with nothing to resume them. */
const STOPPING_SIGNALS = new Set(["SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU"]);

const SELECTORS = ["name", "pattern", "pid"] as const;

/**
 * Resolves a signal given as a name (`SIGKILL`, `KILL`, `kill`) or number (`9`) to its name, using
 * this host's signal table. Returns undefined when it names no signal.
 */
export function resolveSignal(value: unknown): string | undefined {
  const table = constants.signals as Record<string, number>;
  if (typeof value === "number" || (typeof value === "string" && /^\d+$/.test(value.trim()))) {
    const n = Number(value);
    return Object.keys(table).find((name) => table[name] === n && name !== "SIGIOT" && name !== "SIGPOLL");
  }
  if (typeof value !== "string") return undefined;
  const upper = value.trim().toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  return Object.hasOwn(table, name) ? name : undefined;
}

function readText(reader: ParamReader, name: string): string | undefined {
  const raw = reader.raw(name);
  // `--param pattern=123` arrives as a number.
  if (typeof raw === "number") return String(raw);
  if (typeof raw !== "string" || raw === "") {
    reader.fail(name, `${JSON.stringify(raw)} is not a non-empty string`);
    return undefined;
  }
  return raw;
}

function parseSelector(reader: ParamReader): ProcessSelectorParams {
  const given = SELECTORS.filter((s) => reader.has(s));
  const result: ProcessSelectorParams = { maxProcesses: 100 };
  if (given.length === 0) {
    reader.fail("name", "is required: select processes with exactly one of name (exact process name), pattern (command-line regex) or pid");
  } else if (given.length > 1) {
    for (const s of given) reader.raw(s);
    reader.fail(given[1]!, `cannot be combined with ${given[0]}; select processes with exactly one of name, pattern or pid`);
  } else if (given[0] === "name") {
    const name = readText(reader, "name");
    if (name !== undefined && name.length > PROCESS_NAME_MAX) {
      reader.fail(
        "name",
        `${JSON.stringify(name)} is longer than ${PROCESS_NAME_MAX} characters, and Linux truncates process names (comm) to ${PROCESS_NAME_MAX}: ` +
          `use ${JSON.stringify(name.slice(0, PROCESS_NAME_MAX))}, or match the command line with pattern`,
      );
    } else if (name !== undefined) result.name = name;
  } else if (given[0] === "pattern") {
    const pattern = readText(reader, "pattern");
    if (pattern !== undefined) {
      try {
        compileProcessPattern(pattern);
        result.pattern = pattern;
      } catch (err) {
        if (!(err instanceof ProcessPatternError)) throw err;
        const shown = pattern.length > 60 ? `${JSON.stringify(pattern.slice(0, 60))}…` : JSON.stringify(pattern);
        reader.fail("pattern", `${shown} ${err.message}`);
      }
    }
  } else {
    const pid = reader.number("pid", { min: 1, max: PID_MAX, integer: true });
    if (pid === 1) reader.fail("pid", "1 is protected (init)");
    else if (pid !== undefined) result.pid = pid;
  }
  result.maxProcesses = reader.number("maxProcesses", { min: 1, max: MAX_PROCESSES, integer: true, default: 100 }) ?? 100;
  return result;
}

/** Reads process-kill parameters; problems are collected by the reader. */
export function parseProcessKillParams(reader: ParamReader): ProcessKillParams {
  const selector = parseSelector(reader);
  let signal = "SIGTERM";
  const rawSignal = reader.raw("signal");
  if (rawSignal !== undefined) {
    const resolved = resolveSignal(rawSignal);
    if (resolved === undefined) {
      reader.fail("signal", `${JSON.stringify(rawSignal)} is not a signal; use a name such as SIGTERM, SIGKILL, HUP, or a number such as 9`);
    } else if (STOPPING_SIGNALS.has(resolved)) {
      reader.fail("signal", `${resolved} would leave the processes suspended; use the process-stop fault, which resumes them on revert`);
    } else signal = resolved;
  }
  let repeatEveryMs: number | undefined;
  const rawRepeat = reader.raw("repeatEvery");
  if (rawRepeat !== undefined) {
    const ms = typeof rawRepeat === "number" ? rawRepeat : typeof rawRepeat === "string" ? parseDuration(rawRepeat) : undefined;
    if (ms === undefined || !Number.isFinite(ms)) {
      reader.fail("repeatEvery", `${JSON.stringify(rawRepeat)} is not a duration; use e.g. 500ms, 1s, 30s`);
    } else if (ms < MIN_REPEAT_EVERY_MS) {
      reader.fail("repeatEvery", `${ms}ms is shorter than the minimum ${MIN_REPEAT_EVERY_MS}ms`);
    } else repeatEveryMs = ms;
  }
  reader.rejectUnknown("process-kill", ["name", "pattern", "pid", "signal", "repeatEvery", "maxProcesses"]);
  return { ...selector, signal, ...(repeatEveryMs !== undefined ? { repeatEveryMs } : {}) };
}

/** Reads process-stop parameters; problems are collected by the reader. */
export function parseProcessStopParams(reader: ParamReader): ProcessStopParams {
  const selector = parseSelector(reader);
  if (reader.has("signal")) {
    reader.raw("signal");
    reader.fail("signal", "process-stop always sends SIGSTOP (and SIGCONT on revert); to send another signal use process-kill");
  }
  if (reader.has("repeatEvery")) {
    reader.raw("repeatEvery");
    reader.fail("repeatEvery", "process-stop stops the matching processes once; to keep killing respawns use process-kill");
  }
  reader.rejectUnknown("process-stop", ["name", "pattern", "pid", "maxProcesses"]);
  return selector;
}
