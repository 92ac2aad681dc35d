import { FAULT_KINDS, FaultEventType, RevertReason, durationToMs } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ErrorJson, FaultEventJson, FaultJson } from "../api-types.js";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";

interface Reply<T> {
  status: number;
  body: T;
}

describe("HTTP API", () => {
  let tcp: TestControlPlane;
  let agent: TestAgent;
  const extra: TestAgent[] = [];

  const call = async <T = unknown>(method: string, path: string, body?: unknown, raw?: string): Promise<Reply<T>> => {
    const init: RequestInit = { method, headers: { authorization: `Bearer ${tcp.adminToken()}` } };
    if (body !== undefined || raw !== undefined) {
      init.headers = { authorization: `Bearer ${tcp.adminToken()}`, "content-type": "application/json" };
      init.body = raw ?? JSON.stringify(body);
    }
    const res = await fetch(`${tcp.cp.httpUrl}${path}`, init);
    expect(res.headers.get("content-type")).toContain("application/json");
    return { status: res.status, body: (await res.json()) as T };
  };
  const post = (body: unknown, agentId = "agent-1") => call<{ fault: FaultJson } & ErrorJson>("POST", `/api/v1/agents/${agentId}/faults`, body);

  beforeEach(async () => {
    tcp = await startTestControlPlane();
    agent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token() });
    agent.hello();
    await agent.next("welcome");
  });
  afterEach(async () => {
    agent.cancel();
    for (const a of extra.splice(0)) a.cancel();
    await tcp.cleanup();
  });

  it("returns precise issues for an invalid fault request, and sends nothing", async () => {
    const res = await post({ kind: "cpu-burn", params: { load: 150 }, duration: "forever", runID: "x" });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_request");
    expect(res.body.error.issues).toEqual([
      { field: "params.load", message: "150 is above the maximum 100" },
      { field: "duration", message: '"forever" is not a duration; use e.g. 500ms, 30s, 5m, 1h30m' },
      { field: "runID", message: "unknown field; allowed: kind, params, duration, runId" },
    ]);
    expect(res.body.error.message).toBe(
      'invalid fault request: params.load: 150 is above the maximum 100; duration: "forever" is not a duration; use e.g. 500ms, 30s, 5m, 1h30m; runID: unknown field; allowed: kind, params, duration, runId',
    );

    const kind = await post({ kind: "cpu-melt", duration: "30s" });
    expect(kind.status).toBe(400);
    expect(kind.body.error.issues).toEqual([{ field: "kind", message: `unknown fault kind "cpu-melt"; use one of: ${FAULT_KINDS.join(", ")}` }]);

    const notObject = await post([1, 2]);
    expect(notObject.status).toBe(400);
    expect(notObject.body.error.message).toMatch(/must be a JSON object/);

    const list = await call<{ faults: FaultJson[] }>("GET", "/api/v1/faults");
    expect(list.body.faults).toEqual([]);
    expect(agent.received.some((m) => m.message.case === "startFault")).toBe(false);
  });

  it("answers malformed JSON, unknown routes and bad queries with JSON errors", async () => {
    const malformed = await call<ErrorJson>("POST", "/api/v1/agents/agent-1/faults", undefined, '{"kind": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("invalid_json");
    expect(malformed.body.error.message).toContain("Content-Type: application/json");

    const missing = await call<ErrorJson>("GET", "/api/v2/agents");
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: "not_found", message: expect.stringContaining("GET /api/v2/agents") });

    const query = await call<ErrorJson>("GET", "/api/v1/faults?state=running&limit=0");
    expect(query.status).toBe(400);
    expect(query.body.error.issues).toEqual([
      { field: "query.state", message: '"running" is not allowed; use active or all' },
      { field: "query.limit", message: '"0" is not valid; use a whole number from 1 to 1000 (more: follow nextCursor)' },
    ]);

    expect((await call("GET", "/healthz")).body).toEqual({ ok: true });
  });

  it("refuses unknown agents (404), disconnected agents (409) and unsupported kinds (422)", async () => {
    const unknown = await post({ kind: "cpu-burn", duration: "30s" }, "nobody");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("agent_not_found");
    expect(unknown.body.error.message).toContain("GET /api/v1/agents");

    const limited = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token(), agentId: "no-kinds" });
    extra.push(limited);
    limited.hello({ capabilities: { faultKinds: [] } });
    await limited.next("welcome");
    const unsupported = await post({ kind: "cpu-burn", duration: "30s" }, "no-kinds");
    expect(unsupported.status).toBe(422);
    expect(unsupported.body.error).toMatchObject({ code: "unsupported_fault_kind" });
    expect(unsupported.body.error.message).toContain("cannot run cpu-burn: it supports no fault kinds");

    limited.close();
    await limited.ended;
    for (let i = 0; i < 50 && (await call<{ agent: { connected: boolean } }>("GET", "/api/v1/agents/no-kinds")).body.agent.connected; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const disconnected = await post({ kind: "cpu-burn", duration: "30s" }, "no-kinds");
    expect(disconnected.status).toBe(409);
    expect(disconnected.body.error.code).toBe("agent_not_connected");
    expect(disconnected.body.error.message).toMatch(/is not connected \(disconnected since \d{4}-\d\d-\d\dT.*\); the fault was not sent/);
  });

  it("sends StartFault and answers 201 once the agent accepts", async () => {
    const response = post({ kind: "cpu-burn", params: { load: 50, cores: 2 }, duration: "30s", runId: "run-1" });
    const start = await agent.next("startFault");
    expect(start).toMatchObject({ kind: "cpu-burn", params: { load: 50, cores: 2 }, runId: "run-1" });
    expect(start.faultId).toMatch(/^flt_[0-9a-f]{16}$/);
    expect(durationToMs(start.duration)).toBe(30_000);
    agent.event(start.faultId, FaultEventType.ACCEPTED);
    const res = await response;
    expect(res.status).toBe(201);
    expect(res.body.fault).toMatchObject({
      id: start.faultId,
      agentId: "agent-1",
      runId: "run-1",
      kind: "cpu-burn",
      params: { load: 50, cores: 2 },
      durationMs: 30_000,
      state: "accepted",
      reason: null,
      endedAt: null,
    });
    expect(Date.parse(res.body.fault.createdAt)).not.toBeNaN();

    agent.event(start.faultId, FaultEventType.STARTED, { measurements: { cpu_percent: 48.7 } });
    const active = await (async () => {
      for (let attempt = 0; attempt < 100; attempt++) {
        const list = await call<{ faults: FaultJson[] }>("GET", "/api/v1/agents/agent-1/faults?state=active");
        if (list.body.faults[0]?.state === "running") return list.body.faults;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error("the fault never became running");
    })();
    expect(active).toHaveLength(1);
    expect(active[0]).toMatchObject({ measurements: { cpu_percent: 48.7 } });
    expect(active[0]!.startedAt).not.toBeNull();
  });

  it("answers 422 fault_refused with the agent's error when it fails the fault", async () => {
    const response = post({ kind: "cpu-burn", params: { load: 50 }, duration: "30s" });
    const start = await agent.next("startFault");
    agent.event(start.faultId, FaultEventType.FAILED, { error: "cores: 64 is more than this host's 2 cores" });
    const res = await response;
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({
      code: "fault_refused",
      message: "cores: 64 is more than this host's 2 cores",
      fault: { id: start.faultId, state: "failed", error: "cores: 64 is more than this host's 2 cores" },
    });
    const shown = await call<{ fault: FaultJson; events: FaultEventJson[] }>("GET", `/api/v1/faults/${start.faultId}`);
    expect(shown.body.events.map((e) => e.type)).toEqual(["failed"]);
  });

  it("stops one fault with StopFault and waits for the revert; stopping again changes nothing", async () => {
    const response = post({ kind: "cpu-burn", duration: "10m" });
    const start = await agent.next("startFault");
    agent.event(start.faultId, FaultEventType.STARTED);
    expect((await response).status).toBe(201);

    const stopping = call<{ fault: FaultJson }>("DELETE", `/api/v1/agents/agent-1/faults/${start.faultId}`);
    const stop = await agent.next("stopFault");
    expect(stop).toMatchObject({ faultId: start.faultId, reason: RevertReason.STOPPED });
    agent.event(start.faultId, FaultEventType.REVERTED, { reason: RevertReason.STOPPED });
    const stopped = await stopping;
    expect(stopped.status).toBe(200);
    expect(stopped.body.fault).toMatchObject({ state: "reverted", reason: "stopped" });

    const again = await call<{ fault: FaultJson }>("DELETE", `/api/v1/agents/agent-1/faults/${start.faultId}`);
    expect(again.status).toBe(200);
    expect(again.body.fault).toEqual(stopped.body.fault);

    const unknown = await call<ErrorJson>("DELETE", "/api/v1/agents/agent-1/faults/flt_0000000000000000");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("fault_not_found");
  });

  it("stops every fault of an agent with StopAll", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      // The policy allows one fault of a kind per host: the second burn is an admin's override.
      const response = post({ kind: "cpu-burn", duration: "10m", ...(i === 1 ? { overridePolicy: "two burns for the stop-all test" } : {}) });
      const start = await agent.next("startFault");
      agent.event(start.faultId, FaultEventType.ACCEPTED);
      const res = await response;
      expect(res.status).toBe(201);
      expect(res.body.fault).toMatchObject({ actor: "admin", policyOverride: i === 1 ? "two burns for the stop-all test" : null });
      ids.push(start.faultId);
    }
    const stopping = call<{ faults: FaultJson[] }>("DELETE", "/api/v1/agents/agent-1/faults");
    const stopAll = await agent.next("stopAll");
    expect(stopAll.reason).toBe(RevertReason.STOPPED);
    for (const id of ids) agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.STOPPED });
    const res = await stopping;
    expect(res.status).toBe(200);
    expect(res.body.faults.map((f) => [f.id, f.state, f.reason])).toEqual(ids.map((id) => [id, "reverted", "stopped"]));

    const all = await call<{ faults: FaultJson[] }>("GET", "/api/v1/faults?state=all&agent=agent-1");
    expect(all.body.faults.map((f) => f.id)).toEqual([...ids].reverse());
    const active = await call<{ faults: FaultJson[] }>("GET", "/api/v1/faults?state=active");
    expect(active.body.faults).toEqual([]);
  });

  it("records a stop for a disconnected agent (202): it is sent when the agent reconnects", async () => {
    const response = post({ kind: "cpu-burn", duration: "10m" });
    const start = await agent.next("startFault");
    agent.event(start.faultId, FaultEventType.STARTED);
    expect((await response).status).toBe(201);
    agent.close();
    await agent.ended;
    // The hub marks the agent disconnected before it sends the final status, so this is immediate.
    const res = await call<{ fault: FaultJson }>("DELETE", `/api/v1/agents/agent-1/faults/${start.faultId}`);
    expect(res.status).toBe(202);
    expect(res.body.fault).toMatchObject({ id: start.faultId, state: "running", stopReason: "stopped" });
    expect(res.body.fault.stopRequestedAt).not.toBeNull();
  });
});
