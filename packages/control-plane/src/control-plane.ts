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
import { createMetrics } from "./metrics.js";
import { createRunner } from "./experiments/runner.js";
import { holdSharedSpecCheckPool } from "./experiments/spec-pool.js";
import type { Runner } from "./experiments/runner.js";
import { DEFAULT_POLICY, loadPolicy } from "./experiments/policy.js";
import { createRunStore } from "./store/run-store.js";
import { createStore } from "./store/store.js";
import { lockDataDir } from "./store/data-dir-lock.js";
import { ensureSharedCa } from "./pki/shared-ca.js";
import { joinCluster, type Cluster } from "./ha/cluster.js";
import { followSignals, runOwnershipOf, runnerPeersOf, startLeaderDuties } from "./ha/duties.js";
import { createAlertReceiver } from "./stop-conditions/alert-receiver.js";
import { createAwsClients } from "./aws/clients.js";
import type { AwsClients } from "./aws/clients.js";
import { createAwsService } from "./aws/service.js";
import { createCloudJournal } from "./aws/cloud-journal.js";
import { createCloudReconciler } from "./aws/cloud-reconciler.js";
import type { CloudReconciler } from "./aws/cloud-reconciler.js";
import { createEc2StartReverter } from "./aws/cloud-reverters.js";
import { createNaclDeleteReverter, createNaclRestoreReverter } from "./aws/network-disrupt.js";
import { readOwnSubnets } from "./aws/imds-subnets.js";
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
import type { CertificateAuthority } from "./pki/index.js";
import * as grpc from "@grpc/grpc-js";
import { AGENT_TOKEN_METADATA_KEY, parseBearer } from "@firedrill/protocol";
import { createJoinTokenStore } from "./enrollment/join-tokens.js";
import { createIdentityRegistry } from "./enrollment/identities.js";
import { createEnrollmentService } from "./enrollment/service.js";
import { ensureBootstrapJoinToken } from "./enrollment/bootstrap.js";
import { join } from "node:path";
import type { ControlPlaneConfig } from "./config.js";
import type { Logger } from "pino";
import type { Writable } from "node:stream";
import type { RouteEntry } from "./auth/http.js";
import { defaultAgentReleasesDir, defaultAgentScriptFile } from "./install/paths.js";

/** A running control plane. */
export interface ControlPlane {
  /** The bound gRPC `host:port` agents connect to. */
  readonly grpcAddress: string;
  /** The HTTP API base, `http://host:port`. */
  readonly httpUrl: string;
  /** Where the first join token was written on the first start (`<dataDir>/join-token`). */
  readonly joinTokenFile: string;
  /** The SHA-256 fingerprint of the CA agents pin (in every join token). */
  readonly agentCaFingerprint: string;
  /** Where the bootstrap admin token was written on the first start (`<dataDir>/admin-token`). */
  readonly adminTokenFile: string;
  /** The SHA-256 fingerprint (`sha256:…`) of the CA whose certificate the HTTPS API serves; undefined on plain HTTP or a certificate of your own. */
  readonly caFingerprint: string | undefined;
  /** Every HTTP route served, with the permission it requires. */
  httpRoutes(): RouteEntry[];
  /** The agent hub (in-process embedding and tests: watch faults, connections). */
  readonly hub: AgentHub;
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
  // One server per data dir: taken before the store opens, so a second server touches nothing.
  const lock = lockDataDir(config.dataDir);
  let store: ReturnType<typeof createStore>;
  try {
    store = createStore({ dataDir: config.dataDir, ...(config.store !== undefined ? { postgresUrl: config.store } : {}) });
  } catch (err) {
    lock.release();
    throw err;
  }
  let hub: AgentHub | undefined;
  let grpcServer: GrpcServer | undefined;
  let http: HttpApp | undefined;
  let runner: Runner | undefined;
  let scheduler: Scheduler | undefined;
  let awsClients: AwsClients | undefined;
  let reconciler: CloudReconciler | undefined;
  /** PostgreSQL store: this replica in its replica set (docs/ha.md). */
  let cluster: Cluster | undefined;
  let stopLeaderDuties: (() => Promise<void>) | undefined;
  // The worker threads that check experiments: stopped with the server (the last one in the process).
  const releaseSpecPool = holdSharedSpecCheckPool();

  const shutdown = async (): Promise<void> => {
    await stopLeaderDuties?.();
    await scheduler?.stop();
    // Runs aborting on shutdown want their cloud reverts: the reconciler makes them until it closes.
    await runner?.close();
    await reconciler?.close();
    awsClients?.destroy();
    hub?.close();
    await Promise.allSettled([grpcServer?.close(), http?.close()]);
    await releaseSpecPool();
    // Replicas: each stream marked its agent disconnected as it ended (unless another replica holds it).
    if (!cluster) store.markAllAgentsDisconnected();
    await cluster?.close().catch((err: unknown) => log.warn({ err }, "leaving the replica set"));
    store.close();
    lock.release();
  };

  try {
    if (store.db.engine === "postgres") {
      // Other replicas hold streams: only the leader marks disconnected the agents of dead replicas.
      cluster = await joinCluster({ db: store.db, url: config.store!, logger: config.logger, grpcAddress: config.grpcAddr, httpAddress: config.httpAddr });
    } else {
      const stale = store.markAllAgentsDisconnected();
      if (stale > 0) log.info({ agents: stale }, "marked agents from the previous run disconnected until they reconnect");
    }
    const out = config.out ?? process.stdout;
    // Replicas on one PostgreSQL share one CA through the store (pki/shared-ca.ts).
    const ca = store.db.engine === "postgres" ? await ensureSharedCa(store.db, config.dataDir) : await ensureCa(config.dataDir);
    const caSha256 = ca.fingerprint.replace(/^sha256:/, "");
    const joinTokens = createJoinTokenStore(store.db);
    const agentIdentities = createIdentityRegistry(store.db);
    const joinTokenFile = ensureBootstrapJoinToken({ joinTokens, dataDir: config.dataDir, caSha256, out, log });
    const identities = createIdentityStore(store.db);
    const audit = createAuditLog(store.db);
    // Every reversible cloud action, written with its revert before the call (aws/cloud-journal.ts).
    const cloudJournal = createCloudJournal(store.db);
    const metrics = createMetrics(store, { cloud: cloudJournal });
    const enrollment = createEnrollmentService({
      ca,
      caSha256,
      joinTokens,
      identities: agentIdentities,
      audit,
      log: config.logger,
      certLifetimeMs: config.agentCertLifetimeMs,
      maxAgents: config.maxAgents,
      enrollRatePerToken: config.enrollRatePerToken,
    });
    const tokenHint = `start firedrill-agent with --token-file (the first join token is in ${joinTokenFile}; more with firedrill join-token create)`;
    hub = createAgentHub({
      store,
      metrics,
      logger: config.logger.child({ component: "agent-hub" }),
      authenticate(call) {
        if (config.insecureAgents) {
          const raw = call.metadata.get(AGENT_TOKEN_METADATA_KEY)[0];
          const text = parseBearer(typeof raw === "string" ? raw : raw?.toString("utf8"));
          if (text === undefined) return { code: grpc.status.UNAUTHENTICATED, refusal: "join-token", details: `missing join token: ${tokenHint}` };
          const checked = joinTokens.check(text, Date.now());
          if (!checked.ok) return { code: grpc.status.UNAUTHENTICATED, refusal: "join-token", details: `invalid join token: ${checked.reason}; ${tokenHint}` };
          return { agentId: undefined, labels: checked.token.labels };
        }
        const who = enrollment.peer(call);
        return "refusal" in who ? who : { agentId: who.agentId, labels: who.labels };
      },
      refuseAgent(agentId) {
        const identity = agentIdentities.get(agentId);
        if (identity?.revokedAt == null) return undefined;
        return {
          code: grpc.status.PERMISSION_DENIED,
          refusal: "revoked",
          details: `agent ${agentId} was revoked by ${identity.revokedBy ?? "an admin"} at ${new Date(identity.revokedAt).toISOString()}; it cannot connect again`,
        };
      },
      onRefusedHello({ peer, certificateId, claimedId }) {
        audit.append({
          time: Date.now(),
          principal: `agent:${certificateId}`,
          role: "agent",
          tokenId: null,
          source: peer.replace(/^ipv[46]:/, "").slice(0, 100),
          method: "GRPC",
          route: "/firedrill.v1.AgentService/Connect",
          path: "/firedrill.v1.AgentService/Connect",
          targets: [claimedId, certificateId],
          status: 403,
          outcome: "identity-mismatch",
          detail: `Hello claimed agent ${claimedId} with agent ${certificateId}'s certificate`,
        });
      },
      leaseTtlMs: config.leaseTtlMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      reconcileGraceMs: config.reconcileGraceMs,
      ...(cluster ? { cluster: cluster.hubLink(() => hub) } : {}),
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
    const aws = createAwsService({
      clients: awsClients,
      db: store.db,
      log: config.logger,
      journal: cloudJournal,
      protectSubnets: config.awsProtectSubnets,
      // On EC2, its own subnets too (IMDSv2); the SDK's switch turns IMDS off (tests, off-EC2 hosts).
      ownSubnets: () => (process.env.AWS_EC2_METADATA_DISABLED === "true" ? Promise.resolve([]) : readOwnSubnets(process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT)),
    });
    const clients = awsClients;
    const makeReconciler = () =>
      createCloudReconciler({
        journal: cloudJournal,
        reverters: [
          createEc2StartReverter({ clients, ledger: aws.ledger, log: config.logger }),
          createNaclRestoreReverter({ clients, log: config.logger }),
          createNaclDeleteReverter({ clients, log: config.logger }),
        ],
        log: config.logger,
      });
    // One server: its own reconciler. Replicas: the leader's (made each time it is elected).
    if (!cluster) reconciler = makeReconciler();
    const reconcilerHandle = { kick: () => reconciler?.kick() };
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
      cloud: { journal: cloudJournal, reconciler: reconcilerHandle },
      ...(cluster ? { ownership: runOwnershipOf(cluster, store.db), peers: runnerPeersOf(cluster, store.db) } : {}),
    });
    // After the runner marked the runs a crash interrupted failed: their cloud actions are reverted now.
    reconciler?.start();
    scheduler = createScheduler({
      db: store.db,
      runner,
      aws,
      policy,
      awsGuardrails: awsGuardrailsFrom(mergeGuardrails(policy, {})),
      log: config.logger.child({ component: "scheduler" }),
    });
    const bindHost = parseHostPort(config.httpAddr)!.host;
    const serverCert = await ensureServerCert(config.dataDir, ca, serverNames(config, [bindHost, parseHostPort(config.grpcAddr)!.host]));
    grpcServer = await startGrpcServer({
      addr: config.grpcAddr,
      hub,
      logger: config.logger.child({ component: "grpc" }),
      ...(config.insecureAgents ? {} : { enrollment, tls: { certChain: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem } }),
    });
    ensureBootstrapAdmin({ identities, dataDir: config.dataDir, out, log });
    const tls = httpTls(config, bindHost, log, out, ca, serverCert);
    http = createHttpApp({
      store,
      faults,
      metrics,
      runs,
      runner,
      alerts,
      aws,
      cloud: cloudJournal,
      scheduler,
      hub,
      enrollment: { joinTokens, identities: agentIdentities, caFingerprint: ca.fingerprint, caSha256, staleAfterMs: config.agentStaleAfterMs },
      logger: config.logger.child({ component: "http" }),
      auth: { identities, audit, hosts: createHostPolicy({ bindHost, advertise: config.advertise }), maxFailures: config.authFailuresPerMinute },
      ...(tls.https ? { https: tls.https } : {}),
      warnings: tls.warnings,
      install: {
        caPem: ca.certPem,
        grpcPort: parseHostPort(grpcServer.address)!.port,
        releasesDir: config.agentReleasesDir ?? defaultAgentReleasesDir(),
        version: CONTROL_PLANE_VERSION,
        scriptFile: defaultAgentScriptFile(),
      },
      ...(config.consoleDir !== undefined ? { console: { dir: config.consoleDir } } : {}),
    });
    const app = http;
    const httpUrl = await listenHttp(http, config.httpAddr);
    if (cluster) {
      const c = cluster;
      const sched = scheduler;
      followSignals(c, runner, log);
      stopLeaderDuties = startLeaderDuties({
        cluster: c,
        db: store.db,
        runner,
        logger: config.logger,
        duties: [
          { name: "scheduler", start: () => sched.start(), stop: () => sched.stop() },
          {
            name: "cloud reconciler",
            start: () => {
              reconciler = makeReconciler();
              reconciler.start();
            },
            stop: async () => {
              const r = reconciler;
              reconciler = undefined;
              await r?.close();
            },
          },
        ],
      });
    } else scheduler.start();
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
      joinTokenFile,
      agentCaFingerprint: ca.fingerprint,
      adminTokenFile: join(config.dataDir, ADMIN_TOKEN_FILE),
      caFingerprint: tls.caFingerprint,
      httpRoutes: () => app.auth.routes(),
      hub,
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

/** The names the server certificate carries: loopback, the host name, --advertise and the bind addresses (every local address for a wildcard). */
function serverNames(config: ControlPlaneConfig, bindHosts: string[]): string[] {
  const names = new Set<string>(["localhost", "127.0.0.1", "::1", hostname(), ...config.advertise]);
  for (const host of bindHosts) {
    if (host === "0.0.0.0" || host === "::") {
      for (const list of Object.values(networkInterfaces())) for (const info of list ?? []) if (!info.address.includes("%")) names.add(info.address);
    } else names.add(host);
  }
  return [...names].sort();
}

/** How the HTTP API is served: HTTPS with the operator's certificate, HTTPS from the server's CA, or plain HTTP. */
function httpTls(
  config: ControlPlaneConfig,
  bindHost: string,
  log: Logger,
  out: Writable,
  ca: CertificateAuthority,
  cert: { certPem: string; keyPem: string },
): { https?: { cert: string; key: string }; caFingerprint?: string; warnings: string[] } {
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
