import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { PrometheusStopConditionSpec } from "../experiments/types.js";
import { PROMETHEUS_MISSING, TEST_JOB, findPrometheus, freePort, startPrometheus } from "../../../../test/support/prometheus.js";
import type { TestPrometheus } from "../../../../test/support/prometheus.js";
import { createAlertReceiver } from "./alert-receiver.js";
import { PROMETHEUS_ERRORS_TO_ABORT, formatSeries, parseQueryResponse, prometheusStopCondition, queryUrl } from "./prometheus.js";
import type { Breach, StopConditionStatus, StopConditionWatcher } from "./types.js";

const log = pino({ level: "silent" });
const ctx = { log, alerts: createAlertReceiver({ log }) };

const spec = (url: string, query: string, overrides: Partial<PrometheusStopConditionSpec> = {}): PrometheusStopConditionSpec => ({
  url,
  query,
  intervalMs: 200,
  timeoutMs: 2000,
  ...overrides,
});

async function until(what: string, timeoutMs: number, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

describe("prometheus query answers", () => {
  it("reads vectors and matrices; a scalar is an error", () => {
    const vector = JSON.stringify({
      status: "success",
      data: { resultType: "vector", result: [{ metric: { __name__: "up", job: "api", instance: "a:1" }, value: [1714557600.5, "0"] }] },
    });
    expect(parseQueryResponse(200, vector)).toEqual({ ok: true, samples: [{ metric: { __name__: "up", job: "api", instance: "a:1" }, value: "0" }] });
    const matrix = JSON.stringify({
      status: "success",
      data: { resultType: "matrix", result: [{ metric: { job: "api" }, values: [[1, "1"], [2, "3"]] }] },
    });
    expect(parseQueryResponse(200, matrix)).toEqual({ ok: true, samples: [{ metric: { job: "api" }, value: "3" }] });
    const scalar = JSON.stringify({ status: "success", data: { resultType: "scalar", result: [1, "1"] } });
    expect(parseQueryResponse(200, scalar)).toMatchObject({ ok: false, error: expect.stringMatching(/^the query returns a scalar/) });
    expect(parseQueryResponse(502, "<html>Bad Gateway</html>")).toEqual({
      ok: false,
      error: "HTTP 502, not a Prometheus API answer: <html>Bad Gateway</html>",
    });
  });

  it("prints series as Prometheus does and builds the query URL", () => {
    expect(formatSeries({ __name__: "errors", job: "api", code: "500" })).toBe('errors{code="500",job="api"}');
    expect(formatSeries({ job: "api" })).toBe('{job="api"}');
    expect(queryUrl(spec("http://prom:9090/", "rate(x[1m]) > 0.01", { timeoutMs: 3000 }))).toBe(
      "http://prom:9090/api/v1/query?query=rate%28x%5B1m%5D%29+%3E+0.01&timeout=3000ms",
    );
  });
});

describe.skipIf(!findPrometheus())("prometheus stop condition (real Prometheus)", () => {
  let prom: TestPrometheus;
  const watchers: StopConditionWatcher[] = [];

  beforeAll(async () => {
    prom = (await startPrometheus({ metrics: { firedrill_test_errors: 0 } }))!;
  });
  afterAll(async () => {
    await prom?.stop();
  });
  afterEach(() => {
    for (const w of watchers.splice(0)) w.stop();
    prom.target.set("firedrill_test_errors", 0);
  });
  const create = (s: PrometheusStopConditionSpec) => {
    const w = prometheusStopCondition.create(s, ctx);
    watchers.push(w);
    return w;
  };

  it("is healthy while the query returns nothing and breaches once it returns a sample", async () => {
    const query = "firedrill_test_errors > 0";
    const w = create(spec(prom.url, query, { intervalMs: 200 }));
    expect(prometheusStopCondition.describe(spec(prom.url, query))).toBe("prometheus firedrill_test_errors > 0");
    expect(await w.check()).toEqual({ healthy: true, detail: "query returned no samples", value: 0 });

    const breaches: Breach[] = [];
    const statuses: StopConditionStatus[] = [];
    w.start(
      (b) => breaches.push(b),
      (s) => statuses.push(s),
    );
    await until("three healthy observations", 10_000, () => statuses.length >= 3);
    expect(statuses.every((s) => s.healthy)).toBe(true);
    expect(statuses.every((s) => s.value === 0)).toBe(true);

    const flipped = performance.now();
    prom.target.set("firedrill_test_errors", 1);
    await until("a breach", 15_000, () => breaches.length > 0);
    const ms = performance.now() - flipped;
    console.log(`prometheus stop condition: metric flipped to 1 → breach after ${Math.round(ms)} ms (scrape_interval 1s, intervalMs 200)`);

    expect(breaches).toHaveLength(1);
    expect(breaches[0]).toMatchObject({ condition: "prometheus firedrill_test_errors > 0" });
    expect(breaches[0]!.reason).toBe(
      `query returned 1 sample: firedrill_test_errors{instance="${prom.target.address}",job="${TEST_JOB}"} 1`,
    );
    expect(await w.check()).toEqual({ healthy: false, detail: breaches[0]!.reason, value: 1 });
  });

  it("lists up to three series in the reason", async () => {
    // Four distinct series out of one: `up` plus three copies with an extra label.
    const up = `up{job="${TEST_JOB}"}`;
    const copies = [2, 3, 4].map((n) => `label_replace(${up}, "n", "${n}", "", "")`);
    const w = create(spec(prom.url, [up, ...copies].join(" or ")));
    const status = await w.check();
    expect(status.healthy).toBe(false);
    expect(status.detail).toMatch(/^query returned 4 samples: (\S+\{[^}]+\} 1, ){2}\S+\{[^}]+\} 1 and 1 more$/);
  });

  it("reports bad PromQL as unhealthy with Prometheus's own error", async () => {
    const w = create(spec(prom.url, "firedrill_test_errors >"));
    const status = await w.check();
    expect(status.healthy).toBe(false);
    expect(status.detail).toMatch(/^query failed: bad_data: invalid parameter "query": 1:\d+: parse error: .+ \(HTTP 400\)$/);
  });

  it(`breaches after ${PROMETHEUS_ERRORS_TO_ABORT} consecutive query errors, not before`, async () => {
    const w = create(spec(prom.url, "sum(", { intervalMs: 50 }));
    const breaches: Breach[] = [];
    const statuses: StopConditionStatus[] = [];
    let seenAtBreach = -1;
    w.start(
      (b) => {
        breaches.push(b);
        seenAtBreach = statuses.length;
      },
      (s) => statuses.push(s),
    );
    await until("a breach", 10_000, () => breaches.length > 0);
    expect(seenAtBreach).toBe(PROMETHEUS_ERRORS_TO_ABORT);
    expect(statuses[0]!.detail).toMatch(/parse error: .+ \(1st consecutive error; 3 abort the run\)$/);
    expect(breaches[0]!.reason).toMatch(/\(3rd consecutive error; 3 abort the run\)$/);
  });
});

describe("prometheus stop condition (unreachable)", () => {
  it("reports an unreachable Prometheus as unhealthy", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const w = prometheusStopCondition.create(spec(url, "up == 0"), ctx);
    const status = await w.check();
    w.stop();
    expect(status).toEqual({
      healthy: false,
      detail: `query failed: Prometheus at ${url} is unreachable: connection refused (connect ECONNREFUSED 127.0.0.1:${port})`,
      value: null,
    });
  });
});

if (!findPrometheus()) console.log(`skipping the real-Prometheus tests: ${PROMETHEUS_MISSING}`);
