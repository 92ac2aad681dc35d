import { describe, expect, it } from "vitest";
import type { InstanceActionResult } from "../aws/types.js";
import type { RunEvent, RunRecord } from "../store/run-store.js";
import { cloudActionsOf, describeCloudAction, describeTerminations } from "./cloud-actions.js";
import { buildReport } from "./report.js";

const T0 = Date.parse("2026-03-03T10:00:00Z");

const inGroup: InstanceActionResult = { instanceId: "i-1", action: "terminate", ok: true, call: "TerminateInstanceInAutoScalingGroup", autoScalingGroup: "web-asg" };
const alone: InstanceActionResult = { instanceId: "i-7", action: "terminate", ok: true, call: "TerminateInstances" };
const refused: InstanceActionResult = {
  instanceId: "i-2",
  action: "terminate",
  ok: false,
  refusedBy: "guardrail",
  call: "TerminateInstanceInAutoScalingGroup",
  autoScalingGroup: "web-asg",
  error: "exclusion-tags: i-2 carries the exclusion tag firedrill:exclude (tags read at the moment of the action)",
};

let nextId = 1;
const event = (type: RunEvent["type"], step: string | null, message: string, data: unknown, time: number): RunEvent => ({
  id: nextId++,
  runId: "run_1",
  time,
  type,
  step,
  agentId: null,
  faultId: null,
  message,
  data,
});

describe("cloud actions", () => {
  it("a standalone termination is not said to be replaced by an Auto Scaling group", () => {
    expect(describeTerminations([alone])).toBe("terminated 1 instance (irreversible); i-7 is in no Auto Scaling group: nothing replaces it");
    expect(describeTerminations([inGroup])).toBe("terminated 1 instance (irreversible); Auto Scaling group web-asg replaces it");
    expect(describeTerminations([inGroup, alone])).toBe(
      "terminated 2 instances (irreversible); Auto Scaling group web-asg replaces i-1; i-7 is in no Auto Scaling group: nothing replaces it",
    );
    expect(describeCloudAction(alone)).toBe("TerminateInstances i-7: done; IRREVERSIBLE: terminated, and it is in no Auto Scaling group: nothing replaces it");
    expect(describeCloudAction(refused)).toBe(
      "TerminateInstanceInAutoScalingGroup i-2 (web-asg): refused by a guardrail at the moment of the action, AWS was not called: exclusion-tags: i-2 carries the exclusion tag firedrill:exclude (tags read at the moment of the action)",
    );
  });

  it("the report lists every cloud action (when, step, instance, result) and calls out the irreversible ones", () => {
    const stop: InstanceActionResult = { instanceId: "i-9", action: "stop", ok: true, call: "StopInstances" };
    const events = [
      event("state", null, "running", null, T0),
      event("cloud-action", "kill", describeCloudAction(inGroup), inGroup, T0 + 1000),
      event("cloud-action", "kill", describeCloudAction(refused), refused, T0 + 2000),
      event("cloud-action", "kill-alone", describeCloudAction(alone), alone, T0 + 3000),
      event("cloud-action", "pause", describeCloudAction(stop), stop, T0 + 4000),
      event("step-ended", "kill-alone", describeTerminations([alone]), null, T0 + 5000),
    ];
    expect(cloudActionsOf(events).map((a) => [a.time - T0, a.step, a.call, a.instanceId, a.result, a.irreversible])).toEqual([
      [1000, "kill", "TerminateInstanceInAutoScalingGroup", "i-1", "done", true],
      [2000, "kill", "TerminateInstanceInAutoScalingGroup", "i-2", "refused", false],
      [3000, "kill-alone", "TerminateInstances", "i-7", "done", true],
      [4000, "pause", "StopInstances", "i-9", "done", false],
    ]);
    const run: RunRecord = {
      id: "run_1",
      name: "t",
      specYaml: "",
      experiment: {},
      plan: { hypothesis: "h" },
      state: "failed",
      reason: "step kill: i-2 refused",
      actor: "alice",
      createdAt: T0,
      startedAt: T0,
      endedAt: T0 + 6000,
    };
    const report = buildReport(run, events, [], T0 + 7000);
    expect(report.cloudActions).toHaveLength(4);
    expect(report.cloudActions[1]!.error).toMatch(/^exclusion-tags: i-2 carries the exclusion tag firedrill:exclude/);
    expect(report.summary).toContain("2 instances were terminated (irreversible): i-1, i-7.");
    // The refused one is also something that broke.
    expect(report.broke.map((b) => [b.type, b.message])).toEqual([["cloud-action", describeCloudAction(refused)]]);
    expect(JSON.stringify(report)).not.toContain("their Auto Scaling groups replace them");
  });
});
