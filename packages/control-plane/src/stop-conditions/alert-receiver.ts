/**
 * The Alertmanager webhook receiver: keeps the set of firing alerts that Alertmanager pushes to
 * `POST /api/v1/alerts/alertmanager` and notifies `alert` stop conditions the moment a new one
 * fires (no polling). The set is bounded (see the `MAX_*` constants), expires alerts Alertmanager
 * stopped re-sending, and, given the store's database, survives a control-plane restart.
 */
import { createHash } from "node:crypto";
import type { SqlDatabase } from "../store/sql/types.js";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { z } from "zod";
import { InvalidConfigError } from "../errors.js";
import type { Issue } from "../errors.js";
import type { AlertSource, FiringAlert } from "./types.js";

/** The only webhook payload version firedrill understands (Alertmanager 0.x sends "4"). */
export const ALERTMANAGER_PAYLOAD_VERSION = "4";

/** The receiver's route, for Alertmanager's `webhook_configs[].url`. */
export const ALERTMANAGER_WEBHOOK_PATH = "/api/v1/alerts/alertmanager";

/** Largest webhook body the route reads, in bytes (1 MiB); a larger one is refused with 413. */
export const ALERTMANAGER_BODY_LIMIT = 1024 * 1024;

/** Most alerts in one payload (`alerts` array); Alertmanager's `max_alerts` caps what it sends. */
export const MAX_ALERTS_PER_PAYLOAD = 1000;

/**
 * Most firing alerts kept. When full, a new firing alert still reaches the listeners (running
 * `alert` stop conditions abort) but is not kept; updates and resolutions of kept ones always apply.
 */
export const MAX_FIRING_ALERTS = 1000;

/** Most labels on one alert. */
export const MAX_LABELS_PER_ALERT = 64;

/** Most annotations on one alert. */
export const MAX_ANNOTATIONS_PER_ALERT = 64;

/** Longest label or annotation name, in characters. */
export const MAX_LABEL_NAME_LENGTH = 128;

/** Longest label value, in characters. */
export const MAX_LABEL_VALUE_LENGTH = 1024;

/** Longest annotation value, in characters. */
export const MAX_ANNOTATION_VALUE_LENGTH = 4096;

/**
 * Largest labels + annotations of one alert, in bytes of their JSON (UTF-8), 8 KiB: with
 * {@link MAX_FIRING_ALERTS}, at most 8 MiB of alert text is kept (real alerts are well under 2 KiB).
 */
export const MAX_ALERT_SIZE_BYTES = 8 * 1024;

/** Longest `receiver`, in characters. */
export const MAX_RECEIVER_LENGTH = 256;

/** Longest `fingerprint`, in characters (Alertmanager's are 16 hex digits). */
export const MAX_FINGERPRINT_LENGTH = 128;

/** Longest `generatorURL` or `externalURL`, in characters. */
export const MAX_URL_LENGTH = 4096;

/** Longest `startsAt` or `endsAt`, in characters (RFC 3339 with nanoseconds and an offset is 35). */
export const MAX_TIMESTAMP_LENGTH = 64;

/**
 * How long a firing alert is kept without Alertmanager sending it again, 1 hour. Alertmanager
 * re-sends a group's firing alerts when the group changes (at most every `group_interval`) and
 * otherwise every `repeat_interval` (default 4h): set the firedrill route's `repeat_interval`
 * below this, or a still-firing alert expires between two notifications.
 */
export const DEFAULT_ALERT_STALE_AFTER_MS = 60 * 60 * 1000;

/** Most issues a rejection lists; the rest are counted in a last issue. */
const MAX_REPORTED_ISSUES = 20;

/** At most one "store full" warning per this long (the `stats().dropped` counter counts them all). */
const DROP_WARNING_INTERVAL_MS = 60_000;

const timestamp = z.string().refine((value) => !Number.isNaN(Date.parse(value)), {
  message: "is not an RFC 3339 timestamp (e.g. 2024-05-01T10:00:00.000Z)",
});
const labelSet = z.record(z.string(), z.string());

const alertSchema = z
  .object({
    status: z.enum(["firing", "resolved"]),
    labels: labelSet,
    annotations: labelSet.default({}),
    startsAt: timestamp,
    endsAt: timestamp.optional(),
    generatorURL: z.string().optional(),
    /** Alertmanager ≥ 0.21 sends it; older ones don't, and then it is derived from the labels. */
    fingerprint: z.string().min(1).optional(),
  })
  .loose();

/** The webhook payload, version 4 (Alertmanager's `webhook_config`). Unknown fields are ignored. */
const payloadSchema = z
  .object({
    version: z.literal(ALERTMANAGER_PAYLOAD_VERSION),
    receiver: z.string(),
    status: z.enum(["firing", "resolved"]),
    alerts: z.array(alertSchema),
    groupLabels: labelSet.optional(),
    commonLabels: labelSet.optional(),
    commonAnnotations: labelSet.optional(),
    externalURL: z.string().optional(),
    groupKey: z.string().optional(),
    truncatedAlerts: z.number().int().min(0).optional(),
  })
  .loose();

/** A validated Alertmanager webhook payload. */
export type AlertmanagerPayload = z.infer<typeof payloadSchema>;

/** The payload without looking into its alerts: they are validated one by one, see {@link validatePayload}. */
const envelopeSchema = payloadSchema.extend({ alerts: z.array(z.unknown()) });

/** Thrown by {@link AlertReceiver.receive} when the body is not an Alertmanager webhook payload (version 4) within the bounds. */
export class AlertPayloadError extends Error {
  override readonly name = "AlertPayloadError";
  constructor(
    /**
     * One entry per problem, `field` as a path such as `alerts[0].labels.severity`; at most 20,
     * then one `(body)` entry counting the others.
     */
    readonly issues: Issue[],
  ) {
    super(
      `invalid Alertmanager webhook payload: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}; ` +
        `point an Alertmanager webhook_config (payload version ${ALERTMANAGER_PAYLOAD_VERSION}) at ${ALERTMANAGER_WEBHOOK_PATH}`,
    );
  }
}

/** Options of {@link createAlertReceiver}. */
export interface AlertReceiverOptions {
  log: Logger;
  /** Clock, injectable for tests. @default Date.now */
  now?: () => number;
  /**
   * The control plane's database (`store.db`, migrated): firing alerts are saved in its
   * `firing_alerts` table and loaded again on creation. Without it they are kept in memory only.
   */
  db?: SqlDatabase;
  /**
   * A firing alert Alertmanager has not sent again for this long expires. Must be above the
   * firedrill route's `repeat_interval`. @default {@link DEFAULT_ALERT_STALE_AFTER_MS} (1 hour)
   */
  staleAfterMs?: number;
}

/** What one webhook payload did. */
export interface AlertReceiveResult {
  /** Alerts applied: kept or updated (firing) or removed (resolved, ended). */
  accepted: number;
  /** New firing alerts not kept because {@link MAX_FIRING_ALERTS} were firing (listeners heard them). */
  dropped: number;
}

/** Counters of the receiver. */
export interface AlertReceiverStats {
  /** Firing alerts kept now. */
  firing: number;
  /** New firing alerts not kept since the receiver was created, because the store was full. */
  dropped: number;
}

/** The firing-alert state fed by Alertmanager, and the source `alert` stop conditions watch. */
export interface AlertReceiver extends AlertSource {
  /**
   * Applies one webhook payload: firing alerts are added (listeners hear about the new ones at
   * once, even when the store is full and they are not kept), resolved ones and ones whose
   * `endsAt` has passed are removed; with a database, the changes are saved in one transaction.
   * Thrown when the payload is invalid or over a bound: {@link AlertPayloadError}; the state is
   * then unchanged. Thrown when the database write fails: its error, after the in-memory state
   * was updated and the listeners were told (Alertmanager retries the webhook).
   */
  receive(payload: unknown): AlertReceiveResult;
  /** How many alerts are kept, and how many new ones were not because the store was full. */
  stats(): AlertReceiverStats;
}

interface StoredAlert {
  alert: FiringAlert;
  /** Epoch ms after which the alert no longer fires; undefined = until resolved. */
  endsAtMs: number | undefined;
  /** Epoch ms Alertmanager last sent it. */
  receivedAt: number;
}

interface AlertRow {
  fingerprint: string;
  labels: string;
  annotations: string;
  starts_at: string;
  ends_at: number | null;
  received_at: number;
}

/** Collects issues, keeping the first {@link MAX_REPORTED_ISSUES} and counting the rest. */
class IssueList {
  readonly kept: Issue[] = [];
  private omitted = 0;
  /** Set when checking stopped early: then the count of the others is not known. */
  incomplete = false;

  add(field: string, message: string): void {
    if (this.kept.length < MAX_REPORTED_ISSUES) this.kept.push({ field, message });
    else this.omitted++;
  }

  get empty(): boolean {
    return this.kept.length === 0;
  }

  /** True once more issues would only be counted. */
  get full(): boolean {
    return this.kept.length >= MAX_REPORTED_ISSUES;
  }

  toIssues(): Issue[] {
    if (this.incomplete) return [...this.kept, { field: "(body)", message: "and more issues, not listed" }];
    if (this.omitted === 0) return this.kept;
    return [...this.kept, { field: "(body)", message: `and ${this.omitted} more ${this.omitted === 1 ? "issue" : "issues"}` }];
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function preview(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 37)}...` : text);
}

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `string ${preview(value)}`;
  return `${typeof value} ${String(value)}`;
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out === "" ? "(body)" : out;
}

const EXPECTED: Record<string, string> = {
  record: "an object of name: value strings",
  object: "an object",
  array: "an array",
  string: "a string",
  number: "a number",
};

function addZodIssues(issues: IssueList, error: z.ZodError, prefix: readonly PropertyKey[] = []): void {
  for (const issue of error.issues) {
    const field = fieldPath([...prefix, ...issue.path]);
    const input = (issue as { input?: unknown }).input;
    switch (issue.code) {
      case "invalid_type": {
        const expected = EXPECTED[issue.expected] ?? issue.expected;
        if (input === undefined) issues.add(field, `is required (${expected})`);
        else issues.add(field, `must be ${expected}, not ${describeValue(input)}`);
        break;
      }
      case "invalid_value": {
        const allowed = issue.values.map((v) => JSON.stringify(v)).join(" or ");
        if (input === undefined) issues.add(field, `is required (${allowed})`);
        else issues.add(field, `is ${describeValue(input)}; expected ${allowed}`);
        break;
      }
      default:
        issues.add(field, issue.message);
    }
  }
}

function checkLength(issues: IssueList, field: string, value: unknown, max: number): void {
  if (typeof value === "string" && value.length > max) issues.add(field, `${value.length} characters; at most ${max}`);
}

function checkLabelSet(issues: IssueList, field: string, set: unknown, noun: string, maxCount: number, maxValue: number): void {
  if (!isRecord(set)) return;
  const names = Object.keys(set);
  if (names.length > maxCount) {
    issues.add(field, `${names.length} ${noun}; at most ${maxCount}`);
    return;
  }
  for (const name of names) {
    if (name.length > MAX_LABEL_NAME_LENGTH) {
      issues.add(field, `a name of ${name.length} characters (${preview(name)}); at most ${MAX_LABEL_NAME_LENGTH}`);
      continue;
    }
    checkLength(issues, `${field}.${name}`, set[name], maxValue);
  }
}

/**
 * The bounds that are cheap to check on the raw body, before any parsing: linear in its size,
 * and the alert count first, so that an oversized `alerts` array is refused without looking at it.
 */
function checkBounds(payload: unknown, issues: IssueList): void {
  if (!isRecord(payload)) return;
  checkLength(issues, "receiver", payload.receiver, MAX_RECEIVER_LENGTH);
  checkLength(issues, "externalURL", payload.externalURL, MAX_URL_LENGTH);
  const alerts = payload.alerts;
  if (!Array.isArray(alerts)) return;
  if (alerts.length > MAX_ALERTS_PER_PAYLOAD) {
    issues.add("alerts", `${alerts.length} alerts; at most ${MAX_ALERTS_PER_PAYLOAD} in one payload (set max_alerts on the webhook_config)`);
    return;
  }
  for (let i = 0; i < alerts.length; i++) {
    const alert: unknown = alerts[i];
    if (!isRecord(alert)) continue;
    const at = `alerts[${i}]`;
    checkLength(issues, `${at}.fingerprint`, alert.fingerprint, MAX_FINGERPRINT_LENGTH);
    checkLength(issues, `${at}.generatorURL`, alert.generatorURL, MAX_URL_LENGTH);
    checkLength(issues, `${at}.startsAt`, alert.startsAt, MAX_TIMESTAMP_LENGTH);
    checkLength(issues, `${at}.endsAt`, alert.endsAt, MAX_TIMESTAMP_LENGTH);
    checkLabelSet(issues, `${at}.labels`, alert.labels, "labels", MAX_LABELS_PER_ALERT, MAX_LABEL_VALUE_LENGTH);
    checkLabelSet(issues, `${at}.annotations`, alert.annotations, "annotations", MAX_ANNOTATIONS_PER_ALERT, MAX_ANNOTATION_VALUE_LENGTH);
  }
}

/** Labels and annotations of one alert as saved (JSON). */
interface SerializedSets {
  labels: string;
  annotations: string;
}

/** Validates a body: bounds, then shape, then the size of each alert. Throws {@link AlertPayloadError}. */
function validatePayload(payload: unknown): { parsed: AlertmanagerPayload; serialized: SerializedSets[] } {
  const issues = new IssueList();
  checkBounds(payload, issues);
  if (!issues.empty) throw new AlertPayloadError(issues.toIssues());

  const envelope = envelopeSchema.safeParse(payload, { reportInput: true });
  if (!envelope.success) addZodIssues(issues, envelope.error);
  // One alert at a time, stopping once the report is full: a body of 1,000 broken alerts would
  // otherwise make zod build tens of thousands of issues nobody reads.
  const alerts: AlertmanagerPayload["alerts"] = [];
  const rawAlerts = envelope.success ? envelope.data.alerts : isRecord(payload) && Array.isArray(payload.alerts) ? payload.alerts : [];
  for (let i = 0; i < rawAlerts.length; i++) {
    if (issues.full) {
      issues.incomplete = true;
      break;
    }
    const alert = alertSchema.safeParse(rawAlerts[i], { reportInput: true });
    if (alert.success) alerts.push(alert.data);
    else addZodIssues(issues, alert.error, ["alerts", i]);
  }
  if (!envelope.success || !issues.empty) throw new AlertPayloadError(issues.toIssues());
  const parsed: AlertmanagerPayload = { ...envelope.data, alerts };

  // Each set is at most 64 names of 128 and values of 4,096 characters here: bounded work.
  const serialized = alerts.map((alert, i): SerializedSets => {
    const labels = JSON.stringify(alert.labels);
    const annotations = JSON.stringify(alert.annotations);
    const bytes = Buffer.byteLength(labels) + Buffer.byteLength(annotations);
    if (bytes > MAX_ALERT_SIZE_BYTES) {
      issues.add(`alerts[${i}]`, `labels and annotations take ${bytes} bytes as JSON; at most ${MAX_ALERT_SIZE_BYTES} (8 KiB)`);
    }
    return { labels, annotations };
  });
  if (!issues.empty) throw new AlertPayloadError(issues.toIssues());
  return { parsed, serialized };
}

/**
 * Parses and validates a webhook body, bounds included (the `MAX_*` constants).
 * Thrown when it is not a version-4 Alertmanager payload within the bounds: {@link AlertPayloadError}.
 */
export function parseAlertmanagerPayload(payload: unknown): AlertmanagerPayload {
  return validatePayload(payload).parsed;
}

/** Alertmanager's own fingerprint is a hash of the label set; this stands in when it is missing. */
function labelFingerprint(labels: Record<string, string>): string {
  const canonical = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join("\u0000");
  return createHash("sha256").update(canonical).digest("hex").slice(0, 16);
}

/** Epoch ms of `endsAt`, or undefined for Go's zero time (Alertmanager's "not resolved"). */
function endsAtMs(endsAt: string | undefined): number | undefined {
  if (endsAt === undefined) return undefined;
  const ms = Date.parse(endsAt);
  return ms <= 0 ? undefined : ms;
}

function copyAlert(alert: FiringAlert): FiringAlert {
  return { ...alert, labels: { ...alert.labels }, annotations: { ...alert.annotations } };
}

function parseStringRecord(json: string): Record<string, string> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isRecord(value) || !Object.values(value).every((v) => typeof v === "string")) return undefined;
  return value as Record<string, string>;
}

/** The `firing_alerts` table's statements. */
function alertTable(db: SqlDatabase) {
  const upsert = db.prepare<[string, string, string, string, number | null, number]>(
    `INSERT INTO firing_alerts (fingerprint, labels, annotations, starts_at, ends_at, received_at)
     VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (fingerprint) DO UPDATE SET
       labels = excluded.labels, annotations = excluded.annotations, starts_at = excluded.starts_at,
       ends_at = excluded.ends_at, received_at = excluded.received_at`,
  );
  const remove = db.prepare<[string]>("DELETE FROM firing_alerts WHERE fingerprint = ?");
  const all = db.prepare<[], AlertRow>(
    "SELECT fingerprint, labels, annotations, starts_at, ends_at, received_at FROM firing_alerts ORDER BY received_at DESC, fingerprint",
  );
  const write = db.transaction((upserts: readonly [StoredAlert, SerializedSets][], deletes: Iterable<string>) => {
    for (const fingerprint of deletes) remove.run(fingerprint);
    for (const [{ alert, endsAtMs, receivedAt }, sets] of upserts) {
      upsert.run(alert.fingerprint, sets.labels, sets.annotations, alert.startsAt, endsAtMs ?? null, receivedAt);
    }
  });
  return { all: () => all.all(), write };
}

/** Creates the receiver; one per control plane. With `db`, loads the firing alerts saved there. */
export function createAlertReceiver(options: AlertReceiverOptions): AlertReceiver {
  const log = options.log.child({ component: "alert-receiver" });
  const now = options.now ?? Date.now;
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_ALERT_STALE_AFTER_MS;
  if (!(Number.isFinite(staleAfterMs) && staleAfterMs > 0)) {
    throw new InvalidConfigError([{ field: "staleAfterMs", message: `is ${staleAfterMs}; expected a positive number of milliseconds` }]);
  }
  const staleFor = staleAfterMs % 60_000 === 0 ? `${staleAfterMs / 60_000} min` : `${staleAfterMs} ms`;
  const table = options.db ? alertTable(options.db) : undefined;
  const alerts = new Map<string, StoredAlert>();
  const listeners = new Set<(alert: FiringAlert) => void>();
  let droppedTotal = 0;
  let droppedSinceWarning = 0;
  let lastDropWarning = -Infinity;

  const isExpired = (stored: { endsAtMs: number | undefined; receivedAt: number }, at: number): boolean =>
    (stored.endsAtMs !== undefined && stored.endsAtMs <= at) || stored.receivedAt + staleAfterMs <= at;

  /** Removes expired alerts from memory; returns their fingerprints (for the database). */
  const expire = (at: number): string[] => {
    const gone: string[] = [];
    for (const [fingerprint, stored] of alerts) {
      if (!isExpired(stored, at)) continue;
      alerts.delete(fingerprint);
      gone.push(fingerprint);
      const reason = stored.endsAtMs !== undefined && stored.endsAtMs <= at ? "its endsAt passed" : `Alertmanager has not sent it for ${staleFor}`;
      log.info({ fingerprint, labels: stored.alert.labels }, `alert expired: ${reason}`);
    }
    return gone;
  };

  /** Expiry outside a webhook (a stop condition looking): the database delete is best effort, load skips expired rows anyway. */
  const expireNow = (): void => {
    const gone = expire(now());
    if (gone.length === 0 || !table) return;
    try {
      table.write([], gone);
    } catch (err) {
      log.error({ err, count: gone.length }, "could not delete expired alerts from the database; they are skipped when loaded");
    }
  };

  if (table) {
    const at = now();
    const discard: string[] = [];
    for (const row of table.all()) {
      const labels = parseStringRecord(row.labels);
      const annotations = parseStringRecord(row.annotations);
      const stored = { endsAtMs: row.ends_at ?? undefined, receivedAt: row.received_at };
      // Newest first: past the bound (a smaller bound than when saved) are the oldest.
      if (!labels || !annotations || isExpired(stored, at) || alerts.size >= MAX_FIRING_ALERTS) {
        discard.push(row.fingerprint);
        continue;
      }
      alerts.set(row.fingerprint, { ...stored, alert: { fingerprint: row.fingerprint, labels, annotations, startsAt: row.starts_at } });
    }
    if (discard.length > 0) table.write([], discard);
    // Oldest first, as they would have arrived.
    const loaded = [...alerts].reverse();
    alerts.clear();
    for (const [fingerprint, stored] of loaded) alerts.set(fingerprint, stored);
    log.info({ firing: alerts.size, discarded: discard.length }, "loaded the firing alerts saved before the restart");
  }

  return {
    firing() {
      expireNow();
      return [...alerts.values()].map((s) => copyAlert(s.alert));
    },

    onFiring(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    stats() {
      expireNow();
      return { firing: alerts.size, dropped: droppedTotal };
    },

    receive(payload) {
      const { parsed, serialized } = validatePayload(payload);
      const at = now();
      const deletes = new Set(expire(at));

      // The last report of a fingerprint in the payload wins.
      const latest = new Map<string, number>();
      parsed.alerts.forEach((a, i) => latest.set(a.fingerprint ?? labelFingerprint(a.labels), i));

      const upserts = new Map<string, [StoredAlert, SerializedSets]>();
      const fresh: [StoredAlert, SerializedSets][] = [];
      // Resolutions and updates first, so that a payload resolving one alert and firing another
      // has room for the new one.
      for (const [fingerprint, i] of latest) {
        const a = parsed.alerts[i]!;
        const ends = endsAtMs(a.endsAt);
        if (a.status === "resolved" || (ends !== undefined && ends <= at)) {
          // Deleted from the database even when not in memory: a retry after a failed write.
          deletes.add(fingerprint);
          if (alerts.delete(fingerprint)) log.info({ fingerprint, labels: a.labels }, "alert resolved");
          continue;
        }
        const stored: StoredAlert = {
          alert: { fingerprint, labels: a.labels, annotations: a.annotations, startsAt: a.startsAt },
          endsAtMs: ends,
          receivedAt: at,
        };
        if (alerts.has(fingerprint)) {
          alerts.set(fingerprint, stored);
          upserts.set(fingerprint, [stored, serialized[i]!]);
        } else {
          fresh.push([stored, serialized[i]!]);
        }
      }

      let dropped = 0;
      for (const [stored, sets] of fresh) {
        const fingerprint = stored.alert.fingerprint;
        if (alerts.size >= MAX_FIRING_ALERTS) {
          dropped++;
          continue;
        }
        alerts.set(fingerprint, stored);
        upserts.set(fingerprint, [stored, sets]);
        log.info({ fingerprint, labels: stored.alert.labels }, "alert firing");
      }

      let writeError: unknown;
      // Deletes run first in the transaction: an alert expired above and sent again is saved again.
      if (table && (upserts.size > 0 || deletes.size > 0)) {
        try {
          table.write([...upserts.values()], deletes);
        } catch (err) {
          writeError = err;
          log.error({ err }, "could not save the firing alerts to the database; they are kept in memory, Alertmanager's retry saves them");
        }
      }

      if (parsed.truncatedAlerts !== undefined && parsed.truncatedAlerts > 0) {
        log.warn(
          { receiver: parsed.receiver, truncatedAlerts: parsed.truncatedAlerts },
          "Alertmanager left alerts out of this webhook (max_alerts); alert stop conditions only see the ones it sent",
        );
      }
      if (dropped > 0) {
        droppedTotal += dropped;
        droppedSinceWarning += dropped;
        if (at - lastDropWarning >= DROP_WARNING_INTERVAL_MS) {
          log.warn(
            { dropped: droppedSinceWarning, droppedTotal, firing: alerts.size, max: MAX_FIRING_ALERTS },
            `${MAX_FIRING_ALERTS} alerts are firing, the most firedrill keeps: new ones stop running alert stop conditions but are not kept ` +
              "(a run started later does not see them); route fewer alerts to firedrill (matchers on its Alertmanager route)",
          );
          lastDropWarning = at;
          droppedSinceWarning = 0;
        }
      }

      // Every new alert, kept or not: a running stop condition must hear it (the safe direction).
      const current = [...listeners];
      for (const [stored] of fresh) {
        for (const listener of current) {
          try {
            listener(copyAlert(stored.alert));
          } catch (err) {
            log.error({ err, fingerprint: stored.alert.fingerprint }, "an alert listener failed");
          }
        }
      }
      if (writeError !== undefined) throw writeError;
      return { accepted: parsed.alerts.length - dropped, dropped };
    },
  };
}

/**
 * Registers the receiver's routes on the HTTP API:
 * - `POST /api/v1/alerts/alertmanager` (permission `alerts:push`, body at most 1 MiB): an
 *   Alertmanager webhook payload → 200 `{ accepted, dropped }`,
 *   or 400 `{ error: { code: "invalid_alert_payload", message, issues } }`;
 * - `GET /api/v1/alerts` (permission `read`): `{ alerts: FiringAlert[] }`, the alerts firing now.
 */
export function registerAlertRoutes(app: FastifyInstance, receiver: AlertReceiver): void {
  app.post(ALERTMANAGER_WEBHOOK_PATH, { bodyLimit: ALERTMANAGER_BODY_LIMIT, config: { permission: "alerts:push" } }, async (request, reply) => {
    try {
      return reply.code(200).send(receiver.receive(request.body));
    } catch (err) {
      if (!(err instanceof AlertPayloadError)) throw err;
      request.log.warn({ issues: err.issues }, "rejected an Alertmanager webhook payload");
      return reply.code(400).send({ error: { code: "invalid_alert_payload", message: err.message, issues: err.issues } });
    }
  });

  app.get("/api/v1/alerts", { config: { permission: "read" } }, async () => ({ alerts: receiver.firing() }));
}
