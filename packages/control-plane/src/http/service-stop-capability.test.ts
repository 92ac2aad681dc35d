/**
 * service-stop needs systemd on the host: the control plane refuses it, before sending anything,
 * on an agent that reported no systemd (or an agent from before the capability was reported).
 */
import { CAPABILITY_HINTS } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ErrorJson, FaultJson } from "../api-types.js";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";

describe("service-stop and the systemd capability", () => {
  let tcp: TestControlPlane;
  const agents: TestAgent[] = [];

  const post = async (agentId: string, body: unknown) => {
    const res = await fetch(`${tcp.cp.httpUrl}/api/v1/agents/${agentId}/faults`, {
      method: "POST",
      headers: { authorization: `Bearer ${tcp.adminToken()}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { fault: FaultJson } & ErrorJson };
  };
  const connect = async (agentId: string, systemd: boolean | undefined) => {
    const agent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token(), agentId });
    agents.push(agent);
    agent.hello({ capabilities: { faultKinds: ["service-stop", "cpu-burn"], root: true, ...(systemd !== undefined ? { systemd } : {}) } });
    await agent.next("welcome");
    return agent;
  };

  beforeEach(async () => {
    tcp = await startTestControlPlane();
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) a.cancel();
    await tcp.cleanup();
  });

  it("refuses it with 422 naming systemd on a host without it, and sends nothing", async () => {
    const agent = await connect("no-systemd", false);
    const res = await post("no-systemd", { kind: "service-stop", params: { unit: "nginx.service" }, duration: "30s" });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("host_lacks_capability");
    expect(res.body.error.message).toBe(`agent "no-systemd" (no-systemd.test) cannot run service-stop: ${CAPABILITY_HINTS.systemd}. The fault was not sent`);
    expect(res.body.error.message).toContain("does not run systemd");
    expect(agent.received.some((m) => m.message.case === "startFault")).toBe(false);
    // An agent from before the capability was reported says nothing: refused the same way.
    await connect("older-agent", undefined);
    const older = await post("older-agent", { kind: "service-stop", params: { unit: "nginx.service" }, duration: "30s" });
    expect(older.status).toBe(422);
    expect(older.body.error.message).toContain(CAPABILITY_HINTS.systemd);
    // Kinds that need no systemd still go.
    const burn = post("no-systemd", { kind: "cpu-burn", params: { load: 10 }, duration: "30s" });
    expect((await agent.next("startFault")).kind).toBe("cpu-burn");
    agent.cancel();
    await burn.catch(() => undefined);
  });

  it("sends it to a host with systemd; a protected unit is refused (400) on any host", async () => {
    const agent = await connect("with-systemd", true);
    const protectedUnit = await post("with-systemd", { kind: "service-stop", params: { unit: "firedrill-agent.service" }, duration: "30s" });
    expect(protectedUnit.status).toBe(400);
    expect(protectedUnit.body.error.issues).toEqual([
      { field: "params.unit", message: '"firedrill-agent.service" is protected (firedrill itself (the agent that reverts faults, or the control plane)): service-stop never stops it' },
    ]);
    const response = post("with-systemd", { kind: "service-stop", params: { unit: "nginx.service", mode: "kill" }, duration: "30s" });
    const start = await agent.next("startFault");
    expect(start).toMatchObject({ kind: "service-stop", params: { unit: "nginx.service", mode: "kill" } });
    agent.cancel();
    await response.catch(() => undefined);
  });
});
