/**
 * Guardrails: the server policy and an experiment's own limits, merged so the stricter wins, then
 * evaluated against a plan (resolved targets, the clock, what else runs) as one verdict per rule.
 * A run may start only when every verdict is ok.
 */
import { CAPABILITY_HINTS, formatDuration, missingCapabilities } from "@firedrill/protocol";
import { formatScope, scopeViolation } from "../auth/scope.js";
import type { Scope } from "../auth/scope.js";
import { DEFAULT_MIN_HEALTHY } from "../aws/rules.js";
import type { AwsInstance } from "../aws/types.js";
import type { AgentRecord } from "../store/types.js";
import { ancestorsOf, criticalPath, mayOverlap } from "./dag.js";
import { formatDays, formatMinute, hasLabel } from "./spec-values.js";
import type { TargetResolution } from "./targets.js";
import type { Experiment, FaultStep, GuardrailsSpec, WindowSpec } from "./types.js";

/** One guardrail rule's answer for a plan: which rule, whether it passes, and why in plain words. */
export interface GuardrailVerdict {
  rule: string;
  ok: boolean;
  message: string;
}

/** Where a guardrail setting came from. */
export type GuardrailSource = "policy" | "experiment";

/** Windows of one source: a run must start inside at least one of them. */
export interface WindowSet {
  from: GuardrailSource;
  windows: WindowSpec[];
}

/** The policy's and the experiment's guardrails merged: the stricter wins. */
export interface MergedGuardrails {
  /** Labels every target must carry: the policy's, plus the experiment's when it names another. */
  optInLabels: string[];
  /** Union of both lists. */
  excludeLabels: string[];
  /** The lower of both. */
  maxTargets?: number;
  /** The lower of both. */
  maxPercent?: number;
  /** Each set must be satisfied: a run starts only inside a policy window AND an experiment window. */
  windowSets: WindowSet[];
  /** Union of both lists, sorted. */
  blackoutDates: string[];
  /** The lower of both. */
  maxDurationMs?: number;
  /** From the policy. */
  maxConcurrentRuns?: number;
  /** EC2 tags every instance acted on must carry: the policy's, plus the experiment's when it names another. */
  optInTags: string[];
  /** EC2 exclusion tags: union of both lists. */
  excludeTags: string[];
  /** The higher of both; the policy's counts as 1 when it sets none. */
  minHealthy: number;
  /** The lower of both. */
  maxPercentOfGroup?: number;
  /** The longer of both. */
  minTimeBetweenTerminationsMs?: number;
  /** Which side set each numeric limit (for messages). */
  from: Partial<Record<Limit | "minHealthy" | "minTimeBetweenTerminationsMs", GuardrailSource>>;
}

export { DEFAULT_MIN_HEALTHY };

/** The rules, in the order {@link evaluateGuardrails} reports them. */
export const GUARDRAIL_RULES = [
  "targets",
  "scope",
  "opt-in",
  "exclusion-labels",
  "max-targets",
  "max-percent",
  "windows",
  "blackout-dates",
  "max-concurrent-runs",
  "one-network-fault-per-host",
  "one-fault-per-kind-per-host",
  "max-duration",
  "capabilities",
] as const;

/** A guardrail rule name. */
export type GuardrailRule = (typeof GUARDRAIL_RULES)[number];

type Limit = "maxTargets" | "maxPercent" | "maxDurationMs" | "maxConcurrentRuns" | "maxPercentOfGroup";

/**
 * Merges the server policy with an experiment's guardrails (pass the experiment or its
 * `spec.guardrails`). The stricter wins: the lower of each limit, the union of exclusion labels and
 * blackout dates, both sets of windows, and the policy's opt-in label always (the experiment may
 * require one more). The same for AWS: both opt-in tags, the union of exclusion tags, the higher
 * minHealthy, the lower maxPercentOfGroup and the longer minTimeBetweenTerminations.
 */
export function mergeGuardrails(policy: GuardrailsSpec, experiment: Experiment | GuardrailsSpec): MergedGuardrails {
  const own: GuardrailsSpec = "spec" in experiment ? experiment.spec.guardrails : experiment;
  const merged: MergedGuardrails = {
    optInLabels: [...new Set([policy.optInLabel, own.optInLabel].filter((l): l is string => l !== undefined))],
    excludeLabels: [...new Set([...(policy.excludeLabels ?? []), ...(own.excludeLabels ?? [])])],
    windowSets: [],
    blackoutDates: [...new Set([...(policy.blackoutDates ?? []), ...(own.blackoutDates ?? [])])].sort(),
    optInTags: [...new Set([policy.optInTag, own.optInTag].filter((t): t is string => t !== undefined))],
    excludeTags: [...new Set([...(policy.excludeTags ?? []), ...(own.excludeTags ?? [])])],
    minHealthy: Math.max(policy.minHealthy ?? DEFAULT_MIN_HEALTHY, own.minHealthy ?? 0),
    from: {},
  };
  if (own.minHealthy !== undefined || policy.minHealthy !== undefined) {
    merged.from.minHealthy = own.minHealthy !== undefined && own.minHealthy > (policy.minHealthy ?? DEFAULT_MIN_HEALTHY) ? "experiment" : "policy";
  }
  // For the time between terminations, the longer is the stricter.
  const pt = policy.minTimeBetweenTerminationsMs;
  const et = own.minTimeBetweenTerminationsMs;
  if (pt !== undefined || et !== undefined) {
    const fromPolicy = et === undefined || (pt !== undefined && pt >= et);
    merged.minTimeBetweenTerminationsMs = fromPolicy ? pt! : et;
    merged.from.minTimeBetweenTerminationsMs = fromPolicy ? "policy" : "experiment";
  }
  for (const key of ["maxTargets", "maxPercent", "maxDurationMs", "maxConcurrentRuns", "maxPercentOfGroup"] as Limit[]) {
    const p = policy[key];
    const e = own[key];
    if (p === undefined && e === undefined) continue;
    const fromPolicy = e === undefined || (p !== undefined && p <= e);
    merged[key] = fromPolicy ? p! : e;
    merged.from[key] = fromPolicy ? "policy" : "experiment";
  }
  if (policy.windows?.length) merged.windowSets.push({ from: "policy", windows: policy.windows });
  if (own.windows?.length) merged.windowSets.push({ from: "experiment", windows: own.windows });
  return merged;
}

/** Inputs of {@link evaluateGuardrails}. */
export interface GuardrailInput {
  experiment: Experiment;
  /** From {@link mergeGuardrails}. */
  guardrails: MergedGuardrails;
  /** From resolveTargets. */
  targets: Record<string, TargetResolution>;
  /** Runs active on this control plane now (not counting this one). */
  activeRuns: number;
  /** Fault kinds already active on each host (other runs, ad-hoc faults), by agent id. */
  hostFaults: ReadonlyMap<string, readonly string[]>;
  now: Date;
  /**
   * The caller's token scope: every host that may be targeted (each group's eligible agents) and
   * every candidate EC2 instance must be within it. Null or absent: no scope applies.
   */
  scope?: Scope | null;
  /** EC2 instances each aws target group may pick from (running, allowed by the tag guardrails), for the scope. */
  awsCandidates?: Readonly<Record<string, readonly AwsInstance[]>>;
}

const hostName = (agent: AgentRecord): string => agent.hostname || agent.id;
/** An agent for messages: `agent agt_1 (web-2)`. */
export function describeAgent(agent: Pick<AgentRecord, "id" | "hostname">): string {
  return `agent ${agent.id}${agent.hostname ? ` (${agent.hostname})` : ""}`;
}
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
const source = (from: GuardrailSource | undefined): string => (from === "experiment" ? "the experiment's" : "the policy's");

/** Joins problems, showing at most `max` of them. */
function listed(items: readonly string[], max = 6): string {
  if (items.length <= max) return items.join("; ");
  return `${items.slice(0, max).join("; ")}; and ${items.length - max} more`;
}

/** Local wall-clock time of an instant in a zone. */
interface LocalTime {
  weekday: string;
  /** Minutes since local midnight. */
  minute: number;
  /** YYYY-MM-DD */
  date: string;
  year: number;
  month: number;
  day: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock time of `instant` in `tz`. */
export function localTime(instant: Date | number, tz: string): LocalTime {
  let fmt = formatters.get(tz);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      weekday: "short",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
    formatters.set(tz, fmt);
  }
  const parts: Record<string, string> = {};
  for (const p of fmt.formatToParts(instant)) parts[p.type] = p.value;
  const year = Number(parts["year"]);
  const month = Number(parts["month"]);
  const day = Number(parts["day"]);
  const hour = Number(parts["hour"]) % 24;
  return {
    weekday: (parts["weekday"] ?? "").toLowerCase().slice(0, 3),
    minute: hour * 60 + Number(parts["minute"]),
    date: `${parts["year"]}-${parts["month"]}-${parts["day"]}`,
    year,
    month,
    day,
  };
}

function describeLocal(t: LocalTime, tz: string): string {
  return `${t.weekday[0]!.toUpperCase()}${t.weekday.slice(1)} ${t.date} ${formatMinute(t.minute)} ${tz}`;
}

/** Formats a window: `mon-fri 10:00-16:00 Europe/Berlin`. */
export function describeWindow(w: WindowSpec): string {
  return `${formatDays(w.days)} ${formatMinute(w.startMinute)}-${formatMinute(w.endMinute)} ${w.tz}`;
}

function inside(w: WindowSpec, now: Date): boolean {
  const t = localTime(now, w.tz);
  return w.days.includes(t.weekday) && t.minute >= w.startMinute && t.minute < w.endMinute;
}

/**
 * The instant at local wall-clock `minute` of a local date in `tz`. A wall time skipped or repeated
 * by a DST change resolves to the instant the same distance after the change.
 */
export function zonedInstant(year: number, month: number, day: number, minute: number, tz: string): number {
  const wall = Date.UTC(year, month - 1, day, 0, minute);
  let utc = wall;
  for (let i = 0; i < 4; i++) {
    const t = localTime(utc, tz);
    const offset = Date.UTC(t.year, t.month - 1, t.day, 0, t.minute) - utc;
    const next = wall - offset;
    if (next === utc) break;
    utc = next;
  }
  return utc;
}

/** When the next of `windows` opens after `now` (within 8 days), as local text. */
function nextOpening(windows: readonly WindowSpec[], now: Date): string | undefined {
  let best: { at: number; w: WindowSpec } | undefined;
  for (const w of windows) {
    const today = localTime(now, w.tz);
    for (let offset = 0; offset <= 8; offset++) {
      const d = new Date(Date.UTC(today.year, today.month - 1, today.day + offset));
      const at = zonedInstant(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), w.startMinute, w.tz);
      if (at <= now.getTime() || !w.days.includes(localTime(at, w.tz).weekday)) continue;
      if (!best || at < best.at) best = { at, w };
      break;
    }
  }
  return best && describeLocal(localTime(best.at, best.w.tz), best.w.tz);
}

/**
 * The groups' shortfall: the number wanted, and whether fewer were selected (with `allowFewer`,
 * only none selected is short; `fewer` says fewer were taken than asked for).
 */
function shortfall(experiment: Experiment, name: string, t: TargetResolution): { wanted: number; short: boolean; fewer: boolean } {
  const target = experiment.spec.targets[name];
  const mode = target?.mode;
  const wanted = mode && "count" in mode ? mode.count : Math.max(1, t.selected.length);
  const fewer = t.selected.length < wanted;
  return { wanted, short: t.selected.length === 0 || (fewer && target?.allowFewer !== true), fewer };
}

function checkTargets(input: GuardrailInput): GuardrailVerdict {
  const problems: string[] = [];
  const fine: string[] = [];
  for (const [name, t] of Object.entries(input.targets)) {
    const { wanted, short, fewer } = shortfall(input.experiment, name, t);
    const why = t.excluded.length > 0 ? ` (${plural(t.excluded.length, "host")} left out: ${listed(t.excluded.map((e) => `${hostName(e.agent)} ${e.why}`), 3)})` : "";
    if (t.matching.length === 0) problems.push(`${name}: no agent matches the selector; check the labels and facts with firedrill agents`);
    else if (t.selected.length === 0) problems.push(`${name}: ${plural(t.matching.length, "host matches", "hosts match")} but none can be targeted${why}`);
    else if (short) problems.push(`${name}: asks for ${plural(wanted, "host")} but only ${t.eligible.length} can be targeted${why}; make more hosts eligible, lower count, or set allowFewer: true on the target group to run on fewer`);
    else if (fewer) fine.push(`${name}: ${t.selected.length} of the ${wanted} asked for (allowFewer), of ${t.matching.length} matching`);
    else fine.push(`${name}: ${t.selected.length} of ${t.matching.length} matching selected`);
  }
  if (problems.length > 0) return { rule: "targets", ok: false, message: listed(problems) };
  return { rule: "targets", ok: true, message: fine.length ? fine.join("; ") : "the experiment has no target groups" };
}

function checkScope(input: GuardrailInput): GuardrailVerdict {
  const scope = input.scope;
  if (!scope) return { rule: "scope", ok: true, message: "no token scope applies: any host or instance the other rules allow may be targeted" };
  const problems: string[] = [];
  let hosts = 0;
  let instances = 0;
  for (const [name, t] of Object.entries(input.targets)) {
    for (const agent of t.eligible) {
      hosts++;
      const refused = scopeViolation(scope, agent.labels);
      if (refused !== undefined) problems.push(`${name}: ${describeAgent(agent)} is outside the token's scope: rule ${JSON.stringify(refused)} refuses it`);
    }
  }
  for (const [name, list] of Object.entries(input.awsCandidates ?? {})) {
    for (const instance of list) {
      instances++;
      const refused = scopeViolation(scope, instance.tags);
      if (refused !== undefined) {
        const group = instance.autoScalingGroup ? ` (${instance.autoScalingGroup})` : "";
        problems.push(`${name}: instance ${instance.instanceId}${group} is outside the token's scope: rule ${JSON.stringify(refused)} refuses its tags`);
      }
    }
  }
  const shown = formatScope(scope);
  if (problems.length > 0) {
    return {
      rule: "scope",
      ok: false,
      message: `${listed(problems)}; narrow the selector to hosts and instances within ${shown}, or ask an admin for a token whose scope includes them`,
    };
  }
  const what = [plural(hosts, "host"), ...(input.awsCandidates && Object.keys(input.awsCandidates).length > 0 ? [plural(instances, "instance")] : [])].join(" and ");
  return { rule: "scope", ok: true, message: `every target that may be picked (${what}) is within the token's scope ${shown}` };
}

function checkOptIn(input: GuardrailInput): GuardrailVerdict {
  const labels = input.guardrails.optInLabels;
  if (labels.length === 0) return { rule: "opt-in", ok: true, message: "no opt-in label is required" };
  const need = labels.join(" and ");
  const problems: string[] = [];
  const notes: string[] = [];
  for (const [name, t] of Object.entries(input.targets)) {
    const lacking = t.matching.filter((a) => labels.some((l) => !hasLabel(a.labels, l)));
    const selectedLacking = t.selected.filter((a) => labels.some((l) => !hasLabel(a.labels, l)));
    const { wanted, short } = shortfall(input.experiment, name, t);
    if (selectedLacking.length > 0) {
      problems.push(`${name}: selected ${selectedLacking.map(hostName).join(", ")} without ${need}`);
    } else if (short && lacking.length > 0) {
      problems.push(
        `${name}: ${plural(t.matching.length, "host matches", "hosts match")} and ${lacking.length} of them lack ${need}, leaving ${t.selected.length} of the ${wanted} asked for; label the hosts that may take part (firedrill-agent --labels ${labels[0]!}) or change the selector`,
      );
    } else if (lacking.length > 0) {
      notes.push(`${name}: ${lacking.length} of ${plural(t.matching.length, "matching host")} lack ${need} and are left out`);
    } else if (t.matching.length > 0) {
      notes.push(`${name}: all ${plural(t.matching.length, "matching host")} carry ${need}`);
    }
  }
  if (problems.length > 0) return { rule: "opt-in", ok: false, message: listed(problems) };
  return { rule: "opt-in", ok: true, message: notes.length ? listed(notes) : `targets must carry ${need}` };
}

function checkExclusions(input: GuardrailInput): GuardrailVerdict {
  const labels = input.guardrails.excludeLabels;
  if (labels.length === 0) return { rule: "exclusion-labels", ok: true, message: "no exclusion labels are set" };
  const carries = (a: AgentRecord): string[] => labels.filter((l) => hasLabel(a.labels, l));
  const problems: string[] = [];
  const notes: string[] = [];
  for (const [name, t] of Object.entries(input.targets)) {
    const excluded = t.matching.filter((a) => carries(a).length > 0);
    const selectedExcluded = t.selected.filter((a) => carries(a).length > 0);
    const who = listed(excluded.map((a) => `${hostName(a)} (${carries(a).join(", ")})`), 5);
    if (selectedExcluded.length > 0) {
      problems.push(`${name}: selected ${selectedExcluded.map(hostName).join(", ")}, which carry an exclusion label`);
    } else if (excluded.length > 0 && t.selected.length === 0) {
      problems.push(`${name}: every target left was excluded: ${who}`);
    } else if (excluded.length > 0) {
      notes.push(`${name}: excluded ${who}`);
    }
  }
  if (problems.length > 0) return { rule: "exclusion-labels", ok: false, message: listed(problems) };
  return {
    rule: "exclusion-labels",
    ok: true,
    message: notes.length ? listed(notes) : `no matching host carries ${labels.join(", ")}`,
  };
}

function checkMaxTargets(input: GuardrailInput): GuardrailVerdict {
  const max = input.guardrails.maxTargets;
  if (max === undefined) return { rule: "max-targets", ok: true, message: "no maxTargets limit is set" };
  const limit = `${source(input.guardrails.from.maxTargets)} maxTargets ${max}`;
  const problems: string[] = [];
  const fine: string[] = [];
  for (const [name, t] of Object.entries(input.targets)) {
    if (t.selected.length > max) problems.push(`${name}: ${plural(t.selected.length, "host")} selected, over ${limit}; lower the group's mode`);
    else fine.push(`${name}: ${t.selected.length}`);
  }
  if (problems.length > 0) return { rule: "max-targets", ok: false, message: listed(problems) };
  return { rule: "max-targets", ok: true, message: `hosts per group within ${limit} (${fine.join(", ") || "no groups"})` };
}

function checkMaxPercent(input: GuardrailInput): GuardrailVerdict {
  const max = input.guardrails.maxPercent;
  if (max === undefined) return { rule: "max-percent", ok: true, message: "no maxPercent limit is set" };
  const limit = `${source(input.guardrails.from.maxPercent)} maxPercent ${max}%`;
  const problems: string[] = [];
  const fine: string[] = [];
  for (const [name, t] of Object.entries(input.targets)) {
    if (t.matching.length === 0) continue;
    const pct = (t.selected.length / t.matching.length) * 100;
    const text = `${name}: ${t.selected.length} of ${t.matching.length} matching hosts (${Math.round(pct * 10) / 10}%)`;
    if (pct > max + 1e-9) problems.push(`${text}, over ${limit}; select fewer hosts`);
    else fine.push(text);
  }
  if (problems.length > 0) return { rule: "max-percent", ok: false, message: listed(problems) };
  return { rule: "max-percent", ok: true, message: `${fine.length ? `${fine.join("; ")}: ` : ""}within ${limit}` };
}

/** What the time rules look at. */
type TimeInput = Pick<GuardrailInput, "guardrails" | "now">;

function checkWindows(input: TimeInput, what: "run" | "fault" = "run"): GuardrailVerdict {
  const sets = input.guardrails.windowSets;
  if (sets.length === 0) return { rule: "windows", ok: true, message: `no time window is set: a ${what} may start at any time` };
  const problems: string[] = [];
  const fine: string[] = [];
  for (const set of sets) {
    const hit = set.windows.find((w) => inside(w, input.now));
    const shown = set.windows.map(describeWindow).join(" or ");
    if (hit) {
      fine.push(`now is ${describeLocal(localTime(input.now, hit.tz), hit.tz)}, inside ${source(set.from)} window ${describeWindow(hit)}`);
    } else {
      const zones = [...new Set(set.windows.map((w) => w.tz))];
      const nowText = zones.map((tz) => describeLocal(localTime(input.now, tz), tz)).join(" / ");
      const next = nextOpening(set.windows, input.now);
      problems.push(`now is ${nowText}, outside ${source(set.from)} window${set.windows.length > 1 ? "s" : ""} ${shown}${next ? `; the next one opens ${next}` : ""}`);
    }
  }
  if (problems.length > 0) return { rule: "windows", ok: false, message: listed(problems) };
  return { rule: "windows", ok: true, message: fine.join("; ") };
}

function checkBlackout(input: TimeInput, what: "run" | "fault" = "run"): GuardrailVerdict {
  const dates = input.guardrails.blackoutDates;
  if (dates.length === 0) return { rule: "blackout-dates", ok: true, message: "no blackout dates are set" };
  const zones = [...new Set(input.guardrails.windowSets.flatMap((s) => s.windows.map((w) => w.tz)))];
  if (zones.length === 0) zones.push("UTC");
  const days = zones.map((tz) => ({ tz, date: localTime(input.now, tz).date }));
  const hit = days.find((d) => dates.includes(d.date));
  if (hit) {
    return {
      rule: "blackout-dates",
      ok: false,
      message: `today is ${hit.date} in ${hit.tz}, a blackout date: no ${what} may start until the day is over there`,
    };
  }
  return {
    rule: "blackout-dates",
    ok: true,
    message: `today is ${days.map((d) => `${d.date} in ${d.tz}`).join(", ")}, not a blackout date (${plural(dates.length, "date")} set)`,
  };
}

function checkConcurrentRuns(input: GuardrailInput): GuardrailVerdict {
  const max = input.guardrails.maxConcurrentRuns;
  const active = plural(input.activeRuns, "run is", "runs are");
  if (max === undefined) return { rule: "max-concurrent-runs", ok: true, message: `no limit on concurrent runs is set (${active} active)` };
  if (input.activeRuns + 1 > max) {
    return { rule: "max-concurrent-runs", ok: false, message: `${active} active and the policy allows ${max} at once; wait for one to end (firedrill runs)` };
  }
  return { rule: "max-concurrent-runs", ok: true, message: `${active} active; this one makes ${input.activeRuns + 1} of at most ${max}` };
}

interface HostPlan {
  agent: AgentRecord;
  steps: FaultStep[];
}

function hostPlans(input: GuardrailInput): HostPlan[] {
  const byHost = new Map<string, HostPlan>();
  for (const step of input.experiment.spec.steps) {
    if (step.type !== "fault") continue;
    for (const agent of input.targets[step.target]?.selected ?? []) {
      let plan = byHost.get(agent.id);
      if (!plan) byHost.set(agent.id, (plan = { agent, steps: [] }));
      plan.steps.push(step);
    }
  }
  return [...byHost.values()];
}

const isNetwork = (kind: string): boolean => kind.startsWith("network-");

function checkFaultOverlap(input: GuardrailInput, rule: "one-network-fault-per-host" | "one-fault-per-kind-per-host"): GuardrailVerdict {
  const clash = rule === "one-network-fault-per-host" ? (a: string, b: string) => isNetwork(a) && isNetwork(b) : (a: string, b: string) => a === b;
  const ancestors = ancestorsOf(input.experiment.spec.steps);
  const problems: string[] = [];
  for (const { agent, steps } of hostPlans(input)) {
    for (let i = 0; i < steps.length; i++) {
      const a = steps[i]!;
      for (let j = i + 1; j < steps.length; j++) {
        const b = steps[j]!;
        if (clash(a.fault, b.fault) && mayOverlap(a.name, b.name, ancestors)) {
          problems.push(
            `${hostName(agent)}: steps ${a.name} (${a.fault}) and ${b.name} (${b.fault}) may run at the same time; order them with startAfter or target different hosts`,
          );
        }
      }
      for (const active of input.hostFaults.get(agent.id) ?? []) {
        if (clash(a.fault, active)) {
          problems.push(`${hostName(agent)}: step ${a.name} (${a.fault}) while ${active} is already active there (another run or an ad-hoc fault)`);
        }
      }
    }
  }
  const what = rule === "one-network-fault-per-host" ? "two network faults" : "two faults of one kind";
  if (problems.length > 0) return { rule, ok: false, message: listed(problems, 4) };
  return { rule, ok: true, message: `no host gets ${what} at the same time` };
}

function checkMaxDuration(input: GuardrailInput): GuardrailVerdict {
  const { durationMs, chain } = criticalPath(input.experiment.spec.steps);
  const path = `the longest chain of steps (${chain.join(" -> ")}) takes ${formatDuration(durationMs)}`;
  const max = input.guardrails.maxDurationMs;
  if (max === undefined) return { rule: "max-duration", ok: true, message: `no maxDuration is set; ${path}` };
  const limit = `${source(input.guardrails.from.maxDurationMs)} maxDuration ${formatDuration(max)}`;
  if (durationMs > max) return { rule: "max-duration", ok: false, message: `${path}, longer than ${limit}; shorten or parallelize steps` };
  return { rule: "max-duration", ok: true, message: `${path}, within ${limit}` };
}

function checkCapabilities(input: GuardrailInput): GuardrailVerdict {
  const problems: string[] = [];
  for (const { agent, steps } of hostPlans(input)) {
    for (const kind of new Set(steps.map((s) => s.fault))) {
      const names = steps.filter((s) => s.fault === kind).map((s) => s.name).join(", ");
      const offered = agent.capabilities.faultKinds;
      if (!offered.includes(kind)) {
        problems.push(`${hostName(agent)} cannot run ${kind} (step ${names}): its agent does not offer it (offers ${offered.join(", ") || "nothing"}); upgrade the agent`);
        continue;
      }
      const missing = missingCapabilities(kind, agent.capabilities);
      if (missing.length > 0) {
        problems.push(`${hostName(agent)} cannot run ${kind} (step ${names}): ${missing.map((c) => CAPABILITY_HINTS[c]).join("; ")}`);
      }
    }
  }
  if (problems.length > 0) return { rule: "capabilities", ok: false, message: listed(problems, 4) };
  return { rule: "capabilities", ok: true, message: "every selected host can run the faults of its steps" };
}

/**
 * Evaluates every guardrail for a plan: one verdict per rule, in {@link GUARDRAIL_RULES} order,
 * each saying in plain words why it passes or fails. A run may start only when all are ok.
 */
export function evaluateGuardrails(input: GuardrailInput): GuardrailVerdict[] {
  return [
    checkTargets(input),
    checkScope(input),
    checkOptIn(input),
    checkExclusions(input),
    checkMaxTargets(input),
    checkMaxPercent(input),
    checkWindows(input),
    checkBlackout(input),
    checkConcurrentRuns(input),
    checkFaultOverlap(input, "one-network-fault-per-host"),
    checkFaultOverlap(input, "one-fault-per-kind-per-host"),
    checkMaxDuration(input),
    checkCapabilities(input),
  ];
}

/** The rules {@link evaluateFaultGuardrails} reports for one ad-hoc fault, in order. */
export const FAULT_GUARDRAIL_RULES = [
  "opt-in",
  "exclusion-labels",
  "windows",
  "blackout-dates",
  "one-network-fault-per-host",
  "one-fault-per-kind-per-host",
  "max-duration",
] as const satisfies readonly GuardrailRule[];

/** A fault already active on a host, as {@link evaluateFaultGuardrails} weighs it. */
export interface ActiveFaultInfo {
  id: string;
  kind: string;
  /** The run it belongs to; null for an ad-hoc fault. */
  runId: string | null;
}

/** Inputs of {@link evaluateFaultGuardrails}: one fault on one host. */
export interface FaultGuardrailInput {
  agent: AgentRecord;
  kind: string;
  durationMs: number;
  /** The server policy, merged on its own: `mergeGuardrails(policy, {})`. */
  guardrails: MergedGuardrails;
  /** Faults active on the host now: ad-hoc ones and those of runs. */
  activeFaults: readonly ActiveFaultInfo[];
  now: Date;
}

function faultOptIn(input: FaultGuardrailInput): GuardrailVerdict {
  const labels = input.guardrails.optInLabels;
  if (labels.length === 0) return { rule: "opt-in", ok: true, message: "no opt-in label is required" };
  const missing = labels.filter((l) => !hasLabel(input.agent.labels, l));
  if (missing.length > 0) {
    return {
      rule: "opt-in",
      ok: false,
      message: `${describeAgent(input.agent)} lacks the label ${missing.join(" and ")}; label the host if it may take faults (firedrill-agent --labels ${missing[0]!})`,
    };
  }
  return { rule: "opt-in", ok: true, message: `${describeAgent(input.agent)} carries ${labels.join(" and ")}` };
}

function faultExclusions(input: FaultGuardrailInput): GuardrailVerdict {
  const labels = input.guardrails.excludeLabels;
  if (labels.length === 0) return { rule: "exclusion-labels", ok: true, message: "no exclusion labels are set" };
  const carried = labels.filter((l) => hasLabel(input.agent.labels, l));
  if (carried.length > 0) {
    return { rule: "exclusion-labels", ok: false, message: `${describeAgent(input.agent)} carries the exclusion label ${carried.join(", ")}: the policy keeps faults off it` };
  }
  return { rule: "exclusion-labels", ok: true, message: `${describeAgent(input.agent)} carries none of ${labels.join(", ")}` };
}

function faultOverlap(input: FaultGuardrailInput, rule: "one-network-fault-per-host" | "one-fault-per-kind-per-host"): GuardrailVerdict {
  const clash = rule === "one-network-fault-per-host" ? (other: string) => isNetwork(input.kind) && isNetwork(other) : (other: string) => other === input.kind;
  const clashing = input.activeFaults.filter((f) => clash(f.kind));
  const what = rule === "one-network-fault-per-host" ? "network fault" : `${input.kind} fault`;
  if (clashing.length > 0) {
    const shown = clashing.map((f) => `${f.kind} (${f.id}, ${f.runId ? `run ${f.runId}` : "ad-hoc"})`).join(", ");
    return {
      rule,
      ok: false,
      message: `${describeAgent(input.agent)} already has ${shown} active, and a host takes one ${what} at a time; stop it first (firedrill fault stop --agent ${input.agent.id} ${clashing[0]!.id}) or wait for it to end`,
    };
  }
  if (rule === "one-network-fault-per-host" && !isNetwork(input.kind)) return { rule, ok: true, message: `${input.kind} is not a network fault` };
  return { rule, ok: true, message: `no other ${what} is active on ${describeAgent(input.agent)}` };
}

function faultMaxDuration(input: FaultGuardrailInput): GuardrailVerdict {
  const max = input.guardrails.maxDurationMs;
  const lasts = `the fault lasts ${formatDuration(input.durationMs)}`;
  if (max === undefined) return { rule: "max-duration", ok: true, message: `no maxDuration is set; ${lasts}` };
  const limit = `${source(input.guardrails.from.maxDurationMs)} maxDuration ${formatDuration(max)}`;
  if (input.durationMs > max) return { rule: "max-duration", ok: false, message: `${lasts}, longer than ${limit}; ask for at most ${formatDuration(max)}` };
  return { rule: "max-duration", ok: true, message: `${lasts}, within ${limit}` };
}

/**
 * Evaluates the server policy for one ad-hoc fault on one host, the way runs are checked: the
 * opt-in and exclusion labels, the time windows and blackout dates (at `now`), one network fault
 * and one fault of a kind per host (against the faults active there), and maxDuration (the
 * fault's own). One verdict per rule, in {@link FAULT_GUARDRAIL_RULES} order.
 */
export function evaluateFaultGuardrails(input: FaultGuardrailInput): GuardrailVerdict[] {
  return [
    faultOptIn(input),
    faultExclusions(input),
    checkWindows(input, "fault"),
    checkBlackout(input, "fault"),
    faultOverlap(input, "one-network-fault-per-host"),
    faultOverlap(input, "one-fault-per-kind-per-host"),
    faultMaxDuration(input),
  ];
}
