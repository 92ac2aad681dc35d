/**
 * Process selection shared by process-kill and process-stop: reads /proc, matches by exact name,
 * command-line pattern (RE2: linear time, on the first 4 KiB of each command line) or pid, never
 * selects what must not be signalled (see process-protection.ts), and signals a process only if its
 * pid still belongs to the same process (pid + start time).
 *
 * Selection runs on the agent's event loop, so its work is bounded: each match is linear in a
 * command line of at most 4 KiB with a program of bounded size, and a selection that still spends
 * longer than {@link SELECTION_BUDGET_MS} matching (a host with very many long command lines) is
 * refused. Reading /proc costs a few syscalls per process, whatever the pattern.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { CMDLINE_MATCH_BYTES, InvalidFaultRequestError, MAX_PROCESSES, compileProcessPattern } from "@firedrill/protocol";
import type { FaultParamsByKind } from "@firedrill/protocol";
import { createProtection } from "./process-protection.js";
import type { ProcessRef } from "./process-signal.js";
import type { FaultPreviewResult, HostInfo } from "./types.js";

export { signalProcess } from "./process-signal.js";
export type { ProcessRef } from "./process-signal.js";

/** Which processes to act on (the parsed selector parameters). */
export type ProcessSelector = Pick<FaultParamsByKind["process-stop"], "name" | "pattern" | "pid" | "maxProcesses">;

/** What selection needs from the host: who is protected. */
export type ProtectionHost = Pick<HostInfo, "protectedPids" | "processProtection">;


/** What selection knows about a process. */
export interface ProcessInfo extends ProcessRef {
  /** The process name, as in /proc/PID/comm (field 2 of /proc/PID/stat is the same value). */
  comm: string;
  /**
   * The first 4 KiB of /proc/PID/cmdline with its NUL separators as spaces; empty for kernel
   * threads and zombies.
   */
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
/** The longest a selection may spend matching patterns on the event loop before it is refused. */
export const SELECTION_BUDGET_MS = 500;
/** How many processes a refusal or a preview names. */
const NAMED_IN_MESSAGES = 10;

interface Stat {
  comm: string;
  ppid: number;
  state: string;
  startTime: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const rest = stat.slice(close + 2).split(" ");
    return { comm: stat.slice(open + 1, close), ppid: Number(rest[1]), state: rest[0] ?? "?", startTime: Number(rest[19]) };
  } catch {
    return undefined;
  }
}

const cmdlineBuffer = Buffer.alloc(CMDLINE_MATCH_BYTES);

/** The first 4 KiB of a command line, NULs as spaces; undefined when the process is gone. */
function readCmdline(pid: number): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(`/proc/${pid}/cmdline`, "r");
    let length = 0;
    while (length < cmdlineBuffer.length) {
      const n = readSync(fd, cmdlineBuffer, length, cmdlineBuffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return cmdlineBuffer.toString("utf8", 0, length).replace(/\0+$/, "").replaceAll("\0", " ");
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Reads one process from /proc, or undefined when it is gone. */
export function readProcess(pid: number): ProcessInfo | undefined {
  const stat = readStat(pid);
  const cmdline = stat && readCmdline(pid);
  return stat && cmdline !== undefined ? { pid, ...stat, cmdline } : undefined;
}

function procPids(): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
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

function refuse(field: string, message: string): never {
  throw new InvalidFaultRequestError([{ field, message }]);
}

/**
 * Why a process must never be signalled, or undefined when it may be: PID 1, kernel threads, the
 * agent, its guard and its parent (`protectedPids`), then the built-in and local protections.
 */
function protectionReason(
  p: ProcessInfo,
  protectedPids: readonly number[],
  protect: (p: ProcessInfo) => string | undefined = () => undefined,
): string | undefined {
  if (p.pid === 1) return "init";
  if (p.pid === KTHREADD_PID || p.ppid === KTHREADD_PID) return "a kernel thread";
  if (protectedPids.includes(p.pid)) return "the firedrill agent, its guard or its parent";
  if (p.cmdline === "") return "a kernel thread";
  return protect(p);
}

/** Options of {@link selectProcesses}. */
export interface SelectOptions {
  /** A process table to select from instead of /proc (tests). */
  processes?: readonly ProcessInfo[];
  /** Refuse when the selection takes longer than this. @default SELECTION_BUDGET_MS */
  budgetMs?: number;
}

/**
 * Selects the processes matching `selector`, setting aside PID 1, kernel threads and every
 * protected process (with the reason). Zombies are not processes any more and never match.
 * Thrown when it takes longer than the budget: InvalidFaultRequestError naming the selector field.
 */
export function selectProcesses(selector: ProcessSelector, host: ProtectionHost, options: SelectOptions = {}): Selection {
  const budgetMs = options.budgetMs ?? SELECTION_BUDGET_MS;
  const compiled = selector.pattern !== undefined ? compileProcessPattern(selector.pattern) : undefined;
  // Matching time is what a pattern controls: it is metered, and refused past the budget.
  let matchingMs = 0;
  const pattern = compiled && {
    test(text: string): boolean {
      const t0 = performance.now();
      const matched = compiled.test(text);
      matchingMs += performance.now() - t0;
      return matched;
    },
  };
  const protectedPids = host.protectedPids();
  const protect = createProtection(host.processProtection);
  const selection: Selection = { selected: [], skipped: [] };
  const consider = (p: ProcessInfo) => {
    // Zombies are dead already, waiting for their parent to reap them: nothing to signal.
    if (p.state === "Z") return;
    const reason = protectionReason(p, protectedPids, protect);
    if (reason) selection.skipped.push({ process: p, reason });
    else selection.selected.push(p);
  };
  const matchesTable = (p: ProcessInfo) =>
    selector.name !== undefined ? p.comm === selector.name : pattern ? pattern.test(p.cmdline) : p.pid === selector.pid;

  const candidates: readonly (number | ProcessInfo)[] =
    options.processes ?? (selector.pid !== undefined ? [selector.pid] : procPids());
  let checked = 0;
  for (const candidate of candidates) {
    if (++checked > 1 && matchingMs > budgetMs) {
      refuse(
        selectorField(selector),
        `matching ${describeSelector(selector)} took longer than ${budgetMs}ms on this host ` +
          `(${checked - 1} of ${candidates.length} processes checked); use a shorter, more literal pattern, or select by name or pid`,
      );
    }
    if (typeof candidate !== "number") {
      if (matchesTable(candidate)) consider(candidate);
      continue;
    }
    const pid = candidate;
    if (selector.name !== undefined) {
      // By name: the cheap stat first, the command line only for matches.
      const stat = readStat(pid);
      if (stat?.comm !== selector.name) continue;
      const cmdline = readCmdline(pid);
      if (cmdline !== undefined) consider({ pid, ...stat, cmdline });
    } else if (pattern) {
      const cmdline = readCmdline(pid);
      if (cmdline === undefined || !pattern.test(cmdline)) continue;
      const stat = readStat(pid);
      if (stat) consider({ pid, ...stat, cmdline });
    } else {
      const p = readProcess(pid);
      if (p) consider(p);
    }
  }
  return selection;
}

/** `4242 (nginx)`, the way messages name processes. */
function nameProcess(p: ProcessInfo): string {
  return `${p.pid} (${p.comm})`;
}

/** The first few of a list, then how many more. */
function firstFew<T>(items: readonly T[], show: (item: T) => string): string {
  const shown = items.slice(0, NAMED_IN_MESSAGES).map(show).join(", ");
  return items.length > NAMED_IN_MESSAGES ? `${shown}, … (${items.length - NAMED_IN_MESSAGES} more)` : shown;
}

/**
 * Checks a selection before acting: something must match (unless `allowNone`), the matches may not
 * all be off limits, and no more than maxProcesses may match (refused, never truncated).
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
    if (selector.pid === 1) refuse(field, "1 is protected (init)");
    if (selector.pid !== undefined) refuse(field, `${selector.pid} is protected (${selection.skipped[0]!.reason})`);
    const list = firstFew(selection.skipped, (s) => `${s.process.pid} (${s.process.comm}: ${s.reason})`);
    refuse(field, `only processes that are off limits match ${what}, and they are never signalled: ${list}`);
  }
  if (selection.selected.length === 0 && !opts.allowNone) {
    refuse(field, `no process matches ${what}; ${opts.noneHint}`);
  }
  if (selection.selected.length > selector.maxProcesses) {
    const skipped = selection.skipped.length > 0 ? ` (besides ${selection.skipped.length} protected, never signalled)` : "";
    refuse(
      field,
      `${selection.selected.length} processes match ${what}${skipped}, more than maxProcesses ${selector.maxProcesses}: ` +
        `${firstFew(selection.selected, nameProcess)}; narrow the selection, or raise maxProcesses (at most ${MAX_PROCESSES}) if that many is really meant`,
    );
  }
}

/** One line per protected match, for a fault's details and its preview. */
export function skippedDetails(selection: Selection): string[] {
  const lines = selection.skipped
    .slice(0, NAMED_IN_MESSAGES)
    .map((s) => `leaves alone ${nameProcess(s.process)}: ${s.reason}`);
  if (selection.skipped.length > NAMED_IN_MESSAGES) {
    lines.push(`leaves alone ${selection.skipped.length - NAMED_IN_MESSAGES} more protected processes`);
  }
  return lines;
}

/** Longest command line a preview shows. */
const PREVIEW_CMDLINE = 200;
/** Most processes a preview lists. */
const PREVIEW_PROCESSES = 50;

/** A preview of a checked selection: the processes it would act on, and what it leaves alone. */
export function previewSelection(selection: Selection, summary: string): FaultPreviewResult {
  return {
    details: [summary, ...skippedDetails(selection)],
    processes: selection.selected.slice(0, PREVIEW_PROCESSES).map((p) => ({
      pid: p.pid,
      name: p.comm,
      cmdline: p.cmdline.length > PREVIEW_CMDLINE ? `${p.cmdline.slice(0, PREVIEW_CMDLINE - 1)}…` : p.cmdline,
    })),
    matched: selection.selected.length,
  };
}

/** The key of a process for sets: `pid@startTime`. */
export function processKey(p: ProcessRef): string {
  return `${p.pid}@${p.startTime}`;
}
