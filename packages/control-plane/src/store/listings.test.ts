/**
 * Paginated listings on both engines (a SQLite file; a PostgreSQL database): 2,500 agents and 2,500 faults, every filter walked
 * page by page (each row exactly once, in order), cursors checked, counts against the rows.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { testAgent } from "../test-support/agent-records.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { CursorError, createListings } from "./listings.js";
import type { FaultPageQuery, Listings, Page } from "./listings.js";
import type { Store } from "./store.js";
import type { FaultEventInput, FaultRecord, FaultState } from "./types.js";

const AGENTS = 2_500;
const FAULTS = 2_500;
const STATES: readonly FaultState[] = ["pending", "accepted", "running", "reverted", "failed", "revert_failed"];

/** Every item of a listing, following its cursors; fails on a page that repeats a cursor. */
function walk<T>(first: (cursor: string | undefined) => Page<T>): { items: T[]; pages: number } {
  const items: T[] = [];
  const seen = new Set<string>();
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const page = first(cursor);
    pages++;
    items.push(...page.items);
    if (page.nextCursor === null) return { items, pages };
    expect(page.items.length).toBeGreaterThan(0);
    expect(seen.has(page.nextCursor)).toBe(false);
    seen.add(page.nextCursor);
    cursor = page.nextCursor;
  }
}

describeEachEngine("listings", (engine) => {
  let store: Store;
  let listings: Listings;
  /** The state each fault was moved to. */
  const stateOf = new Map<string, FaultState>();

  beforeAll(async () => {
    store = await engine.openStore();
    listings = createListings(store.db);
    const base = testAgent("x");
    store.db.transaction(() => {
      for (let i = 0; i < AGENTS; i++) {
        // Ids in an order unlike the insertion order.
        const id = `agt_${((i * 7919) % AGENTS).toString().padStart(5, "0")}`;
        const labels = { app: i % 3 === 0 ? "web" : "db", az: `z${i % 2}`, "firedrill:opt-in": "true" };
        store.upsertAgent({ id, hostname: `${id}.example`, version: "0.1.0", facts: { ...base.facts, hostname: id }, labels, capabilities: base.capabilities, instanceId: null, availabilityZone: null }, 1_000 + i);
        if (i % 4 === 0) store.markAgentDisconnected(id, 2_000 + i);
        if (i % 50 === 0) store.removeAgent(id, 3_000 + i);
      }
      for (let i = 0; i < FAULTS; i++) {
        const agentId = `agt_${(i % 40).toString().padStart(5, "0")}`;
        const id = `flt_${i.toString(16).padStart(16, "0")}`;
        // Many faults share a created_at (a run starts them in the same millisecond): the rowid breaks the tie.
        store.insertFault({ id, agentId, runId: i % 5 === 0 ? null : `run_${i % 2}`, kind: "cpu-burn", params: {}, durationMs: 60_000, createdAt: 10_000 + Math.floor(i / 7) });
        const state = STATES[(i * 13) % STATES.length]!;
        stateOf.set(id, state);
        const event = (type: FaultEventInput["type"]) =>
          store.recordFaultEvent({ faultId: id, agentId, type, time: 20_000 + i, reason: type === "reverted" ? "duration" : null, error: null, message: null, measurements: null }, 20_000 + i);
        if (state === "accepted") event("accepted");
        if (state === "running") event("started");
        if (state === "reverted" || state === "revert_failed") event("started");
        if (state === "reverted" || state === "failed" || state === "revert_failed") event(state);
      }
    })();
  });
  afterAll(() => {
    store.close();
  });

  it("lists every agent not removed exactly once, by id, across pages; the last page says so", () => {
    const expected = store.listAgents();
    expect(expected).toHaveLength(AGENTS - AGENTS / 50);
    const { items, pages } = walk((cursor) => listings.agents({ limit: 100, ...(cursor ? { cursor } : {}) }));
    expect(pages).toBe(Math.ceil(expected.length / 100));
    expect(items).toEqual(expected);

    // A page size that divides the list: no empty page at the end.
    const exact = walk((cursor) => listings.agentSummaries({ limit: expected.length / 10, ...(cursor ? { cursor } : {}) }));
    expect(exact.pages).toBe(10);
    // The compact view is the full record without the host facts.
    expect(exact.items).toEqual(expected.map(({ facts: _facts, ...rest }) => rest));
    expect(exact.items[0]).not.toHaveProperty("facts");
    expect(listings.agents({ limit: 1000 }).items[0]?.facts.hostname).toBe(expected[0]!.id);
  });

  it("filters agents by link state and exact labels, page by page, and counts the fleet in one query", () => {
    const all = store.listAgents();
    for (const connected of [true, false]) {
      const { items } = walk((cursor) => listings.agentSummaries({ limit: 97, connected, ...(cursor ? { cursor } : {}) }));
      expect(items.map((a) => a.id)).toEqual(all.filter((a) => a.connected === connected).map((a) => a.id));
    }
    const labels = { app: "web", az: "z1" };
    const web = walk((cursor) => listings.agentSummaries({ limit: 50, labels, connected: true, ...(cursor ? { cursor } : {}) }));
    const expected = all.filter((a) => a.connected && a.labels.app === "web" && a.labels.az === "z1").map((a) => a.id);
    expect(expected.length).toBeGreaterThan(100);
    expect(web.items.map((a) => a.id)).toEqual(expected);
    expect(listings.agentSummaries({ labels: { app: "nope" } })).toEqual({ items: [], nextCursor: null });

    expect(listings.countAgents()).toEqual({ total: all.length, connected: all.filter((a) => a.connected).length });
  });

  it("keeps its place when the listing changes between pages: a removed agent's cursor still works, new agents come in order", () => {
    const first = listings.agentSummaries({ limit: 10 });
    const last = first.items.at(-1)!.id;
    expect(store.removeAgent(last, 9_000)).toBe(true);
    const base = testAgent("x");
    for (const id of ["agt_00000a", "zzz-late"]) {
      store.upsertAgent({ id, hostname: id, version: "0.1.0", facts: base.facts, labels: {}, capabilities: base.capabilities, instanceId: null, availabilityZone: null }, 9_000);
    }
    const rest = walk((cursor) => listings.agentSummaries({ limit: 500, cursor: cursor ?? first.nextCursor! })).items.map((a) => a.id);
    // Before the cursor: not listed; after it: listed once, in order.
    expect("agt_00000a" < last).toBe(true);
    expect(rest).not.toContain("agt_00000a");
    expect(rest.at(-1)).toBe("zzz-late");
    expect(rest).toEqual(store.listAgents().map((a) => a.id).filter((id) => id > last));
    store.removeAgent("agt_00000a", 9_001);
    store.removeAgent("zzz-late", 9_001);
  });

  it("lists every fault exactly once, newest first with the rowid breaking ties, for every filter", () => {
    const queries: Omit<FaultPageQuery, "limit" | "cursor">[] = [
      {},
      { state: "active" },
      { agentId: "agt_00007" },
      { agentId: "agt_00007", state: "active" },
      { runId: "run_1" },
      { runId: "run_0", state: "active" },
      { runId: "run_1", agentId: "agt_00001" },
      { runId: "nope" },
    ];
    for (const query of queries) {
      // The store's own (capped) listing has the order the API always had.
      const expected = store.listFaults({ ...query, limit: 1_000_000 });
      const { items } = walk((cursor) => listings.faults({ ...query, limit: 73, ...(cursor ? { cursor } : {}) }));
      expect(items.map((f) => f.id), JSON.stringify(query)).toEqual(expected.map((f) => f.id));
      expect(items).toEqual(expected);
      expect([...listings.faultPages(query)].flat()).toEqual(expected);
    }
    expect(store.listFaults({ state: "active", limit: 1_000_000 }).every((f) => ["pending", "accepted", "running", "revert_failed"].includes(f.state))).toBe(true);
    // 2,500 faults in pages of 1000.
    expect([...listings.faultPages()].map((p) => p.length)).toEqual([1000, 1000, 500]);
  });

  it("counts a run's faults by state, and those still unended", () => {
    for (const runId of ["run_0", "run_1", "nope"]) {
      const faults: FaultRecord[] = store.listFaults({ runId, limit: 1_000_000 });
      const counts = listings.countRunFaults(runId);
      expect(counts.total).toBe(faults.length);
      for (const state of STATES) expect(counts.byState[state], `${runId} ${state}`).toBe(faults.filter((f) => f.state === state).length);
      expect(counts.unended).toBe(faults.filter((f) => f.endedAt === null && f.state !== "failed" && f.state !== "revert_failed").length);
    }
    expect(listings.countRunFaults("run_1").byState.revert_failed).toBeGreaterThan(0);
  });

  it("refuses a cursor it did not make, saying what to send instead", () => {
    const agentCursor = listings.agents({ limit: 1 }).nextCursor!;
    const faultCursor = listings.faults({ limit: 1 }).nextCursor!;
    const hint = /pass the nextCursor of the previous page unchanged, or leave cursor out to start from the first page/;
    const refused = (fn: () => unknown, message: RegExp) => {
      expect(fn).toThrow(CursorError);
      expect(fn).toThrow(message);
      expect(fn).toThrow(hint);
    };
    refused(() => listings.faults({ cursor: agentCursor }), /^cursor is not a fault cursor \(it is a cursor of the agent listing\)/);
    refused(() => listings.agents({ cursor: faultCursor }), /^cursor is not an agent cursor \(it is a cursor of the fault listing\)/);
    refused(() => listings.agents({ cursor: "not base64!" }), /^cursor is not an agent cursor/);
    refused(() => listings.faults({ cursor: agentCursor.slice(0, -3) }), /^cursor is not a fault cursor/);
    refused(() => listings.faults({ cursor: Buffer.from('["f","1",2]').toString("base64url") }), /^cursor is not a fault cursor/);
    refused(() => listings.agents({ cursor: Buffer.from('["a",7]').toString("base64url") }), /^cursor is not an agent cursor/);
    refused(() => listings.agents({ cursor: "A".repeat(5000) }), /^cursor is not an agent cursor/);
    expect(() => listings.agents({ limit: 1001 })).toThrow(RangeError);
  });

  it.skipIf(engine.engine !== "sqlite")("walks an index for every page and count: no scan of the table, no sort of the rows", () => {
    const plans = listings.queryPlans();
    expect(Object.keys(plans)).toHaveLength(8 + 1 + 8 + 1);
    for (const [shape, plan] of Object.entries(plans)) {
      expect(plan, shape).not.toMatch(/\bSCAN\b/);
      expect(plan, shape).not.toMatch(/TEMP B-TREE FOR ORDER BY/);
      expect(plan, shape).toMatch(/^SEARCH \w+ USING (COVERING )?INDEX/);
    }
  });

  it.skipIf(engine.engine !== "postgres")("refuses to explain SQLite's plans on PostgreSQL, saying so", () => {
    expect(() => listings.queryPlans()).toThrow(/SQLite's plans .* is PostgreSQL: use EXPLAIN in psql/);
  });
});
