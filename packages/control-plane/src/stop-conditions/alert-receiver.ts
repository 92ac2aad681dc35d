/**
 * The Alertmanager webhook receiver: keeps the set of firing alerts that Alertmanager pushes to
 * `POST /api/v1/alerts/alertmanager` and notifies `alert` stop conditions the moment a new one
 * fires (no polling).
 */
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { z } from "zod";
import type { Issue } from "../errors.js";
import type { AlertSource, FiringAlert } from "./types.js";

/** The only webhook payload version firedrill understands (Alertmanager 0.x sends "4"). */
export const ALERTMANAGER_PAYLOAD_VERSION = "4";

/** The receiver's route, for Alertmanager's `webhook_configs[].url`. */
export const ALERTMANAGER_WEBHOOK_PATH = "/api/v1/alerts/alertmanager";

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

/** Thrown by {@link AlertReceiver.receive} when the body is not an Alertmanager webhook payload (version 4). */
export class AlertPayloadError extends Error {
  override readonly name = "AlertPayloadError";
  constructor(
    /** One entry per problem, `field` as a path such as `alerts[0].labels.severity`. */
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
}

/** The firing-alert state fed by Alertmanager, and the source `alert` stop conditions watch. */
export interface AlertReceiver extends AlertSource {
  /**
   * Applies one webhook payload: firing alerts are added (listeners hear about the new ones at
   * once), resolved ones and ones whose `endsAt` has passed are removed.
   * Thrown when the payload is invalid: {@link AlertPayloadError}; the state is then unchanged.
   */
  receive(payload: unknown): { accepted: number };
}

interface StoredAlert {
  alert: FiringAlert;
  /** Epoch ms after which the alert no longer fires; undefined = until resolved. */
  endsAtMs: number | undefined;
}

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value);
  return `${typeof value} ${text.length > 40 ? `${text.slice(0, 37)}...` : text}`;
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

function toIssues(error: z.ZodError): Issue[] {
  return error.issues.map((issue) => {
    const field = fieldPath(issue.path);
    const input = (issue as { input?: unknown }).input;
    switch (issue.code) {
      case "invalid_type": {
        const expected = EXPECTED[issue.expected] ?? issue.expected;
        if (input === undefined) return { field, message: `is required (${expected})` };
        return { field, message: `must be ${expected}, not ${describeValue(input)}` };
      }
      case "invalid_value": {
        const allowed = issue.values.map((v) => JSON.stringify(v)).join(" or ");
        if (input === undefined) return { field, message: `is required (${allowed})` };
        return { field, message: `is ${describeValue(input)}; expected ${allowed}` };
      }
      default:
        return { field, message: issue.message };
    }
  });
}

/**
 * Parses and validates a webhook body.
 * Thrown when it is not a version-4 Alertmanager payload: {@link AlertPayloadError}.
 */
export function parseAlertmanagerPayload(payload: unknown): AlertmanagerPayload {
  const result = payloadSchema.safeParse(payload, { reportInput: true });
  if (!result.success) throw new AlertPayloadError(toIssues(result.error));
  return result.data;
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

/** Creates the receiver; one per control plane. */
export function createAlertReceiver(options: AlertReceiverOptions): AlertReceiver {
  const log = options.log.child({ component: "alert-receiver" });
  const now = options.now ?? Date.now;
  const alerts = new Map<string, StoredAlert>();
  const listeners = new Set<(alert: FiringAlert) => void>();

  const expire = (at: number): void => {
    for (const [fingerprint, stored] of alerts) {
      if (stored.endsAtMs !== undefined && stored.endsAtMs <= at) alerts.delete(fingerprint);
    }
  };

  return {
    firing() {
      expire(now());
      return [...alerts.values()].map((s) => ({ ...s.alert, labels: { ...s.alert.labels }, annotations: { ...s.alert.annotations } }));
    },

    onFiring(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    receive(payload) {
      const parsed = parseAlertmanagerPayload(payload);
      const at = now();
      expire(at);
      const started: FiringAlert[] = [];
      for (const a of parsed.alerts) {
        const fingerprint = a.fingerprint ?? labelFingerprint(a.labels);
        const ends = endsAtMs(a.endsAt);
        if (a.status === "resolved" || (ends !== undefined && ends <= at)) {
          if (alerts.delete(fingerprint)) log.info({ fingerprint, labels: a.labels }, "alert resolved");
          continue;
        }
        const alert: FiringAlert = { fingerprint, labels: a.labels, annotations: a.annotations, startsAt: a.startsAt };
        if (!alerts.has(fingerprint)) started.push(alert);
        alerts.set(fingerprint, { alert, endsAtMs: ends });
      }
      if (parsed.truncatedAlerts !== undefined && parsed.truncatedAlerts > 0) {
        log.warn(
          { receiver: parsed.receiver, truncatedAlerts: parsed.truncatedAlerts },
          "Alertmanager left alerts out of this webhook (max_alerts); alert stop conditions only see the ones it sent",
        );
      }
      for (const alert of started) {
        log.info({ fingerprint: alert.fingerprint, labels: alert.labels }, "alert firing");
        for (const listener of [...listeners]) {
          try {
            listener({ ...alert, labels: { ...alert.labels }, annotations: { ...alert.annotations } });
          } catch (err) {
            log.error({ err, fingerprint: alert.fingerprint }, "an alert listener failed");
          }
        }
      }
      return { accepted: parsed.alerts.length };
    },
  };
}

/**
 * Registers the receiver's routes on the HTTP API:
 * - `POST /api/v1/alerts/alertmanager`: an Alertmanager webhook payload → 200 `{ accepted }`,
 *   or 400 `{ error: { code: "invalid_alert_payload", message, issues } }`;
 * - `GET /api/v1/alerts`: `{ alerts: FiringAlert[] }`, the alerts firing now.
 */
export function registerAlertRoutes(app: FastifyInstance, receiver: AlertReceiver): void {
  app.post(ALERTMANAGER_WEBHOOK_PATH, async (request, reply) => {
    try {
      return reply.code(200).send(receiver.receive(request.body));
    } catch (err) {
      if (!(err instanceof AlertPayloadError)) throw err;
      request.log.warn({ issues: err.issues }, "rejected an Alertmanager webhook payload");
      return reply.code(400).send({ error: { code: "invalid_alert_payload", message: err.message, issues: err.issues } });
    }
  });

  app.get("/api/v1/alerts", async () => ({ alerts: receiver.firing() }));
}
