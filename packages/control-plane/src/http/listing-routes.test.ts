/**
 * The paginated listings through the real control plane: a store seeded with 1,200 agents and
 * 10,050 faults of one run (past the old 10,000 cap), a live agent on gRPC, pages followed by
 * cursor, and the run's fault counts and report.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentListJson, AgentJson, AgentSummaryJson, ErrorJson, FaultJson, FaultListJson } from "../api-types.js";
import { testAgent } from "../test-support/agent-records.js";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";
import { createRunStore } from "../store/run-store.js";
import { createStore } from "../store/store.js";
import type { FaultEventInput } from "../store/types.js";

const AGENTS = 1_200;
const RUN_FAULTS = 10_050;

describe("HTTP API: paginated listings", () => {
  let tcp: TestControlPlane;
  let live: TestAgent;
  /** Seeded agent ids, sorted, with the live one. */
  let ids: string[];

  beforeAll(async () => {
    tcp = await startTestControlPlane();
    await tcp.close();
    const store = createStore({ dataDir: tcp.dataDir });
    const runs = createRunStore(store.db);
    const base = testAgent("x");
    const now = Date.now();
    store.db.transaction(() => {
      for (let i = 0; i < AGENTS; i++) {
        const id = `agt_${i.toString().padStart(5, "0")}`;
        store.upsertAgent({ id, hostname: id, version: "0.1.0", facts: base.facts, labels: { app: i % 4 === 0 ? "web" : "db" }, capabilities: base.capabilities, instanceId: null, availabilityZone: null }, now);
        if (i % 100 === 99) store.removeAgent(id, now);
      }
      runs.insertRun({ id: "run_big", name: "burn everything", specYaml: "", experiment: {}, plan: {}, state: "pending", actor: "admin", createdAt: 1_000 });
      runs.transition("run_big", "running", null, 2_000);
      runs.transition("run_big", "completed", "every step ran", 100_000);
      for (let i = 0; i < RUN_FAULTS; i++) {
        const agentId = `agt_${(i % 1000).toString().padStart(5, "0")}`;
        const faultId = `flt_${i.toString(16).padStart(16, "0")}`;
        store.insertFault({ id: faultId, agentId, runId: "run_big", kind: "cpu-burn", params: {}, durationMs: 60_000, createdAt: 10_000 + Math.floor(i / 100) });
        // Ended faults only: nothing the restarted control plane would touch. 1 in 1000 gave the revert up.
        const type: FaultEventInput["type"] = i % 1000 === 1 ? "revert_failed" : i % 10 === 0 ? "failed" : "reverted";
        const event = (t: FaultEventInput["type"]) =>
          store.recordFaultEvent({ faultId, agentId, type: t, time: 50_000, reason: t === "reverted" ? "duration" : null, error: t === "reverted" ? null : "boom", message: null, measurements: null }, 50_000);
        if (type !== "failed") event("started");
        event(type);
      }
    })();
    store.close();
    await tcp.restart();
    live = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token(), agentId: "live-1" });
    live.hello();
    await live.next("welcome");
    ids = [...Array.from({ length: AGENTS }, (_, i) => i).filter((i) => i % 100 !== 99).map((i) => `agt_${i.toString().padStart(5, "0")}`), "live-1"].sort();
  });
  afterAll(async () => {
    live?.cancel();
    await tcp?.cleanup();
  });

  const get = <T>(path: string, token?: string) => tcp.api<T>("GET", path, undefined, token);

  /** Every page of `path`, following nextCursor. */
  async function follow<T, K extends "agents" | "faults">(path: string, key: K): Promise<{ items: T[]; pages: number }> {
    const items: T[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const sep = path.includes("?") ? "&" : "?";
      const res: { status: number; body: Record<K, T[]> & { nextCursor: string | null } } = await get(cursor === null ? path : `${path}${sep}cursor=${cursor}`);
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
      items.push(...res.body[key]);
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor !== null);
    return { items, pages };
  }

  it("GET /api/v1/agents: a page of 100 in the compact view, the fleet's counts, and every agent once by following nextCursor", async () => {
    const first = await get<AgentListJson>("/api/v1/agents");
    expect(first.status).toBe(200);
    expect(first.body.agents).toHaveLength(100);
    expect(first.body.total).toBe(ids.length);
    expect(first.body.connected).toBe(1);
    expect(first.body.nextCursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(first.body.agents[0]).not.toHaveProperty("facts");
    expect(first.body.agents[0]).toMatchObject({ id: "agt_00000", hostname: "agt_00000", labels: { app: "web" }, connected: false, stale: false, activeFaults: 0, capabilities: { faultKinds: expect.arrayContaining(["cpu-burn"]) } });

    const all = await follow<AgentSummaryJson, "agents">("/api/v1/agents?limit=1000", "agents");
    expect(all.pages).toBe(2);
    expect(all.items.map((a) => a.id)).toEqual(ids);

    // view=full is the record as it always was, facts included.
    const full = await get<AgentListJson<AgentJson>>("/api/v1/agents?view=full&limit=2");
    expect(full.body.agents.map((a) => a.facts.osPlatform)).toEqual(["linux", "linux"]);
    const one = await get<{ agent: AgentJson }>("/api/v1/agents/agt_00000");
    expect(full.body.agents[0]).toEqual(one.body.agent);
    expect({ ...full.body.agents[0], facts: undefined }).toEqual({ ...first.body.agents[0], facts: undefined });
  });

  it("filters agents by connected and by label, and pages the filtered list", async () => {
    const connected = await get<AgentListJson>("/api/v1/agents?connected=true");
    expect(connected.body.agents.map((a) => a.id)).toEqual(["live-1"]);
    expect(connected.body.nextCursor).toBeNull();
    const gone = await follow<AgentSummaryJson, "agents">("/api/v1/agents?connected=false&limit=500", "agents");
    expect(gone.items.map((a) => a.id)).toEqual(ids.filter((id) => id !== "live-1"));
    const web = await follow<AgentSummaryJson, "agents">("/api/v1/agents?label=app%3Dweb&limit=100", "agents");
    // The live agent says app=web too; the disconnected web agents are 300.
    expect(web.items.map((a) => a.id)).toEqual(ids.filter((id) => id === "live-1" || Number(id.slice(4)) % 4 === 0));
    expect(web.pages).toBe(4);
    const liveWeb = await get<AgentListJson>("/api/v1/agents?label=app%3Dweb&label=firedrill%3Aopt-in%3Dtrue&connected=true");
    expect(liveWeb.body.agents.map((a) => a.id)).toEqual(["live-1"]);
    const both = await get<AgentListJson>("/api/v1/agents?label=app%3Dweb&label=app%3Ddb");
    expect(both.status).toBe(400);
  });

  it("answers bad listing queries and cursors with 400: what is wrong and what to send", async () => {
    const bad = await get<ErrorJson>("/api/v1/agents?view=wide&connected=yes&limit=5000&label=nolabel");
    expect(bad.status).toBe(400);
    expect(bad.body.error.issues).toEqual([
      { field: "query.limit", message: '"5000" is not valid; use a whole number from 1 to 1000 (more: follow nextCursor)' },
      { field: "query.view", message: '"wide" is not allowed; use compact (no host facts) or full' },
      { field: "query.connected", message: '"yes" is not allowed; use true or false' },
      { field: "query.label", message: '"nolabel" is not key=value with a valid label key and value, e.g. label=app=web' },
    ]);

    const garbled = await get<ErrorJson>("/api/v1/agents?cursor=bm90LWEtY3Vyc29y");
    expect(garbled.status).toBe(400);
    expect(garbled.body.error.code).toBe("invalid_request");
    expect(garbled.body.error.message).toBe(
      "invalid query: query.cursor: cursor is not an agent cursor; pass the nextCursor of the previous page unchanged, or leave cursor out to start from the first page",
    );
    const faultCursor = (await get<FaultListJson>("/api/v1/faults?limit=1")).body.nextCursor!;
    const crossed = await get<ErrorJson>(`/api/v1/agents?cursor=${faultCursor}`);
    expect(crossed.status).toBe(400);
    expect(crossed.body.error.issues).toEqual([{ field: "query.cursor", message: expect.stringContaining("(it is a cursor of the fault listing)") }]);
    const onAgentFaults = await get<ErrorJson>("/api/v1/agents/agt_00000/faults?cursor=%25%25");
    expect(onAgentFaults.status).toBe(400);
    expect(onAgentFaults.body.error.message).toContain("query.cursor: cursor is not a fault cursor");
    const unknownParam = await get<ErrorJson>("/api/v1/agents/agt_00000/faults?runId=run_big");
    expect(unknownParam.body.error.issues).toEqual([{ field: "query.runId", message: "unknown parameter; allowed: state, limit, cursor" }]);
  });

  it("GET /api/v1/faults pages a run of 10,050 faults newest first, each once; an agent's faults page the same way", async () => {
    const first = await get<FaultListJson>("/api/v1/faults?runId=run_big");
    expect(first.body.faults).toHaveLength(100);
    expect(first.body.nextCursor).not.toBeNull();
    const all = await follow<FaultJson, "faults">("/api/v1/faults?runId=run_big&limit=1000", "faults");
    expect(all.pages).toBe(11);
    expect(all.items).toHaveLength(RUN_FAULTS);
    expect(new Set(all.items.map((f) => f.id)).size).toBe(RUN_FAULTS);
    const keys = all.items.map((f) => f.createdAt);
    expect(keys).toEqual([...keys].sort().reverse());
    expect(all.items[0]!.id).toBe(`flt_${(RUN_FAULTS - 1).toString(16).padStart(16, "0")}`);

    expect((await get<FaultListJson>("/api/v1/faults?runId=nope")).body).toEqual({ faults: [], nextCursor: null });
    const active = await follow<FaultJson, "faults">("/api/v1/faults?runId=run_big&state=active&limit=3", "faults");
    expect(active.items.map((f) => f.state)).toEqual(Array(11).fill("revert_failed"));

    const agentFaults = await follow<FaultJson, "faults">("/api/v1/agents/agt_00007/faults?limit=4", "faults");
    expect(agentFaults.items.map((f) => f.id)).toEqual(all.items.filter((f) => f.agentId === "agt_00007").map((f) => f.id));
    expect(agentFaults.pages).toBe(3);
    const same = await follow<FaultJson, "faults">("/api/v1/faults?agent=agt_00007&runId=run_big&limit=7", "faults");
    expect(same.items).toEqual(agentFaults.items);
  });

  it("a viewer lists with every new parameter (they need no permission beyond read)", async () => {
    const viewer = await tcp.tokenFor("viewer");
    expect((await get("/api/v1/agents?limit=5&view=full&connected=false&label=app%3Dweb", viewer)).status).toBe(200);
    const page = await get<FaultListJson>("/api/v1/faults?runId=run_big&limit=5", viewer);
    expect(page.status).toBe(200);
    expect((await get(`/api/v1/faults?runId=run_big&limit=5&cursor=${page.body.nextCursor}`, viewer)).status).toBe(200);
    expect((await get("/api/v1/agents/agt_00001/faults?limit=1&state=all", viewer)).status).toBe(200);
  });

  it("GET /api/v1/runs/:id counts the run's faults by state; its report has every fault, past 10,000", async () => {
    const shown = await get<{ run: { faultCounts: Record<string, number>; faultRevertsUnconfirmed: number } }>("/api/v1/runs/run_big");
    expect(shown.status).toBe(200);
    const revertFailed = 11;
    const failed = RUN_FAULTS / 10;
    expect(shown.body.run.faultCounts).toEqual({ pending: 0, accepted: 0, running: 0, reverted: RUN_FAULTS - failed - revertFailed, failed, revert_failed: revertFailed });
    expect(shown.body.run.faultRevertsUnconfirmed).toBe(revertFailed);

    const report = await get<{ report: { hits: unknown[]; revertFailed: unknown[]; reverts: { text: string } } }>("/api/v1/runs/run_big/report");
    expect(report.status).toBe(200);
    expect(report.body.report.hits).toHaveLength(RUN_FAULTS);
    expect(report.body.report.revertFailed).toHaveLength(revertFailed);
  });
});
