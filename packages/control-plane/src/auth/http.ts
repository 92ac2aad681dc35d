/**
 * Authentication, authorization and audit for the HTTP API, as fastify hooks:
 * - every route declares a permission (`config: { permission }`); one without is refused when it
 *   is registered, so no route can be served unchecked;
 * - `Host` must name this server (DNS rebinding);
 * - `Authorization: Bearer fdt_…` identifies the caller; its role must grant the permission;
 * - without an Authorization header, the console's session cookie does (its token re-checked by
 *   id on every request); a change made with the cookie needs the session's CSRF token in
 *   `x-firedrill-csrf` and, when the browser sends an `Origin`, this server's own origin;
 * - failed authentications are rate-limited per source address (429);
 * - every mutating call and every refused one (401, 403, 422, 429) is appended to the audit log.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ApiError } from "../errors.js";
import type { AuditLog } from "./audit.js";
import type { HostPolicy } from "./hosts.js";
import type { AuthFailure, IdentityStore } from "./identity-store.js";
import { CSRF_HEADER, SESSION_COOKIE, clearedSessionCookie, csrfMatches, readCookie } from "./session.js";
import type { Session, SessionStore } from "./session.js";
import { MAX_TOKEN_LENGTH } from "./tokens.js";
import { PERMISSIONS, ROLES, roleAllows } from "./types.js";
import type { Caller, Permission } from "./types.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** What the route requires; every route must declare one. */
    permission?: Permission;
    /**
     * The route also answers a request that carries no credential at all (no Authorization header,
     * no session cookie), with no caller set: the console's "who am I" on its first load. A wrong
     * or ended credential is still refused.
     */
    anonymous?: boolean;
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
    /** The console session the request was authenticated with (undefined for bearer tokens). */
    consoleSession?: { id: string; session: Session };
  }
}

/** A registered route and its permission. */
export interface RouteEntry {
  method: string;
  url: string;
  permission: Permission;
  /** Also answers a request with no credential at all (see `config.anonymous`). */
  anonymous?: true;
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
  /** The console's sessions: without them the session cookie is not accepted. */
  sessions?: SessionStore;
}

/** How the credentials that failed were presented, for the refusal's message. */
export type CredentialSource = "bearer" | "session" | "login";

/** What {@link installAuth} returns. */
export interface AuthHooks {
  /** Every route registered so far, with its permission (HEAD routes included). */
  routes(): RouteEntry[];
  /**
   * Refuses a failed authentication as the hooks do: counted in the per-address failure limiter
   * (429 past it, audited once per window), else 401 saying how to authenticate. Always throws.
   */
  refuse(request: FastifyRequest, reply: FastifyReply, failure: AuthFailure | "missing", how: CredentialSource, tokenId?: string): never;
}

/** The caller of a request that passed authentication. Thrown (500) when the route is public: a programming error. */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new Error(`${request.method} ${request.url}: no authenticated caller on this route`);
  return request.caller;
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** Methods a session cookie may use without the CSRF token. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
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

/** Why a console session was refused, by what failed. */
const SESSION_FAILURE_TEXT: Record<AuthFailure | "missing", string> = {
  missing: "this console session has ended (logged out, or unused for 12 hours)",
  malformed: "this console session's API token is not a firedrill API token",
  unknown: "this console session's API token is not valid for this control plane",
  revoked: "the API token this console session logged in with was revoked",
  expired: "the API token this console session logged in with has expired",
};

/** Why a console login was refused. */
const LOGIN_FAILURE_TEXT: Record<AuthFailure | "missing", string> = {
  missing: "no API token was given",
  malformed: "that is not a firedrill API token (one looks like fdt_<12 hex>_<43 characters>)",
  unknown: FAILURE_TEXT.unknown,
  revoked: FAILURE_TEXT.revoked,
  expired: FAILURE_TEXT.expired,
};

/** The 401 message of a failed authentication. */
function refusalText(failure: AuthFailure | "missing", how: CredentialSource): string {
  switch (how) {
    case "session":
      return `${SESSION_FAILURE_TEXT[failure]}: log in to the console again with a valid API token`;
    case "login":
      return `${LOGIN_FAILURE_TEXT[failure]}: log in with a firedrill API token (fdt_…); the first admin token is in the server's DATA_DIR/admin-token, others come from firedrill token create`;
    case "bearer":
      return `${failure === "missing" ? "this endpoint needs an API token" : FAILURE_TEXT[failure]}: send Authorization: Bearer <token>. With the CLI: firedrill login --server URL --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN`;
  }
}

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
  app.decorateRequest("consoleSession", undefined);

  app.addHook("onRoute", (route) => {
    const permission = route.config?.permission;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (permission === undefined || !PERMISSIONS.includes(permission)) {
      throw new Error(`route ${methods.join(",")} ${route.url} declares no permission: add config: { permission } (one of ${PERMISSIONS.join(", ")})`);
    }
    const anonymous = route.config?.anonymous === true;
    for (const method of methods) routes.push({ method: String(method), url: route.url, permission, ...(anonymous ? { anonymous } : {}) });
  });

  const refuse = (request: FastifyRequest, reply: FastifyReply, failure: AuthFailure | "missing", how: CredentialSource, tokenId?: string): never => {
    const source = request.ip;
    const { limited, retryAfterS, audit: shouldAudit } = limiter.fail(source, now());
    if (!shouldAudit) request.auditOutcome = "suppressed";
    if (how === "session") void reply.header("set-cookie", clearedSessionCookie(request.protocol === "https"));
    if (limited) {
      void reply.header("retry-after", String(retryAfterS));
      throw new ApiError(429, "too_many_failed_authentications", `too many failed authentications from ${source}; wait ${retryAfterS}s, then retry with a valid API token`);
    }
    if (tokenId !== undefined) request.auditTargets.push(tokenId);
    throw new ApiError(401, "unauthenticated", refusalText(failure, how));
  };

  /**
   * The caller of a request that carries the session cookie: the session must be live and its
   * token still valid (a revoked or expired token ends the session); a change needs the CSRF token
   * and, when the browser says where it comes from, this server's own origin.
   */
  const authenticateSession = (request: FastifyRequest, reply: FastifyReply, sessions: SessionStore, id: string): Caller => {
    const result = sessions.authenticate(id, now(), request.ip);
    if (!result.ok) return refuse(request, reply, result.failure, "session", result.tokenId);
    const session = result.session;
    request.consoleSession = { id, session };
    if (!SAFE_METHODS.has(request.method)) {
      // The caller is known: a refused change is audited under the session's principal.
      request.caller = result.caller;
      if (!csrfMatches(request.headers[CSRF_HEADER], session)) {
        throw new ApiError(
          403,
          "csrf",
          `${request.method} ${request.routeOptions.url ?? request.url} with the console's session cookie needs the session's CSRF token in the ${CSRF_HEADER} header (the console sends it; reload the page), or use Authorization: Bearer <token> instead of the cookie`,
        );
      }
      const origin = request.headers.origin;
      const own = `${request.protocol}://${request.headers.host ?? ""}`.toLowerCase();
      if (origin !== undefined && origin.toLowerCase() !== own) {
        throw new ApiError(
          403,
          "csrf",
          `${request.method} ${request.routeOptions.url ?? request.url} came from the page of another site (Origin ${JSON.stringify(origin.slice(0, 200))}, this server is ${own}): changes with the console's session cookie are only accepted from the console itself; open ${own}/`,
        );
      }
    }
    return result.caller;
  };

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
    let caller: Caller;
    if ((typeof header !== "string" || header === "") && options.sessions) {
      const id = readCookie(request.headers.cookie, SESSION_COOKIE);
      if (id === undefined && request.routeOptions.config.anonymous === true) return;
      if (id === undefined) return refuse(request, reply, "missing", "bearer");
      caller = authenticateSession(request, reply, options.sessions, id);
    } else {
      if (typeof header !== "string" || header === "") return refuse(request, reply, "missing", "bearer");
      const match = /^bearer +(\S+)$/i.exec(header.length > MAX_TOKEN_LENGTH + 10 ? "" : header);
      if (!match) return refuse(request, reply, "malformed", "bearer");
      const result = identities.authenticate(match[1]!, now(), source);
      if (!result.ok) return refuse(request, reply, result.failure, "bearer", result.tokenId);
      caller = result.caller;
    }
    request.caller = caller;
    if (!roleAllows(caller.role, permission)) {
      const route = request.routeOptions.url ?? request.url;
      throw new ApiError(
        403,
        "forbidden",
        `${caller.name} (${caller.role}) may not ${request.method} ${route}: it needs the ${permission} permission, which ${rolesWith(permission)} have; ask an admin for such a token`,
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

  return { routes: () => [...routes], refuse };
}
