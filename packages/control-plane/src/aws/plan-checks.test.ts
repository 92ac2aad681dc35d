import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from "@aws-sdk/client-auto-scaling";
import {
  CreateNetworkAclCommand,
  DescribeNetworkAclsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
  RebootInstancesCommand,
  ReplaceNetworkAclAssociationCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Step } from "../experiments/types.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { createAwsClients } from "./clients.js";
import { AWS_PLAN_RULES, awsPlanVerdicts } from "./plan-checks.js";
import { createAwsService } from "./service.js";
import type { AwsServiceWithLedger } from "./service.js";
import { asgGroup, awsError, GUARDRAILS, instance } from "./test-support.js";

const ec2 = mockClient(EC2Client);
const asg = mockClient(AutoScalingClient);
const log = pino({ level: "silent" });
const NOW = Date.parse("2026-03-03T10:00:00Z");

let dir: string;
let store: Store;
let aws: AwsServiceWithLedger;

beforeEach(() => {
  ec2.reset();
  asg.reset();
  dir = mkdtempSync(join(tmpdir(), "firedrill-plan-"));
  store = createStore({ dataDir: dir });
  aws = createAwsService({ clients: createAwsClients({ region: "eu-west-1" }), db: store.db, log, now: () => NOW, sleep: async () => {} });
  ec2.on(TerminateInstancesCommand).rejects(awsError("DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set."));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const kill = (target = "fleet"): Step => ({ type: "fault", name: "kill", fault: "ec2-terminate", target, params: {}, durationMs: 0, startAfter: [] });
const rule = (verdicts: { rule: string; ok: boolean; message: string }[], name: string) => verdicts.find((v) => v.rule === name)!;

describe("awsPlanVerdicts", () => {
  it("has nothing to say without cloud steps", async () => {
    expect(await awsPlanVerdicts(aws, {}, [{ type: "wait", name: "w", durationMs: 1000, startAfter: [] }], GUARDRAILS)).toEqual([]);
  });

  it("lists the instances, proves the permission with DryRun and evaluates the group as it is now", async () => {
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { min: 1, desired: 3, inService: ["i-1", "i-2", "i-3"] })] });
    const verdicts = await awsPlanVerdicts(aws, { fleet: [instance("i-1", "web-asg"), instance("i-7")] }, [kill()], { ...GUARDRAILS, minHealthy: 2, maxPercentOfGroup: 34, minTimeBetweenTerminationsMs: 3_600_000 });
    expect(verdicts.map((v) => v.rule)).toEqual([...AWS_PLAN_RULES]);
    expect(verdicts.filter((v) => !v.ok)).toEqual([]);
    expect(rule(verdicts, "aws-instances").message).toBe("step kill: would terminate 2 instances: i-1 (web-asg, eu-west-1a), i-7 (no ASG, eu-west-1a)");
    expect(rule(verdicts, "aws-permissions").message).toBe(
      "step kill: DryRun TerminateInstances would succeed on i-7; TerminateInstanceInAutoScalingGroup on i-1: not checked: TerminateInstanceInAutoScalingGroup has no DryRun, so autoscaling:TerminateInstanceInAutoScalingGroup cannot be proven before the run",
    );
    expect(rule(verdicts, "aws-min-healthy").message).toBe("step kill: web-asg: 3 InService now, 2 after the kill, floor max(MinSize 1, minHealthy 2) = 2");
    expect(rule(verdicts, "aws-max-percent-of-group").message).toBe("step kill: web-asg: 1 of 3 desired, within maxPercentOfGroup 34%");
    expect(rule(verdicts, "aws-min-time-between-terminations").message).toBe("step kill: web-asg: no termination recorded, minTimeBetweenTerminations 1h");
    expect(ec2.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input)).toEqual([{ InstanceIds: ["i-7"], DryRun: true }]);
  });

  it("fails each rule in plain words: permission, tags, floor, percent, recent termination", async () => {
    ec2.reset();
    ec2.on(TerminateInstancesCommand).rejects(awsError("UnauthorizedOperation", 403, "You are not authorized to perform this operation."));
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { min: 2, desired: 2, inService: ["i-1", "i-2"] })] });
    // The group lost an instance to firedrill 10 minutes ago.
    aws.ledger.decideTermination({ instanceId: "i-0", region: "eu-west-1", call: "TerminateInstanceInAutoScalingGroup", actor: "monkey", now: NOW - 600_000, guardrails: GUARDRAILS, tags: instance("i-0").tags, group: { name: "web-asg", minSize: 0, desiredCapacity: 3, inService: ["i-0", "i-1", "i-2"] } });
    const bare = { ...instance("i-2", "web-asg"), tags: { "aws:autoscaling:groupName": "web-asg", tier: "db" } };
    const verdicts = await awsPlanVerdicts(aws, { fleet: [instance("i-1", "web-asg"), bare, instance("i-9")] }, [kill()], {
      ...GUARDRAILS,
      excludeTags: ["tier=db"],
      maxPercentOfGroup: 50,
      minTimeBetweenTerminationsMs: 3_600_000,
    }, { now: NOW });
    expect(verdicts.filter((v) => !v.ok).map((v) => v.rule)).toEqual([
      "aws-permissions",
      "aws-opt-in-tag",
      "aws-min-healthy",
      "aws-max-percent-of-group",
      "aws-min-time-between-terminations",
    ]);
    expect(rule(verdicts, "aws-permissions").message).toMatch(/^step kill: missing IAM permission ec2:TerminateInstances on i-9 \(UnauthorizedOperation/);
    expect(rule(verdicts, "aws-opt-in-tag").message).toBe(
      "step kill: i-2 lacks firedrill:opt-in=true; tag the instances that may take part (or their ASG, propagating to instances), or narrow the selector",
    );
    // Opt-in is checked first: i-2 lacks it, so the exclusion rule does not list it again.
    expect(rule(verdicts, "aws-exclusion-tags")).toEqual({ rule: "aws-exclusion-tags", ok: true, message: "step kill: no instance carries tier=db" });
    expect(rule(verdicts, "aws-min-healthy").message).toBe(
      "step kill: killing 2 instances would leave web-asg with 0 InService instances (2 now), below max(MinSize 2, minHealthy 1) = 2",
    );
    expect(rule(verdicts, "aws-max-percent-of-group").message).toBe(
      "step kill: would make 2 of web-asg's 2 desired instances (100%) acted on by this run, over maxPercentOfGroup 50%",
    );
    expect(rule(verdicts, "aws-min-time-between-terminations").message).toBe(
      "step kill: web-asg had a termination 10m ago (2026-03-03T09:50:00.000Z); minTimeBetweenTerminations is 1h, so the next one may happen at 2026-03-03T10:50:00.000Z",
    );
  });

  it("says a step that kills two instances of one group at once meets min time between terminations", async () => {
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2", "i-3", "i-4"] })] });
    const verdicts = await awsPlanVerdicts(aws, { fleet: [instance("i-1", "web-asg"), instance("i-2", "web-asg")] }, [kill()], { ...GUARDRAILS, minTimeBetweenTerminationsMs: 86_400_000 });
    expect(rule(verdicts, "aws-min-time-between-terminations")).toEqual({
      rule: "aws-min-time-between-terminations",
      ok: false,
      message: "step kill: would terminate 2 instances of web-asg at once, but minTimeBetweenTerminations is 24h: only the first would happen; select 1 instance per group (mode count: 1)",
    });
  });

  it("checks ec2-stop with DryRun for both the stop and the start, and refuses ASG members", async () => {
    ec2.on(StopInstancesCommand).rejects(awsError("DryRunOperation", 412));
    ec2.on(StartInstancesCommand).rejects(awsError("DryRunOperation", 412));
    const stop: Step = { type: "fault", name: "nap", fault: "ec2-stop", target: "fleet", params: {}, durationMs: 60_000, startAfter: [] };
    const ok = await awsPlanVerdicts(aws, { fleet: [instance("i-7")] }, [stop], GUARDRAILS);
    expect(ok.filter((v) => !v.ok)).toEqual([]);
    expect(rule(ok, "aws-permissions").message).toBe("step nap: DryRun StopInstances would succeed on i-7; DryRun StartInstances would succeed on i-7");
    const member = await awsPlanVerdicts(aws, { fleet: [instance("i-1", "web-asg")] }, [stop], GUARDRAILS);
    expect(rule(member, "aws-instances")).toMatchObject({ ok: false, message: expect.stringMatching(/^step nap: i-1 \(web-asg, eu-west-1a\) is in an Auto Scaling group, which would replace a stopped instance/) });
  });

  it("refuses a target that resolved to nothing", async () => {
    const verdicts = await awsPlanVerdicts(aws, { fleet: [] }, [kill()], GUARDRAILS);
    expect(rule(verdicts, "aws-instances")).toEqual({
      rule: "aws-instances",
      ok: false,
      message: "step kill: target fleet resolved to no running instance; check the aws selector (region, tags, autoScalingGroups)",
    });
  });
});

describe("awsPlanVerdicts: ec2-reboot and aws-network-disrupt", () => {
  const dryRunOk = awsError("DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set.");

  it("ec2-reboot: DryRun RebootInstances, group members allowed, no ASG rule applies", async () => {
    ec2.on(RebootInstancesCommand).rejects(dryRunOk);
    const step: Step = { type: "fault", name: "reboot", fault: "ec2-reboot", target: "fleet", params: {}, durationMs: 0, startAfter: [] };
    const verdicts = await awsPlanVerdicts(aws, { fleet: [instance("i-1", "web-asg")] }, [step], GUARDRAILS);
    expect(verdicts.map((v) => v.rule)).toEqual([...AWS_PLAN_RULES]);
    expect(verdicts.filter((v) => !v.ok)).toEqual([]);
    expect(rule(verdicts, "aws-instances").message).toBe("step reboot: would reboot 1 instance: i-1 (web-asg, eu-west-1a)");
    expect(rule(verdicts, "aws-permissions").message).toMatch(/^step reboot: DryRun RebootInstances would succeed on i-1/);
    expect(ec2.commandCalls(RebootInstancesCommand).every((c) => c.args[0].input.DryRun === true)).toBe(true);
  });

  it("aws-network-disrupt: each subnet with its NACL now and the run's deny-all one, DryRun of the create and each replace, the tags on each", async () => {
    ec2.on(DescribeSubnetsCommand).resolves({
      Subnets: [
        { SubnetId: "subnet-a1", VpcId: "vpc-1", AvailabilityZone: "eu-west-1a", Tags: [] },
        { SubnetId: "subnet-a2", VpcId: "vpc-1", AvailabilityZone: "eu-west-1a", Tags: [{ Key: "firedrill:exclude", Value: "" }] },
      ],
    });
    ec2.on(DescribeVpcsCommand).resolves({ Vpcs: [{ VpcId: "vpc-1", Tags: [{ Key: "firedrill:opt-in", Value: "true" }] }] });
    ec2.on(DescribeNetworkAclsCommand).resolves({
      NetworkAcls: [{ NetworkAclId: "acl-main", VpcId: "vpc-1", Associations: [{ NetworkAclAssociationId: "aa-1", SubnetId: "subnet-a1" }, { NetworkAclAssociationId: "aa-2", SubnetId: "subnet-a2" }] }],
    });
    ec2.on(CreateNetworkAclCommand).rejects(dryRunOk);
    ec2.on(ReplaceNetworkAclAssociationCommand).rejects(dryRunOk);
    const step: Step = { type: "fault", name: "az-down", fault: "aws-network-disrupt", target: "fleet", params: { availabilityZone: "eu-west-1a" }, durationMs: 60_000, startAfter: [] };
    const verdicts = await awsPlanVerdicts(aws, { fleet: [instance("i-1")] }, [step], { ...GUARDRAILS, excludeTags: ["firedrill:exclude"] });
    expect(verdicts.map((v) => v.rule)).toEqual([...AWS_PLAN_RULES]);
    expect(rule(verdicts, "aws-instances")).toEqual({
      rule: "aws-instances",
      ok: true,
      message: "step az-down: would cut off 2 subnets of vpc-1: subnet-a1 (eu-west-1a): acl-main → the run's deny-all network ACL; subnet-a2 (eu-west-1a): acl-main → the run's deny-all network ACL [refused: exclusion-tags: subnet-a2 (or its VPC) carries the exclusion tag firedrill:exclude]",
    });
    expect(rule(verdicts, "aws-permissions")).toMatchObject({ ok: true, message: expect.stringMatching(/^step az-down: DryRun CreateNetworkAcl and ReplaceNetworkAclAssociation would succeed/) });
    expect(rule(verdicts, "aws-opt-in-tag").ok).toBe(true);
    expect(rule(verdicts, "aws-exclusion-tags")).toMatchObject({ ok: false, message: "step az-down: subnet-a2 (or its VPC) carries the exclusion tag firedrill:exclude" });
    expect(ec2.commandCalls(CreateNetworkAclCommand).map((c) => c.args[0].input.DryRun)).toEqual([true]);
    expect(ec2.commandCalls(ReplaceNetworkAclAssociationCommand).map((c) => [c.args[0].input.AssociationId, c.args[0].input.DryRun])).toEqual([
      ["aa-1", true],
      ["aa-2", true],
    ]);
  });
});
