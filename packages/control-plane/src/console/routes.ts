/**
 * The game-day console, served on the API's port: `GET /` and `GET /assets/:file` (the built
 * files, public: the secret is the token, not the page), the session routes
 * (`POST /console/api/login`, `GET /console/api/session`, `POST /console/api/logout`) and the
 * self-contained report file `GET /api/v1/runs/:id/report.html`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ApiError } from "../errors.js";
import type { AuthHooks } from "../auth/http.js";
import { callerOf } from "../auth/http.js";
import type { IdentityStore } from "../auth/identity-store.js";
import { SESSION_COOKIE, clearedSessionCookie, readCookie, sessionCookie } from "../auth/session.js";
import type { SessionStore } from "../auth/session.js";
import { MAX_TOKEN_LENGTH } from "../auth/tokens.js";
import type { Caller } from "../auth/types.js";
import { ConsoleAssetsMissingError, buildHint, createConsoleAssets, defaultConsoleDir, isConsoleFile } from "./assets.js";
import type { ConsoleAsset } from "./assets.js";
import { renderReportHtml } from "./report-html.js";

/** The Content-Security-Policy of the console's pages: its own files only, no inline script or style. */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Headers of every console file. */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** The login body limit: a token and a little JSON around it. */
export const LOGIN_BODY_LIMIT = 4 * 1024;

/** Options of {@link registerConsoleRoutes}. */
export interface ConsoleRoutesOptions {
  /** Where the built console is. @default {@link defaultConsoleDir} */
  consoleDir?: string;
  sessions: SessionStore;
  identities: IdentityStore;
  /** The auth hooks: a failed login is refused (and rate-limited) as a failed bearer token is. */
  auth: AuthHooks;
  /** A run's report JSON (ApiError 404 when there is no such run); without it report.html is not served. */
  reportJson?: (runId: string) => Promise<unknown>;
  /** Served over HTTPS: the session cookie gets `Secure`. */
  https: boolean;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

/** Who is logged in, as the console shows it. */
export interface ConsoleCallerJson {
  name: string;
  role: Caller["role"];
  kind: Caller["kind"];
  scope: string | null;
}

/**
 * `POST /console/api/login` and `GET /console/api/session`: the caller and the CSRF token (null for
 * a bearer-token caller); `GET /console/api/session` without any credential: both null.
 */
export interface ConsoleSessionJson {
  caller: ConsoleCallerJson | null;
  csrf: string | null;
}

const callerJson = (c: Caller): ConsoleCallerJson => ({ name: c.name, role: c.role, kind: c.kind, scope: c.scope });

/** A file name safe in a Content-Disposition header. */
const safeName = (text: string): string => text.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100);

/** Registers the console's routes. */
export function registerConsoleRoutes(app: FastifyInstance, options: ConsoleRoutesOptions): void {
  const { sessions, identities, auth } = options;
  const now = options.now ?? Date.now;
  const assets = createConsoleAssets(options.consoleDir ?? defaultConsoleDir());
  const log = options.log.child({ component: "console" });
  if (!assets.present()) log.warn({ dir: assets.dir }, `the console is not served: ${buildHint(assets.dir)}`);

  const sendAsset = (request: FastifyRequest, reply: FastifyReply, asset: ConsoleAsset) => {
    void reply.headers({ ...SECURITY_HEADERS, "cache-control": "no-cache", etag: asset.etag });
    const match = request.headers["if-none-match"];
    if (typeof match === "string" && match.split(",").some((t) => t.trim() === asset.etag)) return reply.code(304).send();
    return reply.type(asset.contentType).send(asset.body);
  };

  const fileOr503 = async (reply: FastifyReply, name: Parameters<typeof assets.get>[0]): Promise<ConsoleAsset | undefined> => {
    try {
      return await assets.get(name);
    } catch (err) {
      if (!(err instanceof ConsoleAssetsMissingError)) throw err;
      void reply.code(503).headers({ ...SECURITY_HEADERS, "cache-control": "no-store" }).type("text/plain; charset=utf-8").send(`firedrill: ${err.message}\n`);
      return undefined;
    }
  };

  app.get("/", { config: { permission: "public" } }, async (request, reply) => {
    const asset = await fileOr503(reply, "index.html");
    if (asset) return sendAsset(request, reply, asset);
    return reply;
  });

  app.get<{ Params: { file: string } }>("/assets/:file", { config: { permission: "public" } }, async (request, reply) => {
    const name = request.params.file;
    if (!isConsoleFile(name) || name === "index.html") {
      throw new ApiError(404, "not_found", `the console has no file ${JSON.stringify(name.slice(0, 100))}; its files are app.js, app.css, report.js and report.css`);
    }
    const asset = await fileOr503(reply, name);
    if (asset) return sendAsset(request, reply, asset);
    return reply;
  });

  app.post("/console/api/login", { bodyLimit: LOGIN_BODY_LIMIT, config: { permission: "public" } }, async (request, reply): Promise<ConsoleSessionJson> => {
    const body = request.body;
    const token = typeof body === "object" && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>)["token"] : undefined;
    if (typeof token !== "string" || token.trim() === "" || token.length > MAX_TOKEN_LENGTH) {
      throw new ApiError(400, "invalid_request", `send {"token": "fdt_…"}: a firedrill API token of at most ${MAX_TOKEN_LENGTH} characters`, [
        { field: "token", message: "must be an API token" },
      ]);
    }
    const at = now();
    // A browser that logs in again leaves no session behind.
    const earlier = readCookie(request.headers.cookie, SESSION_COOKIE);
    if (earlier !== undefined) sessions.delete(earlier);
    const result = identities.authenticate(token.trim(), at, request.ip);
    if (!result.ok) return auth.refuse(request, reply, result.failure, "login", result.tokenId);
    const caller = result.caller;
    // The audit row of this POST names the principal who logged in.
    request.caller = caller;
    request.auditTargets.push(caller.tokenId);
    request.auditDetail = "console login";
    const tokenExpiresAt = identities.getToken(caller.tokenId, at)?.expiresAt ?? null;
    const { id, csrf, session } = sessions.create({ tokenId: caller.tokenId, tokenExpiresAt }, at);
    void reply.header("set-cookie", sessionCookie(id, sessions.maxAgeS(session, at), options.https)).header("cache-control", "no-store");
    return { caller: callerJson(caller), csrf };
  });

  // A browser without a session cookie is told so with a 200, not a 401: a logged-out visit is not a failed authentication (no audit row, no count against the limit, no error in the browser's console).
  app.get("/console/api/session", { config: { permission: "read", anonymous: true } }, async (request, reply): Promise<ConsoleSessionJson> => {
    void reply.header("cache-control", "no-store");
    if (request.caller === undefined) return { caller: null, csrf: null };
    const caller = callerOf(request);
    const current = request.consoleSession;
    // Each visit renews the cookie's lifetime along with the session's idle timer.
    if (current) void reply.header("set-cookie", sessionCookie(current.id, sessions.maxAgeS(current.session, now()), options.https));
    return { caller: callerJson(caller), csrf: current?.session.csrf ?? null };
  });

  app.post("/console/api/logout", { bodyLimit: LOGIN_BODY_LIMIT, config: { permission: "read" } }, async (request, reply) => {
    const current = request.consoleSession;
    if (current) {
      sessions.delete(current.id);
      request.auditDetail = "console logout";
    }
    return reply.code(204).header("set-cookie", clearedSessionCookie(options.https)).send();
  });

  const reportJson = options.reportJson;
  if (reportJson) {
    app.get<{ Params: { id: string } }>("/api/v1/runs/:id/report.html", { config: { permission: "read" } }, async (request, reply) => {
      const report = await reportJson(request.params.id);
      const [css, js] = [await assets.get("report.css").catch(missing), await assets.get("report.js").catch(missing)];
      const { html, csp } = renderReportHtml({ report, css: css.body.toString("utf8"), js: js.body.toString("utf8") });
      return reply
        .headers({
          "content-security-policy": `${csp}; frame-ancestors 'none'`,
          "x-content-type-options": "nosniff",
          "referrer-policy": "no-referrer",
          "x-frame-options": "DENY",
          "cache-control": "no-store",
          "content-disposition": `attachment; filename="firedrill-report-${safeName(request.params.id)}.html"`,
        })
        .type("text/html; charset=utf-8")
        .send(html);
    });
  }
}

/** A missing report.js / report.css: 503 with how to build them. */
function missing(err: unknown): never {
  if (err instanceof ConsoleAssetsMissingError) throw new ApiError(503, "console_not_built", err.message);
  throw err;
}
