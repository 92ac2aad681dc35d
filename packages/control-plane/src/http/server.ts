/** The HTTP listener: JSON API under /api/v1, /metrics and /healthz. */
import Fastify, { LogController } from "fastify";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { formatHostPort, parseHostPort } from "../address.js";
import { ListenError } from "../errors.js";
import type { FaultService } from "../fault-service.js";
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/store.js";
import { installErrorHandlers } from "./errors.js";
import { registerRoutes } from "./routes.js";
import { registerRunRoutes } from "./run-routes.js";
import type { Runner } from "../experiments/runner.js";
import type { RunStore } from "../store/run-store.js";
import { registerAlertRoutes } from "../stop-conditions/alert-receiver.js";
import type { AlertReceiver } from "../stop-conditions/alert-receiver.js";
import { registerSpofRoutes } from "../aws/routes.js";
import { registerScheduleRoutes } from "../schedules/routes.js";
import type { Scheduler } from "../schedules/scheduler.js";
import type { AwsService } from "../aws/types.js";
import type { CloudJournal } from "../aws/cloud-journal.js";
import { installAuth } from "../auth/http.js";
import type { AuthHooks } from "../auth/http.js";
import type { AuditLog } from "../auth/audit.js";
import type { HostPolicy } from "../auth/hosts.js";
import type { IdentityStore } from "../auth/identity-store.js";
import { registerAuthRoutes } from "../auth/routes.js";
import { registerEnrollmentRoutes } from "../enrollment/routes.js";
import type { EnrollmentRoutesOptions } from "../enrollment/routes.js";
import { DEFAULT_AGENT_STALE_AFTER_MS } from "../api-types.js";
import type { AgentHub } from "../hub/agent-hub.js";
import { registerInstallRoutes } from "../install/routes.js";
import { createSessionStore } from "../auth/session.js";
import { registerConsoleRoutes } from "../console/routes.js";
import { createReportJson } from "./report-json.js";
import type { InstallRoutesOptions } from "../install/routes.js";

/** Options of {@link createHttpApp}. */
export interface HttpAppOptions {
  store: Store;
  faults: FaultService;
  metrics: Metrics;
  logger: Logger;
  /** Experiment runs; without them the run routes are not served (unit tests of the fault API). */
  runs?: RunStore;
  runner?: Runner;
  /** The Alertmanager webhook receiver. */
  alerts?: AlertReceiver;
  /** AWS, for the SPOF finder. */
  aws?: AwsService;
  /** The cloud-revert journal, for the unconfirmed cloud reverts of runs. */
  cloud?: CloudJournal;
  /** Schedules (experiments on a cron, Chaos-Monkey mode). */
  scheduler?: Scheduler;
  /** Who may call: tokens and principals, the audit log, and the names the server answers to. */
  auth: { identities: IdentityStore; audit: AuditLog; hosts: HostPolicy; now?: () => number; maxFailures?: number };
  /** Serve HTTPS with this certificate chain and key (PEM). */
  https?: { cert: string; key: string };
  /** The agent hub, for revocation. */
  hub?: AgentHub;
  /** Join tokens, agent revocation and removal (the agent-link side). */
  enrollment?: Omit<EnrollmentRoutesOptions, "store" | "hub">;
  /** Said in `/healthz` (e.g. plain HTTP on a non-loopback address). */
  warnings?: string[];
  /** The public `/install/…` routes: the agent install script, the agent CA and the agent tarballs. */
  install?: Omit<InstallRoutesOptions, "log">;
  /** The web console: where its built files are (`--console-dir`). @default `defaultConsoleDir()` */
  console?: { dir?: string };
}

/** The HTTP app and the routes it serves (every one with its permission). */
export type HttpApp = FastifyInstance & { readonly auth: AuthHooks };

/** Builds the fastify app (not listening yet; tests may use `app.inject`). */
export function createHttpApp(options: HttpAppOptions): HttpApp {
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
    ...(options.https ? { https: { cert: options.https.cert, key: options.https.key } } : {}),
  }) as unknown as FastifyInstance;
  app.addHook("onResponse", async (request, reply) => {
    request.log.debug(
      { method: request.method, url: request.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      "request",
    );
  });
  installErrorHandlers(app);
  const sessions = createSessionStore({ db: options.store.db, identities: options.auth.identities });
  const auth = installAuth(app, { ...options.auth, log: options.logger, sessions });
  const warnings = options.warnings ?? [];
  app.get("/healthz", { config: { permission: "public" } }, async () => (warnings.length > 0 ? { ok: true, warnings } : { ok: true }));
  app.get("/metrics", { config: { permission: "read" } }, async (_request, reply) => {
    const text = await options.metrics.registry.metrics();
    return reply.type(options.metrics.registry.contentType).send(text);
  });
  registerRoutes(app, { ...options, staleAfterMs: options.enrollment?.staleAfterMs ?? DEFAULT_AGENT_STALE_AFTER_MS });
  if (options.enrollment && options.hub) registerEnrollmentRoutes(app, { ...options.enrollment, store: options.store, hub: options.hub });
  if (options.runs && options.runner) registerRunRoutes(app, { store: options.store, runs: options.runs, runner: options.runner, ...(options.cloud ? { cloud: options.cloud } : {}) });
  if (options.alerts) registerAlertRoutes(app, options.alerts);
  if (options.aws) registerSpofRoutes(app, { aws: options.aws, store: options.store });
  if (options.scheduler) registerScheduleRoutes(app, { scheduler: options.scheduler });
  if (options.install) registerInstallRoutes(app, { ...options.install, log: options.logger });
  registerAuthRoutes(app, { identities: options.auth.identities, audit: options.auth.audit, ...(options.auth.now ? { now: options.auth.now } : {}) });
  // The same report JSON as GET /api/v1/runs/:id/report, for the self-contained report.html.
  const reportJson = options.runs ? createReportJson({ store: options.store, runs: options.runs, ...(options.cloud ? { cloud: options.cloud } : {}) }) : undefined;
  registerConsoleRoutes(app, {
    ...(options.console?.dir !== undefined ? { consoleDir: options.console.dir } : {}),
    sessions,
    identities: options.auth.identities,
    auth,
    ...(reportJson ? { reportJson } : {}),
    https: options.https !== undefined,
    log: options.logger,
    ...(options.auth.now ? { now: options.auth.now } : {}),
  });
  return Object.assign(app, { auth });
}

/** Starts listening on `addr` (`host:port`) and returns the actual `http(s)://host:port`. */
export async function listenHttp(app: FastifyInstance, addr: string): Promise<string> {
  const parsed = parseHostPort(addr);
  if (!parsed) throw new ListenError(`${JSON.stringify(addr)} is not a host:port address`);
  try {
    await app.listen({ host: parsed.host, port: parsed.port });
  } catch (err) {
    throw new ListenError(
      `cannot listen for the HTTP API on ${addr}: ${(err as Error).message}; choose another --http-addr or stop what holds the port`,
      { cause: err },
    );
  }
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : parsed.port;
  const scheme = (app.initialConfig as { https?: unknown }).https ? "https" : "http";
  return `${scheme}://${formatHostPort(parsed.host, port)}`;
}
