/**
 * Authentication, authorization and audit for the HTTP API, as fastify hooks:
 * - every route declares a permission (`config: { permission }`); one without is refused when it
 *   is registered, so no route can be served unchecked;
 * - `Host` must name this server (DNS rebinding);
 * - `Authorization: Bearer fdt_…` identifies the caller; its role must grant the permission;
 * - failed authentications are rate-limited per source address (429);
 * - every mutating call and every refused one (401, 403, 422, 429) is appended to the audit log.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ApiError } from "../errors.js";
import type { AuditLog } from "./audit.js";
import type { HostPolicy } from "./hosts.js";
import type { AuthFailure, IdentityStore } from "./identity-store.js";
import { MAX_TOKEN_LENGTH } from "./tokens.js";
import { PERMISSIONS, ROLES, roleAllows } from "./types.js";
import type { Caller, Permission } from "./types.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** What the route requires; every route must declare one. */
    permission?: Permission;
  }
  interface FastifyRequest {
    /** The authenticated caller (undefined on public routes and refused requests). */
    caller?: Caller;
    /** Ids the call acted on or created, for the audit log (route params are added on their own). */
    auditTargets: string[];
    /** A note for the audit log (e.g. a policy override's reason). */
    auditDetail?: string;
    /** The error code the call was answered with, set by the error handler. */
    auditOutcome?: string;
  }
}

/** A registered route and its permission. */
export interface RouteEntry {
  method: string;
  url: string;
  permission: Permission;
}

/** Options of {@link installAuth}. */
export interface AuthHooksOptions {
  identities: IdentityStore;
  audit: AuditLog;
  hosts: HostPolicy;
  log: Logger;
  /** Failed authentications allowed per source address per window before 429. @default 20 */
  maxFailures?: number;
  /** @default 60000 */
  failureWindowMs?: number;
  /** @default Date.now */
  now?: () => number;
}

/** What {@link installAuth} returns. */
export interface AuthHooks {
  /** Every route registered so far, with its permission (HEAD routes included). */
  routes(): RouteEntry[];
}

/** The caller of a request that passed authentication. Thrown (500) when the route is public: a programming error. */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new Error(`${request.method} ${request.url}: no authenticated caller on this route`);
  return request.caller;
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const AUDITED_REFUSALS = new Set([401, 403, 422, 429]);

/** Who may use a permission, for messages. */
function rolesWith(permission: Permission): string {
  return ROLES.filter((r) => roleAllows(r, permission)).join(", ");
}

const FAILURE_TEXT: Record<AuthFailure, string> = {
  malformed: "the Authorization header does not hold a firedrill API token (Bearer fdt_…)",
  unknown: "the API token is not valid for this control plane",
  revoked: "the API token was revoked",
  expired: "the API token has expired",
};

/** Counts failed authentications per source address in fixed windows (bounded in memory). */
function createFailureLimiter(max: number, windowMs: number) {
  const MAX_SOURCES = 10_000;
  const bySource = new Map<string, { start: number; count: number; refusalsAudited: number }>();
  return {
    /** Records a failure; returns the seconds to wait when the source is over the limit. */
    fail(source: string, now: number): { limited: boolean; retryAfterS: number; audit: boolean } {
      let entry = bySource.get(source);
      if (!entry || now - entry.start >= windowMs) {
        if (entry) bySource.delete(source);
        if (bySource.size >= MAX_SOURCES) bySource.delete(bySource.keys().next().value as string);
        entry = { start: now, count: 0, refusalsAudited: 0 };
        bySource.set(source, entry);
      }
      entry.count += 1;
      const retryAfterS = Math.max(1, Math.ceil((entry.start + windowMs - now) / 1000));
      if (entry.count <= max) return { limited: false, retryAfterS, audit: true };
      // Past the limit, only the first refusal of a window is audited: a flood can't fill the log.
      entry.refusalsAudited += 1;
      return { limited: true, retryAfterS, audit: entry.refusalsAudited === 1 };
    },
  };
}

/**
 * Installs the hooks. Call before registering any route.
 * Thrown at route registration: Error when a route declares no permission.
 */
export function installAuth(app: FastifyInstance, options: AuthHooksOptions): AuthHooks {
  const { identities, audit, hosts } = options;
  const now = options.now ?? Date.now;
  const log = options.log.child({ component: "auth" });
  const limiter = createFailureLimiter(options.maxFailures ?? 20, options.failureWindowMs ?? 60_000);
  const routes: RouteEntry[] = [];

  app.decorateRequest("caller", undefined);
  app.decorateRequest("auditTargets", {
    getter(this: FastifyRequest & { _auditTargets?: string[] }) {
      this._auditTargets ??= [];
      return this._auditTargets;
    },
  });
  app.decorateRequest("auditDetail", undefined);
  app.decorateRequest("auditOutcome", undefined);

  app.addHook("onRoute", (route) => {
    const permission = route.config?.permission;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (permission === undefined || !PERMISSIONS.includes(permission)) {
      throw new Error(`route ${methods.join(",")} ${route.url} declares no permission: add config: { permission } (one of ${PERMISSIONS.join(", ")})`);
    }
    for (const method of methods) routes.push({ method: String(method), url: route.url, permission });
  });

  app.addHook("onRequest", async (request, reply) => {
    if (!hosts.allows(request.headers.host)) {
      throw new ApiError(
        421,
        "unknown_host",
        `this control plane does not answer to the name ${JSON.stringify((request.headers.host ?? "").slice(0, 100))}; connect by one of its names or addresses, or start the server with --advertise NAME`,
      );
    }
    const permission = request.routeOptions.config.permission;
    // No permission means no route matched: the not-found handler answers.
    if (permission === undefined || permission === "public") return;
    const header = request.headers.authorization;
    const source = request.ip;
    const refuse = (failure: AuthFailure | "missing", tokenId?: string): never => {
      const { limited, retryAfterS, audit: shouldAudit } = limiter.fail(source, now());
      if (!shouldAudit) request.auditOutcome = "suppressed";
      if (limited) {
        void reply.header("retry-after", String(retryAfterS));
        throw new ApiError(429, "too_many_failed_authentications", `too many failed authentications from ${source}; wait ${retryAfterS}s, then retry with a valid API token`);
      }
      if (tokenId !== undefined) request.auditTargets.push(tokenId);
      const why = failure === "missing" ? "this endpoint needs an API token" : FAILURE_TEXT[failure];
      throw new ApiError(
        401,
        "unauthenticated",
        `${why}: send Authorization: Bearer <token>. With the CLI: firedrill login --server URL --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN`,
      );
    };
    if (typeof header !== "string" || header === "") return refuse("missing");
    const match = /^bearer +(\S+)$/i.exec(header.length > MAX_TOKEN_LENGTH + 10 ? "" : header);
    if (!match) return refuse("malformed");
    const result = identities.authenticate(match[1]!, now(), source);
    if (!result.ok) return refuse(result.failure, result.tokenId);
    request.caller = result.caller;
    if (!roleAllows(result.caller.role, permission)) {
      const route = request.routeOptions.url ?? request.url;
      throw new ApiError(
        403,
        "forbidden",
        `${result.caller.name} (${result.caller.role}) may not ${request.method} ${route}: it needs the ${permission} permission, which ${rolesWith(permission)} have; ask an admin for such a token`,
      );
    }
  });

  app.addHook("onResponse", async (request, reply) => {
    const status = reply.statusCode;
    if (!MUTATING.has(request.method) && !AUDITED_REFUSALS.has(status)) return;
    if (status === 421 || request.auditOutcome === "suppressed") return;
    const params = (request.params ?? {}) as Record<string, unknown>;
    const targets = [
      ...Object.values(params).filter((v): v is string => typeof v === "string" && v !== ""),
      ...request.auditTargets,
    ];
    const caller = request.caller;
    try {
      const entry = audit.append({
        time: now(),
        principal: caller?.name ?? null,
        role: caller?.role ?? null,
        tokenId: caller?.tokenId ?? null,
        source: request.ip,
        method: request.method,
        route: request.routeOptions.url ?? "(no route)",
        path: request.url.split("?")[0] ?? request.url,
        targets: [...new Set(targets)],
        status,
        outcome: status < 400 ? "ok" : (request.auditOutcome ?? `http_${status}`),
        detail: request.auditDetail ?? null,
      });
      log.info(
        { audit: entry.id, principal: entry.principal, source: entry.source, method: entry.method, path: entry.path, status, outcome: entry.outcome, hash: entry.hash },
        "audit",
      );
    } catch (err) {
      log.error({ err, method: request.method, url: request.url }, "could not write the audit log");
    }
  });

  return { routes: () => [...routes] };
}
