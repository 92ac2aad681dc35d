/**
 * The AWS half of a plan: target groups with an `aws` selector are resolved to running instances
 * (once, at plan/run time, picked per the group's mode), their agents found by instance id, and the
 * cloud steps (ec2-terminate, ec2-stop, ec2-reboot, aws-network-disrupt) checked with DryRun and the AWS guardrails.
 *
 * The host half of the plan (agents, guardrails on agents) then sees an experiment where each aws
 * target selects its matched agents by id, and each cloud step is a wait of the same length, so the
 * step DAG and its timing stay intact.
 */
import { isCloudFaultKind } from "../aws/faults.js";
import { matchAgentsToInstances } from "../aws/match.js";
import { tagRefusal } from "../aws/rules.js";
import { alarmPlanVerdicts, awsPlanVerdicts } from "../aws/plan-checks.js";
import type { AwsInstance, AwsService } from "../aws/types.js";
import type { AgentRecord } from "../store/types.js";
import type { GuardrailVerdict } from "./guardrails.js";
import { mergeGuardrails } from "./guardrails.js";
import { awsGuardrailsFrom } from "./policy.js";
import { pick, wantedCount } from "./targets.js";
import type { Experiment, GuardrailsSpec } from "./types.js";

/** What the AWS half of planning found. */
export interface AwsPlanPart {
  /** Selected instances per aws target group. */
  instances: Record<string, AwsInstance[]>;
  /** Instances each aws target group could pick from (running, allowed by the tag guardrails); the token scope must include them all. */
  candidates: Record<string, AwsInstance[]>;
  /** The experiment as the host half of the plan sees it. */
  hostView: Experiment;
  verdicts: GuardrailVerdict[];
}

/** Resolves aws targets and checks the cloud steps. Never throws: problems are refusing verdicts. */
export async function planAws(input: {
  experiment: Experiment;
  agents: AgentRecord[];
  policy: GuardrailsSpec;
  aws: AwsService | undefined;
  random?: () => number;
}): Promise<AwsPlanPart> {
  const { experiment, agents, aws } = input;
  const random = input.random ?? Math.random;
  const instances: Record<string, AwsInstance[]> = {};
  const candidates: Record<string, AwsInstance[]> = {};
  const verdicts: GuardrailVerdict[] = [];
  const awsTargets = Object.entries(experiment.spec.targets).filter(([, t]) => t.selector.aws !== undefined);
  // Every cloudwatchAlarm stop condition's alarm must exist and not be in ALARM (one verdict each).
  verdicts.push(...(await alarmPlanVerdicts(aws, experiment.spec.stopConditions)));
  if (awsTargets.length === 0) return { instances, candidates, hostView: experiment, verdicts };

  const awsGuardrails = awsGuardrailsFrom(mergeGuardrails(input.policy, experiment.spec.guardrails));
  for (const [name, target] of awsTargets) {
    instances[name] = [];
    if (!aws) {
      verdicts.push({ rule: "aws-targets", ok: false, message: `target ${name}: the control plane has no AWS access configured (credentials and region from the SDK's default chain, --aws-region)` });
      continue;
    }
    try {
      const all = await aws.resolveInstances(target.selector.aws!);
      // Only instances the tag guardrails allow are candidates (as agents without the opt-in label).
      const eligible = all.filter((i) => tagRefusal(i, awsGuardrails) === undefined);
      candidates[name] = eligible;
      const wanted = wantedCount(target.mode, eligible.length);
      instances[name] = pick(eligible, wanted, random);
      const skipped = all.length - eligible.length;
      const skippedText = skipped ? `; ${skipped} skipped for their tags (opt-in ${awsGuardrails.optInTag}, exclusions)` : "";
      const selected = instances[name].length;
      if (selected > 0 && selected < wanted && target.allowFewer !== true) {
        // `count: 2` with one eligible instance: refused rather than silently run on one.
        verdicts.push({
          rule: "aws-targets",
          ok: false,
          message: `target ${name}: asks for ${wanted} instances but only ${eligible.length} of ${all.length} running ${all.length === 1 ? "is" : "are"} eligible${skippedText}; make more instances eligible, lower count, or set allowFewer: true on the target group to run on fewer`,
        });
        continue;
      }
      verdicts.push({
        rule: "aws-targets",
        ok: selected > 0,
        message: `target ${name}: ${selected}${selected < wanted ? ` (of the ${wanted} asked for, allowFewer)` : ""} of ${all.length} running instances selected (${instances[name].map((i) => i.instanceId).join(", ") || "none"})${skippedText}`,
      });
    } catch (err) {
      verdicts.push({ rule: "aws-targets", ok: false, message: `target ${name}: ${(err as Error).message}` });
    }
  }

  const hostSteps = experiment.spec.steps.filter((s) => s.type === "fault" && !isCloudFaultKind(s.fault));
  const targets = { ...experiment.spec.targets };
  for (const [name, target] of awsTargets) {
    const usedByHostSteps = hostSteps.some((s) => s.type === "fault" && s.target === name);
    if (!usedByHostSteps) {
      delete targets[name];
      continue;
    }
    const { agents: matched } = matchAgentsToInstances(agents, instances[name] ?? []);
    const { aws: _aws, ...rest } = target.selector;
    // The instances were already picked per the mode: their agents are the group.
    targets[name] = { selector: { ...rest, agentIds: matched.map((a) => a.id) }, mode: { all: true } };
  }
  const hostView: Experiment = {
    ...experiment,
    spec: {
      ...experiment.spec,
      targets,
      steps: experiment.spec.steps.map((s) =>
        s.type === "fault" && isCloudFaultKind(s.fault) ? { type: "wait", name: s.name, durationMs: s.durationMs, startAfter: s.startAfter } : s,
      ),
    },
  };
  if (aws) {
    try {
      verdicts.push(...(await awsPlanVerdicts(aws, instances, experiment.spec.steps, awsGuardrails)));
    } catch (err) {
      verdicts.push({ rule: "aws-permissions", ok: false, message: `could not check the cloud steps: ${(err as Error).message}` });
    }
  }
  return { instances, candidates, hostView, verdicts };
}
