/**
 * The store's "stop wanted" state and the fault states of issue 10, on both engines (a SQLite file
 * in a temp dir; a PostgreSQL database), closed and opened again as a restarted control plane would.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, expect, it } from "vitest";
import { testAgent } from "../test-support/agent-records.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { migrate } from "./migrations.js";
import { createRunStore } from "./run-store.js";
import { createStore } from "./store.js";
import type { Store, StoreOptions } from "./store.js";
import { LEASE_ASSUMED_REASON } from "./types.js";
import type { FaultEventInput } from "./types.js";

describeEachEngine("store: stops wanted, revert_failed, details", (engine) => {
  let options: StoreOptions;
  let store: Store;
  beforeEach(async () => {
    options = await engine.freshStoreOptions();
    store = createStore(options);
    const a = testAgent("web-1");
    store.upsertAgent({ id: a.id, hostname: a.hostname, version: a.version, facts: a.facts, labels: a.labels, capabilities: a.capabilities, instanceId: null, availabilityZone: null }, 1000);
  });
  afterEach(() => {
    store.close();
  });

  const fault = (id: string, runId: string | null = null) =>
    store.insertFault({ id, agentId: "web-1", runId, kind: "cpu-burn", params: { load: 50 }, durationMs: 600_000, createdAt: 2000 });
  const event = (faultId: string, type: FaultEventInput["type"], time: number, extra: Partial<FaultEventInput> = {}): FaultEventInput => ({
    faultId,
    agentId: "web-1",
    type,
    time,
    reason: null,
    error: null,
    message: null,
    measurements: null,
    ...extra,
  });

  it("keeps a wanted stop across a restart of the control plane until the fault has ended", () => {
    fault("flt_a");
    store.recordFaultEvent(event("flt_a", "started", 2100), 2100);
    const requested = store.requestStop("flt_a", "aborted", "run run_1 aborting: breach", 3000);
    expect(requested).toMatchObject({ state: "running", stopRequestedAt: 3000, stopReason: "aborted", stopRequestedBy: "run run_1 aborting: breach" });
    // A second request does not move the first one.
    store.requestStop("flt_a", "halt", "halt by bob", 4000);

    store.close();
    store = createStore(options);
    const wanted = store.listStopsWanted("web-1");
    expect(wanted.map((f) => [f.id, f.stopRequestedAt, f.stopReason])).toEqual([["flt_a", 3000, "aborted"]]);
    expect(store.listStopsWanted().map((f) => f.id)).toEqual(["flt_a"]);
    expect(store.countStopsWanted()).toBe(1);

    store.recordFaultEvent(event("flt_a", "reverted", 5000, { reason: "aborted" }), 5000);
    expect(store.listStopsWanted()).toEqual([]);
    expect(store.getFault("flt_a")).toMatchObject({ state: "reverted", reason: "aborted", stopRequestedAt: 3000 });
    // An ended fault is not wanted again.
    expect(store.requestStop("flt_a", "stopped", "alice", 6000)?.stopReason).toBe("aborted");
  });

  it("a run that ends wants its remaining faults ended; a halt wants every active fault ended", () => {
    const runs = createRunStore(store.db);
    runs.insertRun({ id: "run_1", name: "burn", specYaml: "", experiment: {}, plan: {}, state: "running", actor: "alice", createdAt: 1000 });
    fault("flt_run", "run_1");
    fault("flt_other");
    fault("flt_done", "run_1");
    store.recordFaultEvent(event("flt_done", "reverted", 2500, { reason: "duration" }), 2500);
    expect(store.isRunEnded("run_1")).toBe(false);
    runs.transition("run_1", "aborted", "agent lost", 3000);
    expect(store.isRunEnded("run_1")).toBe(true);
    expect(store.isRunEnded("run_unknown")).toBe(false);
    expect(store.listStopsWanted().map((f) => [f.id, f.stopReason, f.stopRequestedBy])).toEqual([["flt_run", "aborted", "run run_1 aborted: agent lost"]]);
    expect(store.getFault("flt_done")?.stopRequestedAt).toBeNull();

    expect(store.requestStops({}, "halt", "halt by bob: INC-1", 4000)).toBe(1);
    expect(store.getFault("flt_other")).toMatchObject({ stopReason: "halt", stopRequestedBy: "halt by bob: INC-1" });
    expect(store.getFault("flt_run")?.stopReason).toBe("aborted");
  });

  it("revert_failed is an end that is not a revert; a later revert replaces it, as it replaces a revert assumed by lease", () => {
    fault("flt_rf");
    store.recordFaultEvent(event("flt_rf", "started", 2100), 2100);
    const failed = store.recordFaultEvent(event("flt_rf", "revert_failed", 3000, { error: "EACCES: /srv/fill" }), 3000);
    expect(failed.fault).toMatchObject({ state: "revert_failed", error: "EACCES: /srv/fill", endedAt: 3000 });
    // Listed with the active faults (its effect may remain), not counted as in the agent's hands.
    expect(store.listFaults({ state: "active" }).map((f) => f.id)).toEqual(["flt_rf"]);
    expect(store.listActiveFaults("web-1")).toEqual([]);
    // A progress or a second give-up changes nothing; the revert done by `recover` does.
    expect(store.recordFaultEvent(event("flt_rf", "progress", 3100), 3100).changed).toBe(false);
    const recovered = store.recordFaultEvent(event("flt_rf", "reverted", 4000, { reason: "recovery" }), 4000);
    expect(recovered.fault).toMatchObject({ state: "reverted", reason: "recovery", error: null, endedAt: 4000 });
    expect(store.recordFaultEvent(event("flt_rf", "reverted", 4100, { reason: "duration" }), 4100).changed).toBe(false);

    fault("flt_lease");
    store.recordFaultEvent(event("flt_lease", "reverted", 5000, { reason: LEASE_ASSUMED_REASON }), 5000);
    const confirmed = store.recordFaultEvent(event("flt_lease", "reverted", 4800, { reason: "lease" }), 6000);
    expect(confirmed.fault).toMatchObject({ state: "reverted", reason: "lease", endedAt: 4800 });
    expect(store.listFaultEvents("flt_lease").map((e) => e.reason)).toEqual(["lease", LEASE_ASSUMED_REASON]);
  });

  it("keeps the details the agent reported with the fault", () => {
    fault("flt_d");
    store.recordFaultEvent(event("flt_d", "accepted", 2100, { details: ["Leaves alone: tcp port 22 (ssh)"] }), 2100);
    expect(store.getFault("flt_d")?.details).toEqual(["Leaves alone: tcp port 22 (ssh)"]);
    store.recordFaultEvent(event("flt_d", "started", 2200, { details: ["Leaves alone: tcp port 22 (ssh), 10.0.0.0/8"] }), 2200);
    store.recordFaultEvent(event("flt_d", "progress", 2300), 2300);
    store.close();
    store = createStore(options);
    expect(store.getFault("flt_d")).toMatchObject({ state: "running", details: ["Leaves alone: tcp port 22 (ssh), 10.0.0.0/8"] });
    fault("flt_none");
    expect(store.getFault("flt_none")?.details).toEqual([]);
  });

  it.skipIf(engine.engine !== "sqlite")("migrates a version-6 SQLite database: faults kept in order, active faults of ended runs wanted stopped", () => {
    store.close();
    const path = join(options.dataDir, "old.db");
    const db = new Database(path);
    // The schema of the previous release (six migrations), with data written as it wrote it.
    db.pragma("foreign_keys = ON");
    expect(migrate(db, 6)).toBe(6);
    db.prepare("INSERT INTO agents (id, hostname, version, facts, labels, capabilities, first_seen, last_seen) VALUES ('a1', 'h', 'v', '{}', '{}', '{}', 1, 1)").run();
    db.prepare("INSERT INTO runs (id, name, spec_yaml, experiment, plan, state, actor, created_at, updated_at) VALUES ('run_old', 'n', '', '{}', '{}', 'aborted', 'x', 1, 1)").run();
    const insert = db.prepare("INSERT INTO faults (id, agent_id, run_id, kind, params, duration_ms, state, created_at, ended_at, updated_at) VALUES (?, 'a1', ?, 'cpu-burn', '{}', 1000, ?, 5, ?, 7)");
    insert.run("flt_z", "run_old", "running", null);
    insert.run("flt_y", null, "running", null);
    insert.run("flt_x", "run_old", "reverted", 6);
    expect(migrate(db, 7)).toBe(1);
    const rows = db.prepare("SELECT id, state, stop_reason, stop_requested_at, details FROM faults ORDER BY created_at DESC, rowid DESC").all();
    expect(rows).toEqual([
      { id: "flt_x", state: "reverted", stop_reason: null, stop_requested_at: null, details: null },
      { id: "flt_y", state: "running", stop_reason: null, stop_requested_at: null, details: null },
      { id: "flt_z", state: "running", stop_reason: "aborted", stop_requested_at: 7, details: null },
    ]);
    expect(() => db.prepare("UPDATE faults SET state = 'revert_failed' WHERE id = 'flt_y'").run()).not.toThrow();
    expect(() => db.prepare("UPDATE faults SET state = 'gone' WHERE id = 'flt_y'").run()).toThrow(/CHECK/);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM faults WHERE agent_id = ? AND stop_requested_at IS NOT NULL AND ended_at IS NULL").all("a1") as { detail: string }[];
    expect(plan.map((p) => p.detail).join(" ")).toContain("faults_stop_wanted");
    const tick = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM faults WHERE stop_requested_at IS NOT NULL AND ended_at IS NULL ORDER BY stop_requested_at").all() as { detail: string }[];
    expect(tick.map((p) => p.detail).join(" ")).toMatch(/USING INDEX faults_stop_wanted/);
    expect(db.pragma("foreign_key_check")).toEqual([]);
    db.close();
    store = createStore(options);
  });
});
