/**
 * The contract of firedrill's AWS side: resolving instances, acting on them inside the guardrails,
 * and reading CloudWatch alarms. Implemented by aws/service.ts on the AWS SDK v3 clients (which
 * tests replace with aws-sdk-client-mock); used by the experiment runner, `plan`, the schedules and
 * the SPOF finder.
 */
import type { NetworkDisrupter } from "./network-disrupt.js";

/** Which EC2 instances a target group takes. All given criteria must match. */
export interface AwsSelector {
  /** Region; the SDK's default chain (AWS_REGION, profile) when absent. */
  region?: string;
  /** Tags the instance must carry (exact values). */
  tags?: Record<string, string>;
  /** Instances in any of these Auto Scaling groups. */
  autoScalingGroups?: string[];
  /** Explicit instance ids. */
  instanceIds?: string[];
  /** Raw EC2 DescribeInstances filters, e.g. { name: "instance-type", values: ["t3.micro"] }. */
  filters?: { name: string; values: string[] }[];
}

/** A running instance, as resolved. */
export interface AwsInstance {
  instanceId: string;
  region: string;
  availabilityZone: string;
  /** EC2 state name; resolution keeps only "running". */
  state: string;
  tags: Record<string, string>;
  /** The Auto Scaling group the instance belongs to, if any (tag aws:autoscaling:groupName). */
  autoScalingGroup?: string;
}

/** An Auto Scaling group, as it is now. */
export interface AwsGroupState {
  name: string;
  region: string;
  minSize: number;
  maxSize: number;
  desiredCapacity: number;
  /** Instances with LifecycleState InService (and HealthStatus Healthy). */
  inService: string[];
  /** Every instance of the group, any state. */
  instances: { instanceId: string; availabilityZone: string; lifecycleState: string; healthStatus: string }[];
  availabilityZones: string[];
}

/** Guardrails that apply to actions on instances. Merged policy + experiment: the stricter wins. */
export interface AwsGuardrails {
  /** Tag every instance must carry, "key=value". @default "firedrill:opt-in=true" */
  optInTag: string;
  /**
   * Further "key=value" tags every instance must carry (the experiment's own optInTag when it names
   * another than the policy's: both apply, the stricter wins). @default []
   */
  requiredTags?: string[];
  /** Instances carrying any of these tags ("key=value" or "key") are never touched. */
  excludeTags: string[];
  /** Never leave an ASG with fewer InService instances than max(MinSize, minHealthy). @default 1 */
  minHealthy: number;
  /** Most percent of a group's InService instances one run may act on. */
  maxPercentOfGroup?: number;
  /** Least time between two terminations in one group (recorded before the call). */
  minTimeBetweenTerminationsMs?: number;
}

/** What happened to one instance. Partial failures are reported per instance, never hidden. */
export interface InstanceActionResult {
  instanceId: string;
  action: "terminate" | "stop" | "start" | "reboot" | "disrupt";
  /** True when AWS accepted the call (or, with dryRun, when it would have). */
  ok: boolean;
  /** For a refusal by a guardrail: which rule and why. For an AWS error: the code and message. */
  error?: string;
  /** "guardrail" refusals never reached AWS. */
  refusedBy?: "guardrail" | "aws";
  autoScalingGroup?: string;
  /** The API call made, e.g. "TerminateInstanceInAutoScalingGroup". */
  call?: string;
  /**
   * What the result does not prove, in plain words; e.g. with dryRun on an ASG member:
   * TerminateInstanceInAutoScalingGroup has no DryRun, so its permission was not checked.
   */
  note?: string;
}

/** Who or what asked for an action, for the termination ledger. */
export interface ActionContext {
  actor: string;
  runId?: string;
  scheduleId?: string;
  guardrails: AwsGuardrails;
  /** Call with DryRun (where EC2 supports it) to check permissions; nothing changes. */
  dryRun?: boolean;
  /** The run's step that acts, written with a reversible action's revert in the cloud-revert journal. */
  step?: string;
  /**
   * When a reversible action (a stop) is due to be reverted on its own: the end of its step. The
   * journal's reconciler reverts it after that even if nothing asks (e.g. the runner is gone).
   */
  revertDueAt?: number;
}

/** A CloudWatch alarm's state. */
export interface AlarmState {
  name: string;
  /** "OK" | "ALARM" | "INSUFFICIENT_DATA", or "MISSING" when no such alarm exists. */
  state: string;
  reason: string;
  type: "metric" | "composite" | "missing";
}

/** firedrill's AWS operations. */
export interface AwsService {
  /** Running instances matching the selector (every page of every call). */
  resolveInstances(selector: AwsSelector): Promise<AwsInstance[]>;
  /** Groups by name (every page). Unknown names are absent from the result. */
  describeGroups(names: string[], region?: string): Promise<AwsGroupState[]>;
  /** Every group in a region (every page), for the SPOF finder. */
  listGroups(region?: string): Promise<AwsGroupState[]>;
  /**
   * Terminates instances: in an ASG with TerminateInstanceInAutoScalingGroup without decrementing
   * the desired capacity (so the group replaces it), otherwise TerminateInstances. For each
   * instance, at the moment of the kill: its tags and state are read again (DescribeInstances for
   * that id) and its group (DescribeAutoScalingGroups); then the opt-in/exclusion tags, the
   * group's InService count against max(MinSize, minHealthy), max percent of the group, and the
   * min time between terminations are checked and the kill recorded in one transaction before the
   * call; a failed record blocks the kill. Throttling and transient errors are retried with backoff.
   */
  terminate(instances: AwsInstance[], ctx: ActionContext): Promise<InstanceActionResult[]>;
  /**
   * What {@link terminate} would do now, calling and recording nothing: the same reads and every
   * guardrail at this moment. `ok` (with a note) when the kill would be made, else the refusal.
   * Leashed Chaos-Monkey uses it.
   */
  checkTerminate(instances: AwsInstance[], ctx: ActionContext): Promise<InstanceActionResult[]>;
  /**
   * Stops instances (StopInstances): each instance's tags and state are read again right before,
   * and the tag guardrails and group membership checked in the transaction that records the stop.
   */
  stop(instances: AwsInstance[], ctx: ActionContext): Promise<InstanceActionResult[]>;
  /**
   * Reboots instances (RebootInstances): like {@link stop}, each instance's tags and state are read
   * again right before and the tag guardrails checked in the transaction that records the reboot.
   * Nothing to revert: a reboot ends by itself. Auto Scaling group members may be rebooted.
   */
  reboot?(instances: AwsInstance[], ctx: ActionContext): Promise<InstanceActionResult[]>;
  /** aws-network-disrupt's side (network-disrupt.ts): subnets, the run's deny-all NACL, its journal entries. */
  readonly network?: NetworkDisrupter;
  /** Starts instances stopped by firedrill (StartInstances). */
  start(instances: AwsInstance[], ctx: Omit<ActionContext, "guardrails">): Promise<InstanceActionResult[]>;
  /**
   * The region a call without one goes to (`explicit`, else the configured or SDK default).
   * Thrown without one: AwsRegionError.
   */
  region?(explicit?: string): Promise<string>;
  /** States of metric and composite alarms by name. */
  alarmStates(names: string[], region?: string): Promise<AlarmState[]>;
}
