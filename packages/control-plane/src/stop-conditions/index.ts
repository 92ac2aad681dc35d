/**
 * The stop-condition registry: every kind of `spec.stopConditions[]` entry maps to one module.
 * A new kind (the AWS `cloudwatchAlarm`) is its spec in experiments/types.ts, one module here
 * and one line in {@link STOP_CONDITION_KINDS}; the compiler refuses a registry that misses a kind.
 */
import type { StopConditionSpec } from "../experiments/types.js";
import { alertStopCondition } from "./alert.js";
import { cloudwatchAlarmStopCondition } from "./cloudwatch-alarm.js";
import { httpStopCondition } from "./http.js";
import { prometheusStopCondition } from "./prometheus.js";
import type { StopConditionChart, StopConditionContext, StopConditionKind, StopConditionWatcher } from "./types.js";

/** The names of the stop-condition kinds: "http" | "prometheus" | "alert" | "cloudwatchAlarm". */
export type StopConditionKindName = StopConditionSpec["kind"];

/** The kind-specific part of a spec entry, e.g. `HttpStopConditionSpec` for "http". */
export type StopConditionSpecOf<K extends StopConditionKindName> =
  Extract<StopConditionSpec, { kind: K }> extends infer S ? (K extends keyof S ? S[K] : never) : never;

/** Every stop-condition kind, by name. */
export const STOP_CONDITION_KINDS = {
  http: httpStopCondition,
  prometheus: prometheusStopCondition,
  alert: alertStopCondition,
  cloudwatchAlarm: cloudwatchAlarmStopCondition,
} as const satisfies { [K in StopConditionKindName]: StopConditionKind<StopConditionSpecOf<K>> };

/** Thrown when a spec names a kind this control plane has no module for. */
export class UnknownStopConditionError extends Error {
  override readonly name = "UnknownStopConditionError";
  constructor(readonly kind: string) {
    super(
      `unknown stop condition kind ${JSON.stringify(kind)}; this control plane knows: ${Object.keys(STOP_CONDITION_KINDS).join(", ")}`,
    );
  }
}

function resolve(spec: StopConditionSpec): { kind: StopConditionKind<unknown>; params: unknown } {
  const name: string = spec.kind;
  if (!Object.hasOwn(STOP_CONDITION_KINDS, name)) throw new UnknownStopConditionError(name);
  // The spec union keys each kind's parameters by the kind's name (`{ kind: "http", http: {...} }`),
  // and the registry's `satisfies` ties each name to the module for exactly those parameters.
  const kind = STOP_CONDITION_KINDS[name as StopConditionKindName] as StopConditionKind<unknown>;
  return { kind, params: (spec as unknown as Record<string, unknown>)[name] };
}

/**
 * A watcher for one stop condition of one run: check() for preflight, start()/stop() around the run.
 * Thrown when the kind has no module: {@link UnknownStopConditionError}.
 */
export function createWatcher(spec: StopConditionSpec, ctx: StopConditionContext): StopConditionWatcher {
  const { kind, params } = resolve(spec);
  return kind.create(params, ctx);
}

/**
 * One line naming the condition, for plans and the run timeline, e.g. `http GET http://web/health`.
 * Thrown when the kind has no module: {@link UnknownStopConditionError}.
 */
export function describeStopCondition(spec: StopConditionSpec): string {
  const { kind, params } = resolve(spec);
  return kind.describe(params);
}

/**
 * How the condition's samples are charted: the unit of their value, the threshold line and what it
 * means (http: latency in ms against the timeout; prometheus: the query's largest value against the
 * number of a trailing comparison; alert, cloudwatchAlarm: how many fire, against 1).
 * Thrown when the kind has no module: {@link UnknownStopConditionError}.
 */
export function chartOf(spec: StopConditionSpec): StopConditionChart {
  const { kind, params } = resolve(spec);
  return kind.chart(params);
}

export { ALERT_SAMPLE_EVERY_MS, alertStopCondition, alertMatches, formatMatchers } from "./alert.js";
export {
  ALERTMANAGER_PAYLOAD_VERSION,
  ALERTMANAGER_WEBHOOK_PATH,
  AlertPayloadError,
  createAlertReceiver,
  parseAlertmanagerPayload,
  registerAlertRoutes,
  ALERTMANAGER_BODY_LIMIT,
  MAX_ALERTS_PER_PAYLOAD,
  MAX_FIRING_ALERTS,
  MAX_LABELS_PER_ALERT,
  MAX_ANNOTATIONS_PER_ALERT,
  MAX_LABEL_NAME_LENGTH,
  MAX_LABEL_VALUE_LENGTH,
  MAX_ANNOTATION_VALUE_LENGTH,
  MAX_ALERT_SIZE_BYTES,
  MAX_RECEIVER_LENGTH,
  MAX_FINGERPRINT_LENGTH,
  MAX_URL_LENGTH,
  MAX_TIMESTAMP_LENGTH,
  DEFAULT_ALERT_STALE_AFTER_MS,
} from "./alert-receiver.js";
export type { AlertReceiver, AlertReceiverOptions, AlertmanagerPayload, AlertReceiveResult, AlertReceiverStats } from "./alert-receiver.js";
export { CLOUDWATCH_ERRORS_TO_ABORT, cloudwatchAlarmStopCondition } from "./cloudwatch-alarm.js";
export { httpStopCondition } from "./http.js";
export { PROMETHEUS_ERRORS_TO_ABORT, largestValue, prometheusStopCondition, trailingThreshold } from "./prometheus.js";
export type {
  AlertSource,
  Breach,
  FiringAlert,
  StopConditionChart,
  StopConditionContext,
  StopConditionKind,
  StopConditionStatus,
  StopConditionWatcher,
} from "./types.js";
