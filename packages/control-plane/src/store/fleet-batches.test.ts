/**
 * The store's batched writes for large fleets: "last heard" for many agents in one transaction
 * (never moving back), stops for many faults at once, and the counts that replace capped listings.
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { testAgent } from "../test-support/agent-records.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import type { Store } from "./store.js";

describeEachEngine("store: batched writes for large fleets", (engine) => {
  let store: Store;
  beforeEach(async () => {
    store = await engine.openStore();
    for (const id of ["web-1", "web-2", "web-3"]) {
      const a = testAgent(id);
      store.upsertAgent({ id: a.id, hostname: a.hostname, version: a.version, facts: a.facts, labels: a.labels, capabilities: a.capabilities, instanceId: null, availabilityZone: null }, 1000);
    }
  });
  afterEach(() => {
    store.close();
  });

  it("touchAgents sets last heard for many agents at once and never moves it back", () => {
    store.touchAgents(new Map([["web-1", 5000], ["web-2", 6000]]));
    expect(store.getAgent("web-1")!.lastSeen).toBe(5000);
    expect(store.getAgent("web-2")!.lastSeen).toBe(6000);
    expect(store.getAgent("web-3")!.lastSeen).toBe(1000);
    // A batch older than a disconnect (which sets last heard itself) leaves it.
    store.markAgentDisconnected("web-1", 9000);
    store.touchAgents(new Map([["web-1", 7000]]));
    expect(store.getAgent("web-1")!.lastSeen).toBe(9000);
    store.touchAgent("web-2", 4000);
    expect(store.getAgent("web-2")!.lastSeen).toBe(6000);
  });

  it("requestStopMany marks every active fault once and returns those still to end; counts without caps", () => {
    for (let i = 0; i < 30; i++) store.insertFault({ id: `flt_${String(i).padStart(16, "0")}`, agentId: `web-${(i % 3) + 1}`, runId: "run_1", kind: "cpu-burn", params: {}, durationMs: 60_000, createdAt: 2000 + i });
    store.recordFaultEvent({ faultId: "flt_0000000000000000", agentId: "web-1", type: "failed", time: 3000, reason: null, error: "refused", message: null, measurements: null }, 3000);
    expect(store.countUnendedFaultsOfRun("run_1")).toBe(29);
    expect([...store.activeFaultKindsByAgent().values()].reduce((n, kinds) => n + kinds.length, 0)).toBe(29);
    const ids = Array.from({ length: 30 }, (_, i) => `flt_${String(i).padStart(16, "0")}`);
    const wanted = store.requestStopMany(ids, "aborted", "run run_1 aborting", 4000);
    expect(wanted).toHaveLength(29);
    expect(wanted.every((f) => f.stopReason === "aborted" && f.stopRequestedAt === 4000)).toBe(true);
    // The first request wins.
    store.requestStopMany(ids, "halt", "halt", 5000);
    expect(store.getFault(ids[1]!)!.stopReason).toBe("aborted");
    expect(store.countStopsWanted()).toBe(29);
  });
});
