/**
 * CPU measurements for tests, straight from /proc: the whole machine (/proc/stat) and one process
 * with all its threads (/proc/PID/stat).
 */
import { readdirSync, readFileSync } from "node:fs";
import { CLOCK_TICKS_PER_SECOND, busyPercent, readCpuSnapshot, readProcessCpuTicks } from "@firedrill/agent";
import { sleep } from "./processes.js";

/** Machine-wide busy percent over `ms` (100 = every core busy). */
export async function machineCpu(ms: number): Promise<number> {
  const before = readCpuSnapshot();
  await sleep(ms);
  return busyPercent(before.all, readCpuSnapshot().all);
}

/** CPU used by process `pid` (all threads) over `ms`, in percent of one core. */
export async function processCpu(pid: number, ms: number): Promise<number> {
  const before = readProcessCpuTicks(pid) ?? 0;
  const t0 = performance.now();
  await sleep(ms);
  const after = readProcessCpuTicks(pid) ?? before;
  return ((after - before) / CLOCK_TICKS_PER_SECOND / ((performance.now() - t0) / 1000)) * 100;
}

/** The burner threads (named fd-cpu-burn) of process `pid`. */
export function burnerThreads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .filter((tid) => {
        try {
          return readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim() === "fd-cpu-burn";
        } catch {
          return false;
        }
      })
      .map(Number);
  } catch {
    return [];
  }
}
