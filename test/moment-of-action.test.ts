/**
 * Checks at the moment of action, with real processes: a `firedrill server` process on a stateful
 * fake AWS process (test/support/fake-aws.ts, through `--aws-endpoint`). An instance tagged
 * `firedrill:exclude` after the run resolved its targets, seconds before its kill, is not killed:
 * the control plane reads it again right before the call and refuses. The report and timeline list
 * every cloud action, and a standalone termination is never said to be replaced by a group.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { fakeInstance } from "./support/fake-aws.js";
import type { FakeAwsState } from "./support/fake-aws.js";
import { FAKE_AWS_ENV, startFakeAwsProcess } from "./support/fake-aws-process.js";
import type { FakeAwsProcess } from "./support/fake-aws-process.js";
import { cliEnv, killAll, runCli, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";

const REGION = "eu-west-1";
const WEB = ["i-0e0000000000000a1", "i-0e0000000000000a2", "i-0e0000000000000a3"];
const LONE = "i-0e0000000000000b1";

/** Waits `wait`, then terminates `instance`; exclusions from the experiment's own guardrails. */
function killLater(name: string, instance: string, wait: string): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: ${name} }
spec:
  hypothesis: "web survives losing an instance"
  targets:
    victim:
      selector: { aws: { region: ${REGION}, instanceIds: [${instance}] } }
      mode: { count: 1 }
  steps:
    - { name: settle, wait: ${wait} }
    - { name: kill, fault: ec2-terminate, target: victim, startAfter: [settle] }
  guardrails:
    excludeTags: ["firedrill:exclude"]
`;
}

async function runEnded(server: ServerHandle, id: string): Promise<any> {
  return waitFor(
    `run ${id} to end`,
    async () => {
      const { body } = await api(server, "GET", `/api/v1/runs/${id}`);
      return ["completed", "aborted", "failed"].includes(body.run.state) ? body : undefined;
    },
    30_000,
  );
}

describe("checks at the moment of action (real server and fake AWS processes)", () => {
  let fake: FakeAwsProcess;
  let server: ServerHandle;
  let cleanup: () => void;

  beforeAll(async () => {
    const dir = tempDir("moment");
    cleanup = dir.cleanup;
    fake = await startFakeAwsProcess({ statePath: join(dir.path, "fake-aws.json"), transitionMs: 300 });
    await fake.setState({
      instances: {
        ...Object.fromEntries(WEB.map((id) => [id, fakeInstance(id, { region: REGION, group: "web-asg", tags: { app: "web" } })])),
        [LONE]: fakeInstance(LONE, { region: REGION, tags: { app: "batch" } }),
      },
      groups: { [`${REGION}/web-asg`]: { name: "web-asg", region: REGION, minSize: 1, maxSize: 6, desiredCapacity: 3, availabilityZones: [`${REGION}a`], tags: {} } },
    });
    server = await startServer({ dataDir: join(dir.path, "cp"), extraArgs: ["--aws-endpoint", fake.url], env: FAKE_AWS_ENV });
  }, 60_000);

  afterAll(async () => {
    await killAll();
    cleanup?.();
  });

  it("an exclusion tag added mid-run, after the targets were resolved, refuses the kill: the instance keeps running", async () => {
    const res = await api(server, "POST", "/api/v1/runs", { spec: killLater("kill-excluded", WEB[0]!, "4s") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    // The run resolved its target at start (the plan lists it); now someone tags it.
    expect(res.body.plan.awsInstances.victim.map((i: { instanceId: string }) => i.instanceId)).toEqual([WEB[0]]);
    const state = (await fake.state()) as FakeAwsState;
    const tagged = { ...state.instances[WEB[0]!]!, tags: { ...state.instances[WEB[0]!]!.tags, "firedrill:exclude": "true" } };
    const taggedAt = Date.now();
    const put = await fetch(`${fake.url}/_fake/instances`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ instances: [tagged] }) });
    expect(put.ok).toBe(true);

    const ended = await runEnded(server, id);
    expect(ended.run.state).toBe("aborted");
    expect(ended.run.reason).toContain(`exclusion-tags: ${WEB[0]} carries the exclusion tag firedrill:exclude (tags read at the moment of the action)`);
    const refusal = (ended.events as { type: string; step: string; message: string; time: string }[]).find((e) => e.type === "cloud-action");
    expect(refusal).toMatchObject({ step: "kill", message: expect.stringContaining("refused by a guardrail at the moment of the action, AWS was not called: exclusion-tags") });
    console.log(`[measure] exclusion tag added ${Date.parse(refusal!.time) - taggedAt} ms before the kill it refused (the run resolved its targets before the tag)`);

    // Nothing reached AWS but reads: the instance still runs; the read right before the kill is in the fake's log.
    expect(await fake.instanceState(WEB[0]!)).toBe("running");
    const calls = await fake.calls();
    expect(calls.filter((c) => c.action.startsWith("Terminate"))).toEqual([]);
    expect(calls.some((c) => c.action === "DescribeInstances" && c.time >= taggedAt)).toBe(true);

    const report = await runCli(["report", id], cliEnv(server));
    console.log(`firedrill report (excluded mid-run):\n${report.stdout}`);
    expect(report.stdout).toMatch(/Cloud actions\n.*TIME.*STEP.*ACTION.*INSTANCE.*RESULT/);
    expect(report.stdout).toMatch(new RegExp(`kill +TerminateInstanceInAutoScalingGroup +${WEB[0]} \\(web-asg\\) +refused: exclusion-tags`));
  }, 60_000);

  it("a standalone termination is called irreversible and is not said to be replaced by an Auto Scaling group", async () => {
    const res = await api(server, "POST", "/api/v1/runs", { spec: killLater("kill-lone", LONE, "1s") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    const ended = await runEnded(server, id);
    expect(ended.run.state, JSON.stringify(ended.run)).toBe("completed");
    await waitFor("the instance shutting down", async () => ["shutting-down", "terminated"].includes((await fake.instanceState(LONE)) ?? ""), 10_000);
    const messages = (ended.events as { type: string; message: string }[]).map((e) => `${e.type}: ${e.message}`);
    expect(messages).toContain(`cloud-action: TerminateInstances ${LONE}: done; IRREVERSIBLE: terminated, and it is in no Auto Scaling group: nothing replaces it`);
    expect(messages).toContain(`step-ended: terminated 1 instance (irreversible); ${LONE} is in no Auto Scaling group: nothing replaces it`);
    expect(messages.join("\n")).not.toContain("Auto Scaling groups replace");

    const { body } = await api(server, "GET", `/api/v1/runs/${id}/report`);
    expect(body.report.cloudActions).toMatchObject([{ step: "kill", action: "terminate", call: "TerminateInstances", instanceId: LONE, autoScalingGroup: null, result: "done", irreversible: true }]);
    expect(body.report.summary).toContain(`1 instance was terminated (irreversible): ${LONE}.`);
    const report = await runCli(["report", id], cliEnv(server));
    expect(report.stdout).toMatch(new RegExp(`kill +TerminateInstances \\(IRREVERSIBLE\\) +${LONE} +done`));
    expect(report.stdout).not.toContain("replace them");
  }, 60_000);
});
