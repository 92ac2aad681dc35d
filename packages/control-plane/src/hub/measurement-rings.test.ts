/** The hub's in-memory measurement rings: what they keep, what they drop, and what they cost. */
import { describe, expect, it } from "vitest";
import { MEASUREMENT_RING_SIZE, createMeasurementRings } from "./measurement-rings.js";
import type { MeasuredFaultInfo } from "./measurement-rings.js";

const fault = (id: string, over: Partial<MeasuredFaultInfo> = {}): MeasuredFaultInfo => ({
  id,
  agentId: "agent-1",
  kind: "cpu-burn",
  runId: null,
  state: "running",
  createdAt: 1000,
  startedAt: 1000,
  endedAt: null,
  ...over,
});

describe("measurement rings", () => {
  it("keeps the last 720 measurements of a fault, at most one a second, oldest first", () => {
    const rings = createMeasurementRings();
    rings.track(fault("f1"));
    for (let i = 0; i < 1000; i++) {
      rings.sample("f1", "agent-1", 10_000 + i * 1000, { cpu_percent_selected: i, load_asked: 80 });
      // Half a second later: not kept.
      rings.sample("f1", "agent-1", 10_000 + i * 1000 + 500, { cpu_percent_selected: -1, load_asked: 80 });
    }
    const [listed] = rings.list("agent-1");
    expect(listed).toMatchObject({ faultId: "f1", kind: "cpu-burn", runId: null, state: "running", startedAt: 1000, endedAt: null });
    expect(listed!.samples).toHaveLength(MEASUREMENT_RING_SIZE);
    expect(listed!.samples[0]).toEqual({ at: 10_000 + 280 * 1000, m: { cpu_percent_selected: 280, load_asked: 80 } });
    expect(listed!.samples.at(-1)).toEqual({ at: 10_000 + 999 * 1000, m: { cpu_percent_selected: 999, load_asked: 80 } });
    expect(listed!.samples.every((s) => s.m.cpu_percent_selected !== -1)).toBe(true);
  });

  it("ignores a PROGRESS for a fault it does not track, or from another agent", () => {
    const rings = createMeasurementRings();
    rings.sample("nope", "agent-1", 1000, { a: 1 });
    rings.track(fault("f1"));
    rings.sample("f1", "agent-2", 2000, { a: 1 });
    rings.sample("f1", "agent-1", 3000, null);
    rings.sample("f1", "agent-1", 4000, {});
    expect(rings.list("agent-1")[0]!.samples).toEqual([]);
    expect(rings.list("agent-2")).toEqual([]);
    expect(rings.stats().faults).toBe(1);
  });

  it("keeps a name that appears later, and leaves out what a sample did not measure", () => {
    const rings = createMeasurementRings();
    rings.track(fault("f1", { kind: "custom" }));
    rings.sample("f1", "agent-1", 1000, { a: 1 });
    rings.sample("f1", "agent-1", 2000, { a: 2, b: 20 });
    rings.sample("f1", "agent-1", 3000, { b: 30 });
    expect(rings.list("agent-1")[0]!.samples).toEqual([
      { at: 1000, m: { a: 1 } },
      { at: 2000, m: { a: 2, b: 20 } },
      { at: 3000, m: { b: 30 } },
    ]);
  });

  it("forgets faults that ended more than an hour ago; lists an agent's newest first, at most `limit`", () => {
    let now = 0;
    const rings = createMeasurementRings({ now: () => now });
    for (let i = 0; i < 60; i++) rings.track(fault(`f${String(i).padStart(2, "0")}`, { startedAt: i * 1000 }));
    const listed = rings.list("agent-1", 50);
    expect(listed).toHaveLength(50);
    expect(listed[0]!.faultId).toBe("f59");
    expect(listed[49]!.faultId).toBe("f10");

    now = 100_000;
    rings.track(fault("f00", { state: "reverted", endedAt: 100_000 }));
    expect(rings.list("agent-1", 100).find((f) => f.faultId === "f00")).toMatchObject({ state: "reverted", endedAt: 100_000 });
    now = 100_000 + 3_600_000;
    expect(rings.list("agent-1", 100)).toHaveLength(60);
    now += 1;
    expect(rings.list("agent-1", 100)).toHaveLength(59);
    expect(rings.stats().faults).toBe(59);
    // An end announced for a fault never tracked is not tracked.
    rings.track(fault("late", { state: "reverted", endedAt: now }));
    expect(rings.stats().faults).toBe(59);
  });

  it("tracks at most maxFaults: the oldest ended one goes first, else the oldest", () => {
    const rings = createMeasurementRings({ maxFaults: 3 });
    rings.track(fault("a"));
    rings.track(fault("b"));
    rings.track(fault("c"));
    rings.track(fault("b", { state: "reverted", endedAt: 5000 }));
    rings.track(fault("d"));
    expect(rings.list("agent-1").map((f) => f.faultId).sort()).toEqual(["a", "c", "d"]);
    rings.track(fault("e"));
    expect(rings.list("agent-1").map((f) => f.faultId).sort()).toEqual(["c", "d", "e"]);
  });

  it("holds at most maxValues numbers: past that, rings stop growing and keep their newest", () => {
    // Each sample is 1 time + 2 values; a first ring is 16 rows (48 numbers), doubling to 720.
    const rings = createMeasurementRings({ maxValues: 48 * 3 + 20 });
    for (const id of ["f1", "f2", "f3", "f4"]) rings.track(fault(id));
    for (let i = 0; i < 100; i++) for (const id of ["f1", "f2", "f3", "f4"]) rings.sample(id, "agent-1", i * 1000, { x: i, y: 1 });
    const stats = rings.stats();
    expect(stats.values).toBe(48 * 3);
    const byId = new Map(rings.list("agent-1").map((f) => [f.faultId, f.samples]));
    // Three got their first 16 rows and no room to grow; the fourth had no room at all.
    expect(["f1", "f2", "f3", "f4"].map((id) => byId.get(id)!.length)).toEqual([16, 16, 16, 0]);
    for (const samples of byId.values()) if (samples.length > 0) expect(samples.at(-1)!.m.x).toBe(99);
  });

  it("costs O(1) per PROGRESS on a 10,000-fault fleet", () => {
    const rings = createMeasurementRings();
    for (let i = 0; i < 10_000; i++) rings.track(fault(`f${i}`, { agentId: `agent-${i}` }));
    const m = { cpu_percent_selected: 50, cpu_percent_machine: 30, burner_percent: 49, load_asked: 50, cores: 2, pinned: 1 };
    const started = performance.now();
    for (let round = 0; round < 10; round++) for (let i = 0; i < 10_000; i++) rings.sample(`f${i}`, `agent-${i}`, round * 2000, m);
    const ms = performance.now() - started;
    console.log(`measurement rings: 100,000 PROGRESS on 10,000 faults in ${ms.toFixed(0)} ms; ${rings.stats().values} numbers held`);
    expect(rings.list("agent-5")[0]!.samples).toHaveLength(10);
  });
});
