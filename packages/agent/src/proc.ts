/**
 * Readers for /proc: CPU time counters and process start times. Linux only.
 */
import { readFileSync } from "node:fs";

/** Cumulative CPU time counters (in clock ticks) of one CPU or the whole machine. */
export interface CpuTimes {
  busy: number;
  total: number;
}

/** CPU time counters from /proc/stat: `all` is the machine, `cpus[i]` is core i. */
export interface CpuSnapshot {
  all: CpuTimes;
  cpus: CpuTimes[];
}

function parseCpuLine(fields: string[]): CpuTimes {
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
  const n = fields.slice(0, 8).map(Number);
  const idle = (n[3] ?? 0) + (n[4] ?? 0);
  const total = n.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Reads the CPU counters of the machine and of every core from /proc/stat. */
export function readCpuSnapshot(statText = readFileSync("/proc/stat", "utf8")): CpuSnapshot {
  const cpus: CpuTimes[] = [];
  let all: CpuTimes = { busy: 0, total: 0 };
  for (const line of statText.split("\n")) {
    const match = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (!match) continue;
    const times = parseCpuLine(match[2]!.trim().split(/\s+/));
    if (match[1] === "") all = times;
    else cpus[Number(match[1])] = times;
  }
  return { all, cpus };
}

/** Busy percent (0-100) between two counter readings of the same CPU. */
export function busyPercent(before: CpuTimes, after: CpuTimes): number {
  const total = after.total - before.total;
  if (total <= 0) return 0;
  return Math.max(0, Math.min(100, ((after.busy - before.busy) / total) * 100));
}

/**
 * The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or
 * undefined when the process does not exist. A pid plus its start time names one process for good,
 * even after the pid is reused.
 */
export function readProcessStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may hold spaces and parentheses: parse after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const start = Number(rest[19]);
    return Number.isFinite(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the process identified by pid and start time is still alive (and not a zombie). */
export function isProcessAlive(pid: number, startTime: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[0] !== "Z" && Number(rest[19]) === startTime;
  } catch {
    return false;
  }
}

/** CPU time (user + system, clock ticks) used so far by one thread of this process. */
export function readThreadCpuTicks(tid: number, pid: number = process.pid): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, clock ticks) used so far by a whole process, threads included. */
export function readProcessCpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return undefined;
  }
}

/** Clock ticks per second (USER_HZ); 100 on every mainstream Linux build. */
export const CLOCK_TICKS_PER_SECOND = 100;
