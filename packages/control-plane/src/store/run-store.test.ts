/** The run store on both engines (a SQLite file; a PostgreSQL database): the reason a run shows is the reason of its current state. */
import { afterEach, beforeEach, expect, it } from "vitest";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createRunStore } from "./run-store.js";
import type { RunStore } from "./run-store.js";
import type { Store } from "./store.js";

describeEachEngine("run store: reasons", (engine) => {
  let store: Store;
  let runs: RunStore;
  beforeEach(async () => {
    store = await engine.openStore();
    runs = createRunStore(store.db);
    runs.insertRun({ id: "run_1", name: "burn", specYaml: "", experiment: {}, plan: {}, state: "pending", actor: "alice", createdAt: 1000 });
  });
  afterEach(() => {
    store.close();
  });

  it("a running run does not keep its preflight reason; an ended run has its own", () => {
    runs.transition("run_1", "preflight", "checking the steady state: every stop condition must be healthy", 2000);
    expect(runs.getRun("run_1")).toMatchObject({ state: "preflight", reason: "checking the steady state: every stop condition must be healthy" });
    runs.transition("run_1", "running", null, 3000);
    expect(runs.getRun("run_1")).toMatchObject({ state: "running", reason: null, startedAt: 3000 });
    expect(runs.listRuns({ active: true })).toMatchObject([{ id: "run_1", state: "running", reason: null }]);
    runs.transition("run_1", "completed", "every step ran; every fault reverted", 4000);
    expect(runs.getRun("run_1")).toMatchObject({ state: "completed", reason: "every step ran; every fault reverted", endedAt: 4000 });
  });
});

describeEachEngine("run store: stop-condition samples", (engine) => {
  let store: Store;
  let runs: RunStore;
  beforeEach(async () => {
    store = await engine.openStore();
    runs = createRunStore(store.db);
    for (const id of ["run_1", "run_2"]) runs.insertRun({ id, name: "burn", specYaml: "", experiment: {}, plan: {}, state: "pending", actor: "alice", createdAt: 1000 });
  });
  afterEach(() => {
    store.close();
  });

  it("stores samples per run and lists them by condition then time; a value that is not a number is null", () => {
    store.db.transaction(() => {
      runs.addSamples("run_1", [
        { condition: 1, at: 3000, value: 0, healthy: true },
        { condition: 0, at: 2000, value: 12.5, healthy: true },
        { condition: 0, at: 2500, value: null, healthy: false },
        { condition: 0, at: 2200, value: Number.NaN, healthy: false },
      ]);
      runs.addSamples("run_2", [{ condition: 0, at: 2000, value: 1, healthy: true }]);
    })();
    expect(runs.listSamples("run_1")).toEqual([
      { condition: 0, at: 2000, value: 12.5, healthy: true },
      { condition: 0, at: 2200, value: null, healthy: false },
      { condition: 0, at: 2500, value: null, healthy: false },
      { condition: 1, at: 3000, value: 0, healthy: true },
    ]);
    expect(runs.countSamples("run_1")).toBe(4);
    expect(runs.countSamples("run_3")).toBe(0);
    expect(runs.lastSampleHealthy("run_1", 0)).toBe(false);
    expect(runs.lastSampleHealthy("run_1", 1)).toBe(true);
    expect(runs.lastSampleHealthy("run_1", 2)).toBeUndefined();
    if (engine.engine === "sqlite") {
      // The index serves every read of a run's samples.
      const plan = store.db.prepare("EXPLAIN QUERY PLAN SELECT condition, at, value, healthy FROM run_samples WHERE run_id = ? ORDER BY condition, at").all("run_1") as { detail: string }[];
      expect(plan.map((p) => p.detail).join(" ")).toMatch(/USING INDEX run_samples_run/);
    }
  });

  it("lists a run's breaches with the index of their condition (older ones by description)", () => {
    runs.addEvent("run_1", { type: "breach", time: 5000, message: "http GET http://x: 500", data: { condition: "http GET http://x", reason: "HTTP 500", at: 4999, index: 1 } });
    runs.addEvent("run_1", { type: "stop-condition", message: "unhealthy" });
    runs.addEvent("run_1", { type: "breach", time: 6000, message: "old: breach", data: { condition: "prometheus up == 0", reason: "1 sample", at: 5999 } });
    runs.addEvent("run_2", { type: "breach", time: 7000, message: "no data" });
    expect(runs.listBreaches("run_1")).toEqual([
      { index: 1, condition: "http GET http://x", reason: "HTTP 500", at: 4999 },
      { index: null, condition: "prometheus up == 0", reason: "1 sample", at: 5999 },
    ]);
    expect(runs.listBreaches("run_2")).toEqual([{ index: null, condition: "no data", reason: "no data", at: 7000 }]);
  });

  it("samples go with their run", () => {
    runs.addSamples("run_1", [{ condition: 0, at: 2000, value: 1, healthy: true }]);
    runs.addSamples("run_2", [{ condition: 0, at: 2000, value: 1, healthy: true }]);
    store.db.prepare("DELETE FROM runs WHERE id = ?").run("run_1");
    expect(runs.countSamples("run_1")).toBe(0);
    expect(runs.countSamples("run_2")).toBe(1);
  });
});
