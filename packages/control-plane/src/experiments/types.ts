/**
 * The experiment model after parsing: what `firedrill validate` accepts and `plan` / `run` use.
 * Durations are milliseconds; every field has its default filled in.
 */
import type { JsonObject } from "@firedrill/protocol";
import type { AwsSelector } from "../aws/types.js";

export type { AwsSelector } from "../aws/types.js";

/** Which agents a target group may contain. All given criteria must match. */
export interface AgentSelector {
  /** Labels the agent must carry (exact values). */
  labels?: Record<string, string>;
  /**
   * Host facts the agent must match: `hostname`, `osPlatform`, `osDistro`, `arch`, `instanceId`,
   * `availabilityZone`, `region`. Values are exact, or a glob with `*`.
   */
  facts?: Record<string, string>;
  /** Explicit agent ids. */
  agentIds?: string[];
  /**
   * EC2 instances (resolved with DescribeInstances / DescribeAutoScalingGroups at run start).
   * Instances are matched to agents by the instance id agents report, so one target can take
   * host faults (on the matched agents) and ec2-terminate / ec2-stop (on the instances).
   */
  aws?: AwsSelector;
}

/** How many of the matching agents to take (picked at random, once, at run start). */
export type TargetMode = { count: number } | { percent: number } | { all: true };

/** A named target group. */
export interface TargetSpec {
  selector: AgentSelector;
  mode: TargetMode;
  /**
   * With `count`, run on the eligible hosts (or instances) there are when fewer than `count`
   * (at least one); without it such a group is refused. @default false
   */
  allowFewer?: boolean;
}

/** A step that injects a fault on every host of a target group. */
export interface FaultStep {
  type: "fault";
  name: string;
  fault: string;
  target: string;
  params: JsonObject;
  durationMs: number;
  /** Names of steps that must have ended before this one starts (a DAG). */
  startAfter: string[];
}

/** A step that only waits. */
export interface WaitStep {
  type: "wait";
  name: string;
  durationMs: number;
  startAfter: string[];
}

/** A step of an experiment. */
export type Step = FaultStep | WaitStep;

/** `http` stop condition: the endpoint must answer `expectStatus` within `timeoutMs`. */
export interface HttpStopConditionSpec {
  url: string;
  /** @default "GET" */
  method: "GET" | "HEAD" | "POST";
  /** Healthy statuses. @default [200] */
  expectStatus: number[];
  /** Latency bound: slower counts as a failure. @default 1000 */
  timeoutMs: number;
  /** Consecutive failures that make a breach. @default 3 */
  failuresToAbort: number;
  /** Probe interval. @default 1000 */
  intervalMs: number;
}

/** `prometheus` stop condition: any sample returned by the instant query is a breach. */
export interface PrometheusStopConditionSpec {
  /** Prometheus base URL, e.g. http://prometheus:9090 */
  url: string;
  query: string;
  /** @default 5000 */
  intervalMs: number;
  /** @default 3000 */
  timeoutMs: number;
}

/** `alert` stop condition: a firing Alertmanager alert whose labels include `matchLabels` is a breach. */
export interface AlertStopConditionSpec {
  matchLabels: Record<string, string>;
}

/** `cloudwatchAlarm` stop condition: any of the named (metric or composite) alarms in ALARM is a breach. */
export interface CloudWatchAlarmStopConditionSpec {
  names: string[];
  /** The SDK's default region when absent. */
  region?: string;
  /** Poll interval. @default 5000 */
  intervalMs: number;
}

/** A stop condition: exactly one kind per entry. */
export type StopConditionSpec =
  | { kind: "http"; http: HttpStopConditionSpec }
  | { kind: "prometheus"; prometheus: PrometheusStopConditionSpec }
  | { kind: "alert"; alert: AlertStopConditionSpec }
  | { kind: "cloudwatchAlarm"; cloudwatchAlarm: CloudWatchAlarmStopConditionSpec };

/** An allowed time window. */
export interface WindowSpec {
  /** Days of the week, e.g. ["mon","tue","wed","thu","fri"] (parsed from "mon-fri" or a list). */
  days: string[];
  /** Minutes since midnight, [start, end), in `tz`. From "10:00-16:00". */
  startMinute: number;
  endMinute: number;
  /** IANA time zone, e.g. "Europe/Berlin". @default "UTC" */
  tz: string;
}

/**
 * Guardrails: limits on what an experiment may do. The server policy file has the same shape;
 * where both set a rule, the stricter wins.
 */
export interface GuardrailsSpec {
  /** Label every target must carry, as "key=value". Policy default: "firedrill:opt-in=true". */
  optInLabel?: string;
  /** Agents carrying any of these labels ("key=value" or "key" for any value) are never targeted. */
  excludeLabels?: string[];
  /** Most hosts per target group. */
  maxTargets?: number;
  /** Most percent of the matching hosts per target group. */
  maxPercent?: number;
  /** Allowed windows; a run may only start inside one of them. */
  windows?: WindowSpec[];
  /** Dates (YYYY-MM-DD, in the window's time zone, or UTC) when nothing may run. */
  blackoutDates?: string[];
  /** Longest total experiment duration (critical path of the step DAG). */
  maxDurationMs?: number;
  /** Most runs at once on this control plane (policy only). */
  maxConcurrentRuns?: number;
  /** Tag every EC2 instance acted on must carry, "key=value". Policy default: "firedrill:opt-in=true". */
  optInTag?: string;
  /** Instances carrying any of these tags ("key=value" or "key") are never touched. */
  excludeTags?: string[];
  /** Never take an ASG below max(MinSize, minHealthy) InService instances. @default 1 */
  minHealthy?: number;
  /** Most percent of an ASG's InService instances one run may act on. */
  maxPercentOfGroup?: number;
  /** Least time between two terminations in one ASG. */
  minTimeBetweenTerminationsMs?: number;
}

/** A parsed, valid experiment. */
export interface Experiment {
  apiVersion: "firedrill/v1";
  kind: "Experiment";
  metadata: { name: string; labels: Record<string, string>; description: string };
  spec: {
    hypothesis: string;
    targets: Record<string, TargetSpec>;
    steps: Step[];
    stopConditions: StopConditionSpec[];
    guardrails: GuardrailsSpec;
  };
}

/** One problem in an experiment file: path (`steps[2].params.load`), line, what is wrong and allowed. */
export interface SpecIssue {
  path: string;
  /** 1-based line in the YAML source, when known. */
  line?: number;
  /** 1-based column, for YAML syntax errors. */
  column?: number;
  message: string;
  /** On the last issue of a capped list: how many more problems were found but not listed. */
  omitted?: number;
}
