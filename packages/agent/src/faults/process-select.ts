/**
 * Process selection shared by process-kill and process-stop: reads /proc, matches by exact name,
 * command-line regex or pid, never selects what must not be signalled, and signals a process only
 * if its pid still belongs to the same process (pid + start time).
 */
import { readdirSync, readFileSync } from "node:fs";
import { InvalidFaultRequestError } from "@firedrill/protocol";
import type { FaultParamsByKind } from "@firedrill/protocol";
import { readProcessStartTime } from "../proc.js";

/** Which processes to act on (the parsed selector parameters). */
export type ProcessSelector = Pick<FaultParamsByKind["process-stop"], "name" | "pattern" | "pid" | "maxProcesses">;

/** One process for good: pid plus start time (clock ticks since boot), safe against pid reuse. */
export interface ProcessRef {
  pid: number;
  startTime: number;
}

/** What selection knows about a process. */
export interface ProcessInfo extends ProcessRef {
  /** The process name, as in /proc/PID/comm (field 2 of /proc/PID/stat is the same value). */
  comm: string;
  /** /proc/PID/cmdline with its NUL separators as spaces; empty for kernel threads and zombies. */
  cmdline: string;
  ppid: number;
  /** State letter from /proc/PID/stat: R, S, D, T, t, Z... */
  state: string;
}

/** Why a matching process was left alone. */
export interface SkippedProcess {
  process: ProcessInfo;
  reason: string;
}

/** The result of a selection. */
export interface Selection {
  selected: ProcessInfo[];
  /** Processes that matched but must never be signalled. */
  skipped: SkippedProcess[];
}

/** kthreadd: the parent of every kernel thread. */
const KTHREADD_PID = 2;

/** Reads one process from /proc, or undefined when it is gone. */
export function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const rest = stat.slice(close + 2).split(" ");
    const startTime = Number(rest[19]);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0+$/, "").replaceAll("\0", " ");
    return { pid, startTime, comm: stat.slice(open + 1, close), cmdline, ppid: Number(rest[1]), state: rest[0] ?? "?" };
  } catch {
    return undefined;
  }
}

/** Every process on the host (thread-group leaders), read from /proc. */
export function listProcesses(): ProcessInfo[] {
  const result: ProcessInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readProcess(Number(entry));
    if (info) result.push(info);
  }
  return result;
}

/** Describes a selector for messages: `name "nginx"`, `pattern /worker/`, `pid 4242`. */
export function describeSelector(selector: ProcessSelector): string {
  if (selector.name !== undefined) return `name ${JSON.stringify(selector.name)}`;
  if (selector.pattern !== undefined) return `pattern /${selector.pattern}/`;
  return `pid ${selector.pid}`;
}

/** The parameter a selector was given as, for error fields. */
export function selectorField(selector: ProcessSelector): string {
  return selector.name !== undefined ? "params.name" : selector.pattern !== undefined ? "params.pattern" : "params.pid";
}

function matches(selector: ProcessSelector, regex: RegExp | undefined, p: ProcessInfo): boolean {
  if (selector.name !== undefined) return p.comm === selector.name;
  if (regex) return regex.test(p.cmdline);
  return p.pid === selector.pid;
}

/** Why a process must never be signalled, or undefined when it may be. */
export function protectionReason(p: ProcessInfo, protectedPids: readonly number[]): string | undefined {
  if (p.pid === 1) return "init";
  if (p.pid === KTHREADD_PID || p.ppid === KTHREADD_PID) return "a kernel thread";
  if (protectedPids.includes(p.pid)) return "the firedrill agent, its guard or its parent";
  if (p.cmdline === "") return "a kernel thread";
  return undefined;
}

/**
 * Selects the processes matching `selector` among `processes`, setting aside PID 1, kernel
 * threads and `protectedPids`. Zombies are not processes any more and never match.
 */
export function selectProcesses(
  selector: ProcessSelector,
  protectedPids: readonly number[],
  processes: readonly ProcessInfo[] = listProcesses(),
): Selection {
  const regex = selector.pattern !== undefined ? new RegExp(selector.pattern) : undefined;
  const selection: Selection = { selected: [], skipped: [] };
  for (const p of processes) {
    // Zombies are dead already, waiting for their parent to reap them: nothing to signal.
    if (p.state === "Z" || !matches(selector, regex, p)) continue;
    const reason = protectionReason(p, protectedPids);
    if (reason) selection.skipped.push({ process: p, reason });
    else selection.selected.push(p);
  }
  return selection;
}

function refuse(field: string, message: string): never {
  throw new InvalidFaultRequestError([{ field, message }]);
}

/**
 * Checks a selection before acting: something must match (unless `allowNone`), the matches may not
 * all be off limits, and no more than maxProcesses may match.
 * Thrown when it fails: InvalidFaultRequestError naming the selector field.
 */
export function checkSelection(
  selector: ProcessSelector,
  selection: Selection,
  opts: { allowNone: boolean; noneHint: string },
): void {
  const field = selectorField(selector);
  const what = describeSelector(selector);
  if (selection.selected.length === 0 && selection.skipped.length > 0) {
    const list = selection.skipped.map((s) => `${s.process.pid} (${s.process.comm}: ${s.reason})`).join(", ");
    if (selector.pid === 1) refuse(field, "1 is protected (init)");
    if (selector.pid !== undefined) refuse(field, `${selector.pid} is protected (${selection.skipped[0]!.reason})`);
    refuse(field, `only processes that are off limits match ${what}, and they are never signalled: ${list}`);
  }
  if (selection.selected.length === 0 && !opts.allowNone) {
    refuse(field, `no process matches ${what}; ${opts.noneHint}`);
  }
  if (selection.selected.length > selector.maxProcesses) {
    refuse(
      field,
      `${selection.selected.length} processes match ${what}, more than maxProcesses ${selector.maxProcesses}; ` +
        "narrow the selection, or raise maxProcesses if that many is really meant",
    );
  }
}

/** The key of a process for sets: `pid@startTime`. */
export function processKey(p: ProcessRef): string {
  return `${p.pid}@${p.startTime}`;
}

/**
 * Sends `signal` to the process only if its pid still has the recorded start time (so a reused pid
 * is never hit). Returns true when delivered, false when the process is gone or the pid now belongs
 * to another process. The remaining window between the check and kill(2) is microseconds; a pid
 * cannot be reused within it unless the whole pid space wraps.
 */
export function signalProcess(
  ref: ProcessRef,
  signal: NodeJS.Signals,
  readStartTime: (pid: number) => number | undefined = readProcessStartTime,
): boolean {
  if (readStartTime(ref.pid) !== ref.startTime) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}
