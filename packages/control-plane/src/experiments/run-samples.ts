/**
 * The stop-condition samples of a run as the API gives them (GET /runs/:id/samples, the run's event
 * stream with `samples=1`, the report): per condition its description, how it is charted and its
 * state now; the samples compact (`{ c, at, v, ok }`).
 */
import type { RunBreach, RunRecord, RunSample, RunStore } from "../store/run-store.js";
import { chartOf, describeStopCondition } from "../stop-conditions/index.js";
import type { StopConditionChart } from "../stop-conditions/types.js";
import type { StopConditionSpec } from "./types.js";

/** One observation of a stop condition. */
export interface SampleJson {
  /** The condition's index in `spec.stopConditions` (and in `conditions`). */
  c: number;
  /** Epoch ms. */
  at: number;
  /** What the chart plots (http: latency ms; prometheus: the largest value; alert, cloudwatchAlarm: how many fire); null: nothing (e.g. no answer). */
  v: number | null;
  /** Healthy. */
  ok: boolean;
}

/**
 * Where a stop condition stands: `pending` before its first observation (preflight), `healthy` /
 * `unhealthy` as its latest observation was, `breached` once it breached (the run aborted).
 */
export type SampleConditionState = "healthy" | "unhealthy" | "breached" | "pending";

/** A stop condition of a run, with how its samples are charted and its state. */
export interface SampleConditionJson extends StopConditionChart {
  index: number;
  /** One line naming it, e.g. `http GET http://web/health`. */
  condition: string;
  /** "http", "prometheus", "alert", "cloudwatchAlarm". */
  kind: string;
  state: SampleConditionState;
}

/** `GET /api/v1/runs/:id/samples`. */
export interface RunSamplesJson {
  conditions: SampleConditionJson[];
  samples: SampleJson[];
}

/** The compact form of a stored sample. */
export function toSampleJson(s: RunSample): SampleJson {
  return { c: s.condition, at: s.at, v: s.value, ok: s.healthy };
}

/** The stop conditions of a run's experiment, as it was started. */
export function stopConditionsOfRun(run: Pick<RunRecord, "experiment">): StopConditionSpec[] {
  const experiment = run.experiment as { spec?: { stopConditions?: unknown } } | null;
  const list = experiment?.spec?.stopConditions;
  return Array.isArray(list) ? (list as StopConditionSpec[]) : [];
}

/** The breach of condition `index` among a run's breaches (those recorded before indexes were kept match by description). */
export function breachOf(breaches: readonly RunBreach[], index: number, condition: string): RunBreach | undefined {
  return breaches.find((b) => b.index === index) ?? breaches.find((b) => b.index === null && b.condition === condition);
}

/** The stop conditions of a run with their charts and states (a few indexed reads, whatever the run's size). */
export function sampleConditionsOf(run: Pick<RunRecord, "id" | "experiment">, runs: Pick<RunStore, "listBreaches" | "lastSampleHealthy">): SampleConditionJson[] {
  const specs = stopConditionsOfRun(run);
  if (specs.length === 0) return [];
  const breaches = runs.listBreaches(run.id);
  return specs.map((spec, index) => {
    let condition: string;
    let chart: StopConditionChart;
    try {
      condition = describeStopCondition(spec);
      chart = chartOf(spec);
    } catch {
      // A kind this control plane no longer knows: still listed, without a threshold.
      condition = String(spec.kind);
      chart = { unit: "value", threshold: null, thresholdLabel: "" };
    }
    const last = runs.lastSampleHealthy(run.id, index);
    const state: SampleConditionState = breachOf(breaches, index, condition) ? "breached" : last === undefined ? "pending" : last ? "healthy" : "unhealthy";
    return { index, condition, kind: String(spec.kind), ...chart, state };
  });
}

/** Everything `GET /api/v1/runs/:id/samples` answers. */
export function runSamplesJson(run: Pick<RunRecord, "id" | "experiment">, runs: Pick<RunStore, "listBreaches" | "lastSampleHealthy" | "listSamples">): RunSamplesJson {
  return { conditions: sampleConditionsOf(run, runs), samples: runs.listSamples(run.id).map(toSampleJson) };
}
