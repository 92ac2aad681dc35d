/**
 * What `plan` says about the cloud steps (ec2-terminate, ec2-stop, ec2-reboot; aws-network-disrupt
 * has its own, on subnets): the instances each would hit,
 * whether the control plane may make each call (AWS DryRun), and the AWS guardrails evaluated
 * against the Auto Scaling groups as they are now and the termination ledger. The same verdict
 * shape as the host guardrails; a run may start only when all are ok. At run time the service
 * checks every rule again, per instance, at the moment of each action.
 */
import { formatDuration } from "@firedrill/protocol";
import { NETWORK_DISRUPT_KIND, parseNetworkDisruptParams } from "./network-disrupt.js";
import type { GuardrailVerdict } from "../experiments/guardrails.js";
import type { FaultStep, Step, StopConditionSpec } from "../experiments/types.js";
import { isCloudFaultKind } from "./faults.js";
import type { TerminationLedger } from "./ledger.js";
import { floorRefusal, intervalRefusal, percentRefusal, requiredTagsOf, tagRefusal } from "./rules.js";
import type { AwsGroupState, AwsGuardrails, AwsInstance, AwsService, InstanceActionResult } from "./types.js";

/** The rules of {@link awsPlanVerdicts}, in the order it reports them for each cloud step. */
export const AWS_PLAN_RULES = [
  "aws-instances",
  "aws-permissions",
  "aws-opt-in-tag",
  "aws-exclusion-tags",
  "aws-min-healthy",
  "aws-max-percent-of-group",
  "aws-min-time-between-terminations",
] as const;

/** Options of {@link awsPlanVerdicts}. */
export interface AwsPlanOptions {
  /** The termination ledger; the service's own (createAwsService) when absent. */
  ledger?: TerminationLedger;
  /** Clock for the time since each group's last termination. @default Date.now() */
  now?: number;
}

const MAX_LISTED = 6;

function listed(items: readonly string[]): string {
  return items.length <= MAX_LISTED ? items.join(", ") : `${items.slice(0, MAX_LISTED).join(", ")} and ${items.length - MAX_LISTED} more`;
}

function describeInstance(i: AwsInstance): string {
  return `${i.instanceId} (${[i.autoScalingGroup ?? "no ASG", i.availabilityZone].filter((p) => p !== "").join(", ")})`;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Groups a step's instances by Auto Scaling group. */
function byGroup(instances: readonly AwsInstance[]): Map<string, AwsInstance[]> {
  const out = new Map<string, AwsInstance[]>();
  for (const i of instances) {
    if (!i.autoScalingGroup) continue;
    const key = `${i.region}\u0000${i.autoScalingGroup}`;
    out.set(key, [...(out.get(key) ?? []), i]);
  }
  return out;
}

function permissionVerdict(step: FaultStep, results: InstanceActionResult[]): GuardrailVerdict {
  const at = `step ${step.name}`;
  const failed = results.filter((r) => !r.ok);
  if (failed.length > 0) {
    return { rule: "aws-permissions", ok: false, message: `${at}: ${failed.map((r) => r.error ?? `${r.call} on ${r.instanceId} would fail`).slice(0, 4).join("; ")}${failed.length > 4 ? `; and ${failed.length - 4} more` : ""}` };
  }
  const proven = new Map<string, string[]>();
  const notes = new Map<string, string[]>();
  for (const r of results) {
    const key = r.call ?? r.action;
    const into = r.note ? notes : proven;
    into.set(key, [...(into.get(key) ?? []), r.instanceId]);
  }
  const parts = [...proven].map(([call, ids]) => `DryRun ${call} would succeed on ${listed(ids)}`);
  for (const [call, ids] of notes) {
    const note = results.find((r) => r.call === call && r.note)?.note ?? "";
    parts.push(`${call} on ${listed(ids)}: ${note}`);
  }
  return { rule: "aws-permissions", ok: true, message: `${at}: ${parts.join("; ") || "no call to make"}` };
}

/**
 * Verdicts for the cloud steps of an experiment, one per rule of {@link AWS_PLAN_RULES} for each
 * cloud step (none when there are none).
 *
 * @param aws the AWS service (DryRun calls, DescribeAutoScalingGroups)
 * @param resolved the instances each target group selected, by target name
 * @param steps the experiment's steps; only ec2-terminate and ec2-stop are looked at
 * @param guardrails the merged AWS guardrails (awsGuardrailsFrom)
 */
export async function awsPlanVerdicts(
  aws: AwsService,
  resolved: Readonly<Record<string, readonly AwsInstance[]>>,
  steps: readonly Step[],
  guardrails: AwsGuardrails,
  options: AwsPlanOptions = {},
): Promise<GuardrailVerdict[]> {
  const cloudSteps = steps.filter((s): s is FaultStep => s.type === "fault" && isCloudFaultKind(s.fault));
  if (cloudSteps.length === 0) return [];
  const ledger = options.ledger ?? (aws as { ledger?: TerminationLedger }).ledger;
  const now = options.now ?? Date.now();

  // The groups as they are now, once for all steps.
  const groups = new Map<string, AwsGroupState>();
  const groupErrors = new Map<string, string>();
  const wanted = new Map<string, Set<string>>();
  for (const step of cloudSteps) {
    if (step.fault !== "ec2-terminate") continue;
    for (const i of resolved[step.target] ?? []) {
      if (i.autoScalingGroup) wanted.set(i.region, (wanted.get(i.region) ?? new Set()).add(i.autoScalingGroup));
    }
  }
  for (const [region, names] of wanted) {
    try {
      for (const g of await aws.describeGroups([...names], region)) groups.set(`${region}\u0000${g.name}`, g);
    } catch (err) {
      for (const name of names) groupErrors.set(`${region}\u0000${name}`, (err as Error).message);
    }
  }

  const verdicts: GuardrailVerdict[] = [];
  const runKills = new Map<string, number>();
  for (const step of cloudSteps) {
    if (step.fault === NETWORK_DISRUPT_KIND) {
      verdicts.push(...(await networkPlanVerdicts(aws, step, resolved[step.target]?.[0]?.region, guardrails)));
      continue;
    }
    const at = `step ${step.name}`;
    const instances = [...(resolved[step.target] ?? [])];
    const terminate = step.fault === "ec2-terminate";
    const reboot = step.fault === "ec2-reboot";
    const verb = terminate ? "terminate" : reboot ? "reboot" : "stop (and start again)";

    // aws-instances
    const asgMembers = instances.filter((i) => i.autoScalingGroup);
    if (instances.length === 0) {
      verdicts.push({ rule: "aws-instances", ok: false, message: `${at}: target ${step.target} resolved to no running instance; check the aws selector (region, tags, autoScalingGroups)` });
    } else if (!terminate && !reboot && asgMembers.length > 0) {
      verdicts.push({
        rule: "aws-instances",
        ok: false,
        message: `${at}: ${listed(asgMembers.map(describeInstance))} ${asgMembers.length === 1 ? "is" : "are"} in an Auto Scaling group, which would replace a stopped instance; use ec2-terminate for group members, or select instances outside a group`,
      });
    } else {
      verdicts.push({ rule: "aws-instances", ok: true, message: `${at}: would ${verb} ${plural(instances.length, "instance")}: ${listed(instances.map(describeInstance))}` });
    }

    // aws-permissions
    if (instances.length === 0) {
      verdicts.push({ rule: "aws-permissions", ok: true, message: `${at}: no instance, no call to check` });
    } else {
      const ctx = { actor: "plan", guardrails, dryRun: true };
      const results = terminate
        ? await aws.terminate(instances, ctx)
        : reboot
          ? aws.reboot
            ? await aws.reboot(instances, ctx)
            : instances.map((i) => ({ instanceId: i.instanceId, action: "reboot" as const, ok: false, refusedBy: "aws" as const, call: "RebootInstances", error: "this control plane's AWS service cannot reboot instances" }))
          : [...(await aws.stop(instances, ctx)), ...(await aws.start(instances, { actor: "plan", dryRun: true }))];
      verdicts.push(permissionVerdict(step, results));
    }

    // aws-opt-in-tag, aws-exclusion-tags
    const need = requiredTagsOf(guardrails);
    const refusals = instances.map((i) => ({ i, why: tagRefusal(i, guardrails) }));
    const lacking = refusals.filter((r) => r.why?.rule === "opt-in-tag").map((r) => r.i.instanceId);
    verdicts.push(
      lacking.length > 0
        ? { rule: "aws-opt-in-tag", ok: false, message: `${at}: ${listed(lacking)} ${lacking.length === 1 ? "lacks" : "lack"} ${need.join(" and ")}; tag the instances that may take part (or their ASG, propagating to instances), or narrow the selector` }
        : { rule: "aws-opt-in-tag", ok: true, message: `${at}: ${instances.length ? `all ${plural(instances.length, "instance")} carry` : "instances must carry"} ${need.join(" and ")}` },
    );
    const excluded = refusals.filter((r) => r.why?.rule === "exclusion-tags").map((r) => `${r.i.instanceId} (${r.why!.reason.replace(/^carries the exclusion tag /, "")})`);
    verdicts.push(
      guardrails.excludeTags.length === 0
        ? { rule: "aws-exclusion-tags", ok: true, message: `${at}: no exclusion tags are set` }
        : excluded.length > 0
          ? { rule: "aws-exclusion-tags", ok: false, message: `${at}: ${listed(excluded)} ${excluded.length === 1 ? "carries" : "carry"} an exclusion tag; narrow the selector` }
          : { rule: "aws-exclusion-tags", ok: true, message: `${at}: no instance carries ${guardrails.excludeTags.join(", ")}` },
    );

    // The ASG rules apply to terminations.
    if (!terminate) {
      for (const rule of ["aws-min-healthy", "aws-max-percent-of-group", "aws-min-time-between-terminations"] as const) {
        verdicts.push({ rule, ok: true, message: reboot ? `${at}: a reboot takes no instance out of its group for good (the Auto Scaling rules apply to terminations)` : `${at}: ec2-stop acts on instances outside Auto Scaling groups only` });
      }
      continue;
    }
    const members = byGroup(instances);
    if (members.size === 0) {
      for (const rule of ["aws-min-healthy", "aws-max-percent-of-group", "aws-min-time-between-terminations"] as const) {
        verdicts.push({ rule, ok: true, message: `${at}: no instance is in an Auto Scaling group` });
      }
      continue;
    }

    const healthy: string[] = [];
    const unhealthy: string[] = [];
    const percentOk: string[] = [];
    const percentBad: string[] = [];
    const timeOk: string[] = [];
    const timeBad: string[] = [];
    for (const [key, hit] of members) {
      const name = hit[0]!.autoScalingGroup!;
      const group = groups.get(key);
      if (!group) {
        const why = groupErrors.get(key) ?? `Auto Scaling group ${name} does not exist in ${hit[0]!.region}`;
        unhealthy.push(why);
        percentBad.push(why);
        timeBad.push(why);
        continue;
      }
      // min-healthy: the group now, less what the ledger knows is already going, less this step's kills.
      const going = new Set(ledger ? ledger.list({ groupName: name, region: group.region, limit: 1000 }).filter((e) => e.action === "terminate" && e.outcome !== "failed").map((e) => e.instanceId) : []);
      const effective = group.inService.filter((id) => !going.has(id));
      const kills = hit.filter((i) => effective.includes(i.instanceId)).length;
      const after = effective.length - kills;
      const floor = floorRefusal(name, effective.length, after, group.minSize, guardrails);
      if (floor) unhealthy.push(`killing ${plural(kills, "instance")} ${floor}`);
      else healthy.push(`${name}: ${effective.length} InService now, ${after} after the kill, floor max(MinSize ${group.minSize}, minHealthy ${guardrails.minHealthy}) = ${Math.max(group.minSize, guardrails.minHealthy)}`);

      // max percent of group: this run's kills across its terminate steps.
      const prior = runKills.get(key) ?? 0;
      runKills.set(key, prior + hit.length);
      if (guardrails.maxPercentOfGroup === undefined) {
        percentOk.push(`${name}: no maxPercentOfGroup is set`);
      } else {
        const over = percentRefusal(name, prior + hit.length - 1, group.desiredCapacity, guardrails);
        if (over) percentBad.push(over);
        else percentOk.push(`${name}: ${prior + hit.length} of ${group.desiredCapacity} desired, within maxPercentOfGroup ${guardrails.maxPercentOfGroup}%`);
      }

      // min time between terminations: the group's last termination, and this step's own kills.
      const min = guardrails.minTimeBetweenTerminationsMs;
      if (min === undefined) {
        timeOk.push(`${name}: no minTimeBetweenTerminations is set`);
        continue;
      }
      const last = ledger?.lastTermination(group.region, name);
      const wait = intervalRefusal(name, last?.decidedAt, now, guardrails);
      if (wait) timeBad.push(wait);
      else if (hit.length > 1) {
        timeBad.push(
          `would terminate ${hit.length} instances of ${name} at once, but minTimeBetweenTerminations is ${formatDuration(min)}: only the first would happen; select 1 instance per group (mode count: 1)`,
        );
      } else {
        timeOk.push(`${name}: ${last ? `last termination ${formatDuration(now - last.decidedAt)} ago` : "no termination recorded"}, minTimeBetweenTerminations ${formatDuration(min)}`);
      }
    }
    verdicts.push(unhealthy.length ? { rule: "aws-min-healthy", ok: false, message: `${at}: ${unhealthy.join("; ")}` } : { rule: "aws-min-healthy", ok: true, message: `${at}: ${healthy.join("; ")}` });
    verdicts.push(
      percentBad.length ? { rule: "aws-max-percent-of-group", ok: false, message: `${at}: ${percentBad.join("; ")}` } : { rule: "aws-max-percent-of-group", ok: true, message: `${at}: ${percentOk.join("; ")}` },
    );
    verdicts.push(
      timeBad.length
        ? { rule: "aws-min-time-between-terminations", ok: false, message: `${at}: ${timeBad.join("; ")}` }
        : { rule: "aws-min-time-between-terminations", ok: true, message: `${at}: ${timeOk.join("; ")}` },
    );
  }
  return verdicts;
}

/**
 * An aws-network-disrupt step's verdicts, one per rule of {@link AWS_PLAN_RULES}: each subnet with
 * its current NACL and the run's deny-all one it would move to, the DryRun of CreateNetworkAcl and
 * of each ReplaceNetworkAclAssociation, the tag guardrails on each subnet (or its VPC).
 */
async function networkPlanVerdicts(aws: AwsService, step: FaultStep, targetRegion: string | undefined, guardrails: AwsGuardrails): Promise<GuardrailVerdict[]> {
  const at = `step ${step.name}`;
  const out: GuardrailVerdict[] = [];
  const rest = (message: string) => {
    for (const rule of ["aws-min-healthy", "aws-max-percent-of-group", "aws-min-time-between-terminations"] as const) out.push({ rule, ok: true, message: `${at}: ${message}` });
  };
  const fail = (message: string) => {
    out.push({ rule: "aws-instances", ok: false, message: `${at}: ${message}` });
    for (const rule of ["aws-permissions", "aws-opt-in-tag", "aws-exclusion-tags"] as const) out.push({ rule, ok: true, message: `${at}: not checked (no subnet to check)` });
    rest("aws-network-disrupt terminates no instance");
    return out;
  };
  const parsed = parseNetworkDisruptParams(step.params ?? {});
  if (!parsed.ok) return fail(parsed.issues.map((i) => `params${i.path.length ? `.${i.path.join(".")}` : ""}: ${i.message}`).join("; "));
  if (!aws.network) return fail("this control plane's AWS service cannot disrupt networks");
  let selection;
  try {
    const region = parsed.value.region ?? targetRegion ?? (aws.region ? await aws.region() : undefined);
    if (!region) return fail("no region: give params.region or --aws-region");
    selection = await aws.network.select(parsed.value, region, guardrails);
  } catch (err) {
    return fail((err as Error).message);
  }
  if (selection.error) return fail(`${selection.error.rule}: ${selection.error.reason}`);
  const other = selection.subnets.filter((s) => s.refusal && s.refusal.rule !== "opt-in-tag" && s.refusal.rule !== "exclusion-tags");
  out.push({
    rule: "aws-instances",
    ok: other.length === 0,
    message: `${at}: would cut off ${plural(selection.subnets.length, "subnet")} of ${selection.vpcId}: ${selection.subnets
      .map((s) => `${s.subnetId} (${s.availabilityZone}): ${s.networkAclId} → the run's deny-all network ACL${s.refusal ? ` [refused: ${s.refusal.rule}: ${s.refusal.reason}]` : ""}`)
      .join("; ")}`,
  });
  const dry = await aws.network.dryRun(selection);
  const bad = dry.filter((r) => !r.ok);
  out.push(
    bad.length > 0
      ? { rule: "aws-permissions", ok: false, message: `${at}: ${bad.map((r) => `${r.instanceId}: ${r.error ?? "failed"}`).join("; ")}; grant them to the control plane's role (infra/aws/iam-policy.json)` }
      : { rule: "aws-permissions", ok: true, message: `${at}: DryRun ${[...new Set(dry.map((r) => r.call))].join(" and ")} would succeed (DeleteNetworkAcl, the restore's last call, has no DryRun worth the name: it would fail on a NACL that does not exist yet)` },
  );
  for (const rule of ["opt-in-tag", "exclusion-tags"] as const) {
    const refused = selection.subnets.filter((s) => s.refusal?.rule === rule);
    out.push(
      refused.length > 0
        ? { rule: `aws-${rule}`, ok: false, message: `${at}: ${refused.map((s) => s.refusal!.reason).join("; ")}` }
        : { rule: `aws-${rule}`, ok: true, message: `${at}: every subnet passes (${rule === "opt-in-tag" ? "opt-in tag on the subnet or its VPC" : guardrails.excludeTags.length ? `no ${guardrails.excludeTags.join(", ")}` : "no exclusion tags are set"})` },
    );
  }
  rest("aws-network-disrupt terminates no instance");
  return out;
}

/** The rule of {@link alarmPlanVerdicts}: one verdict per alarm a `cloudwatchAlarm` stop condition names. */
export const ALARM_PLAN_RULE = "aws-cloudwatch-alarm";

/**
 * One verdict per alarm named by the experiment's `cloudwatchAlarm` stop conditions: it must exist
 * (a missing alarm watches nothing, and its watch would abort the run after a few polls) and not
 * be in ALARM (the run would be aborted at its first poll). OK and INSUFFICIENT_DATA pass. Never
 * throws: a failed DescribeAlarms refuses each alarm it could not read, with the error.
 */
export async function alarmPlanVerdicts(aws: AwsService | undefined, stopConditions: readonly StopConditionSpec[]): Promise<GuardrailVerdict[]> {
  const verdicts: GuardrailVerdict[] = [];
  for (const sc of stopConditions) {
    if (sc.kind !== "cloudwatchAlarm") continue;
    const { names, region } = sc.cloudwatchAlarm;
    const where = region ? ` in ${region}` : "";
    if (!aws) {
      for (const name of names) {
        verdicts.push({ rule: ALARM_PLAN_RULE, ok: false, message: `alarm ${name}${where}: can't be checked: the control plane has no AWS access configured (credentials and region from the SDK's default chain, --aws-region)` });
      }
      continue;
    }
    let states;
    try {
      states = await aws.alarmStates(names, region);
    } catch (err) {
      for (const name of names) verdicts.push({ rule: ALARM_PLAN_RULE, ok: false, message: `alarm ${name}${where}: could not be read: ${(err as Error).message}` });
      continue;
    }
    for (const a of states) {
      const kind = a.type === "composite" ? "composite alarm" : "alarm";
      if (a.state === "MISSING") {
        verdicts.push({ rule: ALARM_PLAN_RULE, ok: false, message: `alarm ${a.name}: ${a.reason || `does not exist${where}`}; check the name and the stop condition's region (aws cloudwatch describe-alarms --alarm-names ${a.name})` });
      } else if (a.state === "ALARM") {
        verdicts.push({
          rule: ALARM_PLAN_RULE,
          ok: false,
          message: `${kind} ${a.name}${where} is in ALARM now${a.reason ? ` (${a.reason.replace(/\s+/g, " ").slice(0, 200)})` : ""}: the run would be aborted at its first poll; start when it is OK`,
        });
      } else {
        verdicts.push({ rule: ALARM_PLAN_RULE, ok: true, message: `${kind} ${a.name}${where} exists and is ${a.state}` });
      }
    }
  }
  return verdicts;
}
