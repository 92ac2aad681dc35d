/**
 * The zod schema of an experiment file (and of the server's guardrail policy file). It checks the
 * shape of every field; rules that span fields (step names, the DAG, exactly-one-of) are checked in
 * spec.ts, and `schemas/experiment.schema.json` is generated from these schemas for editors.
 *
 * Field-level messages say what is wrong and what is allowed; the generic wording for plain type
 * and range problems lives in {@link specErrorMap}.
 */
import { z } from "zod";
import { FAULT_KINDS, MAX_FAULT_DURATION_MS, MIN_FAULT_DURATION_MS } from "@firedrill/protocol";
import type { FaultKind } from "@firedrill/protocol";
import { CLOUD_FAULT_KINDS } from "../aws/faults.js";
import {
  AWS_REGION_PATTERN,
  DATE_PATTERN,
  DURATION_EXAMPLES,
  DURATION_PATTERN,
  HOURS_PATTERN,
  INSTANCE_ID_PATTERN,
  parseAwsRegion,
  parseDate,
  parseDays,
  parseDurationText,
  parseHours,
  parseHttpUrl,
  parseInstanceId,
  parseLabelTerm,
  parseTagTerm,
  parseTimeZone,
  quote,
  WEEKDAYS,
} from "./spec-values.js";
import type { Parsed } from "./spec-values.js";

/** Most steps in an experiment. */
export const MAX_STEPS = 200;
/** Most stop conditions in an experiment. */
export const MAX_STOP_CONDITIONS = 20;
/** Most target groups in an experiment (checked in spec.ts: a record has no size check). */
export const MAX_TARGET_GROUPS = 50;

/** How many entries a too-long list has, for messages. */
function listed(input: unknown, max: number): string {
  return Array.isArray(input) ? String(input.length) : `more than ${max}`;
}

/** Describes a value the user wrote, for messages: strings quoted (long ones shortened), null as "empty". */
export function describeValue(value: unknown): string {
  if (value === null) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return quote(value);
  if (typeof value === "number" && !Number.isFinite(value)) return Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf";
  return String(JSON.stringify(value) ?? String(value));
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping (key: value)",
  record: "a mapping (key: value)",
};

/**
 * Messages for the issues zod raises itself (types, ranges, literals), in the words of an
 * experiment file. Field schemas with something more useful to say set their own `error`.
 */
export const specErrorMap: z.core.$ZodErrorMap = (issue) => {
  const input = issue.input;
  switch (issue.code) {
    case "invalid_type": {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      if (input === undefined) return `is required (${expected})`;
      return `${describeValue(input)} is not ${expected}`;
    }
    case "too_small": {
      if (issue.origin === "string") return "must not be empty";
      if (issue.origin === "array") return Number(issue.minimum) === 1 ? "must not be empty; list at least one entry" : `must list at least ${issue.minimum} entries`;
      return issue.inclusive === false
        ? `${describeValue(input)} is too small; it must be above ${issue.minimum}`
        : `${describeValue(input)} is below the minimum ${issue.minimum}`;
    }
    case "too_big": {
      if (issue.origin === "string") return `is longer than ${issue.maximum} characters`;
      if (issue.origin === "array") return `lists more than ${issue.maximum} entries`;
      return `${describeValue(input)} is above the maximum ${issue.maximum}`;
    }
    case "invalid_value": {
      const allowed = issue.values.map((v) => JSON.stringify(v));
      const use = allowed.length === 1 ? `use ${allowed[0]}` : `use one of: ${allowed.join(", ")}`;
      return input === undefined ? `is required; ${use}` : `${describeValue(input)} is not allowed; ${use}`;
    }
    case "invalid_union": {
      const expected = [
        ...new Set(
          issue.errors.flatMap((branch) =>
            branch.filter((i) => i.code === "invalid_type" && i.path.length === 0).map((i) => EXPECTED[(i as { expected: string }).expected] ?? ""),
          ),
        ),
      ].filter((e) => e !== "");
      if (input === undefined) return `is required (${expected.join(" or ")})`;
      return `${describeValue(input)} is not ${expected.join(" or ") || "valid"}`;
    }
    default:
      return undefined;
  }
};

/** A strict object: any field not in `shape` is an error naming the allowed fields. */
function strict<T extends z.core.$ZodLooseShape>(shape: T) {
  const allowed = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code === "unrecognized_keys") return `allowed: ${allowed}`;
      if (issue.code === "invalid_type") {
        return issue.input === undefined ? `is required (a mapping with: ${allowed})` : `${describeValue(issue.input)} is not a mapping; expected a mapping with: ${allowed}`;
      }
      return undefined;
    },
  });
}

/** A string checked by a value parser (duration, hours, zone, ...). */
function checkedString(check: (text: string) => Parsed<unknown>, typeHint: string) {
  return z
    .string({
      error: (issue) =>
        issue.input === undefined ? `is required (${typeHint})` : `${describeValue(issue.input)} is not ${typeHint}`,
    })
    .superRefine((text, ctx) => {
      const parsed = check(text);
      if (!parsed.ok) ctx.addIssue({ code: "custom", message: parsed.message, input: text });
    });
}

const NAME_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const NAME_HINT = "letters, digits, - and _, starting and ending with a letter or digit, at most 63 characters";

/** A name for an experiment, a target group or a step. */
function nameSchema(what: string) {
  return z
    .string({
      error: (issue) => (issue.input === undefined ? `is required: give the ${what} a name (${NAME_HINT})` : `${describeValue(issue.input)} is not a ${what} name; use ${NAME_HINT}`),
    })
    .regex(NAME_PATTERN, { error: (issue) => `${describeValue(issue.input)} is not a valid ${what} name; use ${NAME_HINT}` })
    .meta({ description: `The ${what}'s name: ${NAME_HINT}.` });
}

/** A duration such as `30s`, within bounds. */
function durationSchema(bounds: { min?: number; max?: number }, description: string) {
  return checkedString((text) => parseDurationText(text, bounds), `a duration with a unit, ${DURATION_EXAMPLES}`).meta({
    description,
    pattern: DURATION_PATTERN,
    examples: ["30s", "2m", "1h30m"],
  });
}

/** A label value: always a string (YAML reads `8080` and `true` as other types). */
const labelValueSchema = z.string({
  error: (issue) =>
    issue.input === undefined
      ? "is required"
      : typeof issue.input === "number" || typeof issue.input === "boolean"
        ? `${String(issue.input)} is a ${typeof issue.input}, but label values are strings: quote it ("${String(issue.input)}")`
        : `${describeValue(issue.input)} is not a label value; use a string`,
});

/** Labels as `key: value`. */
const labelsSchema = z.record(z.string().min(1), labelValueSchema).meta({ description: "Labels as key: value (values are strings; quote numbers and booleans)." });

/** An http(s) URL. */
function urlSchema(description: string) {
  return checkedString(parseHttpUrl, "an http(s) URL").meta({ description, format: "uri", pattern: "^https?://" });
}

/** Every step kind: the agents' host faults and the control plane's cloud faults. */
type StepFaultKind = FaultKind | (typeof CLOUD_FAULT_KINDS)[number];
const STEP_FAULT_KINDS = [...FAULT_KINDS, ...CLOUD_FAULT_KINDS] as StepFaultKind[] as [StepFaultKind, ...StepFaultKind[]];

const faultKindSchema = z
  .enum(STEP_FAULT_KINDS, {
    error: (issue) =>
      issue.input === undefined
        ? `is required; use one of: ${STEP_FAULT_KINDS.join(", ")}`
        : `${describeValue(issue.input)} is not a known fault kind; use one of: ${STEP_FAULT_KINDS.join(", ")}`,
  })
  .meta({
    description:
      "The fault to inject: a host fault run by the agents (see docs/faults/<kind>.md for its parameters), or ec2-terminate / ec2-stop / ec2-reboot, run by the control plane on the group's EC2 instances, or aws-network-disrupt, run by the control plane on the subnets its params choose (an Availability Zone outage; see docs/aws.md and docs/faults/aws-network-disrupt.md).",
  });

/** Host facts a selector may match, exactly or with `*` globs. */
export const SELECTOR_FACTS = ["hostname", "osPlatform", "osDistro", "arch", "instanceId", "availabilityZone", "region"] as const;

const factValueSchema = z.string().min(1).meta({ description: "An exact value, or a glob where * matches any characters (e.g. web-*)." });

/** A tag value: always a string (YAML reads `8080` and `true` as other types). */
const tagValueSchema = z.string({
  error: (issue) =>
    issue.input === undefined
      ? "is required"
      : typeof issue.input === "number" || typeof issue.input === "boolean"
        ? `${String(issue.input)} is a ${typeof issue.input}, but tag values are strings: quote it ("${String(issue.input)}")`
        : `${describeValue(issue.input)} is not a tag value; use a string`,
});

/** EC2 filters firedrill sets itself. */
export const RESERVED_AWS_FILTERS = ["instance-state-name"] as const;

const awsSelectorSchema = strict({
  region: checkedString(parseAwsRegion, "an AWS region such as eu-west-1")
    .optional()
    .meta({ description: "The region; the control plane's default (AWS_REGION, its profile) when absent.", pattern: AWS_REGION_PATTERN }),
  tags: z
    .record(z.string().min(1).max(128), tagValueSchema)
    .optional()
    .meta({ description: "Tags the instance must carry, with exactly these values (sent as tag:KEY filters)." }),
  autoScalingGroups: z
    .array(z.string().min(1).max(255))
    .min(1)
    .optional()
    .meta({ description: "Auto Scaling group names: instances in any of them (each must exist)." }),
  instanceIds: z
    .array(checkedString(parseInstanceId, "an EC2 instance id such as i-0abc123def4567890").meta({ pattern: INSTANCE_ID_PATTERN }))
    .min(1)
    .optional()
    .meta({ description: "Explicit instance ids." }),
  filters: z
    .array(
      strict({
        name: z.string().min(1).meta({ description: "An EC2 DescribeInstances filter name, e.g. instance-type, availability-zone, tag:team." }),
        values: z.array(z.string()).min(1).meta({ description: "Values; any of them matches." }),
      }).meta({ description: "A raw EC2 DescribeInstances filter." }),
    )
    .min(1)
    .optional()
    .meta({ description: "Raw EC2 DescribeInstances filters (instance-state-name is set by firedrill: running instances only)." }),
}).meta({
  description:
    "EC2 instances (running only), resolved with DescribeInstances and DescribeAutoScalingGroups at run start. Every criterion given must match; give at least one besides region. Instances are matched to agents by instance id, so the group can take host faults and ec2-terminate / ec2-stop.",
  anyOf: [{ required: ["tags"] }, { required: ["autoScalingGroups"] }, { required: ["instanceIds"] }, { required: ["filters"] }],
});

const selectorSchema = strict({
  labels: labelsSchema.optional().meta({ description: "Labels the agent must carry, with exactly these values." }),
  facts: strict(Object.fromEntries(SELECTOR_FACTS.map((f) => [f, factValueSchema.optional()])) as Record<(typeof SELECTOR_FACTS)[number], z.ZodOptional<typeof factValueSchema>>)
    .optional()
    .meta({ description: "Host facts the agent must match; values are exact or globs with *." }),
  agentIds: z.array(z.string().min(1)).min(1).optional().meta({ description: "Explicit agent ids (see `firedrill agents`)." }),
  aws: awsSelectorSchema.optional(),
}).meta({
  description: "Which agents the group may contain. Every criterion given must match; give at least one.",
  minProperties: 1,
});

const modeSchema = strict({
  count: z.number().int().min(1).optional().meta({ description: "Pick this many hosts at random." }),
  percent: z.number().min(1).max(100).optional().meta({ description: "Pick this percent of the eligible hosts (rounded up, at least 1)." }),
  all: z
    .literal(true, { error: (issue) => `${describeValue(issue.input)} is not allowed; use all: true to take every eligible host, or count / percent` })
    .optional()
    .meta({ description: "Take every eligible host." }),
}).meta({ description: "How many of the eligible hosts to take: exactly one of count, percent, all.", minProperties: 1, maxProperties: 1 });

const targetSchema = strict({
  selector: selectorSchema,
  mode: modeSchema,
  allowFewer: z
    .boolean()
    .optional()
    .meta({
      description:
        "With mode count: run on the eligible hosts (or EC2 instances) there are when fewer than count can be targeted (at least one). Without it, such a group is refused, naming both numbers. Default false.",
    }),
}).meta({ description: "A target group: which agents, and how many of them." });

const stepSchema = strict({
  name: nameSchema("step"),
  fault: faultKindSchema.optional(),
  target: z.string().min(1).optional().meta({ description: "The target group the fault runs on (a key of spec.targets)." }),
  params: z.record(z.string(), z.unknown()).optional().meta({ description: "The fault's parameters; see docs/faults/<kind>.md." }),
  duration: durationSchema(
    { min: MIN_FAULT_DURATION_MS, max: MAX_FAULT_DURATION_MS },
    "How long the fault lasts: 1s to 12h (optional for ec2-terminate and ec2-reboot: how long the step lasts after the call).",
  ).optional(),
  wait: durationSchema({ min: MIN_FAULT_DURATION_MS, max: MAX_FAULT_DURATION_MS }, "A wait step: how long to wait, 1s to 12h.").optional(),
  startAfter: z
    .array(z.string().min(1))
    .optional()
    .meta({ description: "Steps that must have ended before this one starts. Steps without startAfter start at once." }),
}).meta({
  description: "A step: either a fault (fault, target, params, duration) or a wait (wait).",
  oneOf: [
    {
      required: ["fault", "target"],
      not: { required: ["wait"] },
      anyOf: [{ required: ["duration"] }, { properties: { fault: { enum: ["ec2-terminate", "ec2-reboot"] } } }],
    },
    { required: ["wait"], not: { anyOf: [{ required: ["fault"] }, { required: ["target"] }, { required: ["params"] }, { required: ["duration"] }] } },
  ],
});

const statusSchema = z.number().int().min(100).max(599);

const httpStopSchema = strict({
  url: urlSchema("The endpoint to probe."),
  method: z.enum(["GET", "HEAD", "POST"]).default("GET"),
  expectStatus: z
    .union([statusSchema, z.array(statusSchema).min(1)])
    .default(200)
    .meta({ description: "Healthy status code(s): a number or a list." }),
  timeoutMs: z.number().int().min(1).max(60_000).default(1000).meta({ description: "Slower answers count as failures (ms)." }),
  failuresToAbort: z.number().int().min(1).max(1000).default(3).meta({ description: "Consecutive failures that abort the run." }),
  intervalMs: z.number().int().min(100).max(3_600_000).default(1000).meta({ description: "Probe interval (ms)." }),
}).meta({ description: "Abort when the endpoint fails to answer an expected status, failuresToAbort times in a row." });

const prometheusStopSchema = strict({
  url: urlSchema("Prometheus base URL, e.g. http://prometheus:9090."),
  query: z.string().min(1).meta({ description: "An instant query; any sample it returns is a breach." }),
  intervalMs: z.number().int().min(100).max(3_600_000).default(5000).meta({ description: "Query interval (ms)." }),
  timeoutMs: z.number().int().min(1).max(60_000).default(3000).meta({ description: "Query timeout (ms)." }),
}).meta({ description: "Abort when the query returns any sample." });

const alertStopSchema = strict({
  matchLabels: labelsSchema.meta({ description: "Labels a firing alert must carry (at least one).", minProperties: 1 }),
}).meta({ description: "Abort when Alertmanager pushes a firing alert carrying all of matchLabels." });

const cloudwatchAlarmStopSchema = strict({
  names: z
    .array(z.string().min(1).max(255))
    .min(1)
    .max(100)
    .meta({ description: "Names of CloudWatch metric or composite alarms (at most 100)." }),
  region: checkedString(parseAwsRegion, "an AWS region such as eu-west-1")
    .optional()
    .meta({ description: "The alarms' region; the control plane's default (AWS_REGION, its profile) when absent.", pattern: AWS_REGION_PATTERN }),
  intervalMs: z.number().int().min(1000).max(3_600_000).default(5000).meta({ description: "How often the alarms are read (ms)." }),
}).meta({
  description: "Abort when any of the alarms is in ALARM. A missing alarm or a failed DescribeAlarms 3 times in a row aborts too.",
});

const stopConditionSchema = strict({
  http: httpStopSchema.optional(),
  prometheus: prometheusStopSchema.optional(),
  alert: alertStopSchema.optional(),
  cloudwatchAlarm: cloudwatchAlarmStopSchema.optional(),
}).meta({ description: "A stop condition: exactly one of http, prometheus, alert, cloudwatchAlarm.", minProperties: 1, maxProperties: 1 });

const daysSchema = z
  .union([z.string(), z.array(z.string()).min(1)])
  .superRefine((days, ctx) => {
    const parsed = parseDays(days);
    if (!parsed.ok) ctx.addIssue({ code: "custom", message: parsed.message, input: days });
  })
  .meta({ description: `Days of the week: "mon-fri", "sat,sun", or a list such as [mon, wed]. Days: ${WEEKDAYS.join(", ")}.` });

const windowSchema = strict({
  days: daysSchema,
  hours: checkedString(parseHours, `an hour range HH:MM-HH:MM, e.g. "10:00-16:00"`).meta({
    description: "Start and end time, HH:MM-HH:MM in 24-hour time, start before end (24:00 may end a range).",
    pattern: HOURS_PATTERN,
  }),
  tz: checkedString(parseTimeZone, "an IANA time zone such as Europe/Berlin")
    .default("UTC")
    .meta({ description: "IANA time zone of days and hours." }),
}).meta({ description: "A time window in which a run may start." });

const guardrailsShape = {
  optInLabel: checkedString((t) => parseLabelTerm(t, { keyOnly: false }), `a label key=value, e.g. "firedrill:opt-in=true"`)
    .optional()
    .meta({ description: "A label (key=value) every target must carry, in addition to the server policy's." }),
  excludeLabels: z
    .array(checkedString((t) => parseLabelTerm(t, { keyOnly: true }), "a label: key=value, or a key alone"))
    .optional()
    .meta({ description: "Agents carrying any of these labels (key=value, or key for any value) are never targeted." }),
  maxTargets: z.number().int().min(1).optional().meta({ description: "Most hosts per target group." }),
  maxPercent: z.number().min(1).max(100).optional().meta({ description: "Most percent of the matching hosts per target group." }),
  window: windowSchema.optional(),
  windows: z.array(windowSchema).min(1).optional().meta({ description: "Allowed windows: a run may start inside any of them." }),
  blackoutDates: z
    .array(checkedString(parseDate, "a date YYYY-MM-DD").meta({ pattern: DATE_PATTERN }))
    .optional()
    .meta({ description: "Dates (YYYY-MM-DD, in the windows' time zone, else UTC) on which no run may start." }),
  maxDuration: durationSchema({ min: MIN_FAULT_DURATION_MS }, "Longest total duration: the critical path of the step DAG.").optional(),
  optInTag: checkedString((t) => parseTagTerm(t, { keyOnly: false }), `a tag key=value, e.g. "firedrill:opt-in=true"`)
    .optional()
    .meta({ description: "An EC2 tag (key=value) every instance acted on must carry, in addition to the server policy's (default firedrill:opt-in=true)." }),
  excludeTags: z
    .array(checkedString((t) => parseTagTerm(t, { keyOnly: true }), "a tag: key=value, or a key alone"))
    .optional()
    .meta({ description: "EC2 instances carrying any of these tags (key=value, or key for any value) are never acted on." }),
  minHealthy: z
    .number()
    .int()
    .min(0)
    .optional()
    .meta({ description: "Never leave an Auto Scaling group with fewer InService instances than max(MinSize, minHealthy), counted at each kill (policy default 1)." }),
  maxPercentOfGroup: z
    .number()
    .min(1)
    .max(100)
    .optional()
    .meta({ description: "Most percent of an Auto Scaling group's desired capacity one run may terminate." }),
  minTimeBetweenTerminations: durationSchema(
    { min: MIN_FAULT_DURATION_MS },
    "Least time between two terminations in one Auto Scaling group, by any run or schedule (recorded before each kill).",
  ).optional(),
};

/** `spec.guardrails` of an experiment. */
export const guardrailsSchema = strict(guardrailsShape).meta({
  description: "Limits on this experiment; the server policy applies too, and the stricter rule wins.",
});

/** The server's guardrail policy file: the shape of `spec.guardrails` plus `maxConcurrentRuns`. */
export const policySchema = strict({
  ...guardrailsShape,
  maxConcurrentRuns: z.number().int().min(1).optional().meta({ description: "Most runs at once on this control plane." }),
}).meta({ description: "The firedrill server's guardrail policy. Where an experiment sets the same rule, the stricter wins." });

/** A whole experiment file. */
export const experimentSchema = strict({
  apiVersion: z.literal("firedrill/v1"),
  kind: z.literal("Experiment"),
  metadata: strict({
    name: nameSchema("experiment"),
    labels: labelsSchema.optional(),
    description: z.string().optional(),
  }),
  spec: strict({
    hypothesis: z
      .string({
        error: (issue) =>
          issue.input === undefined
            ? `is required: say what should stay true while the faults run, e.g. "checkout keeps >= 99% success"`
            : `${describeValue(issue.input)} is not a sentence; write the hypothesis as a string`,
      })
      .min(1)
      .meta({ description: "What should stay true while the faults run." }),
    targets: z.record(nameSchema("target group"), targetSchema).meta({ description: `Named target groups (at most ${MAX_TARGET_GROUPS}).`, minProperties: 1, maxProperties: MAX_TARGET_GROUPS }),
    steps: z
      .array(stepSchema)
      .min(1)
      .max(MAX_STEPS, { error: (issue) => `lists ${listed(issue.input, MAX_STEPS)} steps; an experiment may have at most ${MAX_STEPS}: split it into smaller experiments` })
      .meta({ description: `The steps: a DAG ordered by startAfter (at most ${MAX_STEPS}).` }),
    stopConditions: z
      .array(stopConditionSchema)
      .max(MAX_STOP_CONDITIONS, { error: (issue) => `lists ${listed(issue.input, MAX_STOP_CONDITIONS)} stop conditions; an experiment may have at most ${MAX_STOP_CONDITIONS}` })
      .optional()
      .meta({ description: `Conditions that abort the run and revert every fault (at most ${MAX_STOP_CONDITIONS}).` }),
    guardrails: guardrailsSchema.optional(),
  }),
}).meta({ title: "firedrill experiment", description: "A chaos experiment: targets, steps, stop conditions and guardrails." });

/** The validated (not yet normalized) experiment file. */
export type ExperimentInput = z.output<typeof experimentSchema>;
/** The validated guardrails of a file. */
export type GuardrailsInput = z.output<typeof guardrailsSchema>;
/** The validated policy file. */
export type PolicyInput = z.output<typeof policySchema>;
