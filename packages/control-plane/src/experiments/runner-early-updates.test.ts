/**
 * An agent that accepts, starts and ends a fault in one breath — before the runner's start call has
 * returned — still gets every step of it on the run's timeline: the updates that came early are
 * replayed in order once the fault's step is known (the console's timeline missed `fault-started`
 * for a quarter of a 200-host run before).
 */
import { FaultEventType, RevertReason } from "@firedrill/protocol";
import { afterEach, beforeEach, expect, it } from "vitest";
import { healthEndpoint } from "../test-support/health-endpoint.js";
import type { HealthEndpoint } from "../test-support/health-endpoint.js";
import { connectListedAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";

let tcp: TestControlPlane;
let agent: TestAgent;
let health: HealthEndpoint;

beforeEach(async () => {
  tcp = await startTestControlPlane();
  health = await healthEndpoint();
  agent = await connectListedAgent(tcp);
});

afterEach(async () => {
  agent.cancel();
  await health.close();
  await tcp.cleanup();
});

it("records fault-started and the revert of a fault whose events all came before its start call returned", async () => {
  const spec = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: quick }
spec:
  hypothesis: web answers while it burns
  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 50 }, duration: 2s }
  stopConditions:
    - { http: { url: "${health.url}", intervalMs: 200, timeoutMs: 1500, failuresToAbort: 3 } }
`;
  const res = await tcp.api("POST", "/api/v1/runs", { spec });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const runId = res.body.run.id as string;
  const start = await agent.next("startFault", 15_000);
  // All in one write burst: the hub handles them in one go, before the start call's await resumes.
  agent.event(start.faultId, FaultEventType.ACCEPTED);
  agent.event(start.faultId, FaultEventType.STARTED);
  agent.event(start.faultId, FaultEventType.PROGRESS, { measurements: { load_asked: 50, cpu_percent_selected: 49 } });
  agent.event(start.faultId, FaultEventType.REVERTED, { reason: RevertReason.DURATION });
  let run: any;
  for (let i = 0; i < 200; i++) {
    run = (await tcp.api("GET", `/api/v1/runs/${runId}`)).body;
    if (["completed", "aborted", "failed"].includes(run.run.state)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(run.run.state).toBe("completed");
  const ofFault = (run.events as { type: string; faultId: string | null; step: string | null }[]).filter((e) => e.faultId === start.faultId);
  const types = ofFault.map((e) => e.type);
  expect(types.filter((t) => t === "fault-started")).toHaveLength(1);
  expect(types.indexOf("fault-started")).toBeGreaterThan(types.findIndex((t) => t === "fault-acked" || t === "fault-sent"));
  expect(types.filter((t) => t === "fault-reverted")).toHaveLength(1);
  expect(types.indexOf("fault-reverted")).toBeGreaterThan(types.indexOf("fault-started"));
  expect(ofFault.every((e) => e.step === "burn")).toBe(true);
});
