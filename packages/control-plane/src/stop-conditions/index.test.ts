import pino from "pino";
import { describe, expect, it } from "vitest";
import type { StopConditionSpec } from "../experiments/types.js";
import { STOP_CONDITION_KINDS, UnknownStopConditionError, createAlertReceiver, createWatcher, describeStopCondition } from "./index.js";

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
    expect(await alert.check()).toEqual({ healthy: true, detail: 'no firing alert matches {severity="page"}' });
  });

  it("refuses a kind it has no module for, naming the known ones", () => {
    const spec = { kind: "datadogMonitor", datadogMonitor: { id: 1 } } as unknown as StopConditionSpec;
    expect(() => describeStopCondition(spec)).toThrow(UnknownStopConditionError);
    expect(() => describeStopCondition(spec)).toThrow('unknown stop condition kind "datadogMonitor"; this control plane knows: http, prometheus, alert, cloudwatchAlarm');
  });
});
