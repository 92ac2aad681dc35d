/**
 * `alert` stop condition: a firing Alertmanager alert whose labels include every `matchLabels`
 * pair is a breach. Push-based: the watcher subscribes to the alert receiver, so a breach is
 * seen the moment Alertmanager's webhook arrives. It also looks at the firing alerts every
 * {@link ALERT_SAMPLE_EVERY_MS}, so the condition's chart has a sample at least that often.
 */
import type { AlertStopConditionSpec } from "../experiments/types.js";
import type { FiringAlert, StopConditionKind, StopConditionStatus } from "./types.js";

/** `{severity="page",team="checkout"}`, keys sorted. */
export function formatMatchers(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  return `{${keys.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",")}}`;
}

/** True when `alert` carries every label of `matchLabels` with the same value (an empty set matches every alert). */
export function alertMatches(alert: FiringAlert, matchLabels: Record<string, string>): boolean {
  return Object.entries(matchLabels).every(([k, v]) => alert.labels[k] === v);
}

function describeAlert(alert: FiringAlert): string {
  const { alertname, ...rest } = alert.labels;
  return `${alertname ?? "alert"}${formatMatchers(rest)} firing since ${alert.startsAt}`;
}

/**
 * How often a started watcher looks at the firing alerts again when none was pushed: each look is
 * an observation (a sample of the condition's chart), and a breach if one matches.
 */
export const ALERT_SAMPLE_EVERY_MS = 5000;

/** `count`: how many match (the chart's value); the detail names at most 3 of `matching`. */
function matchingStatus(matching: FiringAlert[], matchers: string, count = matching.length): StopConditionStatus {
  if (matching.length === 0) return { healthy: true, detail: `no firing alert matches ${matchers}`, value: 0 };
  const shown = matching.slice(0, 3).map(describeAlert);
  const more = matching.length > 3 ? ` and ${matching.length - 3} more` : "";
  const noun = matching.length === 1 ? "alert matches" : "alerts match";
  return { healthy: false, detail: `${matching.length} firing ${noun} ${matchers}: ${shown.join("; ")}${more}`, value: count };
}

/** The `alert` kind. */
export const alertStopCondition: StopConditionKind<AlertStopConditionSpec> = {
  kind: "alert",

  describe(spec) {
    return `alert ${formatMatchers(spec.matchLabels)}`;
  },

  chart() {
    return { unit: "firing", threshold: 1, thresholdLabel: "firing" };
  },

  create(spec, ctx) {
    const condition = alertStopCondition.describe(spec);
    const matchers = formatMatchers(spec.matchLabels);
    const now = ctx.now ?? Date.now;
    const log = ctx.log.child({ component: "stop-condition", condition });
    const evaluate = (): StopConditionStatus =>
      matchingStatus(
        ctx.alerts.firing().filter((a) => alertMatches(a, spec.matchLabels)),
        matchers,
      );

    let unsubscribe: (() => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let started = false;
    let breached = false;

    return {
      async check() {
        try {
          return evaluate();
        } catch (err) {
          return { healthy: false, detail: `cannot read the firing alerts: ${(err as Error).message}`, value: null };
        }
      },

      start(onBreach, onStatus) {
        if (started || stopped) return;
        started = true;
        const report = (status: StopConditionStatus): void => {
          if (stopped) return;
          onStatus?.(status);
          if (!status.healthy && !breached) {
            breached = true;
            log.warn({ reason: status.detail }, "stop condition breached");
            onBreach({ condition, reason: status.detail, at: now() });
          }
        };
        const look = (): void => {
          try {
            report(evaluate());
          } catch (err) {
            log.error({ err }, "cannot read the firing alerts");
          }
        };
        unsubscribe = ctx.alerts.onFiring((alert) => {
          if (!alertMatches(alert, spec.matchLabels)) return;
          // The value counts every matching alert firing now, this one at least.
          let firing = 1;
          try {
            firing = Math.max(1, ctx.alerts.firing().filter((a) => alertMatches(a, spec.matchLabels)).length);
          } catch {
            // the pushed alert alone
          }
          report(matchingStatus([alert], matchers, firing));
        });
        // Alerts that fired before this run started count too; reported after start() returns so
        // the runner never sees a breach from inside its own start() call.
        queueMicrotask(look);
        timer = setInterval(look, ALERT_SAMPLE_EVERY_MS);
        timer.unref();
      },

      stop() {
        stopped = true;
        if (timer) clearInterval(timer);
        timer = undefined;
        unsubscribe?.();
        unsubscribe = undefined;
      },
    };
  },
};
