/**
 * firedrill's AWS operations on the SDK v3 clients: resolving instances, terminating / stopping /
 * starting them inside the guardrails (checked per instance at the moment of each action, with the
 * termination ledger written before the call), and reading CloudWatch alarms.
 *
 * Every call goes through a bounded retry with jittered exponential backoff for throttling and
 * transient errors (on top of the SDK's own attempts). Actions are one API call per instance, so
 * each instance gets its own result: a partial failure is never hidden behind a batch error.
 */
import { paginateDescribeAutoScalingGroups, TerminateInstanceInAutoScalingGroupCommand } from "@aws-sdk/client-auto-scaling";
import type { AutoScalingGroup } from "@aws-sdk/client-auto-scaling";
import { paginateDescribeAlarms } from "@aws-sdk/client-cloudwatch";
import type { CompositeAlarm, MetricAlarm } from "@aws-sdk/client-cloudwatch";
import {
  paginateDescribeInstances,
  RebootInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import type { Filter, Instance } from "@aws-sdk/client-ec2";
import type { SqlDatabase } from "../store/sql/types.js";
import type { Logger } from "pino";
import type { AwsClients } from "./clients.js";
import { AwsCallError, AwsSelectorError, describeAwsError, errorCode, isDefinitiveRefusal, isRetryable } from "./errors.js";
import { createCloudJournal } from "./cloud-journal.js";
import type { CloudJournal } from "./cloud-journal.js";
import { EC2_START_REVERT } from "./cloud-reverters.js";
import type { Ec2StartPayload } from "./cloud-reverters.js";
import { createTerminationLedger } from "./ledger.js";
import { createNetworkDisrupter } from "./network-disrupt.js";
import type { TerminationDecision, TerminationLedger } from "./ledger.js";
import { withRetry } from "./retry.js";
import type { RetryOptions } from "./retry.js";
import { ASG_TAG } from "./rules.js";
import type { ActionContext, AlarmState, AwsGroupState, AwsInstance, AwsSelector, AwsService, InstanceActionResult } from "./types.js";

/** Every AWS API call the control plane makes, with the IAM action it needs. */
export const AWS_CALLS = {
  DescribeInstances: "ec2:DescribeInstances",
  DescribeAutoScalingGroups: "autoscaling:DescribeAutoScalingGroups",
  DescribeAlarms: "cloudwatch:DescribeAlarms",
  TerminateInstances: "ec2:TerminateInstances",
  TerminateInstanceInAutoScalingGroup: "autoscaling:TerminateInstanceInAutoScalingGroup",
  StopInstances: "ec2:StopInstances",
  StartInstances: "ec2:StartInstances",
  RebootInstances: "ec2:RebootInstances",
  DescribeSubnets: "ec2:DescribeSubnets",
  DescribeVpcs: "ec2:DescribeVpcs",
  DescribeNetworkAcls: "ec2:DescribeNetworkAcls",
  CreateNetworkAcl: "ec2:CreateNetworkAcl",
  /** Not called on its own: CreateNetworkAcl tags the new NACL (TagSpecifications), which needs it. */
  CreateTags: "ec2:CreateTags",
  ReplaceNetworkAclAssociation: "ec2:ReplaceNetworkAclAssociation",
  DeleteNetworkAcl: "ec2:DeleteNetworkAcl",
} as const;

/** An AWS API call firedrill makes. */
export type AwsCall = keyof typeof AWS_CALLS;

/** Error codes meaning "the caller lacks the IAM permission". */
const PERMISSION_ERRORS = ["UnauthorizedOperation", "AccessDenied", "AccessDeniedException"];

/** DescribeInstances filter values per request (EC2 allows up to 200 values per filter). */
const IDS_PER_FILTER = 200;
/** AutoScalingGroupNames per DescribeAutoScalingGroups request (50 by default). */
const GROUPS_PER_REQUEST = 50;
/** AlarmNames per DescribeAlarms request. */
const ALARMS_PER_REQUEST = 100;

/** Options of {@link createAwsService}. */
export interface AwsServiceOptions {
  clients: AwsClients;
  /** The control plane's database (`store.db`): the termination ledger lives there. */
  db: SqlDatabase;
  log: Logger;
  /** Clock. @default Date.now */
  now?: () => number;
  /** Backoff sleep, injectable for tests. @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
  /** Jitter source. @default Math.random */
  random?: () => number;
  /** Retry bounds for every call. */
  retry?: RetryOptions;
  /**
   * How long start() keeps retrying an instance that is still stopping (IncorrectInstanceState)
   * before reporting it. @default 300000
   */
  startWaitMs?: number;
  /**
   * The cloud-revert journal: every stop is written there with its revert (StartInstances) in the
   * transaction that records it in the ledger, before the call. @default one on `db`
   */
  journal?: CloudJournal;
  /** Subnets aws-network-disrupt never touches (`--aws-protect-subnets`). */
  protectSubnets?: readonly string[];
  /** The control plane's own subnets (IMDS on EC2), asked once before the first disruption. */
  ownSubnets?: () => Promise<string[]>;
}

/** The service plus its ledger (for plan checks and audits). */
export interface AwsServiceWithLedger extends AwsService {
  readonly ledger: TerminationLedger;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function tagsOf(tags: { Key?: string | undefined; Value?: string | undefined }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? "";
  return out;
}

function toGroupState(g: AutoScalingGroup, region: string): AwsGroupState {
  const instances = (g.Instances ?? []).map((i) => ({
    instanceId: i.InstanceId ?? "",
    availabilityZone: i.AvailabilityZone ?? "",
    lifecycleState: i.LifecycleState ?? "",
    healthStatus: i.HealthStatus ?? "",
  }));
  return {
    name: g.AutoScalingGroupName ?? "",
    region,
    minSize: g.MinSize ?? 0,
    maxSize: g.MaxSize ?? 0,
    desiredCapacity: g.DesiredCapacity ?? 0,
    inService: instances.filter((i) => i.lifecycleState === "InService" && i.healthStatus === "Healthy").map((i) => i.instanceId),
    instances,
    availabilityZones: [...(g.AvailabilityZones ?? [])],
  };
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Creates the AWS service. Nothing is contacted until a method is called.
 * Every method that reads (resolveInstances, describeGroups, listGroups, alarmStates) throws
 * {@link AwsCallError} when AWS keeps failing, {@link AwsRegionError} without a region, and
 * resolveInstances {@link AwsSelectorError} for an unknown Auto Scaling group. The actions never
 * throw: every instance gets a result.
 */
export function createAwsService(options: AwsServiceOptions): AwsServiceWithLedger {
  const { clients } = options;
  const log = options.log.child({ component: "aws" });
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  const retryOptions = options.retry ?? {};
  const attempts = Math.max(1, retryOptions.attempts ?? 5);
  const ledger = createTerminationLedger(options.db);
  const journal = options.journal ?? createCloudJournal(options.db);
  /** Records a stop (`decide`) and, when it passes, its revert in the journal: one transaction. */
  const decideWithRevert = options.db.transaction((decide: () => ReturnType<TerminationLedger["decideAction"]>, instance: AwsInstance, ctx: Omit<ActionContext, "guardrails">) => {
    const decision = decide();
    if (!decision.ok) return { decision, revertId: undefined };
    const payload: Ec2StartPayload = { instanceIds: [instance.instanceId] };
    const revertId = journal.record({
      ...(ctx.runId !== undefined ? { runId: ctx.runId } : {}),
      ...(ctx.step !== undefined ? { step: ctx.step } : {}),
      action: "ec2-stop",
      kind: EC2_START_REVERT,
      region: instance.region,
      resource: instance.instanceId,
      payload,
      actor: ctx.actor,
      now: now(),
      ...(ctx.revertDueAt !== undefined ? { dueAt: ctx.revertDueAt } : {}),
    });
    return { decision, revertId };
  });

  const retry = <T>(call: string, region: string, fn: () => Promise<T>, alsoRetry?: (err: unknown) => boolean): Promise<T> =>
    withRetry(fn, {
      sleep,
      random,
      options: retryOptions,
      ...(alsoRetry ? { alsoRetry } : {}),
      onRetry: ({ attempt, delayMs, error }) => log.warn({ call, region, attempt, delayMs, error }, "AWS call failed; retrying"),
    });

  /** A read that must succeed: retried, then an AwsCallError naming the call. */
  const read = async <T>(call: AwsCall, region: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await retry(call, region, fn);
    } catch (err) {
      const code = errorCode(err);
      const permission = PERMISSION_ERRORS.includes(code) ? `; the control plane lacks ${AWS_CALLS[call]} (see infra/aws/iam-policy.json)` : "";
      const gaveUp = isRetryable(err) ? ` (gave up after ${attempts} attempts)` : "";
      throw new AwsCallError(call, region, code, `${describeAwsError(err)}${gaveUp}${permission}`, { cause: err });
    }
  };

  async function describeInstances(region: string, filters: Filter[]): Promise<Instance[]> {
    return read("DescribeInstances", region, async () => {
      const out: Instance[] = [];
      for await (const page of paginateDescribeInstances({ client: clients.ec2(region) }, { Filters: filters })) {
        for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
      }
      return out;
    });
  }

  async function describeGroupsIn(region: string, names?: readonly string[]): Promise<AwsGroupState[]> {
    const batches = names === undefined ? [undefined] : chunks(names, GROUPS_PER_REQUEST);
    const out: AwsGroupState[] = [];
    for (const batch of batches) {
      const groups = await read("DescribeAutoScalingGroups", region, async () => {
        const found: AwsGroupState[] = [];
        const input = batch ? { AutoScalingGroupNames: [...batch] } : {};
        for await (const page of paginateDescribeAutoScalingGroups({ client: clients.autoScaling(region) }, input)) {
          for (const g of page.AutoScalingGroups ?? []) found.push(toGroupState(g, region));
        }
        return found;
      });
      out.push(...groups);
    }
    return out;
  }

  const network = createNetworkDisrupter({
    clients,
    journal,
    log: options.log,
    now,
    sleep,
    random,
    retry: retryOptions,
    ...(options.protectSubnets ? { protectSubnets: options.protectSubnets } : {}),
    ...(options.ownSubnets ? { ownSubnets: options.ownSubnets } : {}),
  });

  const service: AwsServiceWithLedger = {
    ledger,
    network,

    async resolveInstances(selector: AwsSelector): Promise<AwsInstance[]> {
      const region = await clients.region(selector.region);
      const filters: Filter[] = [{ Name: "instance-state-name", Values: ["running"] }];
      for (const [key, value] of Object.entries(selector.tags ?? {})) filters.push({ Name: `tag:${key}`, Values: [value] });
      for (const f of selector.filters ?? []) filters.push({ Name: f.name, Values: [...f.values] });

      let ids: string[] | undefined = selector.instanceIds ? [...new Set(selector.instanceIds)] : undefined;
      const groupOf = new Map<string, string>();
      if (selector.autoScalingGroups?.length) {
        const names = [...new Set(selector.autoScalingGroups)];
        const groups = await describeGroupsIn(region, names);
        const missing = names.filter((n) => !groups.some((g) => g.name === n));
        if (missing.length > 0) {
          throw new AwsSelectorError(
            `Auto Scaling group${missing.length === 1 ? "" : "s"} ${missing.map((m) => JSON.stringify(m)).join(", ")} not found in ${region}; check the name (aws autoscaling describe-auto-scaling-groups --region ${region}) and the selector's region`,
          );
        }
        for (const g of groups) for (const i of g.instances) groupOf.set(i.instanceId, g.name);
        const members = [...groupOf.keys()];
        ids = ids ? ids.filter((id) => groupOf.has(id)) : members;
      }
      if (ids && ids.length === 0) return [];
      const wanted = ids ? new Set(ids) : undefined;

      const found = new Map<string, AwsInstance>();
      for (const batch of ids ? chunks(ids, IDS_PER_FILTER) : [undefined]) {
        const batchFilters = batch ? [...filters, { Name: "instance-id", Values: batch }] : filters;
        for (const i of await describeInstances(region, batchFilters)) {
          if (!i.InstanceId || i.State?.Name !== "running") continue;
          if (wanted && !wanted.has(i.InstanceId)) continue;
          const tags = tagsOf(i.Tags);
          const group = tags[ASG_TAG] ?? groupOf.get(i.InstanceId);
          found.set(i.InstanceId, {
            instanceId: i.InstanceId,
            region,
            availabilityZone: i.Placement?.AvailabilityZone ?? "",
            state: i.State.Name,
            tags,
            ...(group ? { autoScalingGroup: group } : {}),
          });
        }
      }
      return [...found.values()].sort((a, b) => a.instanceId.localeCompare(b.instanceId));
    },

    async describeGroups(names, region) {
      if (names.length === 0) return [];
      return describeGroupsIn(await clients.region(region), [...new Set(names)]);
    },

    async listGroups(region) {
      return describeGroupsIn(await clients.region(region));
    },

    async terminate(instances, ctx) {
      const results: InstanceActionResult[] = [];
      const killsWithoutRun = new Map<string, number>();
      for (const instance of instances) {
        const result = ctx.dryRun ? await dryRunTerminate(instance) : await terminateOne(instance, ctx, killsWithoutRun);
        results.push(result);
      }
      return results;
    },

    async checkTerminate(instances, ctx) {
      const results: InstanceActionResult[] = [];
      for (const instance of instances) results.push(await checkTerminateOne(instance, ctx));
      return results;
    },

    region: (explicit) => clients.region(explicit),

    async stop(instances, ctx) {
      const results: InstanceActionResult[] = [];
      for (const instance of instances) {
        if (ctx.dryRun) {
          results.push(await dryRunCall(instance, "stop", "StopInstances"));
          continue;
        }
        // The tags and state as they are now, checked in the transaction that records the stop.
        const current = await readNow(instance, "stop");
        if (!current.ok) {
          results.push(refusal(instance, "stop", "StopInstances", ctx, current.rule, current.reason));
          continue;
        }
        results.push(await recordedCall(current.instance, "stop", "StopInstances", ctx, ctx.guardrails));
      }
      return results;
    },

    async reboot(instances, ctx) {
      const results: InstanceActionResult[] = [];
      for (const instance of instances) {
        if (ctx.dryRun) {
          results.push(await dryRunCall(instance, "reboot", "RebootInstances"));
          continue;
        }
        // The tags and state as they are now, checked in the transaction that records the reboot.
        const current = await readNow(instance, "reboot");
        if (!current.ok) {
          results.push(refusal(instance, "reboot", "RebootInstances", ctx, current.rule, current.reason));
          continue;
        }
        results.push(await recordedCall(current.instance, "reboot", "RebootInstances", ctx, ctx.guardrails));
      }
      return results;
    },

    async start(instances, ctx) {
      const results: InstanceActionResult[] = [];
      for (const instance of instances) {
        results.push(ctx.dryRun ? await dryRunCall(instance, "start", "StartInstances") : await recordedCall(instance, "start", "StartInstances", ctx));
      }
      return results;
    },

    async alarmStates(names, region) {
      if (names.length === 0) return [];
      const r = await clients.region(region);
      const found = new Map<string, AlarmState>();
      for (const batch of chunks([...new Set(names)], ALARMS_PER_REQUEST)) {
        const alarms = await read("DescribeAlarms", r, async () => {
          const metric: MetricAlarm[] = [];
          const composite: CompositeAlarm[] = [];
          const input = { AlarmNames: batch, AlarmTypes: ["MetricAlarm" as const, "CompositeAlarm" as const] };
          for await (const page of paginateDescribeAlarms({ client: clients.cloudWatch(r) }, input)) {
            metric.push(...(page.MetricAlarms ?? []));
            composite.push(...(page.CompositeAlarms ?? []));
          }
          return { metric, composite };
        });
        for (const a of alarms.metric) {
          if (a.AlarmName) found.set(a.AlarmName, { name: a.AlarmName, state: a.StateValue ?? "INSUFFICIENT_DATA", reason: a.StateReason ?? "", type: "metric" });
        }
        for (const a of alarms.composite) {
          if (a.AlarmName) found.set(a.AlarmName, { name: a.AlarmName, state: a.StateValue ?? "INSUFFICIENT_DATA", reason: a.StateReason ?? "", type: "composite" });
        }
      }
      return names.map(
        (name) =>
          found.get(name) ?? {
            name,
            state: "MISSING",
            reason: `no metric or composite alarm named ${JSON.stringify(name)} exists in ${r}`,
            type: "missing" as const,
          },
      );
    },
  };

  /** Sends one action call for one instance. */
  async function send(instance: AwsInstance, call: AwsCall, dryRun: boolean, alsoRetry?: (err: unknown) => boolean): Promise<void> {
    const region = instance.region;
    const id = instance.instanceId;
    await retry(
      call,
      region,
      async () => {
        switch (call) {
          case "TerminateInstanceInAutoScalingGroup":
            await clients.autoScaling(region).send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: id, ShouldDecrementDesiredCapacity: false }));
            return;
          case "TerminateInstances":
            await clients.ec2(region).send(new TerminateInstancesCommand({ InstanceIds: [id], DryRun: dryRun }));
            return;
          case "StopInstances":
            await clients.ec2(region).send(new StopInstancesCommand({ InstanceIds: [id], DryRun: dryRun }));
            return;
          case "StartInstances":
            await clients.ec2(region).send(new StartInstancesCommand({ InstanceIds: [id], DryRun: dryRun }));
            return;
          case "RebootInstances":
            await clients.ec2(region).send(new RebootInstancesCommand({ InstanceIds: [id], DryRun: dryRun }));
            return;
          default:
            throw new Error(`internal: ${call} is not an action`);
        }
      },
      alsoRetry,
    );
  }

  /** The result's error text for a failed call, naming the IAM action when permission is missing. */
  function callError(call: AwsCall, instance: AwsInstance, err: unknown): string {
    const code = errorCode(err);
    if (PERMISSION_ERRORS.includes(code)) {
      return `missing IAM permission ${AWS_CALLS[call]} on ${instance.instanceId} (${describeAwsError(err)}); grant it to the control plane's role (infra/aws/iam-policy.json allows it only on instances tagged firedrill:opt-in=true)`;
    }
    const gaveUp = isRetryable(err) ? ` (gave up after ${attempts} attempts)` : "";
    return `${call} failed: ${describeAwsError(err)}${gaveUp}`;
  }

  async function dryRunCall(instance: AwsInstance, action: InstanceActionResult["action"], call: "TerminateInstances" | "StopInstances" | "StartInstances" | "RebootInstances"): Promise<InstanceActionResult> {
    const base = { instanceId: instance.instanceId, action, call, ...(instance.autoScalingGroup ? { autoScalingGroup: instance.autoScalingGroup } : {}) };
    try {
      await send(instance, call, true);
      return { ...base, ok: true, note: "AWS accepted the dry run without answering DryRunOperation; the permission looks granted" };
    } catch (err) {
      if (errorCode(err) === "DryRunOperation") return { ...base, ok: true };
      return { ...base, ok: false, refusedBy: "aws", error: callError(call, instance, err) };
    }
  }

  async function dryRunTerminate(instance: AwsInstance): Promise<InstanceActionResult> {
    if (!instance.autoScalingGroup) return dryRunCall(instance, "terminate", "TerminateInstances");
    return {
      instanceId: instance.instanceId,
      action: "terminate",
      ok: true,
      call: "TerminateInstanceInAutoScalingGroup",
      autoScalingGroup: instance.autoScalingGroup,
      note: `not checked: TerminateInstanceInAutoScalingGroup has no DryRun, so ${AWS_CALLS.TerminateInstanceInAutoScalingGroup} cannot be proven before the run`,
    };
  }

  /**
   * Records a stop/start in the ledger, makes the call, records the outcome. With `guardrails` (a
   * stop), the tag guardrails and the group membership are checked on `instance` as just read, in
   * the transaction that records it; a refusal calls nothing.
   */
  async function recordedCall(
    instance: AwsInstance,
    action: "stop" | "start" | "reboot",
    call: "StopInstances" | "StartInstances" | "RebootInstances",
    ctx: Omit<ActionContext, "guardrails">,
    guardrails?: ActionContext["guardrails"],
  ): Promise<InstanceActionResult> {
    const base = { instanceId: instance.instanceId, action, call, ...(instance.autoScalingGroup ? { autoScalingGroup: instance.autoScalingGroup } : {}) };
    let id: number;
    let revertId: number | undefined;
    try {
      const record = {
        instanceId: instance.instanceId,
        region: instance.region,
        ...(instance.autoScalingGroup ? { groupName: instance.autoScalingGroup } : {}),
        call,
        actor: ctx.actor,
        ...(ctx.runId !== undefined ? { runId: ctx.runId } : {}),
        ...(ctx.scheduleId !== undefined ? { scheduleId: ctx.scheduleId } : {}),
        now: now(),
      };
      if (guardrails && action === "stop") {
        // The stop and its revert (StartInstances, in the cloud-revert journal) are written together, before the call.
        const recorded = decideWithRevert.immediate(() => ledger.decideAction({ ...record, action, refuseAsgMember: true, guardrails, tags: instance.tags }), instance, ctx);
        const decision = recorded.decision;
        if (!decision.ok) return refusal(instance, action, call, ctx, decision.rule, decision.reason);
        id = decision.id;
        revertId = recorded.revertId;
      } else if (guardrails && action === "reboot") {
        // Nothing to revert: the reboot ends by itself. Group members may be rebooted (they stay running).
        const decision = ledger.decideAction({ ...record, action, refuseAsgMember: false, guardrails, tags: instance.tags });
        if (!decision.ok) return refusal(instance, action, call, ctx, decision.rule, decision.reason);
        id = decision.id;
      } else if (action === "reboot") {
        throw new Error("internal: a reboot is always checked against the guardrails");
      } else {
        id = ledger.recordAction({ ...record, action });
      }
    } catch (err) {
      log.error({ err, instanceId: instance.instanceId, action }, "could not record the action in the ledger; not acting");
      return { ...base, ok: false, refusedBy: "guardrail", error: `ledger: could not record the ${action} before the call (${(err as Error).message}); firedrill does not act without a record` };
    }
    // An instance still stopping can't be started yet: keep asking until it has stopped.
    const deadline = now() + (options.startWaitMs ?? 300_000);
    const alsoRetry = action === "start" ? (err: unknown) => errorCode(err) === "IncorrectInstanceState" && now() < deadline : undefined;
    try {
      await send(instance, call, false, alsoRetry);
      complete(id, "ok", undefined);
      if (revertId !== undefined) markActed(revertId);
      log.info({ instanceId: instance.instanceId, region: instance.region, call, runId: ctx.runId }, `${action} accepted by AWS`);
      return { ...base, ok: true };
    } catch (err) {
      const error = callError(call, instance, err);
      complete(id, isDefinitiveRefusal(err) ? "failed" : "unknown", error);
      // AWS refused the stop itself: nothing to start again. Otherwise it may have stopped: the journal keeps the revert.
      if (revertId !== undefined) {
        if (isDefinitiveRefusal(err)) cancelRevert(revertId, `AWS refused ${call}: ${error}`);
        else markActed(revertId);
      }
      log.warn({ instanceId: instance.instanceId, call, error }, `${action} failed`);
      return { ...base, ok: false, refusedBy: "aws", error };
    }
  }

  /** The stop's call returned: its revert may be made from now on. */
  function markActed(id: number): void {
    try {
      journal.markActed(id, now());
    } catch (err) {
      log.error({ err, revertId: id }, "could not mark the stop done in the cloud-revert journal (its revert waits until the next start-up releases it)");
    }
  }

  function cancelRevert(id: number, reason: string): void {
    try {
      journal.cancel(id, reason, now());
    } catch (err) {
      log.error({ err, revertId: id }, "could not cancel the revert in the cloud-revert journal (the reconciler will find the instance running and confirm it)");
    }
  }

  function complete(id: number, outcome: "ok" | "failed" | "unknown", error: string | undefined): void {
    try {
      ledger.complete(id, outcome, error, now());
    } catch (err) {
      log.error({ err, ledgerId: id, outcome }, "could not record the outcome in the ledger (the row stays pending and keeps counting)");
    }
  }

  /** A guardrail refusal of an action, logged; nothing was called. */
  function refusal(instance: AwsInstance, action: InstanceActionResult["action"], call: AwsCall, ctx: Omit<ActionContext, "guardrails">, rule: string, reason: string): InstanceActionResult {
    const group = instance.autoScalingGroup;
    log.info({ instanceId: instance.instanceId, group, action, rule, reason, runId: ctx.runId, scheduleId: ctx.scheduleId }, `${action} refused by a guardrail at the moment of the action`);
    return { instanceId: instance.instanceId, action, call, ...(group ? { autoScalingGroup: group } : {}), ok: false, refusedBy: "guardrail", error: `${rule}: ${reason}` };
  }

  /**
   * The instance as it is now (DescribeInstances for its id): its tags, state and group, read right
   * before an action so that a tag added since the run started counts. Refused when it can't be
   * read, is gone, or is no longer running.
   */
  async function readNow(instance: AwsInstance, verb: "terminate" | "stop" | "reboot"): Promise<{ ok: true; instance: AwsInstance } | { ok: false; rule: string; reason: string }> {
    let found: Instance | undefined;
    try {
      found = (await describeInstances(instance.region, [{ Name: "instance-id", Values: [instance.instanceId] }])).find((i) => i.InstanceId === instance.instanceId);
    } catch (err) {
      return {
        ok: false,
        rule: "instance-state",
        reason: `could not read ${instance.instanceId} right before the ${verb === "terminate" ? "termination" : verb} (${(err as Error).message}); firedrill does not act without checking its tags at that moment`,
      };
    }
    if (!found) return { ok: false, rule: "instance-state", reason: `${instance.instanceId} no longer exists in ${instance.region}` };
    const state = found.State?.Name ?? "unknown";
    if (state !== "running") return { ok: false, rule: "instance-state", reason: `${instance.instanceId} is ${state} now, not running; nothing to ${verb}` };
    const tags = tagsOf(found.Tags);
    const group = tags[ASG_TAG] ?? instance.autoScalingGroup;
    const { autoScalingGroup: _stale, ...rest } = instance;
    return {
      ok: true,
      instance: { ...rest, state, tags, availabilityZone: found.Placement?.AvailabilityZone || instance.availabilityZone, ...(group ? { autoScalingGroup: group } : {}) },
    };
  }

  /**
   * Everything a termination must pass, read and checked at this moment: the instance (tags,
   * state) and its group as AWS has them now. `decide` records it (the ledger transaction);
   * `evaluate` only says what would happen.
   */
  async function prepareTermination(
    instance: AwsInstance,
    ctx: ActionContext,
    killsWithoutRun: Map<string, number>,
  ): Promise<{ ok: false; result: InstanceActionResult } | { ok: true; instance: AwsInstance; call: AwsCall; decision: TerminationDecision }> {
    const staleCall: AwsCall = instance.autoScalingGroup ? "TerminateInstanceInAutoScalingGroup" : "TerminateInstances";
    const read = await readNow(instance, "terminate");
    if (!read.ok) return { ok: false, result: refusal(instance, "terminate", staleCall, ctx, read.rule, read.reason) };
    const fresh = read.instance;
    const group = fresh.autoScalingGroup;
    const call: AwsCall = group ? "TerminateInstanceInAutoScalingGroup" : "TerminateInstances";
    const refuse = (rule: string, reason: string) => ({ ok: false as const, result: refusal(fresh, "terminate", call, ctx, rule, reason) });

    let state: AwsGroupState | undefined;
    if (group) {
      // The group as it is now, right before this kill: earlier kills and replacements count.
      try {
        state = (await describeGroupsIn(fresh.region, [group]))[0];
      } catch (err) {
        return refuse("min-healthy", `could not read ${group} before the kill (${(err as Error).message}); not killing without knowing its InService count`);
      }
      if (!state) return refuse("min-healthy", `Auto Scaling group ${group} no longer exists in ${fresh.region}`);
      if (!state.instances.some((i) => i.instanceId === fresh.instanceId)) {
        return refuse("min-healthy", `${fresh.instanceId} is no longer a member of ${group} (detached or already replaced)`);
      }
    }
    return {
      ok: true,
      instance: fresh,
      call,
      decision: {
        instanceId: fresh.instanceId,
        region: fresh.region,
        call,
        actor: ctx.actor,
        ...(ctx.runId !== undefined ? { runId: ctx.runId } : {}),
        ...(ctx.scheduleId !== undefined ? { scheduleId: ctx.scheduleId } : {}),
        now: now(),
        guardrails: ctx.guardrails,
        tags: fresh.tags,
        ...(state ? { group: { name: state.name, minSize: state.minSize, desiredCapacity: state.desiredCapacity, inService: state.inService } } : {}),
        earlierKillsWithoutRun: group ? (killsWithoutRun.get(`${fresh.region}\u0000${group}`) ?? 0) : 0,
      },
    };
  }

  async function checkTerminateOne(instance: AwsInstance, ctx: ActionContext): Promise<InstanceActionResult> {
    const prepared = await prepareTermination(instance, ctx, new Map());
    if (!prepared.ok) return prepared.result;
    const { instance: fresh, call } = prepared;
    const base = { instanceId: fresh.instanceId, action: "terminate" as const, call, ...(fresh.autoScalingGroup ? { autoScalingGroup: fresh.autoScalingGroup } : {}) };
    let verdict;
    try {
      verdict = ledger.evaluateTermination(prepared.decision);
    } catch (err) {
      return { ...base, ok: false, refusedBy: "guardrail", error: `ledger: could not read the termination ledger (${(err as Error).message}); a termination would not be made without it` };
    }
    if (!verdict.ok) return { ...base, ok: false, refusedBy: "guardrail", error: `${verdict.rule}: ${verdict.reason}` };
    return { ...base, ok: true, note: "every guardrail passes at this moment; nothing was called or recorded" };
  }

  async function terminateOne(instance: AwsInstance, ctx: ActionContext, killsWithoutRun: Map<string, number>): Promise<InstanceActionResult> {
    const prepared = await prepareTermination(instance, ctx, killsWithoutRun);
    if (!prepared.ok) return prepared.result;
    instance = prepared.instance;
    const { call } = prepared;
    const group = instance.autoScalingGroup;
    const base = { instanceId: instance.instanceId, action: "terminate" as const, call, ...(group ? { autoScalingGroup: group } : {}) };
    const refuse = (rule: string, reason: string): InstanceActionResult => refusal(instance, "terminate", call, ctx, rule, reason);

    let decision;
    try {
      // Re-evaluates opt-in, exclusions and the floors on what was just read, and records the kill.
      decision = ledger.decideTermination({ ...prepared.decision, now: now() });
    } catch (err) {
      log.error({ err, instanceId: instance.instanceId }, "could not record the termination in the ledger; not killing");
      return refuse("ledger", `could not record the termination before the call (${(err as Error).message}); firedrill never kills without a record`);
    }
    if (!decision.ok) return refuse(decision.rule, decision.reason);
    const groupKey = `${instance.region}\u0000${group}`;
    if (group) killsWithoutRun.set(groupKey, (killsWithoutRun.get(groupKey) ?? 0) + 1);

    log.info({ instanceId: instance.instanceId, group, call, ledgerId: decision.id, runId: ctx.runId, scheduleId: ctx.scheduleId }, "termination recorded; calling AWS");
    try {
      await send(instance, call, false);
      complete(decision.id, "ok", undefined);
      return { ...base, ok: true };
    } catch (err) {
      const error = callError(call, instance, err);
      // A clear refusal (4xx) means nothing happened; anything else may have killed it.
      complete(decision.id, isDefinitiveRefusal(err) ? "failed" : "unknown", error);
      log.warn({ instanceId: instance.instanceId, call, error }, "termination failed");
      return { ...base, ok: false, refusedBy: "aws", error };
    }
  }

  return service;
}
