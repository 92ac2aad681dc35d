import { readdirSync, readFileSync } from "node:fs";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { readThreadCpuTicks } from "../proc.js";
import { MAX_BURNERS_PER_CORE, cpuBurn, dutyPercent, readThreadSchedstat } from "./cpu-burn.js";

const log = pino({ level: "silent" });
const ctx = { faultId: "t", log, host: { cpuCount: 2, stateDir: "/tmp", protectedPids: () => [process.pid], networkExclusions: [] }, updateRevert: () => {} };

function burnerTids(): number[] {
  return readdirSync(`/proc/${process.pid}/task`)
    .filter((tid) => {
      try {
        return readFileSync(`/proc/${process.pid}/task/${tid}/comm`, "utf8").trim() === "fd-cpu-burn";
      } catch {
        return false;
      }
    })
    .map(Number);
}

function burnerThreads(): string[] {
  return readdirSync(`/proc/${process.pid}/task`)
    .map((tid) => readFileSync(`/proc/${process.pid}/task/${tid}/comm`, "utf8").trim())
    .filter((name) => name.includes("cpu-burn"));
}

/** How many times a thread of this process gave up its CPU on its own (slept). */
function voluntarySwitches(tid: number): number {
  return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${process.pid}/task/${tid}/status`, "utf8"))?.[1] ?? NaN);
}

/** The allowed `cpu` list of a thread (taskset's view), e.g. "0". */
function allowedCpus(tid: number): string {
  const line = readFileSync(`/proc/${process.pid}/task/${tid}/status`, "utf8").split("\n").find((l) => l.startsWith("Cpus_allowed_list:"));
  return line?.split(":")[1]?.trim() ?? "";
}

describe("cpu-burn", () => {
  // What the burner controls is its duty cycle: it wants a CPU `load`% of each period and sleeps the
  // rest. How much CPU it then gets depends on the rest of the machine (`pnpm bench burn` measures
  // that). A busy machine can only make it look *more* demanding (a late wake-up or a preemption
  // keeps it runnable past its plan), never less: so the duty has a floor, and the sleeping is
  // checked by itself.
  it("applies the asked duty cycle on a pinned thread (whatever the machine's load), and stops on revert", async () => {
    const plan = cpuBurn.validate({ load: 60, cores: 1 }, ctx.host);
    expect(plan.coreList).toEqual([0]);
    const running = await cpuBurn.start(plan, ctx);
    try {
      const [tid] = burnerTids();
      expect(tid).toBeDefined();
      expect(allowedCpus(tid!)).toBe("0");
      await new Promise((r) => setTimeout(r, 300));
      running.measure!();
      const before = readThreadSchedstat(tid!)!;
      const ticksBefore = readThreadCpuTicks(tid!)!;
      const sleptBefore = voluntarySwitches(tid!);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 2000));
      const duty = dutyPercent(before, readThreadSchedstat(tid!)!, performance.now() - t0);
      const slept = voluntarySwitches(tid!) - sleptBefore;
      const m = running.measure!();
      expect(m.pinned).toBe(1);
      // On a CPU or waiting for one at least 60% of the time (kernel schedstat, not a CPU share)...
      expect(duty).toBeGreaterThan(50);
      expect(m.duty_percent).toBeGreaterThan(50);
      // ...and giving it back on its own in its periods (20 in 2 s when on time; a spinner: ~0).
      expect(slept).toBeGreaterThanOrEqual(5);
      // It did get CPU (how much is the machine's business).
      expect(readThreadCpuTicks(tid!)!).toBeGreaterThan(ticksBefore);
    } finally {
      await running.revert();
    }
    await running.revert(); // idempotent
    expect(burnerTids()).toEqual([]);
  });

  it(`puts at most ${MAX_BURNERS_PER_CORE} burners on a core across stacked burns, and frees the slots on revert`, async () => {
    const a = await cpuBurn.start(cpuBurn.validate({ load: 10, cores: "all" }, ctx.host), { ...ctx, faultId: "stack-a" });
    const b = await cpuBurn.start(cpuBurn.validate({ load: 10, cores: 1 }, ctx.host), { ...ctx, faultId: "stack-b" });
    try {
      expect(burnerTids()).toHaveLength(3);
      expect(() => cpuBurn.validate({ load: 10, cores: 1 }, ctx.host)).toThrow(
        "params.cores: core 0 already runs 2 burner threads, the most per core (core 0: cpu-burn stack-a (load 10% on cores 0-1), stack-b (load 10% on core 0)); " +
          "stop one of those burns first, or stop it and start one burn with the higher load instead of stacking",
      );
      expect(() => cpuBurn.validate({ load: 10, cores: "all" }, ctx.host)).toThrow(/^params\.cores: core 0 already runs 2 burner threads/);
      expect(burnerTids()).toHaveLength(3);
    } finally {
      await b.revert();
    }
    const c = await cpuBurn.start(cpuBurn.validate({ load: 10, cores: "all" }, ctx.host), { ...ctx, faultId: "stack-c" });
    expect(burnerTids()).toHaveLength(4);
    await Promise.all([a.revert(), c.revert()]);
    expect(burnerTids()).toEqual([]);
  });

  it("validates load and cores, naming the field", () => {
    expect(() => cpuBurn.validate({ load: 0 }, ctx.host)).toThrow("params.load: 0 is below the minimum 1");
    expect(() => cpuBurn.validate({ load: 150 }, ctx.host)).toThrow("params.load: 150 is above the maximum 100");
    expect(() => cpuBurn.validate({ load: "abc" }, ctx.host)).toThrow('params.load: "abc" is not a number (allowed: 1-100)');
    expect(() => cpuBurn.validate({ cores: 0 }, ctx.host)).toThrow(/params.cores: 0 is not valid/);
    expect(() => cpuBurn.validate({ lod: 5 }, ctx.host)).toThrow("params.lod: unknown parameter for cpu-burn; allowed: load, cores");
    expect(cpuBurn.validate({ cores: "all" }, ctx.host).coreList).toEqual([0, 1]);
  });

  it("burner threads are threads of the agent process: nothing of them survives it", async () => {
    const running = await cpuBurn.start(cpuBurn.validate({ load: 10, cores: 1 }, ctx.host), ctx);
    expect(burnerThreads().length).toBeGreaterThan(0);
    await running.revert();
    await new Promise((r) => setTimeout(r, 200));
    expect(burnerThreads()).toEqual([]);
  });
});
