/** `firedrill server`: store, join token, agent hub (gRPC) and HTTP API wired together. */
import type { FastifyInstance } from "fastify";
import type { ControlPlaneOptions } from "./config.js";
import { resolveConfig } from "./config.js";
import { createFaultService } from "./fault-service.js";
import { startGrpcServer } from "./grpc-server.js";
import type { GrpcServer } from "./grpc-server.js";
import { createHttpApp, listenHttp } from "./http/server.js";
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

/** A running control plane. */
export interface ControlPlane {
  /** The bound gRPC `host:port` agents connect to. */
  readonly grpcAddress: string;
  /** The HTTP API base, `http://host:port`. */
  readonly httpUrl: string;
  /** Where the join token was written on the first start (`<dataDir>/join-token`). */
  readonly joinTokenFile: string;
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
  let http: FastifyInstance | undefined;
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
    const faults = createFaultService({
      store,
      hub,
      logger: config.logger.child({ component: "faults" }),
      ackTimeoutMs: config.ackTimeoutMs,
      leaseTtlMs: config.leaseTtlMs,
    });
    const policy = config.policyFile ? loadPolicy(config.policyFile) : DEFAULT_POLICY;
    const runs = createRunStore(store.db);
    const alerts = createAlertReceiver({ log: config.logger.child({ component: "alerts" }) });
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
    http = createHttpApp({ store, faults, metrics, runs, runner, alerts, aws, scheduler, logger: config.logger.child({ component: "http" }) });
    const httpUrl = await listenHttp(http, config.httpAddr);
    scheduler.start();
    log.info(
      {
        version: CONTROL_PLANE_VERSION,
        grpc: grpcServer.address,
        tls: grpcServer.secure,
        http: httpUrl,
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
