/** The run store on a real SQLite file: the reason a run shows is the reason of its current state. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createRunStore } from "./run-store.js";
import type { RunStore } from "./run-store.js";
import { createStore } from "./store.js";
import type { Store } from "./store.js";

describe("run store: reasons", () => {
  let dir: string;
  let store: Store;
  let runs: RunStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-runs-"));
    store = createStore({ dataDir: dir });
    runs = createRunStore(store.db);
    runs.insertRun({ id: "run_1", name: "burn", specYaml: "", experiment: {}, plan: {}, state: "pending", actor: "alice", createdAt: 1000 });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
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
