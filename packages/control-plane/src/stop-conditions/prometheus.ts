/**
 * `prometheus` stop condition: runs an instant query (`GET {url}/api/v1/query`) every
 * `intervalMs`. Any sample the query returns is a breach, at once. A failed query (bad PromQL,
 * Prometheus unreachable or timing out) is an unhealthy observation; {@link PROMETHEUS_ERRORS_TO_ABORT}
 * consecutive ones are a breach, so one lost scrape or restart doesn't abort a run but a
 * Prometheus that stays blind does.
 */
import type { PrometheusStopConditionSpec } from "../experiments/types.js";
import { describeFetchError, ordinal } from "./http.js";
import { createPollingWatcher } from "./poll.js";
import type { StopConditionKind, StopConditionStatus, StopConditionWatcher } from "./types.js";

/** Consecutive failed queries that make a breach. */
export const PROMETHEUS_ERRORS_TO_ABORT = 3;

/** Series listed in a breach reason; the rest are counted. */
const SHOWN_SERIES = 3;

/** One series of a query result with its (latest) value. */
export interface PrometheusSample {
  metric: Record<string, string>;
  value: string;
}

/** What one instant query gave. */
export type QueryOutcome = { ok: true; samples: PrometheusSample[] } | { ok: false; error: string };

/** `name{a="1",b="2"}`, as Prometheus prints series. */
export function formatSeries(metric: Record<string, string>): string {
  const { __name__: name, ...labels } = metric;
  const keys = Object.keys(labels).sort();
  const inner = keys.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",");
  return `${name ?? ""}{${inner}}`;
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function labelsOf(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isRecord(value)) for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
}

/** `[ <unix seconds>, "<value>" ]` → the value. */
function sampleValue(pair: unknown): string | undefined {
  return Array.isArray(pair) && typeof pair[1] === "string" ? pair[1] : undefined;
}

/** Reads a `/api/v1/query` answer (https://prometheus.io/docs/prometheus/latest/querying/api/). */
export function parseQueryResponse(httpStatus: number, text: string): QueryOutcome {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, error: `HTTP ${httpStatus}, not a Prometheus API answer: ${snippet(text) || "(empty body)"}` };
  }
  if (!isRecord(body)) return { ok: false, error: `HTTP ${httpStatus}, not a Prometheus API answer: ${snippet(text)}` };
  if (body.status !== "success") {
    const type = typeof body.errorType === "string" ? body.errorType : "error";
    const message = typeof body.error === "string" ? body.error : snippet(text);
    return { ok: false, error: `${type}: ${message} (HTTP ${httpStatus})` };
  }
  const data = isRecord(body.data) ? body.data : {};
  const { resultType, result } = data;
  if ((resultType === "vector" || resultType === "matrix") && Array.isArray(result)) {
    const samples: PrometheusSample[] = [];
    for (const series of result) {
      if (!isRecord(series)) continue;
      const value =
        resultType === "vector"
          ? sampleValue(series.value)
          : Array.isArray(series.values)
            ? sampleValue(series.values[series.values.length - 1])
            : undefined;
      samples.push({ metric: labelsOf(series.metric), value: value ?? "?" });
    }
    return { ok: true, samples };
  }
  if (resultType === "scalar" || resultType === "string") {
    return {
      ok: false,
      error: `the query returns a ${resultType} (${JSON.stringify(result)}), not series; write a filter that returns series only when unhealthy, e.g. job:errors:ratio1m > 0.01`,
    };
  }
  return { ok: false, error: `unexpected answer from Prometheus: ${snippet(text)}` };
}

/** The instant-query URL for `spec`. */
export function queryUrl(spec: PrometheusStopConditionSpec): string {
  const params = new URLSearchParams({ query: spec.query, timeout: `${spec.timeoutMs}ms` });
  return `${spec.url.replace(/\/+$/, "")}/api/v1/query?${params.toString()}`;
}

/** Runs the instant query once. Never throws. */
export async function runInstantQuery(spec: PrometheusStopConditionSpec, stopSignal?: AbortSignal): Promise<QueryOutcome> {
  const timeout = AbortSignal.timeout(spec.timeoutMs);
  const signal = stopSignal ? AbortSignal.any([timeout, stopSignal]) : timeout;
  try {
    const res = await fetch(queryUrl(spec), { signal, headers: { accept: "application/json" } });
    return parseQueryResponse(res.status, await res.text());
  } catch (err) {
    return { ok: false, error: `Prometheus at ${spec.url} is unreachable: ${describeFetchError(err, spec.timeoutMs)}` };
  }
}

/**
 * The largest finite value among the samples (the chart's value): 0 when there are none, null when
 * none is a finite number (NaN, ±Inf).
 */
export function largestValue(samples: readonly PrometheusSample[]): number | null {
  if (samples.length === 0) return 0;
  let max: number | null = null;
  for (const s of samples) {
    const v = Number(s.value);
    if (Number.isFinite(v) && (max === null || v > max)) max = v;
  }
  return max;
}

const COMPARISONS = new Set(["==", "!=", ">=", "<=", ">", "<"]);
/** Characters a PromQL number literal of the simple kinds (`5`, `-0.01`, `1e-3`) is made of. */
const NUMBER_CHARS = new Set("0123456789.eE+-");
/** Only the end of a query is read for a threshold. */
const THRESHOLD_TAIL = 64;

/**
 * The threshold of a query that ends in a comparison with a number (`job:errors:ratio1m > 0.01`
 * gives 0.01), else null. Reads at most the last {@link THRESHOLD_TAIL} characters, once, from the
 * end: no regular expression runs on the query.
 */
export function trailingThreshold(query: string): number | null {
  let end = query.length;
  const stop = Math.max(0, end - THRESHOLD_TAIL);
  const isSpace = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r";
  while (end > stop && isSpace(query[end - 1])) end -= 1;
  let start = end;
  while (start > stop && NUMBER_CHARS.has(query[start - 1]!)) start -= 1;
  if (start === end) return null;
  const literal = query.slice(start, end);
  // "-5" glued to an operator (`x >-5`) is still the number; "x-5" is arithmetic, refused below.
  const value = Number(literal);
  if (!Number.isFinite(value)) return null;
  let i = start;
  while (i > stop && isSpace(query[i - 1])) i -= 1;
  if (i <= stop) return null;
  const two = i - 2 >= stop ? query.slice(i - 2, i) : "";
  const one = query[i - 1]!;
  if (COMPARISONS.has(two) || one === ">" || one === "<") return value;
  return null;
}

function samplesStatus(samples: PrometheusSample[]): StopConditionStatus {
  if (samples.length === 0) return { healthy: true, detail: "query returned no samples", value: 0 };
  const shown = samples.slice(0, SHOWN_SERIES).map((s) => `${formatSeries(s.metric)} ${s.value}`);
  const more = samples.length > SHOWN_SERIES ? ` and ${samples.length - SHOWN_SERIES} more` : "";
  return {
    healthy: false,
    detail: `query returned ${samples.length} sample${samples.length === 1 ? "" : "s"}: ${shown.join(", ")}${more}`,
    value: largestValue(samples),
  };
}

function outcomeStatus(outcome: QueryOutcome): StopConditionStatus {
  return outcome.ok ? samplesStatus(outcome.samples) : { healthy: false, detail: `query failed: ${outcome.error}`, value: null };
}

/** The `prometheus` kind. */
export const prometheusStopCondition: StopConditionKind<PrometheusStopConditionSpec> = {
  kind: "prometheus",

  describe(spec) {
    return `prometheus ${spec.query}`;
  },

  chart(spec) {
    return { unit: "value", threshold: trailingThreshold(spec.query), thresholdLabel: "any sample returned breaches" };
  },

  create(spec, ctx): StopConditionWatcher {
    const condition = prometheusStopCondition.describe(spec);
    const log = ctx.log.child({ component: "stop-condition", condition, prometheus: spec.url });
    let errors = 0;
    return createPollingWatcher({
      condition,
      intervalMs: spec.intervalMs,
      log,
      now: ctx.now ?? Date.now,
      check: async () => outcomeStatus(await runInstantQuery(spec)),
      async observe(signal) {
        const outcome = await runInstantQuery(spec, signal);
        if (outcome.ok) {
          if (errors > 0) log.info({ errorsBefore: errors }, "Prometheus answers again");
          errors = 0;
          const status = samplesStatus(outcome.samples);
          return { status, breach: !status.healthy };
        }
        errors += 1;
        const detail = `query failed: ${outcome.error} (${ordinal(errors)} consecutive error; ${PROMETHEUS_ERRORS_TO_ABORT} abort the run)`;
        log.warn({ detail }, "Prometheus query failed");
        return { status: { healthy: false, detail, value: null }, breach: errors >= PROMETHEUS_ERRORS_TO_ABORT };
      },
    });
  },
};
