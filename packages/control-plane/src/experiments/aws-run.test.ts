/**
 * AWS end to end: an in-process control plane whose AWS SDK clients are mocked
 * (aws-sdk-client-mock; AWS is not reachable here), three real agent processes that learn their
 * EC2 instance ids from fake IMDSv2 servers on loopback, and an experiment whose aws target takes
 * both a host fault (on the matched agents) and ec2-terminate (on an instance).
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, TerminateInstanceInAutoScalingGroupCommand } from "@aws-sdk/client-auto-scaling";
import { CloudWatchClient, DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import { DescribeInstancesCommand, EC2Client, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { burnerThreads } from "../../../../test/support/cpu.js";
import { killAll, runCli, startAgentProcess, waitFor } from "../../../../test/support/processes.js";
import { asgGroup, ec2Instance } from "../aws/test-support.js";
import { startControlPlane } from "../control-plane.js";
import type { ControlPlane } from "../control-plane.js";

const INSTANCES = ["i-0aaa000000000001", "i-0aaa000000000002", "i-0aaa000000000003"];
const TAGS = { app: "web", "firedrill:opt-in": "true", "aws:autoscaling:groupName": "web-asg" };

/** A fake IMDSv2 (token + instance id + AZ) for one agent, on loopback. */
async function fakeImds(instanceId: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.method === "PUT" && req.url === "/latest/api/token") return res.end("token-123");
    if (req.headers["x-aws-ec2-metadata-token"] !== "token-123") return void res.writeHead(401).end();
    if (req.url === "/latest/meta-data/instance-id") return res.end(instanceId);
    if (req.url === "/latest/meta-data/placement/availability-zone") return res.end("eu-west-1a");
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

const experiment = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: web-asg-burn-and-kill }
spec:
  hypothesis: "checkout stays green while web burns CPU and loses an instance"
  targets:
    web:
      selector: { aws: { region: eu-west-1, tags: { app: web } } }
      mode: { all: true }
    one:
      selector: { aws: { region: eu-west-1, autoScalingGroups: [web-asg] } }
      mode: { count: 1 }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 2m }
    - { name: kill, fault: ec2-terminate, target: one, duration: 2m }
  stopConditions:
    - { cloudwatchAlarm: { names: [checkout-5xx], region: eu-west-1, intervalMs: 1000 } }
`;

describe("AWS experiments (mocked SDK, real agents)", () => {
  const ec2 = mockClient(EC2Client);
  const asg = mockClient(AutoScalingClient);
  const cw = mockClient(CloudWatchClient);
  let alarm = "OK";
  let cp: ControlPlane;
  let adminToken = "";
  const dirs: string[] = [];
  const imds: Server[] = [];
  const agents: { pid: number; id: string }[] = [];

  beforeAll(async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: INSTANCES.map((id) => ec2Instance(id, TAGS)) }] });
    ec2.on(TerminateInstancesCommand).resolves({});
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { min: 1, inService: INSTANCES })] });
    asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({ Activity: { ActivityId: "a-1", AutoScalingGroupName: "web-asg", Cause: "test", StartTime: new Date(), StatusCode: "InProgress" } });
    cw.on(DescribeAlarmsCommand).callsFake(() => ({
      MetricAlarms: [{ AlarmName: "checkout-5xx", StateValue: alarm, StateReason: alarm === "ALARM" ? "Threshold Crossed: 5xx rate 4% > 1%" : "ok" }],
      CompositeAlarms: [],
    }));
    const dataDir = mkdtempSync(join(tmpdir(), "firedrill-aws-cp-"));
    dirs.push(dataDir);
    cp = await startControlPlane({
      dataDir,
      grpcAddr: "127.0.0.1:0",
      httpAddr: "127.0.0.1:0",
      logger: pino({ level: "silent" }),
      out: { write: () => true } as unknown as NodeJS.WritableStream as never,
      awsRegion: "eu-west-1",
      revertWaitMs: 10_000,
    });
    const token = readFileSync(cp.joinTokenFile, "utf8").trim();
    adminToken = readFileSync(cp.adminTokenFile, "utf8").trim();
    for (const instanceId of INSTANCES) {
      const fake = await fakeImds(instanceId);
      imds.push(fake.server);
      const stateDir = mkdtempSync(join(tmpdir(), "firedrill-aws-agent-"));
      dirs.push(stateDir);
      const proc = startAgentProcess({ server: cp.grpcAddress, token, stateDir, labels: "app=web,firedrill:opt-in=true", extraArgs: ["--imds", fake.url] });
      agents.push({ pid: proc.pid, id: "" });
    }
    await waitFor("3 agents with instance ids", async () => {
      const list = ((await (await fetch(`${cp.httpUrl}/api/v1/agents`, { headers: { authorization: `Bearer ${adminToken}` } })).json()) as { agents: { connected: boolean; instanceId: string | null }[] }).agents;
      return list.filter((a) => a.connected && a.instanceId?.startsWith("i-")).length === 3;
    }, 30_000);
  }, 60_000);

  afterAll(async () => {
    await killAll();
    await cp?.close();
    for (const s of imds) s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    ec2.restore();
    asg.restore();
    cw.restore();
  });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${cp.httpUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : null,
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it("agents report their EC2 instance ids from IMDSv2", async () => {
    const { body } = await api("GET", "/api/v1/agents");
    expect(body.agents.map((a: any) => a.instanceId).sort()).toEqual(INSTANCES);
    expect(body.agents.every((a: any) => a.availabilityZone === "eu-west-1a")).toBe(true);
  });

  it("plan resolves the instances, matches them to agents, and shows every guardrail verdict", async () => {
    const { status, body } = await api("POST", "/api/v1/plan", { spec: experiment });
    expect(status).toBe(200);
    const burn = body.plan.steps.find((s: any) => s.name === "burn");
    const kill = body.plan.steps.find((s: any) => s.name === "kill");
    expect(burn.hosts).toHaveLength(3); // agents matched by instance id
    expect(kill.hosts).toHaveLength(1);
    expect(INSTANCES).toContain(kill.hosts[0].id);
    const rules = body.plan.guardrails.map((v: any) => v.rule);
    expect(rules).toEqual(expect.arrayContaining(["aws-targets", "aws-instances", "aws-permissions", "aws-opt-in-tag", "aws-min-healthy", "opt-in"]));
    expect(body.plan.allowed, JSON.stringify(body.plan.guardrails.filter((v: any) => !v.ok))).toBe(true);

    const cli = await runCli(["plan", join(import.meta.dirname, "../../../../examples/aws-asg-terminate.yaml")], { FIREDRILL_SERVER: cp.httpUrl, FIREDRILL_TOKEN: adminToken });
    console.log(`firedrill plan examples/aws-asg-terminate.yaml (mocked AWS):\n${cli.stdout}${cli.stderr}`);
    expect(cli.stdout).toContain("aws-permissions");
    expect(cli.stdout).toMatch(/i-0aaa00000000000\d/);
  });

  it("a CloudWatch alarm flipped to ALARM mid-run aborts it and reverts the host faults of the same run", async () => {
    alarm = "OK";
    const started = await api("POST", "/api/v1/runs", { spec: experiment });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const id = started.body.run.id as string;
    await waitFor("3 burns running", async () => {
      const faults = (await api("GET", "/api/v1/faults?state=active")).body.faults as any[];
      return faults.filter((f) => f.runId === id && f.state === "running").length === 3;
    }, 20_000);
    await waitFor("the kill", () => asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand).length === 1, 10_000);
    const call = asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)[0]!.args[0].input;
    expect(call.ShouldDecrementDesiredCapacity).toBe(false);
    expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);

    const flippedAt = Date.now();
    alarm = "ALARM";
    const { run, events } = await waitFor("the abort", async () => {
      const { body } = await api("GET", `/api/v1/runs/${id}`);
      return ["aborted", "completed", "failed"].includes(body.run.state) ? body : undefined;
    }, 30_000);
    expect(run.state).toBe("aborted");
    expect(run.reason).toMatch(/cloudwatch.*checkout-5xx/i);
    const faults = ((await api("GET", "/api/v1/faults?state=all")).body.faults as any[]).filter((f) => f.runId === id);
    expect(faults).toHaveLength(3);
    for (const f of faults) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
    for (const a of agents) expect(burnerThreads(a.pid)).toEqual([]);
    const types = (events as any[]).map((e) => e.type);
    expect(types).toContain("cloud-action");
    expect(types).toContain("irreversible");
    const breach = (events as any[]).find((e) => e.type === "breach");
    const lastRevert = Math.max(...(events as any[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time)));
    console.log(`[measure] cloudwatch breach: flip→breach ${Date.parse(breach.time) - flippedAt} ms (1 s polls), breach→last revert ack ${lastRevert - Date.parse(breach.time)} ms`);
  }, 60_000);
});
