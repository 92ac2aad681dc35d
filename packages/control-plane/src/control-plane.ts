/** `firedrill server`: store, join token, agent hub (gRPC) and HTTP API wired together. */
import type { ControlPlaneOptions } from "./config.js";
import { resolveConfig } from "./config.js";
import { createFaultService } from "./fault-service.js";
import { startGrpcServer } from "./grpc-server.js";
import type { GrpcServer } from "./grpc-server.js";
import { createHttpApp, listenHttp } from "./http/server.js";
import type { HttpApp } from "./http/server.js";
import { createAgentHub } from "./hub/agent-hub.js";
import type { AgentHub } from "./hub/agent-hub.js";
import { ensureJoinToken } from "./join-token.js";
import { createMetrics } from "./metrics.js";
import { createRunner } from "./experiments/runner.js";
import type { Runner } from "./experiments/runner.js";
import { DEFAULT_POLICY, loadPolicy } from "./experiments/policy.js";
import { createRunStore } from "./store/run-store.js";
import { createStore } from "./store/store.js";
import { createAlertReceiver } from "./stop-conditions/alert-receiver.js";
import { createAwsClients } from "./aws/clients.js";
import type { AwsClients } from "./aws/clients.js";
import { createAwsService } from "./aws/service.js";
import { createScheduler } from "./schedules/scheduler.js";
import type { Scheduler } from "./schedules/scheduler.js";
import { awsGuardrailsFrom } from "./experiments/policy.js";
import { mergeGuardrails } from "./experiments/guardrails.js";
import { CONTROL_PLANE_VERSION } from "./version.js";
import { readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { isLoopbackHost, parseHostPort } from "./address.js";
import { ListenError } from "./errors.js";
import { createAuditLog } from "./auth/audit.js";
import { ensureBootstrapAdmin, ADMIN_TOKEN_FILE } from "./auth/bootstrap.js";
import { createHostPolicy } from "./auth/hosts.js";
import { createIdentityStore } from "./auth/identity-store.js";
import { ensureCa, ensureServerCert } from "./pki/index.js";
import { join } from "node:path";
import type { ControlPlaneConfig } from "./config.js";
import type { Logger } from "pino";
import type { Writable } from "node:stream";
import type { RouteEntry } from "./auth/http.js";

/** A running control plane. */
export interface ControlPlane {
  /** The bound gRPC `host:port` agents connect to. */
  readonly grpcAddress: string;
  /** The HTTP API base, `http://host:port`. */
  readonly httpUrl: string;
  /** Where the join token was written on the first start (`<dataDir>/join-token`). */
  readonly joinTokenFile: string;
  /** Where the bootstrap admin token was written on the first start (`<dataDir>/admin-token`). */
  readonly adminTokenFile: string;
  /** The SHA-256 fingerprint (`sha256:…`) of the CA whose certificate the HTTPS API serves; undefined on plain HTTP or a certificate of your own. */
  readonly caFingerprint: string | undefined;
  /** Every HTTP route served, with the permission it requires. */
  httpRoutes(): RouteEntry[];
  /** Ends every agent stream, stops both listeners and closes the store. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the control plane: opens the store in `dataDir`, makes sure a join token exists (printing
 * it on the first start), serves agents over gRPC and the JSON API over HTTP.
 * Thrown when options are invalid: InvalidConfigError; when a port cannot be bound: ListenError.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const config = resolveConfig(options);
  const log = config.logger.child({ component: "control-plane" });
  const store = createStore({ dataDir: config.dataDir });
  let hub: AgentHub | undefined;
  let grpcServer: GrpcServer | undefined;
  let http: HttpApp | undefined;
  let runner: Runner | undefined;
  let scheduler: Scheduler | undefined;
  let awsClients: AwsClients | undefined;

  const shutdown = async (): Promise<void> => {
    await scheduler?.stop();
    await runner?.close();
    awsClients?.destroy();
    hub?.close();
    await Promise.allSettled([grpcServer?.close(), http?.close()]);
    store.markAllAgentsDisconnected();
    store.close();
  };

  try {
    const stale = store.markAllAgentsDisconnected();
    if (stale > 0) log.info({ agents: stale }, "marked agents from the previous run disconnected until they reconnect");
    const token = ensureJoinToken({
      store,
      dataDir: config.dataDir,
      logger: config.logger.child({ component: "join-token" }),
      out: config.out ?? process.stdout,
    });
    const metrics = createMetrics(store);
    hub = createAgentHub({
      store,
      metrics,
      logger: config.logger.child({ component: "agent-hub" }),
      verifyToken: token.verify,
      joinTokenFile: token.file,
      leaseTtlMs: config.leaseTtlMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      reconcileGraceMs: config.reconcileGraceMs,
    });
    const policy = config.policyFile ? loadPolicy(config.policyFile) : DEFAULT_POLICY;
    const faults = createFaultService({
      store,
      hub,
      policy,
      logger: config.logger.child({ component: "faults" }),
      ackTimeoutMs: config.ackTimeoutMs,
      leaseTtlMs: config.leaseTtlMs,
    });
    const runs = createRunStore(store.db);
    const alerts = createAlertReceiver({ log: config.logger.child({ component: "alerts" }), db: store.db });
    // Nothing is contacted until an experiment, plan or schedule uses AWS.
    awsClients = createAwsClients({
      ...(config.awsRegion !== undefined ? { region: config.awsRegion } : {}),
      ...(config.awsEndpoint !== undefined ? { endpoint: config.awsEndpoint } : {}),
    });
    const aws = createAwsService({ clients: awsClients, db: store.db, log: config.logger });
    runner = createRunner({
      store,
      runs,
      hub,
      faults,
      logger: config.logger.child({ component: "runner" }),
      policy,
      alerts,
      ackTimeoutMs: config.ackTimeoutMs,
      leaseTtlMs: config.leaseTtlMs,
      revertWaitMs: config.revertWaitMs,
      aws,
    });
    scheduler = createScheduler({
      db: store.db,
      runner,
      aws,
      policy,
      awsGuardrails: awsGuardrailsFrom(mergeGuardrails(policy, {})),
      log: config.logger.child({ component: "scheduler" }),
    });
    grpcServer = await startGrpcServer({
      addr: config.grpcAddr,
      hub,
      logger: config.logger.child({ component: "grpc" }),
      ...(config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined
        ? { tls: { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile } }
        : {}),
    });
    const identities = createIdentityStore(store.db);
    const audit = createAuditLog(store.db);
    ensureBootstrapAdmin({ identities, dataDir: config.dataDir, out: config.out ?? process.stdout, log });
    const bindHost = parseHostPort(config.httpAddr)!.host;
    const tls = await httpTls(config, bindHost, log, config.out ?? process.stdout);
    http = createHttpApp({
      store,
      faults,
      metrics,
      runs,
      runner,
      alerts,
      aws,
      scheduler,
      logger: config.logger.child({ component: "http" }),
      auth: { identities, audit, hosts: createHostPolicy({ bindHost, advertise: config.advertise }), maxFailures: config.authFailuresPerMinute },
      ...(tls.https ? { https: tls.https } : {}),
      warnings: tls.warnings,
    });
    const app = http;
    const httpUrl = await listenHttp(http, config.httpAddr);
    scheduler.start();
    log.info(
      {
        version: CONTROL_PLANE_VERSION,
        grpc: grpcServer.address,
        tls: grpcServer.secure,
        http: httpUrl,
        ...(tls.caFingerprint ? { caFingerprint: tls.caFingerprint } : {}),
        dataDir: config.dataDir,
        leaseTtlMs: config.leaseTtlMs,
        heartbeatIntervalMs: config.heartbeatIntervalMs,
      },
      "control plane started",
    );
    let closing: Promise<void> | undefined;
    return {
      grpcAddress: grpcServer.address,
      httpUrl,
      joinTokenFile: token.file,
      adminTokenFile: join(config.dataDir, ADMIN_TOKEN_FILE),
      caFingerprint: tls.caFingerprint,
      httpRoutes: () => app.auth.routes(),
      close() {
        closing ??= shutdown().then(() => log.info("control plane stopped"));
        return closing;
      },
    };
  } catch (err) {
    await shutdown();
    throw err;
  }
}

/** How the HTTP API is served: HTTPS with the operator's certificate, HTTPS from the server's CA, or plain HTTP. */
async function httpTls(
  config: ControlPlaneConfig,
  bindHost: string,
  log: Logger,
  out: Writable,
): Promise<{ https?: { cert: string; key: string }; caFingerprint?: string; warnings: string[] }> {
  if (config.httpTlsCertFile !== undefined && config.httpTlsKeyFile !== undefined) {
    try {
      return { https: { cert: readFileSync(config.httpTlsCertFile, "utf8"), key: readFileSync(config.httpTlsKeyFile, "utf8") }, warnings: [] };
    } catch (err) {
      throw new ListenError(`cannot read the HTTPS certificate or key (--http-tls-cert / --http-tls-key): ${(err as Error).message}`, { cause: err });
    }
  }
  if (isLoopbackHost(bindHost)) return { warnings: [] };
  if (config.insecureHttp) {
    const warning = `the HTTP API on ${config.httpAddr} is plain HTTP (--insecure-http): API tokens cross the network in clear text; drop --insecure-http to serve HTTPS`;
    log.warn(warning);
    out.write(`\nfiredrill: WARNING: ${warning}\n\n`);
    return { warnings: [warning] };
  }
  const ca = await ensureCa(config.dataDir);
  const names = new Set<string>(["localhost", "127.0.0.1", "::1", hostname(), ...config.advertise]);
  if (bindHost === "0.0.0.0" || bindHost === "::") {
    for (const list of Object.values(networkInterfaces())) for (const info of list ?? []) if (!info.address.includes("%")) names.add(info.address);
  } else names.add(bindHost);
  const cert = await ensureServerCert(config.dataDir, ca, [...names].sort());
  out.write(
    [
      "",
      `firedrill: the HTTP API serves HTTPS with a certificate from this server's own CA (${join(config.dataDir, "pki", "ca.crt")}).`,
      `CA fingerprint: ${ca.fingerprint}`,
      `Clients pin it with: firedrill login --server https://<name>:<port> --token-file <file> --ca-fingerprint ${ca.fingerprint}`,
      "",
      "",
    ].join("\n"),
  );
  return { https: { cert: cert.certPem, key: cert.keyPem }, caFingerprint: ca.fingerprint, warnings: [] };
}
