/**
 * Routes of agent enrollment (all admin): join tokens (`/api/v1/join-tokens`), revoking an agent
 * (`POST /api/v1/agents/:id/revoke`) and forgetting one (`DELETE /api/v1/agents/:id`).
 */
import * as grpc from "@grpc/grpc-js";
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, RevertReason, parseDuration, plural } from "@firedrill/protocol";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { toAgentJson } from "../api-types.js";
import { callerOf } from "../auth/http.js";
import { parseRelative } from "../auth/routes.js";
import { ApiError } from "../errors.js";
import type { Issue } from "../errors.js";
import type { AgentHub } from "../hub/agent-hub.js";
import type { Store } from "../store/store.js";
import type { IdentityRegistry } from "./identities.js";
import type { JoinTokenRecord, JoinTokenStore } from "./join-tokens.js";

/** What the enrollment routes need. */
export interface EnrollmentRoutesOptions {
  joinTokens: JoinTokenStore;
  identities: IdentityRegistry;
  /** `sha256:…` of the CA the join tokens pin. */
  caFingerprint: string;
  caSha256: string;
  staleAfterMs: number;
  store: Store;
  hub: AgentHub;
  /** How long a revoke waits for the agent to confirm its faults reverted before closing the link. @default 700 */
  revokeWaitMs?: number;
}

/** A join token as the API returns it (never its secret). */
export interface JoinTokenJson {
  id: string;
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
  usesAllowed: number | null;
  uses: number;
  labels: Record<string, string>;
  caFingerprint: string;
  revokedAt: string | null;
  revokedBy: string | null;
  state: JoinTokenRecord["state"];
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const ADMIN = { config: { permission: "admin" as const } };
/** The longest join token lifetime. */
const MAX_TTL_MS = 366 * 86_400_000;

function objectBody(request: FastifyRequest): Record<string, unknown> {
  const body = request.body ?? {};
  if (typeof body !== "object" || Array.isArray(body)) throw new ApiError(400, "invalid_request", "the request body must be a JSON object");
  return body as Record<string, unknown>;
}

/** Registers the routes. */
export function registerEnrollmentRoutes(app: FastifyInstance, options: EnrollmentRoutesOptions): void {
  const { joinTokens, identities, store, hub } = options;
  const toJson = (t: JoinTokenRecord): JoinTokenJson => ({
    id: t.id,
    createdAt: iso(t.createdAt)!,
    createdBy: t.createdBy,
    expiresAt: iso(t.expiresAt),
    usesAllowed: t.usesAllowed,
    uses: t.uses,
    labels: t.labels,
    caFingerprint: options.caFingerprint,
    revokedAt: iso(t.revokedAt),
    revokedBy: t.revokedBy,
    state: t.state,
  });

  app.post("/api/v1/join-tokens", ADMIN, async (request, reply) => {
    const body = objectBody(request);
    const issues: Issue[] = [];
    for (const key of Object.keys(body)) if (!["ttl", "uses", "labels"].includes(key)) issues.push({ field: key, message: "unknown field; allowed: ttl, uses, labels" });
    let ttlMs = 24 * 3_600_000;
    if (body["ttl"] !== undefined) {
      // 90m, 24h, 1h30m, and days or weeks as `firedrill join-token create --ttl` advertises (7d, 2w).
      const ms = typeof body["ttl"] === "string" ? (parseDuration(body["ttl"]) ?? parseRelative(body["ttl"])) : undefined;
      if (ms === undefined || ms < 60_000 || ms > MAX_TTL_MS) issues.push({ field: "ttl", message: `${JSON.stringify(body["ttl"])} is not a lifetime from 1m to 366d; use e.g. 1h, 24h, 7d` });
      else ttlMs = ms;
    }
    let usesAllowed: number | null = null;
    if (body["uses"] !== undefined && body["uses"] !== null) {
      const uses = body["uses"];
      if (typeof uses !== "number" || !Number.isInteger(uses) || uses < 1 || uses > 1_000_000) issues.push({ field: "uses", message: "must be a whole number from 1 to 1000000" });
      else usesAllowed = uses;
    }
    const labels: Record<string, string> = {};
    if (body["labels"] !== undefined) {
      const raw = body["labels"];
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) issues.push({ field: "labels", message: "must be an object of key: value strings" });
      else {
        const entries = Object.entries(raw as Record<string, unknown>);
        if (entries.length > 64) issues.push({ field: "labels", message: `${entries.length} labels; at most 64` });
        for (const [k, v] of entries.slice(0, 64)) {
          if (!LABEL_KEY_PATTERN.test(k)) issues.push({ field: `labels.${k.slice(0, 60)}`, message: "is not a label key: letters, digits and . _ / : -, starting and ending with a letter or digit" });
          else if (typeof v !== "string" || !LABEL_VALUE_PATTERN.test(v)) issues.push({ field: `labels.${k}`, message: "must be a label value: up to 253 letters, digits and . _ : / @ + -" });
          else labels[k] = v;
        }
      }
    }
    if (issues.length > 0) throw new ApiError(400, "invalid_request", `invalid join token request: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, issues);
    const now = Date.now();
    const { token, text } = joinTokens.create({ expiresAt: now + ttlMs, usesAllowed, labels, createdBy: callerOf(request).name }, options.caSha256, now);
    request.auditTargets.push(token.id);
    request.auditDetail = `join token valid until ${iso(token.expiresAt)}, ${usesAllowed ?? "unlimited"} uses`;
    return reply.code(201).send({ joinToken: toJson(token), token: text });
  });

  app.get<{ Querystring: { all?: string } }>("/api/v1/join-tokens", ADMIN, async (request) => ({
    joinTokens: joinTokens.list(request.query.all === "1" || request.query.all === "true", Date.now()).map(toJson),
  }));

  app.delete<{ Params: { id: string } }>("/api/v1/join-tokens/:id", ADMIN, async (request) => {
    const token = joinTokens.revoke(request.params.id, callerOf(request).name, Date.now());
    if (!token) throw new ApiError(404, "join_token_not_found", `join token ${JSON.stringify(request.params.id.slice(0, 100))} does not exist; list them with firedrill join-token list --all`);
    return { joinToken: toJson(token) };
  });

  app.post<{ Params: { id: string } }>("/api/v1/agents/:id/revoke", ADMIN, async (request) => {
    const id = request.params.id;
    const body = objectBody(request);
    const reason = typeof body["reason"] === "string" && body["reason"].trim() !== "" ? body["reason"].trim().slice(0, 500) : "revoked by an admin";
    const agent = store.getAgent(id);
    const identity = identities.get(id);
    if (!agent && !identity) throw new ApiError(404, "agent_not_found", `agent ${JSON.stringify(id.slice(0, 100))} is not known to this control plane; list agents with firedrill agents`);
    const by = callerOf(request).name;
    const now = Date.now();
    // Refuse the certificate first: whatever happens next, the agent cannot come back.
    if (identity) identities.revoke(id, by, reason, now);
    else identities.enroll({ agentId: id, hostname: agent!.hostname, joinTokenId: null, labels: {}, enrolledAt: now, certSerial: "", certNotAfter: 0 });
    if (!identity) identities.revoke(id, by, reason, now);
    const active = store.listActiveFaults(id).map((f) => f.id);
    // Wanted ended: a revert it does not confirm is closed once its lease must have ended it.
    if (active.length > 0) hub.requestStops({ agentId: id }, "stopped", `agent revoked by ${by}: ${reason}`);
    let confirmed = active.length === 0;
    if (hub.isConnected(id)) {
      if (active.length > 0) {
        hub.send(id, { case: "stopAll", value: { reason: RevertReason.STOPPED, message: `the agent was revoked: ${reason}` } });
        const deadline = Date.now() + (options.revokeWaitMs ?? 700);
        while (Date.now() < deadline) {
          if (active.every((f) => store.getFault(f)?.endedAt !== null)) break;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        confirmed = active.every((f) => store.getFault(f)?.endedAt !== null);
      }
      hub.disconnect(id, { code: grpc.status.PERMISSION_DENIED, refusal: "revoked", details: `agent ${id} was revoked by ${by}: ${reason}; it cannot connect again` });
    }
    request.auditDetail = `revoked: ${reason}; ${plural(active.length, "active fault")}${confirmed ? "" : ", revert not confirmed (the lease reverts them)"}`;
    const after = store.getAgent(id);
    return { agent: after ? toAgentJson(after, options.staleAfterMs) : null, faultsReverted: active.length, confirmed };
  });

  app.delete<{ Params: { id: string } }>("/api/v1/agents/:id", ADMIN, async (request) => {
    const id = request.params.id;
    const agent = store.getAgent(id);
    if (!agent || store.isAgentRemoved(id)) throw new ApiError(404, "agent_not_found", `agent ${JSON.stringify(id.slice(0, 100))} is not known to this control plane; list agents with firedrill agents`);
    if (hub.isConnected(id)) {
      throw new ApiError(409, "agent_connected", `agent ${id} (${agent.hostname}) is connected; revoke it first (firedrill agents revoke ${id}), then remove it`);
    }
    const now = Date.now();
    const by = callerOf(request).name;
    if (identities.get(id)) identities.revoke(id, by, "removed", now);
    store.removeAgent(id, now);
    return { removed: { id, hostname: agent.hostname } };
  });
}
