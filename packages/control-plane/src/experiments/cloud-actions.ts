/**
 * Cloud actions in a run's timeline and report: each terminate / stop (and any later action on an
 * instance) the run asked AWS for, with its step, instance, result and why, and the irreversible
 * ones (terminations) called out.
 */
import type { InstanceActionResult } from "../aws/types.js";
import type { RunEvent } from "../store/run-store.js";

/** One cloud action of a run, as the report lists it. */
export interface ReportCloudAction {
  /** When its result was recorded (epoch ms). */
  time: number;
  step: string | null;
  /** `terminate`, `stop`, … */
  action: string;
  /** The API call, e.g. `TerminateInstanceInAutoScalingGroup`. */
  call: string | null;
  instanceId: string;
  autoScalingGroup: string | null;
  /** `done`: AWS accepted it; `refused`: a guardrail refused it (AWS was not called); `failed`: AWS did not accept it. */
  result: "done" | "refused" | "failed";
  /** The refusal or the AWS error. */
  error: string | null;
  /** True for a termination AWS accepted: nothing brings the instance back. */
  irreversible: boolean;
  /** The whole line, in words. */
  text: string;
}

const resultOf = (r: InstanceActionResult): ReportCloudAction["result"] => (r.ok ? "done" : r.refusedBy === "guardrail" ? "refused" : "failed");

/** What the action left, for a line: who replaces a terminated instance, when a stopped one starts. */
function consequence(r: InstanceActionResult): string {
  if (!r.ok) return "";
  if (r.action === "terminate") {
    return r.autoScalingGroup
      ? "; IRREVERSIBLE: terminated (its Auto Scaling group launches a replacement)"
      : "; IRREVERSIBLE: terminated, and it is in no Auto Scaling group: nothing replaces it";
  }
  if (r.action === "stop") return "; started again when the step ends or the run stops";
  if (r.action === "reboot") return "; it comes back by itself (nothing to revert)";
  if (r.action === "disrupt") return `${r.note ? ` (${r.note})` : ""}; its own network ACL is restored when the step ends or the run stops`;
  return "";
}

/** The timeline line of one action's result. */
export function describeCloudAction(r: InstanceActionResult): string {
  const what = `${r.call ?? r.action} ${r.instanceId}${r.autoScalingGroup ? ` (${r.autoScalingGroup})` : ""}`;
  const result = resultOf(r);
  if (result === "done") return `${what}: done${consequence(r)}`;
  if (result === "refused") return `${what}: refused by a guardrail at the moment of the action, AWS was not called: ${r.error ?? "no reason given"}`;
  return `${what}: failed: ${r.error ?? "unknown error"}`;
}

/**
 * The step-ended line of an ec2-terminate step: only instances in an Auto Scaling group are
 * replaced; a standalone one is gone for good.
 */
export function describeTerminations(results: readonly InstanceActionResult[]): string {
  const done = results.filter((r) => r.ok);
  const inGroup = done.filter((r) => r.autoScalingGroup);
  const alone = done.filter((r) => !r.autoScalingGroup);
  const n = (k: number) => `${k} instance${k === 1 ? "" : "s"}`;
  const parts = [`terminated ${n(done.length)} (irreversible)`];
  if (inGroup.length > 0) {
    const groups = [...new Set(inGroup.map((r) => r.autoScalingGroup!))];
    parts.push(`${groups.length === 1 ? `Auto Scaling group ${groups[0]!} replaces` : `their Auto Scaling groups (${groups.join(", ")}) replace`} ${inGroup.length === done.length ? (done.length === 1 ? "it" : "them") : inGroup.map((r) => r.instanceId).join(", ")}`);
  }
  if (alone.length > 0) {
    parts.push(`${alone.map((r) => r.instanceId).join(", ")} ${alone.length === 1 ? "is" : "are"} in no Auto Scaling group: nothing replaces ${alone.length === 1 ? "it" : "them"}`);
  }
  return parts.join("; ");
}

function isActionResult(data: unknown): data is InstanceActionResult {
  const d = data as Partial<InstanceActionResult> | null;
  return typeof d === "object" && d !== null && typeof d.instanceId === "string" && typeof d.action === "string" && typeof d.ok === "boolean";
}

/** Whether a timeline event is a cloud action a guardrail refused or AWS did not accept (for "what broke"). */
export function isRefusedCloudAction(e: RunEvent): boolean {
  return e.type === "cloud-action" && isActionResult(e.data) && !e.data.ok;
}

/** Every cloud action of a run, in time order, from its timeline (`cloud-action` events). */
export function cloudActionsOf(events: readonly RunEvent[]): ReportCloudAction[] {
  const out: ReportCloudAction[] = [];
  for (const e of events) {
    if (e.type !== "cloud-action" || !isActionResult(e.data)) continue;
    const r = e.data;
    const result = resultOf(r);
    out.push({
      time: e.time,
      step: e.step,
      action: r.action,
      call: r.call ?? null,
      instanceId: r.instanceId,
      autoScalingGroup: r.autoScalingGroup ?? null,
      result,
      error: r.error ?? null,
      irreversible: r.ok && r.action === "terminate",
      text: describeCloudAction(r),
    });
  }
  return out.sort((a, b) => a.time - b.time);
}
