/**
 * Experiment files: YAML → a validated {@link Experiment}. Every problem is reported at once, each
 * with its path in the file (`steps[2].params.load`, without the leading `spec.`), its line, what
 * is wrong and what is allowed.
 */
import { InvalidFaultRequestError, isFaultKind, parseFaultParams } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";
import { isCloudFaultKind } from "../aws/faults.js";
import { NETWORK_DISRUPT_KIND, parseNetworkDisruptParams } from "../aws/network-disrupt.js";
import type { AwsSelector } from "../aws/types.js";
import { findCycles } from "./dag.js";
import { describeValue, experimentSchema, MAX_TARGET_GROUPS, RESERVED_AWS_FILTERS, specErrorMap } from "./spec-schema.js";
import type { ExperimentInput, GuardrailsInput } from "./spec-schema.js";
import { parseDays, parseDurationText, parseHours, quote } from "./spec-values.js";
import type {
  Experiment,
  GuardrailsSpec,
  SpecIssue,
  Step,
  StopConditionSpec,
  TargetMode,
  TargetSpec,
  WindowSpec,
} from "./types.js";
import { countProblems, FILE_PATH_LABEL, formatPath, formatSpecIssue, fromZodIssues, parsePath, readYaml, toSpecIssues } from "./yaml-source.js";
import type { SourceIssue, SourcePath } from "./yaml-source.js";

export { formatSpecIssue } from "./yaml-source.js";

/** Thrown when an experiment file is not valid: `issues` lists every problem found. */
export class ExperimentSpecError extends Error {
  override readonly name = "ExperimentSpecError";
  constructor(
    /** Every problem, ordered by line. */
    readonly issues: SpecIssue[],
    /** The file name used in messages. */
    readonly file = "<input>",
  ) {
    const count = countProblems(issues);
    super(
      `${file} is not a valid experiment (${count} ${count === 1 ? "problem" : "problems"}):\n${issues
        .map((i) => `  ${formatSpecIssue(i, file)}`)
        .join("\n")}`,
    );
  }
}

type Raw = Record<string, unknown>;

function rec(value: unknown): Raw | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Raw) : undefined;
}

function list(value: unknown): unknown[] | undefined {
  return Array.isArray(value) ? value : undefined;
}

function present(obj: Raw, key: string): boolean {
  return Object.hasOwn(obj, key) && obj[key] !== undefined;
}

/** Names for a message: the first `max`, then how many more. */
function someNames(names: readonly string[], max = 10): string {
  return names.length <= max ? names.join(", ") : `${names.slice(0, max).join(", ")} and ${names.length - max} more`;
}

const STOP_KINDS = ["http", "prometheus", "alert", "cloudwatchAlarm"] as const;
const MODE_KEYS = ["count", "percent", "all"] as const;
const SELECTOR_KEYS = ["labels", "facts", "agentIds", "aws"] as const;
const AWS_CRITERIA = ["tags", "autoScalingGroups", "instanceIds", "filters"] as const;

/** Checks of a target's `selector.aws` that span fields. */
function checkAwsSelector(raw: unknown, at: SourcePath): SourceIssue[] {
  const aws = rec(raw);
  if (!aws) return [];
  const issues: SourceIssue[] = [];
  if (!AWS_CRITERIA.some((k) => present(aws, k))) {
    issues.push({
      path: at,
      message: `needs at least one of ${AWS_CRITERIA.join(", ")}${present(aws, "region") ? "; region alone would match every running instance in the region" : " (an empty aws selector would match every running instance)"}`,
    });
  }
  list(aws["filters"])?.forEach((value, j) => {
    const name = rec(value)?.["name"];
    if (typeof name === "string" && (RESERVED_AWS_FILTERS as readonly string[]).includes(name)) {
      issues.push({ path: [...at, "filters", j, "name"], message: `${JSON.stringify(name)} is set by firedrill (running instances only); remove this filter` });
    }
  });
  return issues;
}

/** Cross-field checks of `guardrails` (or a policy file) at `at`. */
export function checkGuardrailFields(raw: unknown, at: SourcePath): SourceIssue[] {
  const g = rec(raw);
  if (!g) return [];
  if (present(g, "window") && present(g, "windows")) {
    return [{ path: [...at, "windows"], message: "is given together with window; use either window (one window) or windows (a list), not both" }];
  }
  return [];
}

/** Checks that span fields: names, references, the DAG, exactly-one-of rules, fault parameters. */
function crossCheck(data: unknown): SourceIssue[] {
  const issues: SourceIssue[] = [];
  const spec = rec(rec(data)?.["spec"]);
  if (!spec) return issues;

  const targets = rec(spec["targets"]);
  const targetNames = targets ? Object.keys(targets) : undefined;
  const targetSet = new Set(targetNames);
  if (targetNames && targetNames.length > MAX_TARGET_GROUPS) {
    issues.push({
      path: ["spec", "targets"],
      message: `defines ${targetNames.length} target groups; an experiment may define at most ${MAX_TARGET_GROUPS}: split it into smaller experiments`,
    });
  }
  if (targets && targetNames?.length === 0) {
    issues.push({
      path: ["spec", "targets"],
      message: "defines no target groups; add one, e.g. web: { selector: { labels: { app: web } }, mode: { count: 1 } }",
    });
  }
  for (const [name, value] of Object.entries(targets ?? {})) {
    const target = rec(value);
    const selector = rec(target?.["selector"]);
    if (selector && !SELECTOR_KEYS.some((k) => present(selector, k))) {
      issues.push({
        path: ["spec", "targets", name, "selector"],
        message: `is empty; give at least one of ${SELECTOR_KEYS.join(", ")} (an empty selector would match every host)`,
      });
    }
    issues.push(...checkAwsSelector(selector?.["aws"], ["spec", "targets", name, "selector", "aws"]));
    const mode = rec(target?.["mode"]);
    if (mode) {
      const given = MODE_KEYS.filter((k) => present(mode, k));
      if (given.length !== 1) {
        issues.push({
          path: ["spec", "targets", name, "mode"],
          message:
            given.length === 0
              ? "needs one of count (e.g. count: 1), percent (e.g. percent: 30) or all (all: true)"
              : `has ${given.join(" and ")}; give exactly one of count, percent, all`,
        });
      }
    }
  }

  const steps = list(spec["steps"]);
  if (steps) {
    const firstIndex = new Map<string, number>();
    steps.forEach((value, i) => {
      const name = rec(value)?.["name"];
      if (typeof name !== "string") return;
      const first = firstIndex.get(name);
      if (first === undefined) firstIndex.set(name, i);
      else issues.push({ path: ["spec", "steps", i, "name"], message: `duplicate step name ${quote(name)} (also steps[${first}]); step names must be unique` });
    });
    const stepNames = [...firstIndex.keys()];
    steps.forEach((value, i) => {
      const step = rec(value);
      if (!step) return;
      const at = ["spec", "steps", i];
      const isFault = present(step, "fault");
      const isWait = present(step, "wait");
      if (isFault && isWait) {
        issues.push({ path: at, message: "has both fault and wait; a step either injects a fault (fault, target, params, duration) or waits (wait: 30s); split it into two steps" });
      } else if (!isFault && !isWait) {
        issues.push({ path: at, message: "is neither a fault nor a wait; give fault: <kind> with target and duration, or wait: <duration>" });
      } else if (isFault) {
        if (!present(step, "target")) {
          issues.push({ path: [...at, "target"], message: `is required for a fault step; name a target group${targetNames?.length ? ` (${someNames(targetNames)})` : ""}` });
        }
        const kind = step["fault"];
        if (!present(step, "duration") && kind !== "ec2-terminate" && kind !== "ec2-reboot") {
          issues.push({
            path: [...at, "duration"],
            message:
              kind === "ec2-stop"
                ? "is required for ec2-stop: how long the instances stay stopped before they are started again, e.g. duration: 5m"
                : kind === NETWORK_DISRUPT_KIND
                ? "is required for aws-network-disrupt: how long the subnets stay cut off before their own network ACLs are restored, e.g. duration: 10m"
                : "is required for a fault step: how long the fault lasts, e.g. duration: 2m",
          });
        }
        const params = step["params"] ?? {};
        if (kind === NETWORK_DISRUPT_KIND) {
          const parsed = parseNetworkDisruptParams(params);
          if (!parsed.ok) for (const issue of parsed.issues) issues.push({ path: [...at, "params", ...issue.path], message: issue.message });
        }
        if (typeof kind === "string" && isCloudFaultKind(kind)) {
          const given = rec(params);
          if (kind !== NETWORK_DISRUPT_KIND && (given === undefined || Object.keys(given).length > 0)) {
            issues.push({ path: [...at, "params"], message: `${kind} takes no params; remove params (it acts on every instance the target group resolves to)` });
          }
          const target = step["target"];
          const group = typeof target === "string" && targets && targetSet.has(target) ? rec(rec(targets[target])?.["selector"]) : undefined;
          if (group && !present(group, "aws")) {
            issues.push({
              path: [...at, "target"],
              message: `${kind} acts on EC2 instances, but target group ${JSON.stringify(target)} has no aws selector; add selector.aws (e.g. aws: { autoScalingGroups: [web-asg] }) or target a group that has one`,
            });
          }
        }
        if (typeof kind === "string" && isFaultKind(kind) && rec(params)) {
          const prefix = formatPath([...at.slice(1), "params"]);
          // YAML reads 1e400 and .inf as Infinity, which JSON (and the fault's own check) sees as null.
          const infinite = Object.entries(rec(params)!).filter(([, v]) => typeof v === "number" && !Number.isFinite(v));
          for (const [key, value] of infinite) {
            issues.push({ path: [...at, "params", key], message: `${describeValue(value)} is not a finite number; write the value as a plain number` });
          }
          try {
            parseFaultParams(kind, params as JsonObject, prefix);
          } catch (err) {
            if (!(err instanceof InvalidFaultRequestError)) throw err;
            for (const issue of err.issues) {
              const rest = issue.field.startsWith(`${prefix}.`) ? parsePath(issue.field.slice(prefix.length + 1)) : [];
              if (infinite.some(([key]) => rest[0] === key)) continue;
              issues.push({ path: [...at, "params", ...rest], message: issue.message });
            }
          }
        }
      } else {
        for (const field of ["target", "params", "duration"]) {
          if (present(step, field)) {
            issues.push({ path: [...at, field], message: `is not allowed on a wait step (its length is wait: ${String(step["wait"])}); remove it, or make this a fault step` });
          }
        }
      }
      const target = step["target"];
      if (isFault && typeof target === "string" && targetNames && !targetSet.has(target)) {
        issues.push({
          path: [...at, "target"],
          message: `unknown target ${quote(target)}; ${targetNames.length ? `target groups: ${someNames(targetNames)}` : "define it under targets"}`,
        });
      }
      list(step["startAfter"])?.forEach((ref, j) => {
        if (typeof ref === "string" && !firstIndex.has(ref)) {
          issues.push({ path: [...at, "startAfter", j], message: `unknown step ${quote(ref)}; steps: ${someNames(stepNames)}` });
        }
      });
    });
    const dag = steps.flatMap((value) => {
      const step = rec(value);
      const name = step?.["name"];
      if (!step || typeof name !== "string") return [];
      return [{ name, startAfter: (list(step["startAfter"]) ?? []).filter((s): s is string => typeof s === "string") }];
    });
    for (const cycle of findCycles(dag)) {
      const explained = cycle.slice(0, -1).map((name, k) => `${name} starts after ${cycle[k + 1]!}`).join(", ");
      issues.push({
        path: ["spec", "steps"],
        linePath: ["spec", "steps", firstIndex.get(cycle[0]!) ?? 0, "startAfter"],
        message: `startAfter forms a cycle: ${cycle.join(" -> ")} (${explained}); no step of it could ever start`,
      });
    }
  }

  list(spec["stopConditions"])?.forEach((value, i) => {
    const condition = rec(value);
    if (!condition) return;
    const kinds = STOP_KINDS.filter((k) => present(condition, k));
    if (kinds.length !== 1) {
      issues.push({
        path: ["spec", "stopConditions", i],
        message:
          kinds.length === 0
            ? `needs one of ${STOP_KINDS.join(", ")}`
            : `has ${kinds.join(" and ")}; each entry holds exactly one of ${STOP_KINDS.join(", ")}: split it into ${kinds.length} entries`,
      });
    }
    const matchLabels = rec(rec(condition["alert"])?.["matchLabels"]);
    if (matchLabels && Object.keys(matchLabels).length === 0) {
      issues.push({ path: ["spec", "stopConditions", i, "alert", "matchLabels"], message: "is empty; name at least one label, e.g. { severity: page } (an empty match would fire on every alert)" });
    }
  });

  issues.push(...checkGuardrailFields(spec["guardrails"], ["spec", "guardrails"]));
  return issues;
}

function mustParse<T>(parsed: { ok: true; value: T } | { ok: false; message: string }): T {
  if (!parsed.ok) throw new Error(`internal: validated value failed to parse: ${parsed.message}`);
  return parsed.value;
}

/** Normalizes validated guardrails (experiment or policy) into the model. */
export function toGuardrailsSpec(input: GuardrailsInput & { maxConcurrentRuns?: number | undefined }): GuardrailsSpec {
  const out: GuardrailsSpec = {};
  if (input.optInLabel !== undefined) out.optInLabel = input.optInLabel;
  if (input.excludeLabels !== undefined) out.excludeLabels = [...input.excludeLabels];
  if (input.maxTargets !== undefined) out.maxTargets = input.maxTargets;
  if (input.maxPercent !== undefined) out.maxPercent = input.maxPercent;
  const windows = input.windows ?? (input.window ? [input.window] : undefined);
  if (windows) {
    out.windows = windows.map((w): WindowSpec => {
      const hours = mustParse(parseHours(w.hours));
      return { days: mustParse(parseDays(w.days)), startMinute: hours.startMinute, endMinute: hours.endMinute, tz: w.tz };
    });
  }
  if (input.blackoutDates !== undefined) out.blackoutDates = [...input.blackoutDates];
  if (input.maxDuration !== undefined) out.maxDurationMs = mustParse(parseDurationText(input.maxDuration, {}));
  if (input.maxConcurrentRuns !== undefined) out.maxConcurrentRuns = input.maxConcurrentRuns;
  if (input.optInTag !== undefined) out.optInTag = input.optInTag;
  if (input.excludeTags !== undefined) out.excludeTags = [...input.excludeTags];
  if (input.minHealthy !== undefined) out.minHealthy = input.minHealthy;
  if (input.maxPercentOfGroup !== undefined) out.maxPercentOfGroup = input.maxPercentOfGroup;
  if (input.minTimeBetweenTerminations !== undefined) {
    out.minTimeBetweenTerminationsMs = mustParse(parseDurationText(input.minTimeBetweenTerminations, {}));
  }
  return out;
}

function toAwsSelector(aws: NonNullable<ExperimentInput["spec"]["targets"][string]["selector"]["aws"]>): AwsSelector {
  const out: AwsSelector = {};
  if (aws.region !== undefined) out.region = aws.region;
  if (aws.tags) out.tags = { ...aws.tags };
  if (aws.autoScalingGroups) out.autoScalingGroups = [...aws.autoScalingGroups];
  if (aws.instanceIds) out.instanceIds = [...aws.instanceIds];
  if (aws.filters) out.filters = aws.filters.map((f) => ({ name: f.name, values: [...f.values] }));
  return out;
}

function toMode(mode: ExperimentInput["spec"]["targets"][string]["mode"]): TargetMode {
  if (mode.count !== undefined) return { count: mode.count };
  if (mode.percent !== undefined) return { percent: mode.percent };
  return { all: true };
}

function toModel(input: ExperimentInput): Experiment {
  const targets: Record<string, TargetSpec> = {};
  for (const [name, t] of Object.entries(input.spec.targets)) {
    const selector: TargetSpec["selector"] = {};
    if (t.selector.labels) selector.labels = { ...t.selector.labels };
    if (t.selector.facts) {
      selector.facts = Object.fromEntries(Object.entries(t.selector.facts).filter((e): e is [string, string] => e[1] !== undefined));
    }
    if (t.selector.agentIds) selector.agentIds = [...t.selector.agentIds];
    if (t.selector.aws) selector.aws = toAwsSelector(t.selector.aws);
    targets[name] = { selector, mode: toMode(t.mode), ...(t.allowFewer === true ? { allowFewer: true } : {}) };
  }
  const steps = input.spec.steps.map((s): Step => {
    const startAfter = [...(s.startAfter ?? [])];
    if (s.fault !== undefined) {
      return {
        type: "fault",
        name: s.name,
        fault: s.fault,
        target: s.target!,
        params: (s.params ?? {}) as JsonObject,
        // ec2-terminate and ec2-reboot need no duration: the step ends once the call is done.
        durationMs: s.duration === undefined ? 0 : mustParse(parseDurationText(s.duration)),
        startAfter,
      };
    }
    return { type: "wait", name: s.name, durationMs: mustParse(parseDurationText(s.wait!)), startAfter };
  });
  const stopConditions = (input.spec.stopConditions ?? []).map((c): StopConditionSpec => {
    if (c.http) {
      const { expectStatus, ...rest } = c.http;
      return { kind: "http", http: { ...rest, expectStatus: Array.isArray(expectStatus) ? [...expectStatus] : [expectStatus] } };
    }
    if (c.prometheus) return { kind: "prometheus", prometheus: { ...c.prometheus } };
    if (c.cloudwatchAlarm) {
      const { region, names, intervalMs } = c.cloudwatchAlarm;
      return { kind: "cloudwatchAlarm", cloudwatchAlarm: { names: [...names], intervalMs, ...(region !== undefined ? { region } : {}) } };
    }
    return { kind: "alert", alert: { matchLabels: { ...c.alert!.matchLabels } } };
  });
  return {
    apiVersion: input.apiVersion,
    kind: input.kind,
    metadata: { name: input.metadata.name, labels: { ...(input.metadata.labels ?? {}) }, description: input.metadata.description ?? "" },
    spec: {
      hypothesis: input.spec.hypothesis,
      targets,
      steps,
      stopConditions,
      guardrails: toGuardrailsSpec(input.spec.guardrails ?? {}),
    },
  };
}

/**
 * Parses and validates an experiment file.
 *
 * @param text the YAML source
 * @param file the file name used in messages
 * Thrown when anything is wrong: {@link ExperimentSpecError} listing every issue with path and line.
 */
export function parseExperiment(text: string, file = "<input>"): Experiment {
  const source = readYaml(text, { dropPrefix: "spec" });
  if (source.syntaxIssues.length > 0) throw new ExperimentSpecError(source.syntaxIssues, file);
  const data = source.data;
  if (data === null || data === undefined) {
    throw new ExperimentSpecError(
      [{ path: FILE_PATH_LABEL, line: 1, message: "the file is empty; an experiment starts with apiVersion: firedrill/v1 and kind: Experiment (see docs/spec/experiment.md)" }],
      file,
    );
  }
  const result = experimentSchema.safeParse(data, { error: specErrorMap, reportInput: true });
  const issues = [...(result.success ? [] : fromZodIssues(result.error.issues)), ...crossCheck(data)];
  if (issues.length > 0 || !result.success) throw new ExperimentSpecError(toSpecIssues(source, issues, "spec"), file);
  return toModel(result.data);
}
