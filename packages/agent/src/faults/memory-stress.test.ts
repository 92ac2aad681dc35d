import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject } from "@firedrill/protocol";
import { InvalidFaultRequestError } from "@firedrill/protocol";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { isProcessAlive, readProcessStartTime } from "../proc.js";
import { HOLD_CHUNK_BYTES, createMemoryStress, planMemoryHold, readAnonMemory, readMemInfo } from "./memory-stress.js";
import { revertMemoryStressRecord } from "./memory-stress-revert.js";
import type { FaultContext, RunningFault } from "./types.js";

const log = pino({ level: "silent" });
const host = { cpuCount: 2, stateDir: "/tmp", protectedPids: () => [process.pid], networkExclusions: [] };
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.message;
    throw err;
  }
  return "accepted";
}

describe("memory-stress planning", () => {
  it("reads MemTotal and MemAvailable", () => {
    expect(readMemInfo("MemTotal:       24683620 kB\nMemFree:  100 kB\nMemAvailable:   23614008 kB\n")).toEqual({
      totalBytes: 24683620 * 1024,
      availableBytes: 23614008 * 1024,
    });
    expect(() => readMemInfo("MemTotal: 1 kB\n")).toThrow("/proc/meminfo has no MemAvailable line");
    const real = readMemInfo();
    expect(real.availableBytes).toBeGreaterThan(0);
    expect(real.availableBytes).toBeLessThanOrEqual(real.totalBytes);
  });

  it("holds a percent of total RAM or a size, page-rounded", () => {
    const mem = { totalBytes: 16 * GiB, availableBytes: 12 * GiB };
    expect(planMemoryHold({ percent: 25 }, mem)).toMatchObject({ askedBytes: 4 * GiB, targetBytes: 4 * GiB, reserveBytes: Math.ceil(16 * GiB * 0.05) });
    expect(planMemoryHold({ size: 100 * MiB + 1 }, mem)).toMatchObject({ askedBytes: 100 * MiB + 4096, targetBytes: 100 * MiB + 4096 });
    expect(planMemoryHold({ size: 100 * MiB }, mem).capped).toBeUndefined();
  });

  it("caps the hold to MemAvailable − reserve and names the reserve", () => {
    const mem = { totalBytes: 8 * GiB, availableBytes: 2 * GiB };
    const plan = planMemoryHold({ size: 4 * GiB }, mem);
    expect(plan.targetBytes).toBe(1.5 * GiB);
    expect(plan.capped).toBe("capped to 1.5 GiB (asked 4 GiB): 2 GiB is available and the reserve 512 MiB (max(512 MiB, 5 % of 8 GiB RAM)) stays available");
    const raised = planMemoryHold({ percent: 50, reserve: GiB }, mem);
    expect(raised.targetBytes).toBe(GiB);
    expect(raised.capped).toBe("capped to 1 GiB (asked 4 GiB): 2 GiB is available and the reserve 1 GiB (the reserve parameter) stays available");
    // A reserve below the floor does not lower it.
    expect(planMemoryHold({ size: 4 * GiB, reserve: MiB }, mem).targetBytes).toBe(1.5 * GiB);
  });

  it("refuses when not even 1 MiB can be held above the reserve", () => {
    const mem = { totalBytes: 8 * GiB, availableBytes: 512 * MiB };
    expect(refusal(() => planMemoryHold({ size: GiB }, mem))).toBe(
      "params.size: nothing can be held on this host: 512 MiB of 8 GiB is available and the reserve 512 MiB (max(512 MiB, 5 % of 8 GiB RAM)) must stay available; free memory first",
    );
    expect(refusal(() => planMemoryHold({ percent: 10, reserve: 4 * GiB }, { totalBytes: 8 * GiB, availableBytes: 3 * GiB }))).toBe(
      "params.reserve: nothing can be held on this host: 3 GiB of 8 GiB is available and the reserve 4 GiB (the reserve parameter) must stay available; free memory first, or lower the reserve parameter",
    );
  });
});

describe("memory-stress revert from the journal record", () => {
  const children: number[] = [];
  afterEach(() => {
    for (const pid of children.splice(0)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  });

  const sleeper = async () => {
    const child = spawn("sleep", ["1000"], { stdio: "ignore" });
    children.push(child.pid!);
    await new Promise((r) => child.once("spawn", r));
    return { child, startTime: readProcessStartTime(child.pid!)! };
  };

  it("kills the recorded process by pid and start time, and never one that reused the pid", async () => {
    const a = await sleeper();
    const b = await sleeper();
    // b's pid with another start time: a process that reused the pid. Left alone.
    await revertMemoryStressRecord({ child: { pid: b.child.pid!, startTime: b.startTime + 1 } }, { log });
    expect(isProcessAlive(b.child.pid!, b.startTime)).toBe(true);
    await revertMemoryStressRecord({ child: { pid: a.child.pid!, startTime: a.startTime } }, { log });
    expect(isProcessAlive(a.child.pid!, a.startTime)).toBe(false);
    // Again, and with no child recorded: nothing to do.
    await revertMemoryStressRecord({ child: { pid: a.child.pid!, startTime: a.startTime } }, { log });
    await revertMemoryStressRecord({}, { log });
  });

  it("refuses a malformed record before touching anything", async () => {
    for (const child of [{ pid: 1, startTime: 0 }, { pid: "12" }, [1], { pid: 1.5, startTime: 3 }]) {
      await expect(revertMemoryStressRecord({ child } as JsonObject, { log })).rejects.toThrow("the memory-stress journal record holds a bad child entry");
    }
  });
});

describe("memory-stress holding real memory (128 MiB, a fake MemAvailable for the reserve)", () => {
  let dir: string | undefined;
  let running: RunningFault | undefined;
  afterEach(async () => {
    await running?.revert();
    running = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** A meminfo file the holder reads instead of /proc/meminfo: 8 GiB of RAM, `available` free. */
  const fakeMeminfo = (available: number) => {
    dir ??= mkdtempSync(join(tmpdir(), "fd-mem-"));
    const path = join(dir, "meminfo");
    writeFileSync(`${path}.new`, `MemTotal: ${8 * 1024 * 1024} kB\nMemFree: 0 kB\nMemAvailable: ${Math.floor(available / 1024)} kB\n`);
    // Atomic: the holder never reads a half-written file.
    renameSync(`${path}.new`, path);
    return path;
  };

  it("journals the holder before it allocates, holds every page, gives chunks back below the reserve, and is gone on revert", async () => {
    const kind = createMemoryStress({ meminfoPath: fakeMeminfo(2 * GiB) });
    const records: JsonObject[] = [];
    const ctx: FaultContext = { faultId: `ms-${process.pid}`, log, host, updateRevert: (r) => records.push(r) };
    const plan = kind.validate({ size: "128MiB" }, host);
    expect(kind.planRevert(plan, ctx)).toEqual({});
    const t0 = performance.now();
    running = await kind.start(plan, ctx);
    const startMs = performance.now() - t0;

    expect(records).toHaveLength(1);
    const { pid, startTime } = records[0]!.child as { pid: number; startTime: number };
    expect(readProcessStartTime(pid)).toBe(startTime);
    expect(readFileSync(`/proc/${pid}/oom_score_adj`, "utf8").trim()).toBe("1000");
    expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("fd-mem-stress");
    // Every page resident: the holder's anonymous memory is at least the hold.
    expect(readAnonMemory(pid)!.rssAnon).toBeGreaterThanOrEqual(128 * MiB);
    const m = running.measure!();
    expect(m).toMatchObject({ asked_mib: 128, target_mib: 128, available_mib: 2048, reserve_mib: 512, released_mib: 0, holding: 1 });
    expect(m.held_mib).toBeGreaterThanOrEqual(128 * 0.98);
    expect(m.held_mib).toBeLessThanOrEqual(128 * 1.05);
    expect(running.details!.join("\n")).toContain(`holder pid ${pid} holds 128 MiB, oom_score_adj 1000`);

    // Other processes take memory: MemAvailable 10 MiB below the reserve. The holder gives one chunk back.
    const before = readAnonMemory(pid)!.rssAnon;
    fakeMeminfo(512 * MiB - 10 * MiB);
    const until = Date.now() + 5000;
    while (running.measure!().released_mib === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(running.measure!().released_mib).toBe(HOLD_CHUNK_BYTES / MiB);
    // V8 frees an ArrayBuffer's backing store on a background thread after the collection, so the
    // unmapping may trail the report by a moment on a busy machine: wait for it (bounded).
    // (The holder's own heap moves by a few MiB with the collection that frees the chunk.)
    const returned = () => before - readAnonMemory(pid)!.rssAnon >= HOLD_CHUNK_BYTES * 0.8;
    const until2 = Date.now() + 5000;
    while (!returned() && Date.now() < until2) await new Promise((r) => setTimeout(r, 50));
    expect(before - readAnonMemory(pid)!.rssAnon).toBeGreaterThanOrEqual(HOLD_CHUNK_BYTES * 0.8);

    await running.revert();
    running = undefined;
    expect(isProcessAlive(pid, startTime)).toBe(false);
    console.log(`memory-stress: 128 MiB held in ${Math.round(startMs)} ms (page faults on a loaded 2-core VM)`);
  });

  it("plans again at start: capped, or refused, by memory as it is then", async () => {
    const path = fakeMeminfo(2 * GiB);
    const kind = createMemoryStress({ meminfoPath: path });
    const plan = kind.validate({ size: "128MiB" }, host);
    fakeMeminfo(600 * MiB);
    const ctx: FaultContext = { faultId: `ms2-${process.pid}`, log, host, updateRevert: () => undefined };
    running = await kind.start(plan, ctx);
    expect(running.details).toContain(
      "capped to 88 MiB (asked 128 MiB): 600 MiB is available and the reserve 512 MiB (max(512 MiB, 5 % of 8 GiB RAM)) stays available",
    );
    expect(running.measure!()).toMatchObject({ asked_mib: 128, target_mib: 88 });
    await running.revert();
    running = undefined;
    fakeMeminfo(500 * MiB);
    await expect(kind.start(plan, { ...ctx, faultId: `ms3-${process.pid}` })).rejects.toThrow(
      "params.size: nothing can be held on this host: 500 MiB of 8 GiB is available and the reserve 512 MiB (max(512 MiB, 5 % of 8 GiB RAM)) must stay available; free memory first",
    );
  });
});
