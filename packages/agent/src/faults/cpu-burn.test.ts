import { readdirSync, readFileSync } from "node:fs";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { CLOCK_TICKS_PER_SECOND, readProcessCpuTicks } from "../proc.js";
import { cpuBurn } from "./cpu-burn.js";

const log = pino({ level: "silent" });
const ctx = { faultId: "t", log, host: { cpuCount: 2, stateDir: "/tmp", protectedPids: () => [process.pid], networkExclusions: [] }, updateRevert: () => {} };

/** CPU use of this process over `ms`, in percent of one core. */
async function processCpu(ms: number): Promise<number> {
  const before = readProcessCpuTicks(process.pid)!;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const ticks = readProcessCpuTicks(process.pid)! - before;
  return (ticks / CLOCK_TICKS_PER_SECOND / ((performance.now() - t0) / 1000)) * 100;
}

function burnerThreads(): string[] {
  return readdirSync(`/proc/${process.pid}/task`)
    .map((tid) => readFileSync(`/proc/${process.pid}/task/${tid}/comm`, "utf8").trim())
    .filter((name) => name.includes("cpu-burn"));
}

describe("cpu-burn", () => {
  it("burns the asked share of a core, pinned, and stops on revert", async () => {
    const idle = await processCpu(500);
    const plan = cpuBurn.validate({ load: 60, cores: 1 }, ctx.host);
    expect(plan.coreList).toEqual([0]);
    const running = await cpuBurn.start(plan, ctx);
    try {
      await new Promise((r) => setTimeout(r, 300));
      running.measure!();
      const during = await processCpu(2000);
      const m = running.measure!();
      expect(m.pinned).toBe(1);
      expect(m.burner_percent).toBeGreaterThan(45);
      expect(m.burner_percent).toBeLessThan(75);
      expect(during - idle).toBeGreaterThan(45);
      expect(during - idle).toBeLessThan(80);
    } finally {
      await running.revert();
    }
    await running.revert(); // idempotent
    const after = await processCpu(1000);
    expect(after).toBeLessThan(idle + 15);
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
