/**
 * Identity routes: `GET /api/v1/whoami`; tokens (admin): `POST/GET /api/v1/tokens`,
 * `DELETE /api/v1/tokens/:id`; the audit log: `GET /api/v1/audit`, `GET /api/v1/audit/verify`.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import type { Issue } from "../errors.js";
import type { AuditEntry, AuditLog } from "./audit.js";
import { callerOf } from "./http.js";
import type { IdentityStore, TokenRecord } from "./identity-store.js";
import { ScopeError, parseScope } from "./scope.js";
import { ROLES } from "./types.js";
import type { PrincipalKind, Role } from "./types.js";

/** What the identity routes need. */
export interface AuthRoutesOptions {
  identities: IdentityStore;
  audit: AuditLog;
  /** @default Date.now */
  now?: () => number;
}

/** A token as the API returns it (never its secret). */
export interface TokenJson {
  id: string;
  principal: string;
  kind: PrincipalKind;
  role: Role;
  scope: string | null;
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  lastUsedFrom: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
  state: TokenRecord["state"];
}

/** An audit row as the API returns it: the stored row with an ISO time, without the token id and the link hash. */
export type AuditJson = Omit<AuditEntry, "time" | "tokenId" | "prevHash"> & { time: string };

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Renders a token. */
export function toTokenJson(t: TokenRecord): TokenJson {
  return {
    id: t.id,
    principal: t.principal,
    kind: t.kind,
    role: t.role,
    scope: t.scope,
    createdAt: iso(t.createdAt)!,
    createdBy: t.createdBy,
    expiresAt: iso(t.expiresAt),
    lastUsedAt: iso(t.lastUsedAt),
    lastUsedFrom: t.lastUsedFrom,
    revokedAt: iso(t.revokedAt),
    revokedBy: t.revokedBy,
    state: t.state,
  };
}

/** Renders an audit row. */
export function toAuditJson(e: AuditEntry): AuditJson {
  const { tokenId: _tokenId, prevHash: _prevHash, ...rest } = e;
  return { ...rest, time: iso(e.time)! };
}

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000, y: 365 * 86_400_000 };
/** The longest token lifetime. */
export const MAX_TOKEN_LIFETIME_MS = 5 * 365 * 86_400_000;

/**
 * Parses a relative duration such as `90d`, `12h`, `30m`, `2w`, `1y` (for `expires` and `since`).
 * Returns undefined when it is not one.
 */
export function parseRelative(text: string): number | undefined {
  const m = /^(\d{1,6})([mhdwy])$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;
const TOKEN_FIELDS = ["name", "role", "kind", "expires", "scope"];

function objectBody(request: FastifyRequest): Record<string, unknown> {
  const body = request.body ?? {};
  if (typeof body !== "object" || Array.isArray(body)) throw new ApiError(400, "invalid_request", "the request body must be a JSON object");
  return body as Record<string, unknown>;
}

/** Registers the identity and audit routes. */
export function registerAuthRoutes(app: FastifyInstance, options: AuthRoutesOptions): void {
  const { identities, audit } = options;
  const now = options.now ?? Date.now;

  app.get("/api/v1/whoami", { config: { permission: "read" } }, async (request) => {
    const caller = callerOf(request);
    const token = identities.getToken(caller.tokenId, now());
    return {
      principal: { name: caller.name, kind: caller.kind, role: caller.role },
      token: { id: caller.tokenId, scope: caller.scope, expiresAt: token ? iso(token.expiresAt) : null },
    };
  });

  app.post("/api/v1/tokens", { config: { permission: "admin" } }, async (request, reply) => {
    const body = objectBody(request);
    const issues: Issue[] = [];
    for (const key of Object.keys(body)) {
      if (!TOKEN_FIELDS.includes(key)) issues.push({ field: key, message: `unknown field; allowed: ${TOKEN_FIELDS.join(", ")}` });
    }
    const name = body["name"];
    if (typeof name !== "string" || !NAME_RE.test(name)) {
      issues.push({ field: "name", message: `${JSON.stringify(name ?? null)} is not a principal name: 1-64 letters, digits and . _ @ + -, starting with a letter or digit` });
    }
    const role = body["role"];
    if (typeof role !== "string" || !(ROLES as readonly string[]).includes(role)) {
      issues.push({ field: "role", message: `${JSON.stringify(role ?? null)} is not a role; use one of ${ROLES.join(", ")}` });
    }
    const kind = body["kind"];
    if (kind !== undefined && kind !== "person" && kind !== "service") {
      issues.push({ field: "kind", message: `${JSON.stringify(kind)} is not a kind; use person or service` });
    }
    let expiresAt: number | null = null;
    const expires = body["expires"];
    if (expires !== undefined && expires !== null) {
      const ms = typeof expires === "string" ? parseRelative(expires) : undefined;
      if (ms === undefined || ms <= 0 || ms > MAX_TOKEN_LIFETIME_MS) {
        issues.push({ field: "expires", message: `${JSON.stringify(expires)} is not a lifetime; use e.g. 30m, 12h, 90d, 1y (at most 5y)` });
      } else expiresAt = now() + ms;
    }
    let scope: string | null = null;
    const scopeText = body["scope"];
    if (scopeText !== undefined && scopeText !== null) {
      if (typeof scopeText !== "string") issues.push({ field: "scope", message: "must be a label selector string, e.g. env!=prod" });
      else {
        try {
          scope = parseScope(scopeText).text;
        } catch (err) {
          if (!(err instanceof ScopeError)) throw err;
          issues.push({ field: "scope", message: err.message });
        }
      }
    }
    if (issues.length > 0) {
      throw new ApiError(400, "invalid_request", `invalid token request: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, issues);
    }
    const caller = callerOf(request);
    const { token, text } = identities.createToken(
      {
        name: name as string,
        role: role as Role,
        ...(kind !== undefined ? { kind: kind as PrincipalKind } : {}),
        scope,
        expiresAt,
        createdBy: caller.name,
      },
      now(),
    );
    request.auditTargets.push(token.id, `principal:${token.principal}`);
    request.auditDetail = `token for ${token.principal} (${token.role}${token.scope ? `, scope ${token.scope}` : ""}${token.expiresAt ? `, expires ${iso(token.expiresAt)}` : ""})`;
    return reply.code(201).send({ token: toTokenJson(token), secret: text });
  });

  app.get<{ Querystring: { all?: string } }>("/api/v1/tokens", { config: { permission: "admin" } }, async (request) => {
    const all = request.query.all === "1" || request.query.all === "true";
    return { tokens: identities.listTokens({ includeInactive: all }, now()).map(toTokenJson) };
  });

  app.delete<{ Params: { id: string } }>("/api/v1/tokens/:id", { config: { permission: "admin" } }, async (request) => {
    const caller = callerOf(request);
    const token = identities.revokeToken(request.params.id, caller.name, now());
    if (!token) {
      throw new ApiError(404, "token_not_found", `token ${JSON.stringify(request.params.id.slice(0, 100))} does not exist; list tokens with firedrill token list --all`);
    }
    request.auditDetail = `revoked ${token.principal}'s token`;
    return { token: toTokenJson(token) };
  });

  app.get<{ Querystring: Record<string, string | undefined> }>("/api/v1/audit", { config: { permission: "read" } }, async (request) => {
    const q = request.query;
    const issues: Issue[] = [];
    for (const key of Object.keys(q)) {
      if (!["since", "actor", "limit"].includes(key)) issues.push({ field: `query.${key}`, message: "unknown parameter; allowed: since, actor, limit" });
    }
    let since: number | undefined;
    if (q["since"] !== undefined && q["since"] !== "") {
      const rel = parseRelative(q["since"]);
      const abs = rel === undefined ? Date.parse(q["since"]) : now() - rel;
      if (Number.isNaN(abs)) issues.push({ field: "query.since", message: `${JSON.stringify(q["since"])} is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)` });
      else since = abs;
    }
    const limit = q["limit"] === undefined ? 100 : Number(q["limit"]);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) issues.push({ field: "query.limit", message: "must be a whole number from 1 to 10000" });
    const actor = q["actor"];
    if (actor !== undefined && (actor === "" || actor.length > 200)) issues.push({ field: "query.actor", message: "must be a principal name" });
    if (issues.length > 0) throw new ApiError(400, "invalid_request", `invalid audit query: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, issues);
    const entries = audit.list({ limit, ...(since !== undefined ? { since } : {}), ...(actor !== undefined ? { principal: actor } : {}) });
    return { entries: entries.map(toAuditJson) };
  });

  app.get("/api/v1/audit/verify", { config: { permission: "read" } }, async () => audit.verify());
}
