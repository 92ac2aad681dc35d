/**
 * What a run says about its reverts: a real control plane (temp dir, gRPC and HTTP on loopback)
 * running an experiment on a test agent that speaks the real protocol. A revert the agent gives
 * up, and a revert only the lease can have done, must never be reported as "reverted".
 */
import { FaultEventType } from "@firedrill/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";
import type { RunReport } from "./report.js";

const SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: burn }
spec:
  hypothesis: web answers while it burns
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 10 }, duration: 10m }
`;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("a run's record of its reverts", () => {
  let tcp: TestControlPlane | undefined;
  let agent: TestAgent | undefined;
  afterEach(async () => {
    agent?.cancel();
    await tcp?.cleanup();
    tcp = agent = undefined;
  });

  /** A control plane, a connected agent, a run whose burn is running on it. */
  async function runningBurn(): Promise<{ runId: string; faultId: string }> {
    tcp = await startTestControlPlane({ revertWaitMs: 1000 });
    agent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token(), agentId: "web-1" });
    agent.hello();
    await agent.next("welcome");
    const res = await tcp.api<{ run: { id: string } }>("POST", "/api/v1/runs", { spec: SPEC });
    expect(res.status).toBe(201);
    const start = await agent.next("startFault", 10_000);
    agent.event(start.faultId, FaultEventType.ACCEPTED);
    agent.event(start.faultId, FaultEventType.STARTED);
    await until("the burn to run", async () => ((await tcp!.api("GET", `/api/v1/faults/${start.faultId}`)).body.fault.state === "running" ? true : undefined));
    return { runId: res.body.run.id, faultId: start.faultId };
  }
  const run = async (id: string) => (await tcp!.api("GET", `/api/v1/runs/${id}`)).body as { run: { state: string; reason: string }; events: { type: string; message: string }[] };
  const report = async (id: string) => (await tcp!.api<{ report: RunReport }>("GET", `/api/v1/runs/${id}/report`)).body.report;

  it("a revert the agent gives up aborts the run, which says REVERT FAILED and never that its faults were reverted", async () => {
    const { runId, faultId } = await runningBurn();
    agent!.event(faultId, FaultEventType.REVERT_FAILED, { error: "could not stop burner threads: EPERM" });
    const ended = await until("the run to end", async () => {
      const r = await run(runId);
      return r.run.state === "aborted" ? r : undefined;
    });
    expect(ended.run.reason).toMatch(/^step burn: flt_\w+ on web-1 REVERT FAILED: could not stop burner threads: EPERM; 0 of 1 reverts confirmed, 1 revert FAILED \(the effect may still be on the host\)$/);
    expect(ended.events.find((e) => e.type === "revert-failed")?.message).toMatch(/^REVERT FAILED: cpu-burn on web-1: could not stop burner threads: EPERM; its effect may still be on the host/);
    const r = await report(runId);
    expect(r.reverts).toMatchObject({ started: 1, confirmed: 0, revertFailed: 1, pending: 0, text: expect.stringContaining("1 revert FAILED") });
    expect(r.revertFailed).toEqual([expect.objectContaining({ faultId, kind: "cpu-burn", agentId: "web-1", error: "could not stop burner threads: EPERM" })]);
    expect(r.broke.map((b) => b.type)).toContain("revert-failed");
    expect(r.hits[0]).toMatchObject({ state: "revert_failed" });
  });

  it("an agent lost for good: the run ends with the revert not confirmed; later it is recorded as assumed by lease, never as confirmed", async () => {
    const { runId, faultId } = await runningBurn();
    agent!.cancel();
    const ended = await until("the run to end", async () => {
      const r = await run(runId);
      return r.run.state === "aborted" ? r : undefined;
    });
    expect(ended.run.reason).toMatch(/^agent lost: web-1 .*; 0 of 1 reverts confirmed, 1 not confirmed yet/);
    expect((await report(runId)).unconfirmed).toEqual([expect.objectContaining({ faultId, message: expect.stringMatching(/revert not confirmed yet; the stop is wanted since/) })]);

    // Lease TTL 3 s + 0.6 s + 2 s after the agent was last heard, then the next tick.
    const late = await until("the revert to be assumed", async () => {
      const r = await run(runId);
      return r.events.find((e) => e.type === "revert-assumed");
    }, 12_000);
    expect(late.message).toMatch(/^cpu-burn on web-1: revert NOT confirmed by the agent; assumed done by its lease .*\(after the run ended\)$/);
    const r = await report(runId);
    expect(r.reverts).toMatchObject({ started: 1, confirmed: 0, assumedByLease: 1, pending: 0 });
    expect(r.reverts.text).toBe("0 of 1 reverts confirmed, 1 assumed reverted by the agent's lease, not confirmed");
    expect(r.unconfirmed).toEqual([expect.objectContaining({ faultId, message: expect.stringContaining("assumed reverted by the agent's lease, never confirmed by the agent") })]);
  });
});
