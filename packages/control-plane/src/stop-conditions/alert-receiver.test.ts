/** The receiver's bounds, its full-store behaviour, expiry, and persistence in a real database (SQLite and PostgreSQL). */
import { Writable } from "node:stream";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SqlDatabase } from "../store/sql/types.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import {
  ALERTMANAGER_BODY_LIMIT,
  ALERTMANAGER_WEBHOOK_PATH,
  AlertPayloadError,
  DEFAULT_ALERT_STALE_AFTER_MS,
  MAX_ALERTS_PER_PAYLOAD,
  MAX_ALERT_SIZE_BYTES,
  MAX_ANNOTATIONS_PER_ALERT,
  MAX_ANNOTATION_VALUE_LENGTH,
  MAX_FIRING_ALERTS,
  MAX_LABELS_PER_ALERT,
  MAX_LABEL_NAME_LENGTH,
  MAX_LABEL_VALUE_LENGTH,
  createAlertReceiver,
  registerAlertRoutes,
} from "./alert-receiver.js";

const log = pino({ level: "silent" });
const ZERO_TIME = "0001-01-01T00:00:00Z";
const T0 = Date.parse("2030-01-01T00:00:00Z");

interface AlertInput {
  fingerprint: string;
  status?: "firing" | "resolved";
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  endsAt?: string;
}

function alert(a: AlertInput): Record<string, unknown> {
  return {
    status: a.status ?? "firing",
    labels: a.labels ?? { alertname: "CheckoutErrors", severity: "page", instance: a.fingerprint },
    annotations: a.annotations ?? { summary: "checkout 5xx above 1%" },
    startsAt: "2024-05-01T10:00:00.123Z",
    endsAt: a.endsAt ?? (a.status === "resolved" ? "2024-05-01T10:05:00Z" : ZERO_TIME),
    generatorURL: "http://prometheus:9090/graph?g0.expr=up",
    fingerprint: a.fingerprint,
  };
}

/** A version-4 webhook body. */
function payload(alerts: Record<string, unknown>[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { version: "4", receiver: "firedrill", status: "firing", alerts, groupLabels: {}, commonLabels: {}, commonAnnotations: {}, truncatedAlerts: 0, ...extra };
}

function firingAlerts(prefix: string, count: number): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, i) => alert({ fingerprint: `${prefix}${i}` }));
}

function jsonBytes(sets: { labels: Record<string, string>; annotations: Record<string, string> }): number {
  return Buffer.byteLength(JSON.stringify(sets.labels)) + Buffer.byteLength(JSON.stringify(sets.annotations));
}

/** 64 labels and 64 annotations whose JSON is exactly {@link MAX_ALERT_SIZE_BYTES} + `extra` bytes, every value within its bound. */
function maximalSets(extra = 0): { labels: Record<string, string>; annotations: Record<string, string> } {
  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  for (let i = 0; i < MAX_LABELS_PER_ALERT; i++) labels[`label_${String(i).padStart(2, "0")}`] = "v".repeat(40);
  for (let i = 0; i < MAX_ANNOTATIONS_PER_ALERT; i++) annotations[`annotation_${String(i).padStart(2, "0")}`] = "";
  let missing = MAX_ALERT_SIZE_BYTES + extra - jsonBytes({ labels, annotations });
  for (const name of Object.keys(annotations)) {
    const add = Math.min(missing, MAX_ANNOTATION_VALUE_LENGTH);
    annotations[name] = "a".repeat(add);
    missing -= add;
  }
  if (missing !== 0) throw new Error("maximalSets: cannot reach the size");
  return { labels, annotations };
}

function rejection(fn: () => unknown): AlertPayloadError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AlertPayloadError) return err;
    throw err;
  }
  throw new Error("expected an AlertPayloadError, but the payload was accepted");
}

/** A pino logger whose warnings are recorded. */
function recordingLog(): { log: pino.Logger; warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const line = JSON.parse(chunk.toString()) as Record<string, unknown>;
      if (line.level === 40) warnings.push(line);
      done();
    },
  });
  return { log: pino({ level: "warn" }, pino.multistream([{ level: "warn", stream }], { dedupe: false })), warnings };
}

// The store's database of the engine under test (set by each engine's block below).
let db: SqlDatabase;

interface Row {
  fingerprint: string;
  labels: string;
  annotations: string;
  starts_at: string;
  ends_at: number | null;
  received_at: number;
}
const rows = (): Row[] => db.prepare<[], Row>("SELECT * FROM firing_alerts ORDER BY fingerprint").all();
const fingerprints = (list: { fingerprint: string }[]): string[] => list.map((a) => a.fingerprint).sort();

describeEachEngine("alert receiver", (engine) => {
  beforeEach(async () => {
    db = await engine.openDatabase();
  });

  describe("alert receiver bounds", () => {
    it("accepts an alert exactly at every bound, and 1,000 alerts in a payload", () => {
      const receiver = createAlertReceiver({ log, db });
      const sets = maximalSets();
      expect(jsonBytes(sets)).toBe(MAX_ALERT_SIZE_BYTES);
      // The longest name and label value too, with the annotations shortened to keep the size.
      delete sets.labels.label_00;
      sets.labels[`n${"x".repeat(MAX_LABEL_NAME_LENGTH - 1)}`] = "v".repeat(MAX_LABEL_VALUE_LENGTH);
      const summary = sets.annotations.annotation_00!;
      sets.annotations.annotation_00 = summary.slice(jsonBytes(sets) - MAX_ALERT_SIZE_BYTES);
      expect(jsonBytes(sets)).toBe(MAX_ALERT_SIZE_BYTES);
      expect(receiver.receive(payload([alert({ fingerprint: "max", ...sets })]))).toEqual({ accepted: 1, dropped: 0 });
      expect(receiver.firing()).toEqual([{ fingerprint: "max", ...sets, startsAt: "2024-05-01T10:00:00.123Z" }]);
      expect(JSON.parse(rows()[0]!.annotations)).toEqual(sets.annotations);

      // 1,000 alerts: all valid, 999 kept (the store holds 1,000), 1 heard but dropped.
      expect(receiver.receive(payload(firingAlerts("f", MAX_ALERTS_PER_PAYLOAD)))).toEqual({ accepted: 999, dropped: 1 });
    });

    it("rejects a payload over a bound whole, with issues naming the field and the bound", () => {
      const receiver = createAlertReceiver({ log, db });
      receiver.receive(payload([alert({ fingerprint: "keep" })]));
      const before = rows();

      const alerts = firingAlerts("n", 8);
      alerts[3]!.labels = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`l${i}`, "v"]));
      alerts[4]!.annotations = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`a${i}`, "v"]));
      alerts[5]!.labels = { alertname: "X", ["n".repeat(129)]: "v", severity: "v".repeat(1025) };
      alerts[6]!.annotations = { summary: "s".repeat(4097) };
      alerts[7]!.fingerprint = "f".repeat(129);
      alerts[7]!.generatorURL = `http://x/${"g".repeat(5000)}`;
      alerts[7]!.startsAt = `2024-05-01T10:00:00.${"0".repeat(60)}Z`;
      const err = rejection(() => receiver.receive(payload(alerts, { receiver: "r".repeat(257) })));
      expect(err.issues).toEqual([
        { field: "receiver", message: "257 characters; at most 256" },
        { field: "alerts[3].labels", message: "80 labels; at most 64" },
        { field: "alerts[4].annotations", message: "65 annotations; at most 64" },
        { field: "alerts[5].labels", message: `a name of 129 characters ("${"n".repeat(37)}..."); at most 128` },
        { field: "alerts[5].labels.severity", message: "1025 characters; at most 1024" },
        { field: "alerts[6].annotations.summary", message: "4097 characters; at most 4096" },
        { field: "alerts[7].fingerprint", message: "129 characters; at most 128" },
        { field: "alerts[7].generatorURL", message: "5009 characters; at most 4096" },
        { field: "alerts[7].startsAt", message: "81 characters; at most 64" },
      ]);
      expect(err.message).toContain("alerts[3].labels: 80 labels; at most 64");

      // Too many alerts: refused on the count alone, whatever the alerts hold.
      const many = [...firingAlerts("m", MAX_ALERTS_PER_PAYLOAD), { nonsense: true }];
      expect(rejection(() => receiver.receive(payload(many))).issues).toEqual([
        { field: "alerts", message: "1001 alerts; at most 1000 in one payload (set max_alerts on the webhook_config)" },
      ]);

      // One byte over the size of an alert.
      const big = maximalSets(1);
      expect(rejection(() => receiver.receive(payload([alert({ fingerprint: "ok" }), alert({ fingerprint: "big", ...big })]))).issues).toEqual([
        { field: "alerts[1]", message: "labels and annotations take 8193 bytes as JSON; at most 8192 (8 KiB)" },
      ]);

      expect(fingerprints(receiver.firing())).toEqual(["keep"]);
      expect(rows()).toEqual(before);
      expect(receiver.stats()).toEqual({ firing: 1, dropped: 0 });
    });

    it("lists at most 20 issues and counts the others", () => {
      const receiver = createAlertReceiver({ log });
      const alerts = firingAlerts("n", 30).map((a) => ({ ...a, fingerprint: "f".repeat(200) }));
      const issues = rejection(() => receiver.receive(payload(alerts))).issues;
      expect(issues).toHaveLength(21);
      expect(issues[19]).toEqual({ field: "alerts[19].fingerprint", message: "200 characters; at most 128" });
      expect(issues[20]).toEqual({ field: "(body)", message: "and 10 more issues" });

      // Wrong types: zod stops looking at alerts once the list is full.
      const broken = Array.from({ length: 1000 }, () => ({ labels: { a: 1 } }));
      const typeIssues = rejection(() => receiver.receive(payload(broken))).issues;
      expect(typeIssues).toHaveLength(21);
      expect(typeIssues.slice(0, 3)).toEqual([
        { field: "alerts[0].status", message: 'is required ("firing" or "resolved")' },
        { field: "alerts[0].labels.a", message: "must be a string, not number 1" },
        { field: "alerts[0].startsAt", message: "is required (a string)" },
      ]);
      expect(typeIssues[20]).toEqual({ field: "(body)", message: "and more issues, not listed" });
    });
  });

  describe("alert receiver when full", () => {
    it("tells listeners about a new alert it cannot keep, reports and counts it, and still applies updates and resolutions", () => {
      let now = T0;
      const { log: warnLog, warnings } = recordingLog();
      const receiver = createAlertReceiver({ log: warnLog, db, now: () => now });
      expect(receiver.receive(payload(firingAlerts("a", MAX_FIRING_ALERTS)))).toEqual({ accepted: 1000, dropped: 0 });
      const heard: string[] = [];
      receiver.onFiring((a) => heard.push(a.fingerprint));

      // Full: the new ones are heard but not kept; the update of a0 applies.
      const update = alert({ fingerprint: "a0", annotations: { summary: "now worse" } });
      const result = receiver.receive(payload([update, alert({ fingerprint: "new1" }), alert({ fingerprint: "new2" })]));
      expect(result).toEqual({ accepted: 1, dropped: 2 });
      expect(heard).toEqual(["new1", "new2"]);
      expect(receiver.stats()).toEqual({ firing: 1000, dropped: 2 });
      expect(receiver.firing().find((a) => a.fingerprint === "a0")!.annotations).toEqual({ summary: "now worse" });
      expect(receiver.firing().some((a) => a.fingerprint.startsWith("new"))).toBe(false);
      expect(db.prepare("SELECT count(*) AS n FROM firing_alerts").get()).toEqual({ n: 1000 });
      expect(JSON.parse(rows().find((r) => r.fingerprint === "a0")!.annotations)).toEqual({ summary: "now worse" });

      // One warning per minute, however many drops.
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ dropped: 2, droppedTotal: 2, firing: 1000, max: 1000 });
      now += 30_000;
      receiver.receive(payload([alert({ fingerprint: "new3" })]));
      receiver.receive(payload([alert({ fingerprint: "new4" })]));
      expect(warnings).toHaveLength(1);
      now += 30_000;
      receiver.receive(payload([alert({ fingerprint: "new5" })]));
      expect(warnings).toHaveLength(2);
      expect(warnings[1]).toMatchObject({ dropped: 3, droppedTotal: 5 });
      expect(heard).toEqual(["new1", "new2", "new3", "new4", "new5"]);

      // A resolution frees a place, in the same payload as a new alert.
      const freed = receiver.receive(payload([alert({ fingerprint: "new6" }), alert({ fingerprint: "a1", status: "resolved" })]));
      expect(freed).toEqual({ accepted: 2, dropped: 0 });
      expect(receiver.stats()).toEqual({ firing: 1000, dropped: 5 });
      expect(receiver.firing().some((a) => a.fingerprint === "new6")).toBe(true);
      expect(rows().some((r) => r.fingerprint === "a1")).toBe(false);
      expect(rows().some((r) => r.fingerprint === "new6")).toBe(true);
    });

    it("stays at 1,000 firing alerts however many maximal payloads arrive", () => {
      // The memory bound, by count (RSS is measured in bench/): maximal alerts, distinct fingerprints.
      const receiver = createAlertReceiver({ log });
      const sets = maximalSets();
      let heard = 0;
      receiver.onFiring(() => heard++);
      const posts = 10;
      for (let p = 0; p < posts; p++) {
        const alerts = Array.from({ length: MAX_ALERTS_PER_PAYLOAD }, (_, i) => alert({ fingerprint: `p${p}-${i}`, ...sets }));
        receiver.receive(payload(alerts));
        expect(receiver.stats().firing).toBe(MAX_FIRING_ALERTS);
      }
      expect(receiver.stats()).toEqual({ firing: MAX_FIRING_ALERTS, dropped: (posts - 1) * MAX_ALERTS_PER_PAYLOAD });
      expect(heard).toBe(posts * MAX_ALERTS_PER_PAYLOAD);
    });

    it("keeps at most 1,000 rows in the database however many payloads arrive", () => {
      const receiver = createAlertReceiver({ log, db });
      const sets = maximalSets();
      for (let p = 0; p < 3; p++) {
        receiver.receive(payload(Array.from({ length: MAX_ALERTS_PER_PAYLOAD }, (_, i) => alert({ fingerprint: `p${p}-${i}`, ...sets }))));
      }
      expect(receiver.stats()).toEqual({ firing: 1000, dropped: 2000 });
      expect(db.prepare("SELECT count(*) AS n FROM firing_alerts").get()).toEqual({ n: 1000 });
      expect(createAlertReceiver({ log, db }).stats()).toEqual({ firing: 1000, dropped: 0 });
    });
  });

  describe("alert receiver persistence", () => {
    it("remembers firing alerts across a restart, not resolved ones", () => {
      const first = createAlertReceiver({ log, db, now: () => T0 });
      const labels = { alertname: "CheckoutErrors", severity: "page", service: "checkout" };
      first.receive(payload([alert({ fingerprint: "a1", labels }), alert({ fingerprint: "b2" }), alert({ fingerprint: "c3" })]));
      first.receive(payload([alert({ fingerprint: "b2", status: "resolved" })]));
      first.receive(payload([alert({ fingerprint: "c3", endsAt: "2029-12-31T23:00:00Z" })]));
      expect(rows()).toEqual([
        {
          fingerprint: "a1",
          labels: JSON.stringify(labels),
          annotations: JSON.stringify({ summary: "checkout 5xx above 1%" }),
          starts_at: "2024-05-01T10:00:00.123Z",
          ends_at: null,
          received_at: T0,
        },
      ]);

      // "Restart": a new receiver on the same database.
      const second = createAlertReceiver({ log, db, now: () => T0 + 60_000 });
      expect(second.firing()).toEqual([
        { fingerprint: "a1", labels, annotations: { summary: "checkout 5xx above 1%" }, startsAt: "2024-05-01T10:00:00.123Z" },
      ]);
      // Known: a repeat is not new; the resolution removes it for good.
      const heard: string[] = [];
      second.onFiring((a) => heard.push(a.fingerprint));
      second.receive(payload([alert({ fingerprint: "a1", labels })]));
      expect(heard).toEqual([]);
      second.receive(payload([alert({ fingerprint: "a1", labels, status: "resolved" })]));
      expect(rows()).toEqual([]);
      expect(createAlertReceiver({ log, db }).firing()).toEqual([]);
    });

    it("saves the endsAt and expires on load what ended or went stale while down", () => {
      const first = createAlertReceiver({ log, db, now: () => T0 });
      first.receive(payload([alert({ fingerprint: "ends", endsAt: "2030-01-01T00:10:00Z" }), alert({ fingerprint: "open" })]));
      expect(rows().map((r) => [r.fingerprint, r.ends_at])).toEqual([
        ["ends", Date.parse("2030-01-01T00:10:00Z")],
        ["open", null],
      ]);

      expect(fingerprints(createAlertReceiver({ log, db, now: () => T0 + 5 * 60_000 }).firing())).toEqual(["ends", "open"]);
      expect(fingerprints(createAlertReceiver({ log, db, now: () => T0 + 10 * 60_000 }).firing())).toEqual(["open"]);
      expect(rows().map((r) => r.fingerprint)).toEqual(["open"]);
      expect(createAlertReceiver({ log, db, now: () => T0 + DEFAULT_ALERT_STALE_AFTER_MS }).firing()).toEqual([]);
      expect(rows()).toEqual([]);
    });
  });

  describe("alert receiver stale expiry", () => {
    it("expires an alert Alertmanager has not sent again for staleAfterMs (1 hour by default)", () => {
      let now = T0;
      const receiver = createAlertReceiver({ log, db, now: () => now });
      receiver.receive(payload([alert({ fingerprint: "a1" }), alert({ fingerprint: "b2" })]));

      now += 30 * 60_000; // Alertmanager's repeat_interval: a1 is sent again, b2 is not
      receiver.receive(payload([alert({ fingerprint: "a1" })]));
      expect(rows().find((r) => r.fingerprint === "a1")!.received_at).toBe(now);

      now = T0 + DEFAULT_ALERT_STALE_AFTER_MS - 1;
      expect(fingerprints(receiver.firing())).toEqual(["a1", "b2"]);
      now = T0 + DEFAULT_ALERT_STALE_AFTER_MS;
      expect(fingerprints(receiver.firing())).toEqual(["a1"]);
      expect(rows().map((r) => r.fingerprint)).toEqual(["a1"]);
      now = T0 + 30 * 60_000 + DEFAULT_ALERT_STALE_AFTER_MS;
      expect(receiver.stats()).toEqual({ firing: 0, dropped: 0 });
      expect(rows()).toEqual([]);

      // Sent again after expiring: new again, listeners hear it.
      const heard: string[] = [];
      receiver.onFiring((a) => heard.push(a.fingerprint));
      receiver.receive(payload([alert({ fingerprint: "a1" })]));
      expect(heard).toEqual(["a1"]);
    });

    it("takes staleAfterMs, and refuses a non-positive one", () => {
      let now = T0;
      const receiver = createAlertReceiver({ log, now: () => now, staleAfterMs: 1000 });
      receiver.receive(payload([alert({ fingerprint: "a1" })]));
      now += 999;
      expect(receiver.firing()).toHaveLength(1);
      now += 1;
      expect(receiver.firing()).toEqual([]);
      expect(() => createAlertReceiver({ log, staleAfterMs: 0 })).toThrow(/staleAfterMs: is 0; expected a positive number/);
    });
  });

  describe("alert routes", () => {
    let app: FastifyInstance | undefined;
    afterEach(async () => {
      await app?.close();
      app = undefined;
    });

    it("declares permissions and a 1 MiB body limit, refuses larger bodies and payloads over a bound", async () => {
      const receiver = createAlertReceiver({ log, db });
      app = Fastify();
      const routes: unknown[] = [];
      app.addHook("onRoute", (route) => {
        if (route.method !== "HEAD") routes.push([route.method, route.url, (route.config as { permission?: string } | undefined)?.permission, route.bodyLimit]);
      });
      registerAlertRoutes(app, receiver);
      expect(routes).toEqual([
        ["POST", ALERTMANAGER_WEBHOOK_PATH, "alerts:push", ALERTMANAGER_BODY_LIMIT],
        ["GET", "/api/v1/alerts", "read", undefined],
      ]);
      expect(ALERTMANAGER_BODY_LIMIT).toBe(1024 * 1024);

      const huge = JSON.stringify(payload([alert({ fingerprint: "a1", annotations: { summary: "s".repeat(ALERTMANAGER_BODY_LIMIT) } })]));
      const tooLarge = await app.inject({ method: "POST", url: ALERTMANAGER_WEBHOOK_PATH, headers: { "content-type": "application/json" }, payload: huge });
      expect(tooLarge.statusCode).toBe(413);

      const labels = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`l${i}`, "v"]));
      const bad = await app.inject({
        method: "POST",
        url: ALERTMANAGER_WEBHOOK_PATH,
        payload: payload([alert({ fingerprint: "a0" }), alert({ fingerprint: "a1" }), alert({ fingerprint: "a2" }), alert({ fingerprint: "a3", labels })]),
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({
        error: { code: "invalid_alert_payload", issues: [{ field: "alerts[3].labels", message: "80 labels; at most 64" }] },
      });

      const ok = await app.inject({ method: "POST", url: ALERTMANAGER_WEBHOOK_PATH, payload: payload([alert({ fingerprint: "a1" })]) });
      expect(ok.json()).toEqual({ accepted: 1, dropped: 0 });
      expect(rows().map((r) => r.fingerprint)).toEqual(["a1"]);
      const list = await app.inject({ method: "GET", url: "/api/v1/alerts" });
      expect((list.json() as { alerts: { fingerprint: string }[] }).alerts.map((a) => a.fingerprint)).toEqual(["a1"]);
    });
  });
});
