import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { HttpStopConditionSpec } from "../experiments/types.js";
import { freePort } from "../../../../test/support/prometheus.js";
import { httpStopCondition, ordinal } from "./http.js";
import { createAlertReceiver } from "./alert-receiver.js";
import type { Breach, StopConditionStatus, StopConditionWatcher } from "./types.js";

const log = pino({ level: "silent" });
const ctx = { log, alerts: createAlertReceiver({ log }) };

/** A health endpoint whose answer the test decides per request. */
interface Endpoint {
  url: string;
  /** Status (and delay) of the next answers; the last entry repeats. */
  script: { status: number; delayMs?: number }[];
  /** Statuses answered so far, in order. */
  served: number[];
  close(): Promise<void>;
}

async function startEndpoint(script: Endpoint["script"]): Promise<Endpoint> {
  const endpoint: Endpoint = { url: "", script, served: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    const step = endpoint.script.length > 1 ? endpoint.script.shift()! : endpoint.script[0]!;
    const answer = () => {
      endpoint.served.push(step.status);
      res.writeHead(step.status, { "content-type": "text/plain" }).end(`${req.method} ${step.status}\n`);
    };
    if (step.delayMs) setTimeout(answer, step.delayMs);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
  endpoint.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return endpoint;
}

const spec = (url: string, overrides: Partial<HttpStopConditionSpec> = {}): HttpStopConditionSpec => ({
  url,
  method: "GET",
  expectStatus: [200],
  timeoutMs: 1000,
  failuresToAbort: 3,
  intervalMs: 30,
  ...overrides,
});

async function until(what: string, timeoutMs: number, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

describe("http stop condition", () => {
  const endpoints: Endpoint[] = [];
  const watchers: StopConditionWatcher[] = [];
  afterEach(async () => {
    for (const w of watchers.splice(0)) w.stop();
    for (const e of endpoints.splice(0)) await e.close();
  });
  const endpoint = async (script: Endpoint["script"]) => {
    const e = await startEndpoint(script);
    endpoints.push(e);
    return e;
  };
  const create = (s: HttpStopConditionSpec) => {
    const w = httpStopCondition.create(s, ctx);
    watchers.push(w);
    return w;
  };
  const watch = (w: StopConditionWatcher) => {
    const rec = { breaches: [] as Breach[], statuses: [] as StopConditionStatus[] };
    w.start(
      (b) => rec.breaches.push(b),
      (s) => rec.statuses.push(s),
    );
    return rec;
  };

  it("describes itself as method and URL", () => {
    expect(httpStopCondition.describe(spec("http://web/health", { method: "HEAD" }))).toBe("http HEAD http://web/health");
  });

  it("breaches after exactly failuresToAbort consecutive failures", async () => {
    const e = await endpoint([{ status: 200 }]);
    const w = create(spec(e.url, { failuresToAbort: 3 }));
    let fivehundredsAtBreach = -1;
    let statusesAtBreach: StopConditionStatus[] = [];
    const rec = { breaches: [] as Breach[], statuses: [] as StopConditionStatus[] };
    w.start(
      (b) => {
        rec.breaches.push(b);
        fivehundredsAtBreach = e.served.filter((s) => s === 500).length;
        statusesAtBreach = [...rec.statuses];
      },
      (s) => rec.statuses.push(s),
    );
    await until("two healthy probes", 5000, () => rec.statuses.length >= 2);
    expect(rec.statuses[0]).toMatchObject({ healthy: true, detail: expect.stringMatching(/^HTTP 200 in \d+ ms$/) });
    // The value is the latency the detail says.
    expect(rec.statuses[0]!.value).toBe(Number(/in (\d+) ms/.exec(rec.statuses[0]!.detail)![1]));
    expect(rec.breaches).toEqual([]);

    e.script.splice(0, e.script.length, { status: 500 }); // the service starts failing
    await until("a breach", 5000, () => rec.breaches.length > 0);
    expect(fivehundredsAtBreach).toBe(3);
    const failures = statusesAtBreach.filter((s) => !s.healthy).map((s) => s.detail);
    expect(failures).toHaveLength(3);
    expect(failures[0]).toMatch(/^HTTP 500 in \d+ ms \(expected 200\) \(1st consecutive failure\)$/);
    expect(failures[2]).toMatch(/^HTTP 500 in \d+ ms \(expected 200\) \(3rd consecutive failure\)$/);
    expect(rec.breaches[0]).toMatchObject({ condition: `http GET ${e.url}`, reason: failures[2] });

    // Keeps observing, but breaches once only.
    await until("more probes", 5000, () => rec.statuses.length >= statusesAtBreach.length + 4);
    expect(rec.breaches).toHaveLength(1);
  });

  it("resets the count on a success", async () => {
    const e = await endpoint([
      { status: 500 },
      { status: 503 },
      { status: 200 },
      { status: 500 },
      { status: 500 },
      { status: 204 }, // not in expectStatus: a failure too
      { status: 500 },
    ]);
    const w = create(spec(e.url, { failuresToAbort: 3 }));
    const rec = watch(w);
    await until("a breach", 5000, () => rec.breaches.length > 0);
    expect(e.served.slice(0, 6)).toEqual([500, 503, 200, 500, 500, 204]);
    expect(rec.statuses.slice(0, 6).map((s) => s.healthy)).toEqual([false, false, true, false, false, false]);
    expect(rec.breaches[0]!.reason).toMatch(/^HTTP 204 in \d+ ms \(expected 200\) \(3rd consecutive failure\)$/);
    // An answer with the wrong status still has its latency.
    for (const s of rec.statuses.slice(0, 6)) expect(s.value).toEqual(expect.any(Number));
  });

  it("counts an answer slower than timeoutMs as a failure", async () => {
    const e = await endpoint([{ status: 200, delayMs: 400 }]);
    const w = create(spec(e.url, { timeoutMs: 100, failuresToAbort: 2, intervalMs: 50 }));
    const started = performance.now();
    const rec = watch(w);
    await until("a breach", 5000, () => rec.breaches.length > 0);
    expect(rec.statuses.slice(0, 2).map((s) => s.detail)).toEqual([
      "no answer within 100 ms (1st consecutive failure)",
      "no answer within 100 ms (2nd consecutive failure)",
    ]);
    expect(rec.statuses.slice(0, 2).map((s) => s.value)).toEqual([null, null]);
    // Two aborted probes, not two 400 ms answers.
    expect(performance.now() - started).toBeLessThan(800);
  });

  it("accepts any of expectStatus and probes with the given method", async () => {
    const e = await endpoint([{ status: 204 }]);
    const w = create(spec(e.url, { method: "HEAD", expectStatus: [200, 204] }));
    expect(await w.check()).toMatchObject({ healthy: true, detail: expect.stringMatching(/^HTTP 204 in \d+ ms$/) });
  });

  it("check() is one probe for preflight: healthy, unhealthy, unreachable", async () => {
    const e = await endpoint([{ status: 200 }]);
    const w = create(spec(e.url));
    expect(await w.check()).toMatchObject({ healthy: true, detail: expect.stringMatching(/^HTTP 200 in \d+ ms$/) });
    expect(e.served).toEqual([200]);

    e.script.splice(0, 1, { status: 500 });
    expect(await w.check()).toMatchObject({ healthy: false, detail: expect.stringMatching(/^HTTP 500 in \d+ ms \(expected 200\)$/) });

    const port = await freePort();
    const down = create(spec(`http://127.0.0.1:${port}/health`));
    const status = await down.check();
    expect(status.healthy).toBe(false);
    expect(status.detail).toBe(`connection refused (connect ECONNREFUSED 127.0.0.1:${port})`);
    expect(status.value).toBeNull();
  });

  it("stop() ends the probes, also one in flight", async () => {
    const e = await endpoint([{ status: 200, delayMs: 200 }]);
    const w = create(spec(e.url, { intervalMs: 10 }));
    const rec = watch(w);
    await sleep(50); // the first probe is waiting for its answer
    w.stop();
    w.stop();
    await sleep(300);
    expect(rec.statuses).toEqual([]);
    expect(rec.breaches).toEqual([]);
  });

  it("says 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 101st", () => {
    expect([1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal)).toEqual([
      "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
    ]);
  });
});
