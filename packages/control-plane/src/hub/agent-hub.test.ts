import * as grpc from "@grpc/grpc-js";
import { FaultEventType, FaultState, RevertReason, durationToMs, timestampFromMs } from "@firedrill/protocol";
import { afterEach, expect, it } from "vitest";
import { describeEachEngine } from "../test-support/store-engines.js";
import type { AgentJson, FaultEventJson, FaultJson } from "../api-types.js";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";

async function getJson<T>(tcp: TestControlPlane, url: string): Promise<T> {
  const res = await tcp.fetch(url);
  return (await res.json()) as T;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeEachEngine("agent hub", (engine) => {
  let tcp: TestControlPlane | undefined;
  const agents: TestAgent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) a.cancel();
    await tcp?.cleanup();
    tcp = undefined;
  });
  const connect = (agentId = "agent-1", heartbeatMs?: number) => {
    const agent = connectTestAgent({
      address: tcp!.cp.grpcAddress,
      token: tcp!.token(),
      agentId,
      ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    });
    agents.push(agent);
    return agent;
  };
  const agentJson = async (id: string) => (await getJson<{ agent: AgentJson }>(tcp!, `${tcp!.cp.httpUrl}/api/v1/agents/${id}`)).agent;
  const faultJson = async (id: string) =>
    getJson<{ fault: FaultJson; events: FaultEventJson[] }>(tcp!, `${tcp!.cp.httpUrl}/api/v1/faults/${id}`);
  const startFault = async (agentId: string, agent: TestAgent, accept = true) => {
    const response = tcp!.fetch(`${tcp!.cp.httpUrl}/api/v1/agents/${agentId}/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      // Several burns on one host: the policy allows one per kind, so the (admin) test overrides it.
      body: JSON.stringify({ kind: "cpu-burn", params: { load: 30 }, duration: "5m", overridePolicy: "hub test: stacked faults" }),
    });
    const start = await agent.next("startFault");
    if (accept) {
      agent.event(start.faultId, FaultEventType.ACCEPTED);
      agent.event(start.faultId, FaultEventType.STARTED, { measurements: { cpu_percent: 29.5 } });
    }
    expect((await response).status).toBe(accept ? 201 : 202);
    return start.faultId;
  };

  it("answers Hello with Welcome, renews the lease, and tracks the connection", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect();
    agent.hello({ labels: { app: "web", tier: "front" } });
    const welcome = await agent.next("welcome");
    expect(welcome.agentId).toBe("agent-1");
    expect(durationToMs(welcome.leaseTtl)).toBe(3000);
    expect(durationToMs(welcome.heartbeatInterval)).toBe(200);
    expect(welcome.serverVersion).toMatch(/^\d+\.\d+\.\d+/);
    const first = await agent.next("leaseRenewal", 2000);
    expect(durationToMs(first.leaseTtl)).toBe(3000);
    await agent.next("leaseRenewal", 2000);

    const connected = await agentJson("agent-1");
    expect(connected).toMatchObject({
      id: "agent-1",
      hostname: "agent-1.test",
      version: "0.1.0-test",
      connected: true,
      labels: { app: "web", tier: "front" },
      activeFaults: 0,
      capabilities: { faultKinds: ["cpu-burn"], root: false },
      facts: { cpuCount: 2, memoryBytes: 4 * 1024 ** 3 },
    });
    expect(Date.parse(connected.connectedAt!)).toBeGreaterThan(Date.now() - 10_000);

    agent.close();
    const status = await agent.ended;
    expect(status.code).toBe(grpc.status.OK);
    const gone = await until("agent-1 disconnected", async () => {
      const a = await agentJson("agent-1");
      return a.connected ? undefined : a;
    });
    expect(gone.connected).toBe(false);
  });

  it("ends a stream whose first message is not Hello with INVALID_ARGUMENT", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect();
    agent.heartbeat();
    const status = await agent.ended;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toBe("the first message on the agent link must be Hello, got heartbeat");
  });

  it("replaces the older stream when the same agent id connects again", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const old = connect();
    old.hello();
    await old.next("welcome");
    const fresh = connect();
    fresh.hello();
    await fresh.next("welcome");
    const status = await old.ended;
    expect(status.code).toBe(grpc.status.ABORTED);
    expect(status.details).toContain("replaced by a newer connection");
    await fresh.next("leaseRenewal");
    expect((await agentJson("agent-1")).connected).toBe(true);
  });

  it("closes the link of an agent that falls silent for three heartbeat intervals", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect("quiet", 0);
    agent.hello();
    await agent.next("welcome");
    const started = Date.now();
    const status = await agent.ended;
    expect(status.code).toBe(grpc.status.UNAVAILABLE);
    expect(status.details).toMatch(/nothing arrived from the agent for .* \(limit 600ms\)/);
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await agentJson("quiet")).connected).toBe(false);
  });

  it("does not close a link for silence that was its own event loop's stall", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect("patient");
    agent.hello();
    await agent.next("welcome");
    await agent.next("leaseRenewal");
    let disconnected = false;
    tcp.cp.hub.events.on("disconnected", () => (disconnected = true));
    // The whole process (control plane and agent alike) stalls for 4 inactivity limits (600 ms):
    // the agent's heartbeats resume right after; the link must survive.
    const until = Date.now() + 2400;
    while (Date.now() < until) {
      // busy: nothing else runs
    }
    await agent.next("leaseRenewal", 3000);
    await agent.next("leaseRenewal", 3000);
    expect(disconnected).toBe(false);
    expect((await agentJson("patient")).connected).toBe(true);
  });

  it("records a burst of events in order; the latest PROGRESS wins; acks are watched per fault", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect();
    agent.hello();
    await agent.next("welcome");
    const id = await startFault("agent-1", agent);
    const seen: string[] = [];
    const unwatch = tcp.cp.hub.watchFault(id, ({ cause }) => seen.push(cause));
    for (let i = 1; i <= 300; i++) agent.event(id, FaultEventType.PROGRESS, { measurements: { cpu_percent: i }, time: timestampFromMs(Date.now() + i) });
    agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.DURATION, time: timestampFromMs(Date.now() + 1000) });
    const f = await until("reverted", async () => {
      const shown = await faultJson(id);
      return shown.fault.state === "reverted" ? shown : undefined;
    });
    await tcp.cp.hub.drained();
    unwatch();
    expect(f.fault.measurements).toEqual({ cpu_percent: 300 });
    // Coalesced or not, the PROGRESS events come before the end, and the end is the last change.
    expect(seen.at(-1)).toBe("reverted");
    expect(seen.slice(0, -1).every((c) => c === "progress")).toBe(true);
    expect(f.events.at(-1)!.type).toBe("reverted");
    expect(f.events.filter((e) => e.type === "progress").length).toBeGreaterThanOrEqual(1);
  });

  it("reconciles held faults on reconnect after the grace period; flushed events win", async () => {
    tcp = await startTestControlPlane({ ...(await engine.controlPlaneStore()), reconcileGraceMs: 500 });
    const first = connect();
    first.hello();
    await first.next("welcome");
    const flushed = await startFault("agent-1", first);
    const forgotten = await startFault("agent-1", first);
    const kept = await startFault("agent-1", first);
    expect((await agentJson("agent-1")).activeFaults).toBe(3);
    first.cancel();
    await until("disconnect", async () => ((await agentJson("agent-1")).connected ? undefined : true));

    const second = connect();
    second.hello({
      heldFaults: [
        { faultId: kept, kind: "cpu-burn", state: FaultState.RUNNING },
        { faultId: "flt_00000000deadbeef", kind: "cpu-burn", state: FaultState.RUNNING },
      ],
    });
    await second.next("welcome");
    // The agent flushes what happened while the link was down.
    second.event(flushed, FaultEventType.REVERTED, { reason: RevertReason.LEASE, message: "lease expired" });
    // A fault the control plane never created must be stopped on the host.
    const stop = await second.next("stopFault");
    expect(stop).toMatchObject({ faultId: "flt_00000000deadbeef", reason: RevertReason.STOPPED });

    const reconciled = await until("reconciliation", async () => {
      const f = (await faultJson(forgotten)).fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(reconciled).toMatchObject({ state: "reverted", reason: "unknown", error: "the agent no longer holds this fault" });
    expect((await faultJson(flushed)).fault).toMatchObject({ state: "reverted", reason: "lease", error: null });
    expect((await faultJson(kept)).fault).toMatchObject({ state: "running", measurements: { cpu_percent: 29.5 } });
  });

  it("records every event and ignores terminal events re-sent for an ended fault", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect();
    agent.hello();
    await agent.next("welcome");
    const id = await startFault("agent-1", agent);
    agent.event(id, FaultEventType.PROGRESS, { measurements: { cpu_percent: 31 } });
    const revertedAt = timestampFromMs(Date.now());
    agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.DURATION, time: revertedAt });
    agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.DURATION, time: revertedAt });
    agent.event(id, FaultEventType.REVERTED, { reason: RevertReason.SHUTDOWN, error: "late" });
    const shown = await until("reverted", async () => {
      const f = await faultJson(id);
      return f.fault.state === "reverted" ? f : undefined;
    });
    // Give the re-sent events time to arrive; they must change nothing.
    agent.heartbeat();
    await agent.next("leaseRenewal");
    await agent.next("leaseRenewal");
    const after = await faultJson(id);
    expect(after.fault).toEqual(shown.fault);
    expect(after.fault).toMatchObject({ reason: "duration", error: null, measurements: { cpu_percent: 31 } });
    expect(after.events.map((e) => e.type)).toEqual(["accepted", "started", "progress", "reverted"]);
  });

  it("exposes connection and fault metrics", async () => {
    tcp = await startTestControlPlane(await engine.controlPlaneStore());
    const agent = connect();
    agent.hello();
    await agent.next("welcome");
    await startFault("agent-1", agent);
    const res = await tcp.fetch(`${tcp.cp.httpUrl}/metrics`);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toMatch(/^firedrill_agents_connected 1$/m);
    expect(text).toMatch(/^firedrill_agent_connections_total 1$/m);
    expect(text).toMatch(/^firedrill_faults_active\{kind="cpu-burn"\} 1$/m);
    expect(text).toMatch(/^firedrill_fault_events_total\{type="accepted"\} 1$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    agent.close();
    await until("disconnect", async () => ((await agentJson("agent-1")).connected ? undefined : true));
    expect(await (await tcp.fetch(`${tcp.cp.httpUrl}/metrics`)).text()).toMatch(/^firedrill_agents_connected 0$/m);
  });
});
