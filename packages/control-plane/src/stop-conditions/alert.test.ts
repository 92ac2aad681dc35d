import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AlertPayloadError, createAlertReceiver, registerAlertRoutes } from "./alert-receiver.js";
import type { AlertReceiver } from "./alert-receiver.js";
import { ALERT_SAMPLE_EVERY_MS, alertStopCondition } from "./alert.js";
import type { Breach, StopConditionStatus, StopConditionWatcher } from "./types.js";

const log = pino({ level: "silent" });
const ZERO_TIME = "0001-01-01T00:00:00Z";

interface AlertInput {
  status?: "firing" | "resolved";
  labels: Record<string, string>;
  fingerprint: string;
  endsAt?: string;
}

/** A webhook body as Alertmanager 0.25+ sends it (notify/webhook, version "4"). */
function payload(alerts: AlertInput[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const full = alerts.map((a) => ({
    status: a.status ?? "firing",
    labels: a.labels,
    annotations: { summary: `${a.labels.alertname ?? "alert"} on ${a.labels.instance ?? "?"}`, runbook_url: "https://runbooks/x" },
    startsAt: "2024-05-01T10:00:00.123456789Z",
    endsAt: a.endsAt ?? (a.status === "resolved" ? "2024-05-01T10:05:00Z" : ZERO_TIME),
    generatorURL: "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
    fingerprint: a.fingerprint,
  }));
  const status = full.some((a) => a.status === "firing") ? "firing" : "resolved";
  return {
    receiver: "firedrill",
    status,
    alerts: full,
    groupLabels: { alertname: alerts[0]?.labels.alertname ?? "" },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: "http://alertmanager:9093",
    version: "4",
    groupKey: '{}/{severity="page"}:{alertname="CheckoutErrors"}',
    truncatedAlerts: 0,
    ...extra,
  };
}

const PAGE = { alertname: "CheckoutErrors", severity: "page", service: "checkout", instance: "web-1:9100" };
const TICKET = { alertname: "DiskSlow", severity: "ticket", service: "checkout", instance: "web-2:9100" };

function rejection(fn: () => unknown): AlertPayloadError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AlertPayloadError) return err;
    throw err;
  }
  throw new Error("expected an AlertPayloadError, but the payload was accepted");
}

interface Recorder {
  breaches: Breach[];
  statuses: StopConditionStatus[];
  breachedAt?: number;
}

function watch(watcher: StopConditionWatcher): Recorder {
  const rec: Recorder = { breaches: [], statuses: [] };
  watcher.start(
    (b) => {
      rec.breaches.push(b);
      rec.breachedAt ??= performance.now();
    },
    (s) => rec.statuses.push(s),
  );
  return rec;
}

describe("alert receiver", () => {
  it("keeps firing alerts by fingerprint; resolved or ended ones are removed", () => {
    const receiver = createAlertReceiver({ log });
    expect(receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }, { labels: TICKET, fingerprint: "b2" }]))).toEqual({ accepted: 2, dropped: 0 });
    expect(receiver.firing().map((a) => a.fingerprint).sort()).toEqual(["a1", "b2"]);
    const page = receiver.firing().find((a) => a.fingerprint === "a1");
    expect(page).toEqual({
      fingerprint: "a1",
      labels: PAGE,
      annotations: { summary: "CheckoutErrors on web-1:9100", runbook_url: "https://runbooks/x" },
      startsAt: "2024-05-01T10:00:00.123456789Z",
    });

    // Alertmanager re-sends the same firing alert every group_interval: still one alert.
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    expect(receiver.firing()).toHaveLength(2);

    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1", status: "resolved" }]));
    expect(receiver.firing().map((a) => a.fingerprint)).toEqual(["b2"]);

    // "firing" but with an endsAt in the past: over.
    receiver.receive(payload([{ labels: TICKET, fingerprint: "b2", endsAt: "2020-01-01T00:00:00Z" }]));
    expect(receiver.firing()).toEqual([]);
  });

  it("expires an alert whose endsAt passes without a resolve", () => {
    let now = Date.parse("2030-01-01T00:00:00Z");
    const receiver = createAlertReceiver({ log, now: () => now });
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1", endsAt: "2030-01-01T00:05:00Z" }]));
    expect(receiver.firing()).toHaveLength(1);
    now += 5 * 60_000;
    expect(receiver.firing()).toEqual([]);
  });

  it("derives a fingerprint from the labels when an old Alertmanager sends none", () => {
    const receiver = createAlertReceiver({ log });
    const body = payload([{ labels: PAGE, fingerprint: "x" }]);
    for (const a of body.alerts as Record<string, unknown>[]) delete a.fingerprint;
    receiver.receive(body);
    receiver.receive(body);
    expect(receiver.firing()).toHaveLength(1);
    expect(receiver.firing()[0]!.fingerprint).toMatch(/^[0-9a-f]{16}$/);
  });

  it("notifies listeners once per newly firing alert, not for repeats", () => {
    const receiver = createAlertReceiver({ log });
    const heard: string[] = [];
    const off = receiver.onFiring((a) => heard.push(a.fingerprint));
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }, { labels: TICKET, fingerprint: "b2" }]));
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1", status: "resolved" }]));
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    expect(heard).toEqual(["a1", "b2", "a1"]);
    off();
    receiver.receive(payload([{ labels: { alertname: "Other" }, fingerprint: "c3" }]));
    expect(heard).toEqual(["a1", "b2", "a1"]);
  });

  it("rejects invalid payloads with precise issues and keeps its state", () => {
    const receiver = createAlertReceiver({ log });
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    const bad = payload([{ labels: PAGE, fingerprint: "b2" }], { version: "3" });
    const alerts = bad.alerts as Record<string, unknown>[];
    alerts[0]!.labels = { severity: 5 };
    alerts[0]!.status = "pending";
    alerts[0]!.startsAt = "yesterday";
    const err = rejection(() => receiver.receive(bad));
    expect(err.issues).toEqual([
      { field: "version", message: 'is string "3"; expected "4"' },
      { field: "alerts[0].status", message: 'is string "pending"; expected "firing" or "resolved"' },
      { field: "alerts[0].labels.severity", message: "must be a string, not number 5" },
      { field: "alerts[0].startsAt", message: "is not an RFC 3339 timestamp (e.g. 2024-05-01T10:00:00.000Z)" },
    ]);
    expect(err.message).toMatch(/^invalid Alertmanager webhook payload: version: is string "3"; expected "4"; /);
    expect(receiver.firing().map((a) => a.fingerprint)).toEqual(["a1"]);

    expect(() => receiver.receive("hello")).toThrow(/\(body\): must be an object, not string "hello"/);
    expect(rejection(() => receiver.receive({ version: "4" })).issues).toEqual([
      { field: "receiver", message: "is required (a string)" },
      { field: "status", message: 'is required ("firing" or "resolved")' },
      { field: "alerts", message: "is required (an array)" },
    ]);
  });
});

describe("alert stop condition", () => {
  let watcher: StopConditionWatcher | undefined;
  afterEach(() => watcher?.stop());

  const create = (receiver: AlertReceiver, matchLabels: Record<string, string>) =>
    (watcher = alertStopCondition.create({ matchLabels }, { log, alerts: receiver }));

  it("describes itself by its matchers", () => {
    expect(alertStopCondition.describe({ matchLabels: { severity: "page", service: "checkout" } })).toBe(
      'alert {service="checkout",severity="page"}',
    );
  });

  it("breaches the moment a matching alert is received, pushed, not polled", async () => {
    const receiver = createAlertReceiver({ log });
    const w = create(receiver, { severity: "page", service: "checkout" });
    const rec = watch(w);
    await Promise.resolve(); // the initial look at already-firing alerts
    expect(rec.statuses).toEqual([{ healthy: true, detail: 'no firing alert matches {service="checkout",severity="page"}', value: 0 }]);

    const sent = performance.now();
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    // The breach was delivered synchronously inside receive(): no interval could have elapsed.
    expect(rec.breaches).toHaveLength(1);
    console.log(`alert stop condition: breach ${(rec.breachedAt! - sent).toFixed(3)} ms after receive()`);
    expect(rec.breaches[0]).toMatchObject({
      condition: 'alert {service="checkout",severity="page"}',
      reason:
        '1 firing alert matches {service="checkout",severity="page"}: CheckoutErrors{instance="web-1:9100",service="checkout",severity="page"} firing since 2024-05-01T10:00:00.123456789Z',
    });
    expect(Math.abs(rec.breaches[0]!.at - Date.now())).toBeLessThan(1000);

    expect(rec.statuses.at(-1)).toMatchObject({ healthy: false, value: 1 });

    // Once only. The value counts every matching alert firing.
    receiver.receive(payload([{ labels: { ...PAGE, instance: "web-3:9100" }, fingerprint: "a3" }]));
    expect(rec.breaches).toHaveLength(1);
    expect(rec.statuses.at(-1)).toMatchObject({ healthy: false, value: 2 });
  });

  it(`looks at the firing alerts again every ${ALERT_SAMPLE_EVERY_MS} ms, so its chart has samples, until stopped`, async () => {
    vi.useFakeTimers();
    try {
      const receiver = createAlertReceiver({ log });
      const w = create(receiver, { severity: "page" });
      const rec = watch(w);
      await Promise.resolve();
      expect(rec.statuses.map((s) => s.value)).toEqual([0]);
      await vi.advanceTimersByTimeAsync(ALERT_SAMPLE_EVERY_MS);
      expect(rec.statuses.map((s) => s.value)).toEqual([0, 0]);
      w.stop();
      await vi.advanceTimersByTimeAsync(ALERT_SAMPLE_EVERY_MS * 3);
      expect(rec.statuses).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("ignores alerts whose labels don't include every matcher", async () => {
    const receiver = createAlertReceiver({ log });
    const rec = watch(create(receiver, { severity: "page", service: "checkout" }));
    receiver.receive(payload([{ labels: TICKET, fingerprint: "b2" }]));
    receiver.receive(payload([{ labels: { alertname: "X", severity: "page", service: "search" }, fingerprint: "c3" }]));
    receiver.receive(payload([{ labels: { alertname: "Y", severity: "page" }, fingerprint: "d4" }]));
    await new Promise((r) => setTimeout(r, 20));
    expect(rec.breaches).toEqual([]);
    expect(await watcher!.check()).toEqual({ healthy: true, detail: 'no firing alert matches {service="checkout",severity="page"}', value: 0 });
  });

  it("fails preflight and breaches on start when a matching alert is already firing", async () => {
    const receiver = createAlertReceiver({ log });
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }, { labels: TICKET, fingerprint: "b2" }]));
    const w = create(receiver, { severity: "page" });
    const status = await w.check();
    expect(status.healthy).toBe(false);
    expect(status.detail).toMatch(/^1 firing alert matches \{severity="page"\}: CheckoutErrors\{/);
    expect(status.value).toBe(1);

    const rec = watch(w);
    expect(rec.breaches).toEqual([]); // never from inside start()
    await Promise.resolve();
    expect(rec.breaches).toHaveLength(1);
  });

  it("is healthy again once the alert resolves, and stop() unsubscribes", async () => {
    const receiver = createAlertReceiver({ log });
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    const w = create(receiver, { severity: "page" });
    expect((await w.check()).healthy).toBe(false);
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1", status: "resolved" }]));
    expect(await w.check()).toEqual({ healthy: true, detail: 'no firing alert matches {severity="page"}', value: 0 });

    const rec = watch(w);
    await Promise.resolve();
    w.stop();
    w.stop();
    receiver.receive(payload([{ labels: PAGE, fingerprint: "a1" }]));
    expect(rec.breaches).toEqual([]);
  });
});

describe("alert routes", () => {
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it("accepts Alertmanager's webhook and lists firing alerts", async () => {
    const receiver = createAlertReceiver({ log });
    app = Fastify();
    registerAlertRoutes(app, receiver);
    const heard: string[] = [];
    receiver.onFiring((a) => heard.push(a.fingerprint));

    const ok = await app.inject({ method: "POST", url: "/api/v1/alerts/alertmanager", payload: payload([{ labels: PAGE, fingerprint: "a1" }]) });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ accepted: 1, dropped: 0 });
    expect(heard).toEqual(["a1"]);

    const list = await app.inject({ method: "GET", url: "/api/v1/alerts" });
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual({
      alerts: [
        {
          fingerprint: "a1",
          labels: PAGE,
          annotations: { summary: "CheckoutErrors on web-1:9100", runbook_url: "https://runbooks/x" },
          startsAt: "2024-05-01T10:00:00.123456789Z",
        },
      ],
    });

    const bad = await app.inject({ method: "POST", url: "/api/v1/alerts/alertmanager", payload: { version: "4", receiver: "x", status: "firing", alerts: [{}] } });
    expect(bad.statusCode).toBe(400);
    const body = bad.json() as { error: { code: string; message: string; issues: unknown[] } };
    expect(body.error.code).toBe("invalid_alert_payload");
    expect(body.error.issues).toEqual([
      { field: "alerts[0].status", message: 'is required ("firing" or "resolved")' },
      { field: "alerts[0].labels", message: "is required (an object of name: value strings)" },
      { field: "alerts[0].startsAt", message: "is required (a string)" },
    ]);
    expect(body.error.message).toContain("alerts[0].labels: is required (an object of name: value strings)");
    expect(body.error.message).toContain("/api/v1/alerts/alertmanager");
  });
});
