/**
 * The plan of a run: targets resolved once, every guardrail evaluated, hosts per step. `firedrill
 * plan` shows it without acting; `firedrill run` computes it the same way and then executes it.
 */
import { describeFaultParams } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";
import type { Scope } from "../auth/scope.js";
import { isCloudFaultKind } from "../aws/faults.js";
import type { AwsInstance } from "../aws/types.js";
import type { AgentHub } from "../hub/agent-hub.js";
import { PreviewUnavailableError } from "../hub/previews.js";
import type { PreviewedProcessJson } from "../hub/previews.js";
import { haltJson, haltVerdict } from "../halt.js";
import type { HaltJson, HaltState } from "../halt.js";
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

/**
 * What a fault step would do on one host, from a dry run on its agent (PreviewFault): `ok` with what
 * it would act on and leave alone, `refused` with the agent's reason, or `unavailable` (not
 * connected, no answer in time, not previewed).
 */
export interface HostPreview {
  hostId: string;
  hostname: string;
  status: "ok" | "refused" | "unavailable";
  /** The refusal (`refused`) or why there is no preview (`unavailable`). */
  error?: string;
  /** What the fault would act on or leave alone, one line each (any kind may give them). */
  details: string[];
  /** Process faults: the processes it would signal (at most 50)... */
  processes?: PreviewedProcessJson[];
  /** ...out of this many. */
  matched?: number;
}

/** One step of a plan. Cloud steps (ec2-*) list instances as hosts, with `instances` in full. */
export interface PlannedStep {
  name: string;
  type: Step["type"];
  fault?: string;
  target?: string;
  params?: Record<string, unknown>;
  /** What the fault does, in one line from its parameters, e.g. "NXDOMAIN for *.payments.internal" (host fault kinds). */
  summary?: string;
  durationMs: number;
  startAfter: string[];
  hosts: PlannedHost[];
  instances?: AwsInstance[];
  /** Host fault steps, on `POST /api/v1/plan`: the dry run of the fault on each host. */
  previews?: HostPreview[];
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
  /** False when a guardrail refuses or firedrill is halted (a `halt` verdict leads the guardrails then). */
  allowed: boolean;
  /** The global halt in force when the plan was made: a run would be refused until it is lifted. */
  halt?: HaltJson;
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
  /** The global halt, if set: the plan then refuses (verdict `halt`) and says by whom, since when and why. */
  halt?: HaltState | undefined;
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
            ...summaryOf(step.fault, step.params),
            durationMs: step.durationMs,
            startAfter: step.startAfter,
            hosts: (targets[step.target]?.selected ?? []).map(host),
          }
        : { name: step.name, type: step.type, durationMs: step.durationMs, startAfter: step.startAfter, hosts: [] },
    ),
    stopConditions: experiment.spec.stopConditions.map(describeStopCondition),
    guardrails: input.halt ? [haltVerdict(input.halt), ...verdicts] : verdicts,
    allowed: !input.halt && verdicts.every((v) => v.ok),
    ...(input.halt ? { halt: haltJson(input.halt) } : {}),
    estimatedDurationMs: criticalPathMs(experiment.spec.steps),
  };
}

/** Options of {@link previewPlan}. */
export interface PreviewPlanOptions {
  /** How long each agent has to answer. @default 3000 */
  timeoutMs?: number;
  /** Previews asked at once. @default 32 */
  concurrency?: number;
  /** Most host-steps previewed; the rest are shown as not previewed. @default 256 */
  maxPreviews?: number;
}

/**
 * Asks each host's agent, for every host fault step, what the fault would do there (in parallel,
 * bounded, each with a short timeout), and returns the plan with `previews` on those steps. A host
 * that does not answer is `unavailable`; the plan itself never fails for it.
 */
export async function previewPlan(plan: RunPlan, hub: Pick<AgentHub, "preview">, options: PreviewPlanOptions = {}): Promise<RunPlan> {
  const timeoutMs = options.timeoutMs ?? 3000;
  const concurrency = options.concurrency ?? 32;
  const maxPreviews = options.maxPreviews ?? 256;
  const jobs: { step: number; host: PlannedHost; kind: string; params: JsonObject }[] = [];
  const previews = plan.steps.map((step, index) => {
    if (step.type !== "fault" || step.fault === undefined || isCloudFaultKind(step.fault)) return undefined;
    for (const host of step.hosts) jobs.push({ step: index, host, kind: step.fault, params: (step.params ?? {}) as JsonObject });
    return [] as HostPreview[];
  });
  const results: HostPreview[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < jobs.length; i = next++) {
      const job = jobs[i]!;
      const base = { hostId: job.host.id, hostname: job.host.hostname };
      if (i >= maxPreviews) {
        results[i] = { ...base, status: "unavailable", error: `not previewed: a plan previews at most ${maxPreviews} host-steps`, details: [] };
        continue;
      }
      try {
        const answer = await hub.preview(job.host.id, job.kind, job.params, timeoutMs);
        results[i] = answer.error
          ? { ...base, status: "refused", error: answer.error, details: answer.details }
          : {
              ...base,
              status: "ok",
              details: answer.details,
              ...(answer.processes.length > 0 || answer.matched > 0 ? { processes: answer.processes, matched: answer.matched } : {}),
            };
      } catch (err) {
        if (!(err instanceof PreviewUnavailableError)) throw err;
        results[i] = { ...base, status: "unavailable", error: err.message, details: [] };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
  jobs.forEach((job, i) => previews[job.step]!.push(results[i]!));
  return { ...plan, steps: plan.steps.map((step, i) => (previews[i] ? { ...step, previews: previews[i] } : step)) };
}

/** `{ summary }` for a host fault kind whose parameters parse, else nothing. */
function summaryOf(kind: string, params: Record<string, unknown> | undefined): { summary?: string } {
  const summary = describeFaultParams(kind, (params ?? {}) as JsonObject);
  return summary === undefined ? {} : { summary };
}
