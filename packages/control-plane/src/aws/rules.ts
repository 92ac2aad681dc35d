/**
 * The AWS guardrail rules as pure functions, shared by the kill-time checks (service.ts, inside
 * the ledger transaction) and `plan` (plan-checks.ts), so both say the same thing the same way.
 */
import { formatDuration } from "@firedrill/protocol";
import { hasLabel } from "../experiments/spec-values.js";
import type { AwsGuardrails, AwsInstance } from "./types.js";

/** The tag that names an instance's Auto Scaling group. */
export const ASG_TAG = "aws:autoscaling:groupName";

/** The opt-in tag required when nothing else is configured. */
export const DEFAULT_OPT_IN_TAG = "firedrill:opt-in=true";

/** The InService floor when nothing else is configured. */
export const DEFAULT_MIN_HEALTHY = 1;

/** Every tag an instance must carry: the opt-in tag and any further required ones. */
export function requiredTagsOf(guardrails: AwsGuardrails): string[] {
  return [...new Set([guardrails.optInTag, ...(guardrails.requiredTags ?? [])].filter((t) => t !== ""))];
}

/**
 * Why the tag guardrails refuse an instance (a missing opt-in tag, an exclusion tag), or undefined
 * when they allow it.
 */
export function tagRefusal(instance: Pick<AwsInstance, "tags">, guardrails: AwsGuardrails): { rule: "opt-in-tag" | "exclusion-tags"; reason: string } | undefined {
  const missing = requiredTagsOf(guardrails).filter((t) => !hasLabel(instance.tags, t));
  if (missing.length > 0) {
    return { rule: "opt-in-tag", reason: `lacks the opt-in tag ${missing.join(" and ")}; tag the instance (or its ASG, propagated to instances) to let firedrill act on it` };
  }
  const excluded = guardrails.excludeTags.filter((t) => hasLabel(instance.tags, t));
  if (excluded.length > 0) return { rule: "exclusion-tags", reason: `carries the exclusion tag ${excluded.join(", ")}` };
  return undefined;
}

/** The InService floor of a group: max(MinSize, minHealthy). */
export function floorOf(minSize: number, guardrails: AwsGuardrails): number {
  return Math.max(minSize, guardrails.minHealthy);
}

/** Why the floor refuses a kill that would leave `after` InService instances, or undefined. */
export function floorRefusal(group: string, inServiceNow: number, after: number, minSize: number, guardrails: AwsGuardrails): string | undefined {
  const floor = floorOf(minSize, guardrails);
  if (after >= floor) return undefined;
  return `would leave ${group} with ${after} InService instance${after === 1 ? "" : "s"} (${inServiceNow} now), below max(MinSize ${minSize}, minHealthy ${guardrails.minHealthy}) = ${floor}`;
}

/** Why max percent of group refuses the `(prior + 1)`th kill in a group of `desired`, or undefined. */
export function percentRefusal(group: string, prior: number, desired: number, guardrails: AwsGuardrails): string | undefined {
  const max = guardrails.maxPercentOfGroup;
  if (max === undefined) return undefined;
  const base = Math.max(desired, 1);
  const total = prior + 1;
  if (total * 100 <= max * base + 1e-9) return undefined;
  const pct = Math.round((total / base) * 1000) / 10;
  return `would make ${total} of ${group}'s ${base} desired instance${base === 1 ? "" : "s"} (${pct}%) acted on by this run, over maxPercentOfGroup ${max}%`;
}

/** Why min time between terminations refuses a kill at `now`, or undefined. */
export function intervalRefusal(group: string, lastAt: number | undefined, now: number, guardrails: AwsGuardrails): string | undefined {
  const min = guardrails.minTimeBetweenTerminationsMs;
  if (min === undefined || lastAt === undefined) return undefined;
  const since = now - lastAt;
  if (since >= min) return undefined;
  return `${group} had a termination ${since < 1000 ? "just now" : `${formatDuration(since)} ago`} (${new Date(lastAt).toISOString()}); minTimeBetweenTerminations is ${formatDuration(min)}, so the next one may happen at ${new Date(lastAt + min).toISOString()}`;
}
