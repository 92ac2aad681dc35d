/**
 * The stop-condition contract. Each kind is one module under stop-conditions/ implementing
 * {@link StopConditionKind}; the registry maps spec kinds to modules, so new kinds (the AWS
 * CloudWatch alarm) plug in without touching the runner.
 */
import type { Logger } from "pino";
import type { AwsService } from "../aws/types.js";

/** What one check found. */
export interface StopConditionStatus {
  healthy: boolean;
  /** One line for the timeline, e.g. "HTTP 200 in 12 ms" or "query returned 2 samples: {job=\"api\"} 0.05". */
  detail: string;
  /**
   * The number the condition's chart plots for this observation (see {@link StopConditionChart}):
   * http: the latency in ms, null when no answer came; prometheus: the largest sample value, 0 when
   * the query returned none, null when it failed; alert: the matching alerts firing; cloudwatchAlarm:
   * the alarms in ALARM, null when they could not be read. Absent: the kind gives none.
   */
  value?: number | null;
}

/** How a condition's samples are charted: what the value means and the line it must stay on the good side of. */
export interface StopConditionChart {
  /** "ms" (http latency), "value" (a query's value), "firing" (alerts or alarms firing). */
  unit: "ms" | "value" | "firing";
  /** Where the threshold line is drawn; null when there is none to draw. */
  threshold: number | null;
  /** What the threshold line means, e.g. "timeout 1000 ms". */
  thresholdLabel: string;
}

/** A breach: the run must abort. */
export interface Breach {
  /** The condition's description (see {@link StopConditionKind.describe}). */
  condition: string;
  /** Why, in one line. */
  reason: string;
  /** Epoch ms when the breach was detected. */
  at: number;
}

/** A live watcher for one stop condition of one run. */
export interface StopConditionWatcher {
  /** One check now (preflight / steady state). Never throws: errors are unhealthy statuses. */
  check(): Promise<StopConditionStatus>;
  /**
   * Starts watching: polls (or subscribes, for pushed alerts) until stop(). Calls `onBreach` once,
   * at the first breach, and `onStatus` after each observation (for the live timeline).
   */
  start(onBreach: (breach: Breach) => void, onStatus?: (status: StopConditionStatus) => void): void;
  /** Stops watching; idempotent. */
  stop(): void;
}

/** Shared services a stop condition may use. */
export interface StopConditionContext {
  log: Logger;
  /** Alertmanager webhook state (for `alert` conditions). */
  alerts: AlertSource;
  /** AWS (for `cloudwatchAlarm` conditions); absent when the control plane has no AWS access configured. */
  aws?: AwsService;
  /** Clock, injectable for tests. @default Date.now */
  now?: () => number;
}

/** Firing alerts as received on the Alertmanager webhook, with push notification. */
export interface AlertSource {
  /** Alerts currently firing. */
  firing(): FiringAlert[];
  /** Calls `listener` whenever an alert starts firing; returns an unsubscribe function. */
  onFiring(listener: (alert: FiringAlert) => void): () => void;
}

/** One firing alert. */
export interface FiringAlert {
  fingerprint: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
}

/** A kind of stop condition. */
export interface StopConditionKind<Spec> {
  kind: string;
  /** One line naming the condition, e.g. `http GET http://web/health` or `prometheus job:errors > 0.01`. */
  describe(spec: Spec): string;
  /** How its samples are charted. */
  chart(spec: Spec): StopConditionChart;
  create(spec: Spec, ctx: StopConditionContext): StopConditionWatcher;
}
