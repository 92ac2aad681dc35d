/**
 * `cloudwatchAlarm` stop condition: reads the named metric and composite alarms (DescribeAlarms)
 * every `intervalMs`. Any alarm in ALARM is a breach, at once, naming the alarm and its
 * StateReason. An alarm that does not exist, or a failed DescribeAlarms, is an unhealthy
 * observation; {@link CLOUDWATCH_ERRORS_TO_ABORT} consecutive ones are a breach (as for
 * prometheus), so one throttled call doesn't abort a run but a watch that stays blind does.
 * INSUFFICIENT_DATA is healthy: an alarm without data has not seen anything wrong.
 */
import type { CloudWatchAlarmStopConditionSpec } from "../experiments/types.js";
import type { AlarmState } from "../aws/types.js";
import { ordinal } from "./http.js";
import { createPollingWatcher } from "./poll.js";
import type { StopConditionKind, StopConditionStatus, StopConditionWatcher } from "./types.js";

/** Consecutive unhealthy observations (missing alarm, API error) that make a breach. */
export const CLOUDWATCH_ERRORS_TO_ABORT = 3;

/** What the status is when the control plane has no AWS service. */
export const NO_AWS_ACCESS = "the control plane has no AWS access configured";

type Outcome = { ok: true; alarms: AlarmState[] } | { ok: false; error: string };

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}

/** The status of a successful read: firing alarms first, then missing ones, else healthy. */
export function alarmsStatus(alarms: readonly AlarmState[]): StopConditionStatus & { firing: boolean } {
  const firing = alarms.filter((a) => a.state === "ALARM");
  if (firing.length > 0) {
    const why = firing.map((a) => `${a.type === "composite" ? "composite alarm" : "alarm"} ${a.name} is in ALARM${a.reason ? `: ${oneLine(a.reason)}` : ""}`);
    return { healthy: false, firing: true, detail: why.join("; "), value: firing.length };
  }
  const missing = alarms.filter((a) => a.state === "MISSING");
  if (missing.length > 0) {
    return {
      healthy: false,
      firing: false,
      detail: `${missing.map((a) => a.reason || `no alarm named ${a.name}`).join("; ")}; check the name and the region`,
      value: 0,
    };
  }
  const states = alarms.map((a) => `${a.name} ${a.state}`).join(", ");
  return { healthy: true, firing: false, detail: `no alarm in ALARM (${states})`, value: 0 };
}

/** The `cloudwatchAlarm` kind. */
export const cloudwatchAlarmStopCondition: StopConditionKind<CloudWatchAlarmStopConditionSpec> = {
  kind: "cloudwatchAlarm",

  describe(spec) {
    return `cloudwatchAlarm ${spec.names.join(", ")}${spec.region ? ` (${spec.region})` : ""}`;
  },

  chart() {
    return { unit: "firing", threshold: 1, thresholdLabel: "firing" };
  },

  create(spec, ctx): StopConditionWatcher {
    const condition = cloudwatchAlarmStopCondition.describe(spec);
    const log = ctx.log.child({ component: "stop-condition", condition });
    const read = async (): Promise<Outcome> => {
      if (!ctx.aws) return { ok: false, error: NO_AWS_ACCESS };
      try {
        return { ok: true, alarms: await ctx.aws.alarmStates(spec.names, spec.region) };
      } catch (err) {
        // AwsCallError / AwsRegionError messages already name the call, the region and what to do.
        return { ok: false, error: err instanceof Error ? err.message : `DescribeAlarms failed: ${String(err)}` };
      }
    };
    const statusOf = (outcome: Outcome): StopConditionStatus & { firing: boolean } =>
      outcome.ok ? alarmsStatus(outcome.alarms) : { healthy: false, firing: false, detail: outcome.error, value: null };

    let errors = 0;
    return createPollingWatcher({
      condition,
      intervalMs: spec.intervalMs,
      log,
      now: ctx.now ?? Date.now,
      async check() {
        const { healthy, detail, value } = statusOf(await read());
        return { healthy, detail, value: value ?? null };
      },
      async observe() {
        const { healthy, firing, detail, value = null } = statusOf(await read());
        if (healthy || firing) {
          if (errors > 0 && healthy) log.info({ errorsBefore: errors }, "CloudWatch alarms readable again");
          errors = 0;
          return { status: { healthy, detail, value }, breach: firing };
        }
        errors += 1;
        const counted = `${detail} (${ordinal(errors)} consecutive error; ${CLOUDWATCH_ERRORS_TO_ABORT} abort the run)`;
        log.warn({ detail }, "CloudWatch alarm watch is unhealthy");
        return { status: { healthy: false, detail: counted, value }, breach: errors >= CLOUDWATCH_ERRORS_TO_ABORT };
      },
    });
  },
};
