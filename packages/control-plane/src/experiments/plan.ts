/**
 * The plan of a run: targets resolved once, every guardrail evaluated, hosts per step. `firedrill
 * plan` shows it without acting; `firedrill run` computes it the same way and then executes it.
 */
import type { Scope } from "../auth/scope.js";
import type { AwsInstance } from "../aws/types.js";
import type { AgentRecord } from "../store/types.js";
import { describeStopCondition } from "../stop-conditions/index.js";
import { evaluateGuardrails, mergeGuardrails } from "./guardrails.js";
import type { GuardrailVerdict } from "./guardrails.js";
import { resolveTargets } from "./targets.js";
import type { Experiment, GuardrailsSpec, Step } from "./types.js";

/** A host as a plan shows it. */
export interface PlannedHost {
  id: string;
  hostname: string;
}

/** One step of a plan. Cloud steps (ec2-*) list instances as hosts, with `instances` in full. */
export interface PlannedStep {
  name: string;
  type: Step["type"];
  fault?: string;
  target?: string;
  params?: Record<string, unknown>;
  durationMs: number;
  startAfter: string[];
  hosts: PlannedHost[];
  instances?: AwsInstance[];
}

/** The plan of a run. */
export interface RunPlan {
  experiment: string;
  hypothesis: string;
  targets: Record<
    string,
    { matching: number; eligible: number; selected: PlannedHost[]; excluded: { id: string; hostname: string; why: string }[] }
  >;
  steps: PlannedStep[];
  stopConditions: string[];
  guardrails: GuardrailVerdict[];
  allowed: boolean;
  /** Length of the longest chain of steps (the DAG's critical path). */
  estimatedDurationMs: number;
  /** Instances selected per aws target group (absent without aws targets). */
  awsInstances?: Record<string, AwsInstance[]>;
}

/** Inputs of {@link createPlan}. */
export interface PlanInput {
  experiment: Experiment;
  agents: AgentRecord[];
  /** The server's policy; merged with the experiment's guardrails (the stricter wins). */
  policy: GuardrailsSpec;
  activeRuns: number;
  /** Fault kinds already active on each host (other runs, ad-hoc faults). */
  hostFaults: Map<string, string[]>;
  now: Date;
  random?: () => number;
  /** The caller's token scope: every host (and EC2 instance) the plan may pick must be within it. */
  scope?: Scope | null;
  /** EC2 instances each aws target group may pick from (from planAws), checked against the scope. */
  awsCandidates?: Readonly<Record<string, readonly AwsInstance[]>>;
}

/** Longest path through the step DAG, in ms. */
export function criticalPathMs(steps: Step[]): number {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const memo = new Map<string, number>();
  const finish = (step: Step): number => {
    const known = memo.get(step.name);
    if (known !== undefined) return known;
    const start = Math.max(0, ...step.startAfter.map((n) => (byName.has(n) ? finish(byName.get(n)!) : 0)));
    const end = start + step.durationMs;
    memo.set(step.name, end);
    return end;
  };
  return Math.max(0, ...steps.map(finish));
}

/** Resolves targets and evaluates the guardrails, without acting. */
export function createPlan(input: PlanInput): RunPlan {
  const { experiment } = input;
  const guardrails = mergeGuardrails(input.policy, experiment.spec.guardrails);
  const targets = resolveTargets(experiment, input.agents, {
    optInLabel: guardrails.optInLabels,
    excludeLabels: guardrails.excludeLabels,
    ...(input.random ? { random: input.random } : {}),
  });
  const verdicts = evaluateGuardrails({
    experiment,
    guardrails,
    targets,
    activeRuns: input.activeRuns,
    hostFaults: input.hostFaults,
    now: input.now,
    scope: input.scope ?? null,
    ...(input.awsCandidates ? { awsCandidates: input.awsCandidates } : {}),
  });
  const host = (a: AgentRecord): PlannedHost => ({ id: a.id, hostname: a.hostname });
  return {
    experiment: experiment.metadata.name,
    hypothesis: experiment.spec.hypothesis,
    targets: Object.fromEntries(
      Object.entries(targets).map(([name, t]) => [
        name,
        {
          matching: t.matching.length,
          eligible: t.eligible.length,
          selected: t.selected.map(host),
          excluded: t.excluded.map((e) => ({ id: e.agent.id, hostname: e.agent.hostname, why: e.why })),
        },
      ]),
    ),
    steps: experiment.spec.steps.map((step) =>
      step.type === "fault"
        ? {
            name: step.name,
            type: step.type,
            fault: step.fault,
            target: step.target,
            params: step.params,
            durationMs: step.durationMs,
            startAfter: step.startAfter,
            hosts: (targets[step.target]?.selected ?? []).map(host),
          }
        : { name: step.name, type: step.type, durationMs: step.durationMs, startAfter: step.startAfter, hosts: [] },
    ),
    stopConditions: experiment.spec.stopConditions.map(describeStopCondition),
    guardrails: verdicts,
    allowed: verdicts.every((v) => v.ok),
    estimatedDurationMs: criticalPathMs(experiment.spec.steps),
  };
}
