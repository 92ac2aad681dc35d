import pino from "pino";
import { describe, expect, it } from "vitest";
import type { StopConditionSpec } from "../experiments/types.js";
import { STOP_CONDITION_KINDS, UnknownStopConditionError, chartOf, createAlertReceiver, createWatcher, describeStopCondition, trailingThreshold } from "./index.js";

const log = pino({ level: "silent" });

const specs: StopConditionSpec[] = [
  {
    kind: "http",
    http: { url: "http://web/health", method: "GET", expectStatus: [200], timeoutMs: 1000, failuresToAbort: 3, intervalMs: 1000 },
  },
  { kind: "prometheus", prometheus: { url: "http://prom:9090", query: "job:errors:ratio1m > 0.01", intervalMs: 5000, timeoutMs: 3000 } },
  { kind: "alert", alert: { matchLabels: { severity: "page" } } },
  { kind: "cloudwatchAlarm", cloudwatchAlarm: { names: ["checkout-5xx"], intervalMs: 5000 } },
];

describe("stop-condition registry", () => {
  it("maps every spec kind to its module", () => {
    expect(Object.keys(STOP_CONDITION_KINDS).sort()).toEqual(["alert", "cloudwatchAlarm", "http", "prometheus"]);
    for (const [name, kind] of Object.entries(STOP_CONDITION_KINDS)) expect(kind.kind).toBe(name);
  });

  it("describes each kind in one line", () => {
    expect(specs.map(describeStopCondition)).toEqual([
      "http GET http://web/health",
      "prometheus job:errors:ratio1m > 0.01",
      'alert {severity="page"}',
      "cloudwatchAlarm checkout-5xx",
    ]);
  });

  it("creates a watcher for each kind", async () => {
    const receiver = createAlertReceiver({ log });
    for (const spec of specs) {
      const watcher = createWatcher(spec, { log, alerts: receiver });
      watcher.stop();
    }
    const alert = createWatcher(specs[2]!, { log, alerts: receiver });
    expect(await alert.check()).toEqual({ healthy: true, detail: 'no firing alert matches {severity="page"}', value: 0 });
  });

  it("charts each kind: unit, threshold line and its meaning", () => {
    expect(specs.map(chartOf)).toEqual([
      { unit: "ms", threshold: 1000, thresholdLabel: "timeout 1000 ms" },
      { unit: "value", threshold: 0.01, thresholdLabel: "any sample returned breaches" },
      { unit: "firing", threshold: 1, thresholdLabel: "firing" },
      { unit: "firing", threshold: 1, thresholdLabel: "firing" },
    ]);
  });

  it("takes a prometheus threshold from a trailing comparison only", () => {
    const cases: [string, number | null][] = [
      ["job:errors:ratio1m > 0.01", 0.01],
      ["sum(rate(http_errors_total[5m])) >= 5  ", 5],
      ["up == 0", 0],
      ["x != 3", 3],
      ["latency_seconds<0.25", 0.25],
      ["x > -5", -5],
      ["x >-5", -5],
      ["x > 1e-3", 0.001],
      ["x <= 2.5e+2\n", 250],
      ["x - 5", null],
      ["x-5", null],
      ["x > y-5", null],
      ["x > bool 1", null],
      ["x > foo5", null],
      ["x > 1-2", null],
      ["x > 5e", null],
      ["x > .", null],
      ["rate(x[5m]) > 0 unless y", null],
      ["up", null],
      ["5", null],
      ["", null],
      ["   ", null],
    ];
    for (const [query, threshold] of cases) expect([query, trailingThreshold(query)]).toEqual([query, threshold]);
  });

  it("reads a threshold in time linear in nothing but a bounded tail, however long or hostile the query", () => {
    const hostile = [`x > ${"1".repeat(200_000)}`, `${"(".repeat(100_000)} > 1`, `${"-".repeat(200_000)}1`, `${" ".repeat(200_000)}> 1`, "e".repeat(200_000)];
    const started = performance.now();
    for (const q of hostile) trailingThreshold(q);
    // Generous: a backtracking parse of these would take minutes.
    expect(performance.now() - started).toBeLessThan(1000);
    expect(trailingThreshold(`${"(".repeat(100_000)} > 1`)).toBe(1);
    expect(trailingThreshold(`x > ${"1".repeat(200_000)}`)).toBeNull(); // a literal longer than the tail read
  });

  it("refuses a kind it has no module for, naming the known ones", () => {
    const spec = { kind: "datadogMonitor", datadogMonitor: { id: 1 } } as unknown as StopConditionSpec;
    expect(() => describeStopCondition(spec)).toThrow(UnknownStopConditionError);
    expect(() => describeStopCondition(spec)).toThrow('unknown stop condition kind "datadogMonitor"; this control plane knows: http, prometheus, alert, cloudwatchAlarm');
  });
});
