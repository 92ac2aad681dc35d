/**
 * A stop is never lost: a real control plane (SQLite in a temp dir, or PostgreSQL; gRPC and HTTP on loopback) and
 * test agents speaking the real protocol over real streams. The agent's side (that StopFault ends
 * the burn) is tested with a real agent process in test/stop-resend.test.ts.
 */
import { FaultEventType, FaultState, RevertReason } from "@firedrill/protocol";
import { afterEach, expect, it } from "vitest";
import { describeEachEngine } from "../test-support/store-engines.js";
import type { FaultEventJson, FaultJson } from "../api-types.js";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeEachEngine("stops are never lost", (engine) => {
  let tcp: TestControlPlane | undefined;
  const agents: TestAgent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) a.cancel();
    await tcp?.cleanup();
    tcp = undefined;
  });
  const connect = (agentId = "agent-1") => {
    const agent = connectTestAgent({ address: tcp!.cp.grpcAddress, token: tcp!.token(), agentId });
    agents.push(agent);
    return agent;
  };
  const fault = async (id: string) => (await tcp!.api<{ fault: FaultJson; events: FaultEventJson[] }>("GET", `/api/v1/faults/${id}`)).body;
  const connected = async (id: string) => (await tcp!.api<{ agent: { connected: boolean } }>("GET", `/api/v1/agents/${id}`)).body.agent.connected;
  const metrics = async () => (await tcp!.fetch(`${tcp!.cp.httpUrl}/metrics`)).text();
  /** Starts a cpu-burn on the agent and lets it run (ACCEPTED, STARTED). */
  const running = async (agent: TestAgent) => {
    const response = tcp!.api("POST", `/api/v1/agents/${agent.agentId}/faults`, { kind: "cpu-burn", params: { load: 30 }, duration: "10m" });
    const start = await agent.next("startFault");
    agent.event(start.faultId, FaultEventType.ACCEPTED);
    agent.event(start.faultId, FaultEventType.STARTED);
    expect((await response).status).toBe(201);
    return start.faultId;
  };
  const drop = async (agent: TestAgent) => {
    agent.cancel();
    await until("the control plane to see the link gone", async () => ((await connected(agent.agentId)) ? undefined : true));
  };
  /** Messages of `kind` the agent received, in order. */
  const cases = (agent: TestAgent) => agent.received.map((m) => m.message.case);

  it("a stop asked while the agent is away survives a control-plane restart and is sent right after the agent's next Welcome", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const first = connect();
    first.hello();
    await first.next("welcome");
    const id = await running(first);
    await drop(first);

    const stop = await tcp.api<{ fault: FaultJson }>("DELETE", `/api/v1/agents/agent-1/faults/${id}`);
    expect(stop.status).toBe(202);
    expect(stop.body.fault).toMatchObject({ state: "running", stopReason: "stopped", stopRequestedBy: expect.stringMatching(/^stopped by /) });
    expect(stop.body.fault.stopRequestedAt).not.toBeNull();

    await tcp.restart();
    const second = connect();
    second.hello({ heldFaults: [{ faultId: id, kind: "cpu-burn", state: FaultState.RUNNING }] });
    const welcomedAt = performance.now();
    await second.next("welcome");
    const resent = await second.next("stopFault", 1000);
    const ms = performance.now() - welcomedAt;
    console.log(`stop re-sent ${ms.toFixed(0)} ms after Hello, across a control-plane restart`);
    expect(resent).toMatchObject({ faultId: id, reason: RevertReason.STOPPED });
    // Right after the Welcome, before anything else.
    expect(cases(second).slice(0, 2)).toEqual(["welcome", "stopFault"]);

    second.event(id, FaultEventType.REVERTED, { reason: RevertReason.STOPPED });
    const ended = await until("the revert", async () => {
      const f = (await fault(id)).fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(ended).toMatchObject({ reason: "stopped", stopReason: "stopped" });
    const text = await metrics();
    expect(text).toMatch(/^firedrill_fault_stops_resent_total\{when="reconnect"\} 1$/m);
    expect(text).toMatch(/^firedrill_fault_stops_pending 0$/m);
  });

  it("a halt wants the faults of agents that are away ended: they get the stop (reason halt) when they come back", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const first = connect();
    first.hello();
    await first.next("welcome");
    const id = await running(first);
    await drop(first);
    expect((await tcp.api("POST", "/api/v1/halt", { reason: "INC-7" })).status).toBe(200);
    expect((await fault(id)).fault).toMatchObject({ state: "running", stopReason: "halt", stopRequestedBy: expect.stringContaining("INC-7") });

    const second = connect();
    second.hello({ heldFaults: [{ faultId: id, kind: "cpu-burn", state: FaultState.RUNNING }] });
    await second.next("welcome");
    expect(await second.next("stopFault", 1000)).toMatchObject({ faultId: id, reason: RevertReason.HALT });
    expect(cases(second).slice(0, 2)).toEqual(["welcome", "stopFault"]);
  });

  it("a stop the agent does not confirm is sent again on the live link until it does", async () => {
    tcp = await startTestControlPlane({ ...(await engine.controlPlaneStore()), ackTimeoutMs: 500 });
    const agent = connect();
    agent.hello();
    await agent.next("welcome");
    const id = await running(agent);
    // The agent "misses" the first stop: no answer, the API says it is not confirmed.
    const stop = await tcp.api<{ fault: FaultJson }>("DELETE", `/api/v1/agents/agent-1/faults/${id}`);
    expect(stop.status).toBe(202);
    await agent.next("stopFault");
    const first = performance.now();
    await agent.next("stopFault", 4000);
    console.log(`unconfirmed stop re-sent on the live link after ${(performance.now() - first).toFixed(0)} ms`);
    agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.STOPPED });
    await until("the revert", async () => ((await fault(id)).fault.state === "reverted" ? true : undefined));
    const sent = cases(agent).filter((c) => c === "stopFault").length;
    await new Promise((r) => setTimeout(r, 2500));
    expect(cases(agent).filter((c) => c === "stopFault").length).toBe(sent);
    expect(await metrics()).toMatch(/^firedrill_fault_stops_resent_total\{when="retry"\} [1-9]/m);
  });

  it("an agent that never comes back: the fault is closed as reverted by its lease, not confirmed; its later report replaces that", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const first = connect();
    first.hello();
    await first.next("welcome");
    const id = await running(first);
    await drop(first);
    const droppedAt = performance.now();
    expect((await tcp.api("DELETE", `/api/v1/agents/agent-1/faults/${id}`)).status).toBe(202);
    // Lease TTL 3 s + 3 heartbeats (0.6 s) + 2 s margin after the agent was last heard; a tick every 2 s.
    const assumed = await until("the lease to be assumed", async () => {
      const f = (await fault(id)).fault;
      return f.state === "reverted" ? f : undefined;
    }, 12_000);
    const ms = performance.now() - droppedAt;
    console.log(`closed as lease-assumed ${ms.toFixed(0)} ms after the link dropped`);
    expect(ms).toBeGreaterThanOrEqual(5600 - 200);
    expect(assumed).toMatchObject({ reason: "lease-assumed", error: null });
    const { events } = await fault(id);
    expect(events.at(-1)).toMatchObject({ type: "reverted", reason: "lease-assumed", message: expect.stringMatching(/^not confirmed by the agent: .*its lease \(TTL 3s\) must have reverted it/) });
    expect(await metrics()).toMatch(/^firedrill_fault_reverts_assumed_total\{kind="cpu-burn"\} 1$/m);

    // The agent comes back and reports what really happened.
    const second = connect();
    second.hello({ heldFaults: [{ faultId: id, kind: "cpu-burn", state: FaultState.REVERTED }] });
    await second.next("welcome");
    second.event(id, FaultEventType.REVERTED, { reason: RevertReason.LEASE });
    const confirmed = await until("the agent's report", async () => {
      const f = (await fault(id)).fault;
      return f.reason === "lease" ? f : undefined;
    });
    expect(confirmed.state).toBe("reverted");
  });

  it("revert_failed: ended but never reverted, listed with the active faults, counted; the agent's details are kept, bounded", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect();
    agent.hello();
    await agent.next("welcome");
    const response = tcp.api<{ fault: FaultJson }>("POST", "/api/v1/agents/agent-1/faults", { kind: "cpu-burn", params: { load: 30 }, duration: "10m" });
    const start = await agent.next("startFault");
    const id = start.faultId;
    const details = [
      "Leaves alone: tcp port 22 (ssh), 10.0.0.0/8 (management)",
      `\u001b[31mred\u001b[0m ${"x".repeat(1000)}`,
      "",
      ...Array.from({ length: 60 }, (_, i) => `line ${i}`),
    ];
    agent.event(id, FaultEventType.ACCEPTED, { details });
    expect((await response).status).toBe(201);
    agent.event(id, FaultEventType.STARTED);
    const shown = await until("running", async () => {
      const f = (await fault(id)).fault;
      return f.state === "running" ? f : undefined;
    });
    expect(shown.details).toHaveLength(50);
    expect(shown.details[0]).toBe("Leaves alone: tcp port 22 (ssh), 10.0.0.0/8 (management)");
    expect(shown.details[1]).toMatch(/^\[31mred \[0m x+…$/);
    expect(shown.details[1]).toHaveLength(300);
    expect(shown.details[2]).toBe("line 0");
    expect(shown.details[49]).toBe("… and 13 more lines");

    agent.event(id, FaultEventType.REVERT_FAILED, { error: "could not remove /srv/fill: EPERM", reason: RevertReason.STOPPED });
    const failed = await until("revert_failed", async () => {
      const f = (await fault(id)).fault;
      return f.state === "revert_failed" ? f : undefined;
    });
    expect(failed).toMatchObject({ error: "could not remove /srv/fill: EPERM", reason: "stopped" });
    expect(failed.endedAt).not.toBeNull();
    const active = (await tcp.api<{ faults: FaultJson[] }>("GET", "/api/v1/faults?state=active")).body.faults;
    expect(active.map((f) => [f.id, f.state])).toEqual([[id, "revert_failed"]]);
    expect((await tcp.api<{ agent: { activeFaults: number } }>("GET", "/api/v1/agents/agent-1")).body.agent.activeFaults).toBe(0);
    expect(await metrics()).toMatch(/^firedrill_fault_revert_failures_total\{kind="cpu-burn"\} 1$/m);

    // Once the cause is fixed, a stop makes the agent try the revert again; its revert replaces the state.
    const retry = tcp.api<{ fault: FaultJson }>("DELETE", `/api/v1/agents/agent-1/faults/${id}`);
    expect(await agent.next("stopFault")).toMatchObject({ faultId: id });
    agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.STOPPED });
    const retried = await retry;
    expect(retried.status).toBe(200);
    expect(retried.body.fault).toMatchObject({ state: "reverted", reason: "stopped", error: null });
  });
});
