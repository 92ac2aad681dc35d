/**
 * `alert` stop condition: a firing Alertmanager alert whose labels include every `matchLabels`
 * pair is a breach. Push-based: the watcher subscribes to the alert receiver, so a breach is
 * seen the moment Alertmanager's webhook arrives.
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

function matchingStatus(matching: FiringAlert[], matchers: string): StopConditionStatus {
  if (matching.length === 0) return { healthy: true, detail: `no firing alert matches ${matchers}` };
  const shown = matching.slice(0, 3).map(describeAlert);
  const more = matching.length > 3 ? ` and ${matching.length - 3} more` : "";
  const noun = matching.length === 1 ? "alert matches" : "alerts match";
  return { healthy: false, detail: `${matching.length} firing ${noun} ${matchers}: ${shown.join("; ")}${more}` };
}

/** The `alert` kind. */
export const alertStopCondition: StopConditionKind<AlertStopConditionSpec> = {
  kind: "alert",

  describe(spec) {
    return `alert ${formatMatchers(spec.matchLabels)}`;
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
    let stopped = false;
    let started = false;
    let breached = false;

    return {
      async check() {
        try {
          return evaluate();
        } catch (err) {
          return { healthy: false, detail: `cannot read the firing alerts: ${(err as Error).message}` };
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
        unsubscribe = ctx.alerts.onFiring((alert) => {
          if (alertMatches(alert, spec.matchLabels)) report(matchingStatus([alert], matchers));
        });
        // Alerts that fired before this run started count too; reported after start() returns so
        // the runner never sees a breach from inside its own start() call.
        queueMicrotask(() => {
          try {
            report(evaluate());
          } catch (err) {
            log.error({ err }, "cannot read the firing alerts");
          }
        });
      },

      stop() {
        stopped = true;
        unsubscribe?.();
        unsubscribe = undefined;
      },
    };
  },
};
