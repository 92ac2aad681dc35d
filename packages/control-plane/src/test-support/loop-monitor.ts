/**
 * Test and bench support (not part of the package's build): how long this process's event loop
 * was held, measured four ways while a workload runs.
 *
 * - `wall`: `perf_hooks.monitorEventLoopDelay`, the delay of a timer in wall time. On a machine
 *   shared with other busy processes this includes time the thread was runnable but not running.
 * - `cpu`: the CPU time the main thread spent between two ticks of a 1 ms timer, from the
 *   kernel's per-thread accounting (`/proc/self/task/<pid>/schedstat`, updated at least every
 *   scheduler tick). That is the longest stretch of work on the loop (every callback run between
 *   two ticks, and the garbage collector's pauses), and it does not grow when other processes
 *   take the cores.
 * - `handlers`: the same without the garbage collector's pauses (`gc` performance entries). A
 *   collector pause depends on the heap and on whether V8's helper threads get a core.
 * - `callback`: the longest single synchronous run of one callback or promise continuation (one
 *   stretch of a handler between two awaits), CPU time from `async_hooks` before/after. This is
 *   the handler's own synchronous time: it does not add up callbacks that happened to run in the
 *   same loop turn, nor the collector's pauses. Its resolution is the scheduler tick (4 ms here).
 */
import { createHook } from "node:async_hooks";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";

/** What a {@link LoopMonitor} saw. */
export interface LoopReport {
  /** Longest timer delay (wall time), ms. */
  wallMaxMs: number;
  /** 99th percentile of the timer delay (wall time), ms. */
  wallP99Ms: number;
  /** Most CPU time of the main thread between two ticks, ms; undefined without schedstat. */
  cpuMaxMs: number | undefined;
  /** As {@link cpuMaxMs}, without the collector's pauses in that stretch, ms. */
  handlerMaxMs: number | undefined;
  /** Longest synchronous run of one callback or promise continuation (CPU), ms; undefined without schedstat. */
  callbackMaxMs: number | undefined;
  /** Longest garbage-collector pause (wall), ms. */
  gcMaxMs: number;
  /** Ticks observed. */
  ticks: number;
}

/** A running measurement. */
export interface LoopMonitor {
  stop(): LoopReport;
}

const SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;

/** CPU time of the main thread, ns (undefined when the kernel does not keep it). */
function threadCpuNs(): number | undefined {
  try {
    return Number(readFileSync(SCHEDSTAT, "utf8").split(" ")[0]);
  } catch {
    return undefined;
  }
}

/** Starts measuring; call from the main thread. */
export function startLoopMonitor(): LoopMonitor {
  // Per callback: CPU at the outermost before/after, read from an open descriptor (a few µs).
  let fd: number | undefined;
  try {
    fd = openSync(SCHEDSTAT, "r");
  } catch {
    fd = undefined;
  }
  const buffer = Buffer.alloc(128);
  const cpuNow = (): number => {
    const n = readSync(fd!, buffer, 0, buffer.length, 0);
    return Number(buffer.toString("latin1", 0, n).split(" ")[0]);
  };
  let depth = 0;
  let enteredAt = 0;
  let callbackMaxNs = 0;
  const hook = createHook({
    before() {
      if (depth === 0) enteredAt = cpuNow();
      depth++;
    },
    after() {
      // The callback that enables the hook ends without a before: not counted.
      if (depth === 0) return;
      depth--;
      if (depth === 0) callbackMaxNs = Math.max(callbackMaxNs, cpuNow() - enteredAt);
    },
  });
  if (fd !== undefined) hook.enable();
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  const gcs: { start: number; end: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcs.push({ start: entry.startTime, end: entry.startTime + entry.duration });
  });
  observer.observe({ entryTypes: ["gc"] });
  const times: number[] = [performance.now()];
  const cpu: (number | undefined)[] = [threadCpuNs()];
  const tick = () => {
    times.push(performance.now());
    cpu.push(threadCpuNs());
  };
  const timer = setInterval(tick, 1);
  return {
    stop() {
      hook.disable();
      if (fd !== undefined) closeSync(fd);
      clearInterval(timer);
      tick();
      histogram.disable();
      // Entries still queued for the observer's callback.
      for (const entry of observer.takeRecords?.() ?? []) gcs.push({ start: entry.startTime, end: entry.startTime + entry.duration });
      observer.disconnect();
      let cpuMax: number | undefined;
      let handlerMax: number | undefined;
      for (let i = 1; i < times.length; i++) {
        const before = cpu[i - 1];
        const after = cpu[i];
        if (before === undefined || after === undefined) continue;
        const ms = (after - before) / 1e6;
        const from = times[i - 1]!;
        const to = times[i]!;
        const inGc = gcs.reduce((sum, gc) => sum + Math.max(0, Math.min(to, gc.end) - Math.max(from, gc.start)), 0);
        cpuMax = Math.max(cpuMax ?? 0, ms);
        handlerMax = Math.max(handlerMax ?? 0, ms - inGc);
      }
      return {
        wallMaxMs: histogram.max / 1e6,
        wallP99Ms: histogram.percentile(99) / 1e6,
        cpuMaxMs: cpuMax,
        handlerMaxMs: handlerMax,
        callbackMaxMs: fd === undefined ? undefined : callbackMaxNs / 1e6,
        gcMaxMs: gcs.reduce((max, gc) => Math.max(max, gc.end - gc.start), 0),
        ticks: times.length - 1,
      };
    },
  };
}
