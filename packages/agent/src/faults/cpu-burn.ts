/**
 * cpu-burn: keeps `load` percent of each of `cores` CPUs busy (a per-core duty cycle, additive to
 * the host's own load, like stress-ng --cpu-load).
 *
 * The burners are worker threads of the agent process, each pinned to one core with taskset, so
 * they cannot outlive the agent: a SIGKILLed agent takes its burn with it.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { Worker } from "node:worker_threads";
import { InvalidFaultRequestError, parseFaultParams, plural } from "@firedrill/protocol";
import type { CpuBurnParams, JsonObject } from "@firedrill/protocol";
import { CLOCK_TICKS_PER_SECOND, busyPercent, readCpuSnapshot, readThreadCpuTicks } from "../proc.js";
import type { CpuSnapshot } from "../proc.js";
import { revertCpuBurnRecord } from "./cpu-burn-revert.js";
import type { FaultContext, FaultKindDefinition, HostInfo, RunningFault } from "./types.js";

const execFileAsync = promisify(execFile);

/** Duty-cycle period: short enough to look smooth to a 1 s sampler, long enough to be cheap. */
const PERIOD_MS = 100;

/**
 * Most burner threads on one core across stacked cpu-burns. Each burner is a worker thread (its own
 * V8 isolate, ~10-20 MB): stacking burns without a bound grows the agent without adding load a core
 * can take (two burners at 100% already saturate it).
 */
export const MAX_BURNERS_PER_CORE = 2;

/** The burns running in this process, by fault id: what each core carries. */
const running = new Map<string, { cores: number[]; load: number }>();

/** Burns (fault id, load) running on each of `cores` that are already full. */
function fullCores(cores: number[]): { core: number; burns: string[] }[] {
  const full: { core: number; burns: string[] }[] = [];
  for (const core of cores) {
    const burns = [...running].filter(([, b]) => b.cores.includes(core));
    if (burns.length >= MAX_BURNERS_PER_CORE) {
      full.push({ core, burns: burns.map(([id, b]) => `${id} (load ${b.load}% on ${describeCores(b.cores)})`) });
    }
  }
  return full;
}

function describeCores(cores: number[]): string {
  if (cores.length === 1) return `core ${cores[0]}`;
  return `cores ${cores[0]}-${cores[cores.length - 1]}`;
}

/** The refusal of a burn that would put a third burner on a core. */
function refuseFull(full: { core: number; burns: string[] }[]): InvalidFaultRequestError {
  const first = full[0]!;
  const cores = full.map((f) => f.core).join(", ");
  return new InvalidFaultRequestError([
    {
      field: "params.cores",
      message:
        `${full.length === 1 ? `core ${cores} already runs` : `cores ${cores} already run`} ${MAX_BURNERS_PER_CORE} burner threads, the most per core ` +
        `(core ${first.core}: cpu-burn ${first.burns.join(", ")}); stop one of those burns first, or stop it and start one burn with the higher load instead of stacking`,
    },
  ]);
}

/**
 * The burner: spins for load% of each period and sleeps the rest on an Atomics.wait, so a stop
 * request (flag set + notify) ends it within microseconds. Plain JS, evaluated in the worker, so it
 * needs no TypeScript loader.
 */
const BURNER_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const { readlinkSync, writeFileSync } = require("node:fs");
const flag = new Int32Array(workerData.control);
let tid = 0;
try { tid = Number(readlinkSync("/proc/thread-self").split("/").pop()); } catch {}
// Named so that top -H and ps -L show what this thread is.
try { writeFileSync("/proc/thread-self/comm", "fd-cpu-burn"); } catch {}
parentPort.postMessage({ tid });
const busyMs = (workerData.periodMs * workerData.load) / 100;
// Periods on a fixed cadence: a wake-up the scheduler delays shortens that period's spin instead of
// lengthening the period, so the thread wants the CPU load% of the time however busy the machine is.
let next = performance.now();
while (Atomics.load(flag, 0) === 0) {
  const busyUntil = next + busyMs;
  while (performance.now() < busyUntil && Atomics.load(flag, 0) === 0) {}
  next += workerData.periodMs;
  const now = performance.now();
  // Preempted past a whole period: start afresh rather than burn to catch up.
  if (next < now) next = now;
  if (next > now) Atomics.wait(flag, 0, 0, next - now);
}
`;

/** Validated cpu-burn parameters with the core list resolved for this host. */
export interface CpuBurnPlan extends CpuBurnParams {
  coreList: number[];
}

interface Burner {
  worker: Worker;
  core: number;
  tid: number;
  pinned: boolean;
  exited: Promise<void>;
}

function validate(params: JsonObject, host: HostInfo): CpuBurnPlan {
  const parsed = parseFaultParams("cpu-burn", params);
  const count = parsed.cores === "all" ? host.cpuCount : parsed.cores;
  if (count > host.cpuCount) {
    throw new InvalidFaultRequestError([
      {
        field: "params.cores",
        message: `${count} is more than the ${plural(host.cpuCount, "CPU")} of this host; use at most ${host.cpuCount}, or "all"`,
      },
    ]);
  }
  const coreList = Array.from({ length: count }, (_, i) => i);
  const full = fullCores(coreList);
  if (full.length > 0) throw refuseFull(full);
  return { ...parsed, coreList };
}

async function startBurner(core: number, load: number, control: SharedArrayBuffer, ctx: FaultContext): Promise<Burner> {
  const worker = new Worker(BURNER_SOURCE, {
    eval: true,
    execArgv: [],
    workerData: { control, load, periodMs: PERIOD_MS },
    name: `firedrill-cpu-burn-${core}`,
  });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const tid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`burner for core ${core} did not start within 5s`)), 5000);
    worker.once("message", (msg: { tid: number }) => {
      clearTimeout(timer);
      resolve(msg.tid);
    });
    worker.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  let pinned = false;
  if (tid > 0) {
    try {
      await execFileAsync("taskset", ["-p", "-c", String(core), String(tid)], { timeout: 5000 });
      pinned = true;
    } catch (err) {
      ctx.log.warn({ err, core, tid }, "could not pin burner thread to its core; it burns unpinned");
    }
  }
  return { worker, core, tid, pinned, exited };
}

async function stopBurners(burners: Burner[], control: SharedArrayBuffer): Promise<void> {
  const flag = new Int32Array(control);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  await Promise.all(
    burners.map(async (b) => {
      const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 1000).unref());
      if ((await Promise.race([b.exited, timeout])) === "timeout") await b.worker.terminate();
      // The worker's exit event fires before its OS thread is joined: confirm the thread is gone.
      for (let i = 0; i < 200 && b.tid > 0 && existsSync(`/proc/self/task/${b.tid}`); i++) await sleep(10);
    }),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Scheduler times of one thread of this process from /proc/self/task/TID/schedstat, in ns: time
 * on a CPU, and time runnable but waiting for one (run queue).
 */
export function readThreadSchedstat(tid: number, pid: number | "self" = "self"): { onCpuNs: number; waitNs: number } | undefined {
  try {
    const [onCpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
    return onCpu !== undefined && wait !== undefined && Number.isFinite(onCpu) && Number.isFinite(wait) ? { onCpuNs: onCpu, waitNs: wait } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The duty cycle a thread applied between two schedstat readings `wallMs` apart: the percent of the
 * time it wanted a CPU (ran, or was runnable and waited for one), whatever share the machine could
 * give it. What the burner controls; the CPU it actually got depends on everything else running.
 */
export function dutyPercent(
  before: { onCpuNs: number; waitNs: number },
  after: { onCpuNs: number; waitNs: number },
  wallMs: number,
): number {
  if (wallMs <= 0) return 0;
  const wanted = after.onCpuNs - before.onCpuNs + (after.waitNs - before.waitNs);
  return Math.max(0, Math.min(100, (wanted / 1e6 / wallMs) * 100));
}

function measureFrom(burners: Burner[], plan: CpuBurnPlan) {
  let snapshot: CpuSnapshot = readCpuSnapshot();
  let at = performance.now();
  let ticks = burners.map((b) => readThreadCpuTicks(b.tid) ?? 0);
  let sched = burners.map((b) => readThreadSchedstat(b.tid));
  return (): Record<string, number> => {
    const now = readCpuSnapshot();
    const nowAt = performance.now();
    const nowTicks = burners.map((b) => readThreadCpuTicks(b.tid) ?? 0);
    const nowSched = burners.map((b) => readThreadSchedstat(b.tid));
    const duties = burners
      .map((_, i) => {
        const before = sched[i];
        const after = nowSched[i];
        return before && after ? dutyPercent(before, after, nowAt - at) : undefined;
      })
      .filter((d): d is number => d !== undefined);
    const seconds = (nowAt - at) / 1000;
    const perCore = plan.coreList.map((core) => {
      const before = snapshot.cpus[core];
      const after = now.cpus[core];
      return before && after ? busyPercent(before, after) : 0;
    });
    const burnerPercent =
      seconds > 0
        ? nowTicks.reduce((sum, t, i) => sum + (t - (ticks[i] ?? 0)), 0) / CLOCK_TICKS_PER_SECOND / seconds / burners.length * 100
        : 0;
    const result: Record<string, number> = {
      load_asked: plan.load,
      cores: plan.coreList.length,
      // Busy percent of the selected cores (all work on them, the burn included).
      cpu_percent_selected: round(perCore.reduce((a, b) => a + b, 0) / Math.max(1, perCore.length)),
      // Busy percent of the whole machine.
      cpu_percent_machine: round(busyPercent(snapshot.all, now.all)),
      // Percent of a core each burner thread itself used: the burn as delivered.
      burner_percent: round(Math.min(100, burnerPercent)),
      // Percent of the time each burner wanted a CPU (on it, or waiting in the run queue): the duty
      // cycle it applied, independent of how busy the machine is (from /proc/self/task/TID/schedstat).
      ...(duties.length > 0 ? { duty_percent: round(duties.reduce((a, b) => a + b, 0) / duties.length) } : {}),
      pinned: burners.every((b) => b.pinned) ? 1 : 0,
    };
    plan.coreList.forEach((core, i) => {
      result[`cpu${core}_percent`] = round(perCore[i] ?? 0);
    });
    snapshot = now;
    at = nowAt;
    ticks = nowTicks;
    sched = nowSched;
    return result;
  };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** The cpu-burn fault kind. */
export const cpuBurn: FaultKindDefinition<CpuBurnPlan> = {
  kind: "cpu-burn",
  validate,
  planRevert(plan) {
    // Nothing outside the agent process to undo: the burner threads die with it. The record
    // still exists so that recovery reports the fault as ended.
    return { cores: plan.coreList };
  },
  async start(plan, ctx): Promise<RunningFault> {
    // Checked again and taken before the first await: two starts cannot both take the last slot.
    const full = fullCores(plan.coreList);
    if (full.length > 0) throw refuseFull(full);
    running.set(ctx.faultId, { cores: plan.coreList, load: plan.load });
    const control = new SharedArrayBuffer(4);
    const burners: Burner[] = [];
    try {
      for (const core of plan.coreList) burners.push(await startBurner(core, plan.load, control, ctx));
    } catch (err) {
      await stopBurners(burners, control);
      running.delete(ctx.faultId);
      throw err;
    }
    ctx.log.info({ cores: plan.coreList, load: plan.load, tids: burners.map((b) => b.tid) }, "cpu burn running");
    const measure = measureFrom(burners, plan);
    let stopped: Promise<void> | undefined;
    return {
      measure,
      revert() {
        stopped ??= stopBurners(burners, control).then(() => {
          running.delete(ctx.faultId);
        });
        return stopped;
      },
    };
  },
  revertRecord: revertCpuBurnRecord,
};
