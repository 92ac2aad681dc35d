import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, TerminateInstanceInAutoScalingGroupCommand } from "@aws-sdk/client-auto-scaling";
import type { DescribeAutoScalingGroupsCommandInput } from "@aws-sdk/client-auto-scaling";
import { CloudWatchClient, DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import type { DescribeAlarmsCommandInput } from "@aws-sdk/client-cloudwatch";
import {
  DescribeInstancesCommand,
  EC2Client,
  RebootInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import type { DescribeInstancesCommandInput } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createStore } from "../store/store.js";
import type { Store, StoreOptions } from "../store/store.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createAwsClients } from "./clients.js";
import { AwsSelectorError } from "./errors.js";
import { createAwsService } from "./service.js";
import type { AwsServiceOptions, AwsServiceWithLedger } from "./service.js";
import type { Instance } from "@aws-sdk/client-ec2";
import { asgGroup, awsError, describeFrom, ec2Instance, ec2InstanceOf, GUARDRAILS, instance as makeInstance } from "./test-support.js";
import type { AwsGuardrails, AwsInstance } from "./types.js";

const ec2 = mockClient(EC2Client);
const asg = mockClient(AutoScalingClient);
const cw = mockClient(CloudWatchClient);
const log = pino({ level: "silent" });
const OPT_IN = { "firedrill:opt-in": "true" };

let dir: string;
let stores: Store[];
/** What DescribeInstances answers, by id, for the read right before each action. */
let live: Map<string, Instance>;

/** An instance as the run resolved it; AWS has it so too (until a test changes `live`). */
function instance(id: string, group?: string, tags: Record<string, string> = {}): AwsInstance {
  const i = makeInstance(id, group, tags);
  live.set(id, ec2InstanceOf(i));
  return i;
}
let sleeps: number[];
let clock: number;

/** The store every openStore of a test opens (the same database: "two schedulers sharing one"), per engine. */
let storeOptions: StoreOptions;

function openStore(): Store {
  const store = createStore(storeOptions);
  stores.push(store);
  return store;
}

function service(overrides: Partial<AwsServiceOptions> = {}, store: Store = stores[0] ?? openStore()): AwsServiceWithLedger {
  return createAwsService({
    clients: createAwsClients({ region: "eu-west-1" }),
    db: store.db,
    log,
    now: () => clock,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...overrides,
  });
}

beforeEach(() => {
  ec2.reset();
  asg.reset();
  cw.reset();
  live = new Map();
  ec2.on(DescribeInstancesCommand).callsFake(describeFrom(live));
  dir = mkdtempSync(join(tmpdir(), "firedrill-aws-"));
  storeOptions = { dataDir: dir };
  stores = [];
  sleeps = [];
  clock = Date.parse("2026-03-03T10:00:00Z");
});

afterEach(() => {
  for (const s of stores) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describeEachEngine("aws service", (engine) => {
  beforeEach(async () => {
    storeOptions = await engine.freshStoreOptions();
  });

  describe("resolveInstances", () => {
    it("reads every page of DescribeInstances, with tags as tag:K filters and running instances only", async () => {
      const inputs: DescribeInstancesCommandInput[] = [];
      ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
        inputs.push(structuredClone(input));
        if (input.NextToken === undefined) {
          return { Reservations: [{ Instances: [ec2Instance("i-0000000b", { app: "web", ...OPT_IN }), ec2Instance("i-0000000a", { app: "web" })] }], NextToken: "page-2" };
        }
        if (input.NextToken === "page-2") return { Reservations: [{ Instances: [ec2Instance("i-0000000c", { app: "web" }, "eu-west-1b")] }], NextToken: "page-3" };
        return { Reservations: [{ Instances: [ec2Instance("i-0000000d", { app: "web" }, "eu-west-1c", "stopping")] }] };
      });
      const found = await service().resolveInstances({ tags: { app: "web", team: "checkout" }, filters: [{ name: "instance-type", values: ["t3.micro", "t3.small"] }] });

      expect(inputs.map((i) => i.NextToken)).toEqual([undefined, "page-2", "page-3"]);
      expect(inputs[0]!.Filters).toEqual([
        { Name: "instance-state-name", Values: ["running"] },
        { Name: "tag:app", Values: ["web"] },
        { Name: "tag:team", Values: ["checkout"] },
        { Name: "instance-type", Values: ["t3.micro", "t3.small"] },
      ]);
      // Sorted by id; the stopping one (an emulator that ignores the state filter) is left out.
      expect(found.map((i) => i.instanceId)).toEqual(["i-0000000a", "i-0000000b", "i-0000000c"]);
      expect(found[2]).toEqual({ instanceId: "i-0000000c", region: "eu-west-1", availabilityZone: "eu-west-1b", state: "running", tags: { app: "web" } });
    });

    it("takes the members of the Auto Scaling groups (every page), intersected with the other criteria", async () => {
      const groupInputs: DescribeAutoScalingGroupsCommandInput[] = [];
      asg.on(DescribeAutoScalingGroupsCommand).callsFake((input: DescribeAutoScalingGroupsCommandInput) => {
        groupInputs.push(structuredClone(input));
        return input.NextToken === undefined
          ? { AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2"] })], NextToken: "more" }
          : { AutoScalingGroups: [asgGroup("api-asg", { inService: ["i-3"], other: [{ id: "i-4", state: "Pending" }] })] };
      });
      const instanceInputs: DescribeInstancesCommandInput[] = [];
      ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
        instanceInputs.push(structuredClone(input));
        // i-9 is not a member (an emulator ignoring the filter): the intersection drops it.
        return {
          Reservations: [
            {
              Instances: [
                ec2Instance("i-1", { app: "web", "aws:autoscaling:groupName": "web-asg" }),
                ec2Instance("i-3", { app: "web", "aws:autoscaling:groupName": "api-asg" }),
                ec2Instance("i-9", { app: "web" }),
              ],
            },
          ],
        };
      });
      const found = await service().resolveInstances({ region: "us-east-2", autoScalingGroups: ["web-asg", "api-asg"], tags: { app: "web" }, instanceIds: ["i-1", "i-3", "i-4", "i-9"] });

      expect(groupInputs.map((i) => [i.AutoScalingGroupNames, i.NextToken])).toEqual([
        [["web-asg", "api-asg"], undefined],
        [["web-asg", "api-asg"], "more"],
      ]);
      expect(instanceInputs).toHaveLength(1);
      expect(instanceInputs[0]!.Filters).toContainEqual({ Name: "instance-id", Values: ["i-1", "i-3", "i-4"] });
      expect(instanceInputs[0]!.Filters).toContainEqual({ Name: "tag:app", Values: ["web"] });
      expect(found.map((i) => [i.instanceId, i.region, i.autoScalingGroup])).toEqual([
        ["i-1", "us-east-2", "web-asg"],
        ["i-3", "us-east-2", "api-asg"],
      ]);
    });

    it("says which Auto Scaling group does not exist, and asks nothing of EC2 for empty groups", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: [] })] });
      const aws = service();
      await expect(aws.resolveInstances({ autoScalingGroups: ["web-asg", "wbe-asg"] })).rejects.toThrow(AwsSelectorError);
      await expect(aws.resolveInstances({ autoScalingGroups: ["web-asg", "wbe-asg"] })).rejects.toThrow(/Auto Scaling group "wbe-asg" not found in eu-west-1/);
      expect(await aws.resolveInstances({ autoScalingGroups: ["web-asg"] })).toEqual([]);
      expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
    });

    it("retries a throttled DescribeInstances and names the call when it gives up", async () => {
      ec2.on(DescribeInstancesCommand).rejectsOnce(awsError("RequestLimitExceeded", 503)).resolves({ Reservations: [{ Instances: [ec2Instance("i-1", {})] }] });
      expect((await service().resolveInstances({ instanceIds: ["i-1"] })).map((i) => i.instanceId)).toEqual(["i-1"]);
      ec2.reset();
      ec2.on(DescribeInstancesCommand).rejects(awsError("UnauthorizedOperation", 403, "You are not authorized to perform this operation."));
      await expect(service().resolveInstances({ instanceIds: ["i-1"] })).rejects.toThrow(
        "DescribeInstances in eu-west-1 failed: UnauthorizedOperation: You are not authorized to perform this operation.; the control plane lacks ec2:DescribeInstances",
      );
    });
  });

  describe("terminate", () => {
    const ctx = (guardrails: Partial<AwsGuardrails> = {}, extra: { runId?: string; dryRun?: boolean; actor?: string } = {}) => ({
      actor: extra.actor ?? "test",
      guardrails: { ...GUARDRAILS, ...guardrails },
      ...(extra.runId ? { runId: extra.runId } : {}),
      ...(extra.dryRun ? { dryRun: true } : {}),
    });

    it("terminates an ASG member in its group without decrementing the desired capacity, a plain instance with TerminateInstances", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2", "i-3"] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({ Activity: undefined });
      ec2.on(TerminateInstancesCommand).resolves({ TerminatingInstances: [{ InstanceId: "i-7" }] });
      const aws = service();
      const results = await aws.terminate([instance("i-1", "web-asg"), instance("i-7")], ctx({}, { runId: "run-1", actor: "alice" }));

      expect(results).toEqual([
        { instanceId: "i-1", action: "terminate", ok: true, call: "TerminateInstanceInAutoScalingGroup", autoScalingGroup: "web-asg" },
        { instanceId: "i-7", action: "terminate", ok: true, call: "TerminateInstances" },
      ]);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand).map((c) => c.args[0].input)).toEqual([{ InstanceId: "i-1", ShouldDecrementDesiredCapacity: false }]);
      expect(ec2.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input)).toEqual([{ InstanceIds: ["i-7"], DryRun: false }]);
      expect(
        aws.ledger.list({ runId: "run-1" }).map((e) => [e.instanceId, e.groupName, e.action, e.call, e.actor, e.outcome, e.decidedAt === clock, e.completedAt === clock]),
      ).toEqual([
        ["i-7", null, "terminate", "TerminateInstances", "alice", "ok", true, true],
        ["i-1", "web-asg", "terminate", "TerminateInstanceInAutoScalingGroup", "alice", "ok", true, true],
      ]);
    });

    it("with dryRun: DryRunOperation means allowed, UnauthorizedOperation names the missing IAM action; nothing is recorded", async () => {
      ec2.on(TerminateInstancesCommand, { InstanceIds: ["i-1"] }).rejects(awsError("DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set."));
      ec2.on(TerminateInstancesCommand, { InstanceIds: ["i-2"] }).rejects(awsError("UnauthorizedOperation", 403, "You are not authorized to perform this operation."));
      ec2.on(StopInstancesCommand).rejects(awsError("DryRunOperation", 412));
      ec2.on(StartInstancesCommand).rejects(awsError("UnauthorizedOperation", 403, "denied"));
      const aws = service();
      const results = await aws.terminate([instance("i-1"), instance("i-2"), instance("i-3", "web-asg")], ctx({}, { dryRun: true }));

      expect(results[0]).toEqual({ instanceId: "i-1", action: "terminate", ok: true, call: "TerminateInstances" });
      expect(results[1]).toMatchObject({ instanceId: "i-2", ok: false, refusedBy: "aws", call: "TerminateInstances" });
      expect(results[1]!.error).toMatch(/^missing IAM permission ec2:TerminateInstances on i-2 \(UnauthorizedOperation: You are not authorized/);
      expect(results[2]).toEqual({
        instanceId: "i-3",
        action: "terminate",
        ok: true,
        call: "TerminateInstanceInAutoScalingGroup",
        autoScalingGroup: "web-asg",
        note: "not checked: TerminateInstanceInAutoScalingGroup has no DryRun, so autoscaling:TerminateInstanceInAutoScalingGroup cannot be proven before the run",
      });
      expect(ec2.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input.DryRun)).toEqual([true, true]);
      expect(asg.calls()).toHaveLength(0);
      expect(aws.ledger.list()).toEqual([]);

      expect(await aws.stop([instance("i-1")], ctx({}, { dryRun: true }))).toEqual([{ instanceId: "i-1", action: "stop", ok: true, call: "StopInstances" }]);
      const start = await aws.start([instance("i-1")], { actor: "test", dryRun: true });
      expect(start[0]).toMatchObject({ ok: false, call: "StartInstances", error: expect.stringMatching(/^missing IAM permission ec2:StartInstances on i-1/) });
      expect(ec2.commandCalls(StopInstancesCommand)[0]!.args[0].input).toEqual({ InstanceIds: ["i-1"], DryRun: true });
    });

    it("retries throttling with growing jittered backoff, then succeeds", async () => {
      ec2
        .on(TerminateInstancesCommand)
        .rejectsOnce(awsError("RequestLimitExceeded", 503, "Request limit exceeded."))
        .rejectsOnce(awsError("Throttling", 400, "Rate exceeded"))
        .rejectsOnce(awsError("InternalError", 500, "An internal error has occurred"))
        .resolves({ TerminatingInstances: [{ InstanceId: "i-1" }] });
      const aws = service({ retry: { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000 } });
      const [result] = await aws.terminate([instance("i-1")], ctx());
      expect(result).toMatchObject({ ok: true });
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(4);
      // Equal jitter with random() = 0.5: 3/4 of 100, 200, 400.
      expect(sleeps).toEqual([75, 150, 300]);
      expect(aws.ledger.list()[0]).toMatchObject({ outcome: "ok" });
    });

    it("gives up after the bound and reports the error; the ledger says the outcome is unknown", async () => {
      ec2.on(TerminateInstancesCommand).rejects(awsError("RequestLimitExceeded", 503, "Request limit exceeded."));
      const aws = service({ retry: { attempts: 3, baseDelayMs: 100, maxDelayMs: 150 } });
      const [result] = await aws.terminate([instance("i-1")], ctx());
      expect(result).toEqual({
        instanceId: "i-1",
        action: "terminate",
        ok: false,
        refusedBy: "aws",
        call: "TerminateInstances",
        error: "TerminateInstances failed: RequestLimitExceeded: Request limit exceeded. (gave up after 3 attempts)",
      });
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(3);
      expect(sleeps).toEqual([75, 113]);
      expect(aws.ledger.list()[0]).toMatchObject({ outcome: "unknown", error: result!.error });
    });

    it("reports a partial failure per instance and keeps going", async () => {
      ec2.on(TerminateInstancesCommand).resolves({});
      ec2.on(TerminateInstancesCommand, { InstanceIds: ["i-2"] }).rejects(awsError("InvalidInstanceID.NotFound", 400, "The instance ID 'i-2' does not exist"));
      const aws = service();
      const results = await aws.terminate([instance("i-1"), instance("i-2"), instance("i-3")], ctx());
      expect(results.map((r) => [r.instanceId, r.ok, r.error])).toEqual([
        ["i-1", true, undefined],
        ["i-2", false, "TerminateInstances failed: InvalidInstanceID.NotFound: The instance ID 'i-2' does not exist"],
        ["i-3", true, undefined],
      ]);
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(3);
      // AWS refused i-2 outright: nothing happened, so its record does not count.
      expect(aws.ledger.list().map((e) => [e.instanceId, e.outcome])).toEqual([
        ["i-3", "ok"],
        ["i-2", "failed"],
        ["i-1", "ok"],
      ]);
    });

    it("refuses by tag before calling AWS: no opt-in tag, an exclusion tag", async () => {
      const aws = service();
      const bare = { ...instance("i-1"), tags: { app: "web" } };
      live.set("i-1", ec2InstanceOf(bare));
      const results = await aws.terminate([bare, instance("i-2", undefined, { tier: "db" })], ctx({ excludeTags: ["tier=db", "pci"] }));
      expect(results).toEqual([
        {
          instanceId: "i-1",
          action: "terminate",
          ok: false,
          refusedBy: "guardrail",
          call: "TerminateInstances",
          error: "opt-in-tag: i-1 lacks the opt-in tag firedrill:opt-in=true; tag the instance (or its ASG, propagated to instances) to let firedrill act on it (tags read at the moment of the action)",
        },
        { instanceId: "i-2", action: "terminate", ok: false, refusedBy: "guardrail", call: "TerminateInstances", error: "exclusion-tags: i-2 carries the exclusion tag tier=db (tags read at the moment of the action)" },
      ]);
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
      expect(aws.ledger.list()).toEqual([]);
    });

    it("counts the group at the moment of each kill: the second kill is refused once it would drop InService below minHealthy", async () => {
      asg
        .on(DescribeAutoScalingGroupsCommand)
        .resolvesOnce({ AutoScalingGroups: [asgGroup("web-asg", { min: 1, desired: 3, inService: ["i-1", "i-2", "i-3"] })] })
        // i-1 went; its replacement is not InService yet.
        .resolvesOnce({ AutoScalingGroups: [asgGroup("web-asg", { min: 1, desired: 3, inService: ["i-2", "i-3"], other: [{ id: "i-1", state: "Terminating" }, { id: "i-4", state: "Pending" }] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      const aws = service();
      const results = await aws.terminate([instance("i-1", "web-asg"), instance("i-2", "web-asg")], ctx({ minHealthy: 2 }));
      expect(results.map((r) => r.ok)).toEqual([true, false]);
      expect(results[1]).toMatchObject({
        refusedBy: "guardrail",
        error: "min-healthy: would leave web-asg with 1 InService instance (2 now), below max(MinSize 1, minHealthy 2) = 2",
      });
      expect(asg.commandCalls(DescribeAutoScalingGroupsCommand)).toHaveLength(2);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand).map((c) => c.args[0].input.InstanceId)).toEqual(["i-1"]);
    });

    it("refuses below MinSize, and does not count a killed instance that still shows InService", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("db-asg", { min: 3, inService: ["i-1", "i-2", "i-3"] })] });
      const [refused] = await service().terminate([instance("i-1", "db-asg")], ctx());
      expect(refused!.error).toBe("min-healthy: would leave db-asg with 2 InService instances (3 now), below max(MinSize 3, minHealthy 1) = 3");

      asg.reset();
      // AWS still lists i-1 as InService right after its kill: the ledger knows better.
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { min: 1, inService: ["i-1", "i-2", "i-3"] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      const results = await service().terminate([instance("i-1", "web-asg"), instance("i-2", "web-asg")], ctx({ minHealthy: 2 }));
      expect(results.map((r) => r.ok)).toEqual([true, false]);
      expect(results[1]!.error).toBe(
        "min-healthy: would leave web-asg with 1 InService instance (2 now), below max(MinSize 1, minHealthy 2) = 2 (not counting 1 instance firedrill already terminated that still shows as InService)",
      );
    });

    it("caps a run at maxPercentOfGroup of the group's desired capacity, counting its earlier kills from the ledger", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { desired: 4, inService: ["i-1", "i-2", "i-3", "i-4"] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      const aws = service();
      const g = ctx({ maxPercentOfGroup: 50 }, { runId: "run-7" });
      expect((await aws.terminate([instance("i-1", "web-asg")], g))[0]!.ok).toBe(true);
      const later = await aws.terminate([instance("i-2", "web-asg"), instance("i-3", "web-asg")], g);
      expect(later.map((r) => r.ok)).toEqual([true, false]);
      expect(later[1]!.error).toBe("max-percent-of-group: would make 3 of web-asg's 4 desired instances (75%) acted on by this run, over maxPercentOfGroup 50%");
      // Another run starts from zero.
      expect((await aws.terminate([instance("i-3", "web-asg")], ctx({ maxPercentOfGroup: 50 }, { runId: "run-8" })))[0]!.ok).toBe(true);
    });

    it("keeps minTimeBetweenTerminations per group, and never terminates an instance twice", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2", "i-3", "i-4"] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      const aws = service();
      const g = ctx({ minTimeBetweenTerminationsMs: 3_600_000 });
      expect((await aws.terminate([instance("i-1", "web-asg")], g))[0]!.ok).toBe(true);
      clock += 20 * 60_000;
      const [early] = await aws.terminate([instance("i-2", "web-asg")], g);
      expect(early!.error).toBe(
        "min-time-between-terminations: web-asg had a termination 20m ago (2026-03-03T10:00:00.000Z); minTimeBetweenTerminations is 1h, so the next one may happen at 2026-03-03T11:00:00.000Z",
      );
      clock += 40 * 60_000;
      expect((await aws.terminate([instance("i-2", "web-asg")], g))[0]!.ok).toBe(true);
      const [again] = await aws.terminate([instance("i-2", "web-asg")], ctx());
      expect(again!.error).toMatch(/^already-terminated: firedrill already terminated i-2 \(ledger #\d+, 2026-03-03T11:00:00.000Z, by test, outcome ok\)$/);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)).toHaveLength(2);
    });

    it("two schedulers sharing one database race for a group: exactly one kill is recorded and made", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2", "i-3", "i-4"] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      const a = service({}, openStore());
      const b = service({}, openStore());
      expect(stores[0]!.db).not.toBe(stores[1]!.db);
      const g = ctx({ minTimeBetweenTerminationsMs: 3_600_000 });
      const [ra, rb] = await Promise.all([a.terminate([instance("i-1", "web-asg")], { ...g, actor: "scheduler-a" }), b.terminate([instance("i-2", "web-asg")], { ...g, actor: "scheduler-b" })]);
      const all = [...ra, ...rb];
      expect(all.filter((r) => r.ok)).toHaveLength(1);
      expect(all.find((r) => !r.ok)!.error).toMatch(/^min-time-between-terminations: web-asg had a termination just now \(2026-03-03T10:00:00.000Z\)/);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)).toHaveLength(1);
      expect(a.ledger.list().map((e) => [e.action, e.outcome])).toEqual([["terminate", "ok"]]);
      expect(b.ledger.list()).toHaveLength(1);

      // A retry of the same kill from both schedulers at once, without any interval: still one.
      asg.resetHistory();
      const [x, y] = await Promise.all([a.terminate([instance("i-3", "web-asg")], ctx()), b.terminate([instance("i-3", "web-asg")], ctx())]);
      expect([...x, ...y].filter((r) => r.ok)).toHaveLength(1);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)).toHaveLength(1);
    });

    it("the ledger's chain refuses a second decision from the same point even without a transaction", () => {
      const store = openStore();
      const insert = store.db.prepare(
        "INSERT INTO termination_ledger (group_name, instance_id, region, action, call, actor, decided_at, outcome, prev_id) VALUES ('web-asg', ?, 'eu-west-1', 'terminate', 'TerminateInstanceInAutoScalingGroup', 'x', 0, 'pending', 0)",
      );
      insert.run("i-1");
      expect(() => insert.run("i-2")).toThrow(/UNIQUE constraint failed|duplicate key value violates unique constraint "termination_ledger_chain"/);
    });

    it("a ledger that cannot be written blocks the kill", async () => {
      const store = openStore();
      store.db.exec(
        store.db.engine === "postgres"
          ? `CREATE FUNCTION no_space() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'database or disk is full'; END $$;
             CREATE TRIGGER no_space BEFORE INSERT ON termination_ledger FOR EACH ROW EXECUTE FUNCTION no_space()`
          : "CREATE TRIGGER no_space BEFORE INSERT ON termination_ledger BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
      );
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2", "i-3"] })] });
      const aws = service({}, store);
      const results = await aws.terminate([instance("i-1", "web-asg"), instance("i-9")], ctx());
      const refused = [false, "guardrail", expect.stringMatching(/^ledger: could not record the termination before the call \(database or disk is full.*\); firedrill never kills without a record$/)];
      expect(results.map((r) => [r.ok, r.refusedBy, r.error])).toEqual([refused, refused]);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)).toHaveLength(0);
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
      const [stop] = await aws.stop([instance("i-9")], ctx());
      expect(stop!.error).toMatch(/^ledger: could not record the stop before the call/);
    });

    it("refuses when the group is gone or the instance left it", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolvesOnce({ AutoScalingGroups: [] }).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-2", "i-3"] })] });
      const results = await service().terminate([instance("i-1", "web-asg"), instance("i-1", "web-asg")], ctx());
      expect(results.map((r) => r.error)).toEqual([
        "min-healthy: Auto Scaling group web-asg no longer exists in eu-west-1",
        "min-healthy: i-1 is no longer a member of web-asg (detached or already replaced)",
      ]);
    });
  });

  describe("checks at the moment of action", () => {
    const ctx = (guardrails: Partial<AwsGuardrails> = {}, runId = "run-1") => ({ actor: "test", runId, guardrails: { ...GUARDRAILS, ...guardrails } });

    it("an exclusion tag added after the run resolved its instances refuses the kill: AWS's tags now count, not the run's", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { inService: ["i-1", "i-2", "i-3"] })] });
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      const aws = service();
      // What the run resolved at its start: both opted in, neither excluded.
      const resolved = [instance("i-1", "web-asg"), instance("i-2", "web-asg")];
      // Seconds before the kill someone tags i-1 firedrill:exclude.
      live.set("i-1", ec2InstanceOf(makeInstance("i-1", "web-asg", { "firedrill:exclude": "true" })));
      const results = await aws.terminate(resolved, ctx({ excludeTags: ["firedrill:exclude"] }));

      expect(results.map((r) => [r.instanceId, r.ok, r.refusedBy, r.error])).toEqual([
        ["i-1", false, "guardrail", "exclusion-tags: i-1 carries the exclusion tag firedrill:exclude (tags read at the moment of the action)"],
        ["i-2", true, undefined, undefined],
      ]);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand).map((c) => c.args[0].input.InstanceId)).toEqual(["i-2"]);
      // Each kill read its own instance right before, by id.
      expect(ec2.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input.Filters)).toEqual([
        [{ Name: "instance-id", Values: ["i-1"] }],
        [{ Name: "instance-id", Values: ["i-2"] }],
      ]);
      // Nothing recorded for the refused kill: it never counts for the floors or intervals.
      expect(aws.ledger.list().map((e) => [e.instanceId, e.outcome])).toEqual([["i-2", "ok"]]);
    });

    it("an opt-in tag removed, an instance stopped or gone since the run started: each refused with why, nothing called", async () => {
      const aws = service();
      const resolved = [instance("i-1"), instance("i-2"), instance("i-3")];
      live.set("i-1", ec2Instance("i-1", { app: "web" }));
      live.set("i-2", ec2InstanceOf(resolved[1]!, "stopped"));
      live.delete("i-3");
      const results = await aws.terminate(resolved, ctx());
      expect(results.map((r) => r.error)).toEqual([
        "opt-in-tag: i-1 lacks the opt-in tag firedrill:opt-in=true; tag the instance (or its ASG, propagated to instances) to let firedrill act on it (tags read at the moment of the action)",
        "instance-state: i-2 is stopped now, not running; nothing to terminate",
        "instance-state: i-3 no longer exists in eu-west-1",
      ]);
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
    });

    it("an instance that cannot be read right before the kill is not killed", async () => {
      ec2.on(DescribeInstancesCommand).rejects(awsError("Unavailable", 503, "Service Unavailable"));
      const aws = service({ retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 1 } });
      const [r] = await aws.terminate([makeInstance("i-1")], ctx());
      expect(r).toMatchObject({ ok: false, refusedBy: "guardrail" });
      expect(r!.error).toMatch(/^instance-state: could not read i-1 right before the termination \(DescribeInstances in eu-west-1 failed: Unavailable: Service Unavailable \(gave up after 2 attempts\)\); firedrill does not act without checking its tags at that moment$/);
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
    });

    it("records the kill before the call: the ledger row is there when AWS is asked", async () => {
      const aws = service();
      const seen: string[] = [];
      ec2.on(TerminateInstancesCommand).callsFake(() => {
        seen.push(...aws.ledger.list().map((e) => `${e.instanceId} ${e.outcome}`));
        return {};
      });
      await aws.terminate([instance("i-1")], ctx());
      expect(seen).toEqual(["i-1 pending"]);
    });

    it("a stop reads the instance again: an exclusion tag or an Auto Scaling group tag that appeared since refuses it", async () => {
      ec2.on(StopInstancesCommand).resolves({});
      const aws = service();
      const resolved = [instance("i-1"), instance("i-2"), instance("i-3")];
      live.set("i-1", ec2InstanceOf(makeInstance("i-1", undefined, { "firedrill:exclude": "" })));
      live.set("i-2", ec2InstanceOf(makeInstance("i-2", "web-asg")));
      const results = await aws.stop(resolved, ctx({ excludeTags: ["firedrill:exclude"] }));
      expect(results.map((r) => [r.instanceId, r.ok, r.error])).toEqual([
        ["i-1", false, "exclusion-tags: i-1 carries the exclusion tag firedrill:exclude (tags read at the moment of the action)"],
        ["i-2", false, expect.stringMatching(/^asg-member: i-2 is in Auto Scaling group web-asg, which would mark a stopped instance unhealthy/)],
        ["i-3", true, undefined],
      ]);
      expect(ec2.commandCalls(StopInstancesCommand).map((c) => c.args[0].input.InstanceIds)).toEqual([["i-3"]]);
      expect(aws.ledger.list().map((e) => [e.instanceId, e.action])).toEqual([["i-3", "stop"]]);
    });

    it("checkTerminate says what a kill would meet now (tags, floor, percent, interval) and records and calls nothing", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { min: 2, desired: 2, inService: ["i-1", "i-2"] })] });
      const aws = service();
      const [atFloor] = await aws.checkTerminate([instance("i-1", "web-asg")], ctx());
      expect(atFloor).toMatchObject({
        ok: false,
        refusedBy: "guardrail",
        error: "min-healthy: would leave web-asg with 1 InService instance (2 now), below max(MinSize 2, minHealthy 1) = 2",
      });
      asg.reset();
      asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("web-asg", { min: 1, desired: 4, inService: ["i-1", "i-2", "i-3", "i-4"] })] });
      const [fine] = await aws.checkTerminate([instance("i-1", "web-asg")], ctx());
      expect(fine).toEqual({
        instanceId: "i-1",
        action: "terminate",
        call: "TerminateInstanceInAutoScalingGroup",
        autoScalingGroup: "web-asg",
        ok: true,
        note: "every guardrail passes at this moment; nothing was called or recorded",
      });
      // A real kill 10 minutes ago makes the interval refuse.
      asg.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
      expect((await aws.terminate([instance("i-4", "web-asg")], ctx()))[0]!.ok).toBe(true);
      clock += 600_000;
      const [tooSoon] = await aws.checkTerminate([instance("i-2", "web-asg")], ctx({ minTimeBetweenTerminationsMs: 3_600_000 }));
      expect(tooSoon!.error).toMatch(/^min-time-between-terminations: web-asg had a termination 10m ago/);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)).toHaveLength(1);
      expect(aws.ledger.list()).toHaveLength(1);
    });
  });

  describe("stop and start", () => {
    it("stops a plain instance, refuses an ASG member, and starts one that is still stopping once it has stopped", async () => {
      ec2.on(StopInstancesCommand).resolves({});
      ec2
        .on(StartInstancesCommand)
        .rejectsOnce(awsError("IncorrectInstanceState", 400, "The instance 'i-1' is not in a state from which it can be started."))
        .resolves({});
      const aws = service();
      const stopped = await aws.stop([instance("i-1"), instance("i-2", "web-asg")], { actor: "run", runId: "r1", guardrails: GUARDRAILS });
      expect(stopped[0]).toEqual({ instanceId: "i-1", action: "stop", ok: true, call: "StopInstances" });
      expect(stopped[1]).toMatchObject({ ok: false, refusedBy: "guardrail", error: expect.stringMatching(/^asg-member: i-2 is in Auto Scaling group web-asg, which would mark a stopped instance unhealthy/) });
      expect(ec2.commandCalls(StopInstancesCommand).map((c) => c.args[0].input)).toEqual([{ InstanceIds: ["i-1"], DryRun: false }]);

      const started = await aws.start([instance("i-1")], { actor: "run", runId: "r1" });
      expect(started).toEqual([{ instanceId: "i-1", action: "start", ok: true, call: "StartInstances" }]);
      expect(ec2.commandCalls(StartInstancesCommand)).toHaveLength(2);
      expect(aws.ledger.list({ runId: "r1" }).map((e) => [e.action, e.outcome])).toEqual([
        ["start", "ok"],
        ["stop", "ok"],
      ]);
    });
  });

  describe("alarmStates", () => {
    it("reads metric and composite alarms over every page; a name AWS does not know is MISSING", async () => {
      const inputs: DescribeAlarmsCommandInput[] = [];
      cw.on(DescribeAlarmsCommand).callsFake((input: DescribeAlarmsCommandInput) => {
        inputs.push(structuredClone(input));
        return input.NextToken === undefined
          ? { MetricAlarms: [{ AlarmName: "checkout-5xx", StateValue: "OK", StateReason: "Threshold Crossed: no datapoints were above 5" }], NextToken: "n2" }
          : { CompositeAlarms: [{ AlarmName: "checkout-health", StateValue: "ALARM", StateReason: "checkout-latency in ALARM" }] };
      });
      const states = await service().alarmStates(["checkout-health", "checkout-5xx", "checkout-typo"], "us-west-2");
      expect(inputs.map((i) => [i.AlarmNames, i.AlarmTypes, i.NextToken])).toEqual([
        [["checkout-health", "checkout-5xx", "checkout-typo"], ["MetricAlarm", "CompositeAlarm"], undefined],
        [["checkout-health", "checkout-5xx", "checkout-typo"], ["MetricAlarm", "CompositeAlarm"], "n2"],
      ]);
      expect(states).toEqual([
        { name: "checkout-health", state: "ALARM", reason: "checkout-latency in ALARM", type: "composite" },
        { name: "checkout-5xx", state: "OK", reason: "Threshold Crossed: no datapoints were above 5", type: "metric" },
        { name: "checkout-typo", state: "MISSING", reason: 'no metric or composite alarm named "checkout-typo" exists in us-west-2', type: "missing" },
      ]);
    });
  });

  describe("groups", () => {
    it("describes groups by name and lists every group of a region", async () => {
      asg.on(DescribeAutoScalingGroupsCommand).callsFake((input: DescribeAutoScalingGroupsCommandInput) =>
        input.NextToken ? { AutoScalingGroups: [asgGroup("b", { max: 1, inService: ["i-2"] })] } : { AutoScalingGroups: [asgGroup("a", { inService: ["i-1"], other: [{ id: "i-5", state: "Pending" }] })], NextToken: "t" },
      );
      const groups = await service().listGroups();
      expect(groups.map((g) => [g.name, g.region, g.maxSize, g.inService])).toEqual([
        ["a", "eu-west-1", 10, ["i-1"]],
        ["b", "eu-west-1", 1, ["i-2"]],
      ]);
      expect(groups[0]!.instances).toEqual([
        { instanceId: "i-1", availabilityZone: "eu-west-1a", lifecycleState: "InService", healthStatus: "Healthy" },
        { instanceId: "i-5", availabilityZone: "eu-west-1a", lifecycleState: "Pending", healthStatus: "Healthy" },
      ]);
      expect(asg.commandCalls(DescribeAutoScalingGroupsCommand)[0]!.args[0].input.AutoScalingGroupNames).toBeUndefined();
    });
  });

  describe("reboot", () => {
    const ctx = (guardrails: Partial<AwsGuardrails> = {}) => ({ actor: "run", runId: "r1", guardrails: { ...GUARDRAILS, ...guardrails } });

    it("reboots opted-in instances (Auto Scaling group members too), recorded in the ledger before the call, with no revert in the journal", async () => {
      const aws = service();
      const seen: string[] = [];
      ec2.on(RebootInstancesCommand).callsFake(() => {
        seen.push(...aws.ledger.list().map((e) => `${e.instanceId} ${e.action} ${e.outcome}`));
        return {};
      });
      const results = await aws.reboot!([instance("i-1"), instance("i-2", "web-asg")], ctx());
      expect(results).toEqual([
        { instanceId: "i-1", action: "reboot", ok: true, call: "RebootInstances" },
        { instanceId: "i-2", action: "reboot", ok: true, call: "RebootInstances", autoScalingGroup: "web-asg" },
      ]);
      expect(ec2.commandCalls(RebootInstancesCommand).map((c) => c.args[0].input)).toEqual([
        { InstanceIds: ["i-1"], DryRun: false },
        { InstanceIds: ["i-2"], DryRun: false },
      ]);
      expect(seen).toEqual(["i-1 reboot pending", "i-2 reboot pending", "i-1 reboot ok"]);
      expect(aws.ledger.list({ runId: "r1" }).map((e) => [e.instanceId, e.action, e.outcome])).toEqual([
        ["i-2", "reboot", "ok"],
        ["i-1", "reboot", "ok"],
      ]);
      expect(stores[0]!.db.prepare("SELECT COUNT(*) AS n FROM cloud_reverts").get()).toEqual({ n: 0 });
    });

    it("reads each instance right before: an exclusion tag added, an opt-in tag removed or a stopped instance since the run started refuses it; AWS is not called", async () => {
      ec2.on(RebootInstancesCommand).resolves({});
      const aws = service();
      const resolved = [instance("i-1"), instance("i-2"), instance("i-3"), instance("i-4")];
      live.set("i-1", ec2InstanceOf(makeInstance("i-1", undefined, { "firedrill:exclude": "" })));
      live.set("i-2", ec2Instance("i-2", { app: "web" }));
      live.set("i-3", ec2InstanceOf(resolved[2]!, "stopped"));
      const results = await aws.reboot!(resolved, ctx({ excludeTags: ["firedrill:exclude"] }));
      expect(results.map((r) => [r.instanceId, r.ok, r.refusedBy, r.error])).toEqual([
        ["i-1", false, "guardrail", "exclusion-tags: i-1 carries the exclusion tag firedrill:exclude (tags read at the moment of the action)"],
        ["i-2", false, "guardrail", expect.stringMatching(/^opt-in-tag: i-2 lacks the opt-in tag firedrill:opt-in=true/)],
        ["i-3", false, "guardrail", "instance-state: i-3 is stopped now, not running; nothing to reboot"],
        ["i-4", true, undefined, undefined],
      ]);
      expect(ec2.commandCalls(RebootInstancesCommand).map((c) => c.args[0].input.InstanceIds)).toEqual([["i-4"]]);
      expect(aws.ledger.list().map((e) => e.instanceId)).toEqual(["i-4"]);
    });

    it("with dryRun: DryRunOperation means allowed, UnauthorizedOperation names ec2:RebootInstances; nothing read or recorded", async () => {
      ec2
        .on(RebootInstancesCommand)
        .rejectsOnce(awsError("DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set."))
        .rejects(awsError("UnauthorizedOperation", 403, "You are not authorized to perform this operation."));
      const aws = service();
      const results = await aws.reboot!([instance("i-1"), instance("i-2")], { ...ctx(), dryRun: true });
      expect(results[0]).toEqual({ instanceId: "i-1", action: "reboot", ok: true, call: "RebootInstances" });
      expect(results[1]).toMatchObject({ ok: false, refusedBy: "aws", error: expect.stringMatching(/^missing IAM permission ec2:RebootInstances on i-2/) });
      expect(ec2.commandCalls(RebootInstancesCommand).every((c) => c.args[0].input.DryRun === true)).toBe(true);
      expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
      expect(aws.ledger.list()).toHaveLength(0);
    });

    it("a failed reboot is reported per instance, its ledger row failed (AWS refused) and the next instance still rebooted", async () => {
      ec2.on(RebootInstancesCommand, { InstanceIds: ["i-1"] }).rejects(awsError("IncorrectInstanceState", 400, "The instance is not running.")).on(RebootInstancesCommand, { InstanceIds: ["i-2"] }).resolves({});
      const aws = service();
      const results = await aws.reboot!([instance("i-1"), instance("i-2")], ctx());
      expect(results.map((r) => [r.instanceId, r.ok, r.refusedBy])).toEqual([
        ["i-1", false, "aws"],
        ["i-2", true, undefined],
      ]);
      expect(aws.ledger.list().map((e) => [e.instanceId, e.outcome])).toEqual([
        ["i-2", "ok"],
        ["i-1", "failed"],
      ]);
    });
  });
});
