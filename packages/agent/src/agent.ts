/**
 * firedrill-agent: ties the link, the lease, the journal and the fault runtime together.
 *
 * Start-up order matters: take the state dir, revert whatever the journal holds (a previous agent
 * crashed), and only then connect and accept work.
 */
import { cpus, hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AGENT_TOKEN_METADATA_KEY,
  ConnectRequestSchema,
  FaultEventType,
  FaultState,
  HeldFaultSchema,
  HelloSchema,
  RevertReason,
  bearer,
  durationToMs,
  parseJoinToken,
  revertReasonName,
} from "@firedrill/protocol";
import type { ConnectResponse, FaultEvent, Hello, HostFacts } from "@firedrill/protocol";
import type { Logger } from "pino";
import { AgentConfigError } from "./config.js";
import { Enrollment, readIdentity } from "./enroll.js";
import type { PrepareResult, StoredIdentity } from "./enroll.js";
import { detectCapabilities, gatherHostFacts } from "./facts.js";
import { createDefaultFaultRegistry } from "./faults/index.js";
import type { FaultRegistry, ProcessProtectionConfig } from "./faults/index.js";
import { readGuard, stopGuard, superviseGuard } from "./guard.js";
import type { GuardSupervisor } from "./guard.js";
import { ensureStateDir, loadOrCreateAgentId, lockStateDir, selfProcess, stateDirHolder } from "./identity.js";
import { DEFAULT_IMDS_ENDPOINT, readEc2Identity } from "./imds.js";
import type { Ec2Identity } from "./imds.js";
import { localControlPlanePort } from "./faults/process-protection.js";
import { Journal } from "./journal.js";
import { Lease } from "./lease.js";
import { startHeartbeat } from "./liveness.js";
import { AgentLink } from "./link.js";
import type { LinkRefusal, RefusalDecision } from "./link.js";
import { computeNetworkExclusions } from "./network-exclusions.js";
import type { ManagementTarget } from "./network-exclusions.js";
import { RecoveryError, recoverJournal } from "./recover.js";
import { PendingReports } from "./reports.js";
import { FaultRuntime } from "./runtime.js";
import { createStatusReporter } from "./status.js";
import { isLoopbackHost, splitServer } from "./tls.js";
import { AGENT_VERSION } from "./version.js";

/** Options of a running agent. */
export interface AgentOptions {
  /**
   * Control plane gRPC address, host:port; or several, replicas of one control plane (same CA, same
   * database), tried in turn: one stream at a time, the next address when it fails or breaks.
   */
  server: string | readonly string[];
  /**
   * Join token (`firedrill join-token create`): needed only while the agent has no valid
   * certificate (TLS), or always with `insecure`.
   */
  token?: string | undefined;
  /**
   * Plain gRPC with the join token in the Connect metadata and a self-chosen agent id; only for a
   * control plane on a loopback address. @default false
   */
  insecure?: boolean;
  /** Where the agent keeps its identity, journal and pending reports. */
  stateDir: string;
  labels: Record<string, string>;
  log: Logger;
  /** Longest lease TTL accepted from the control plane; a longer one is clamped. @default 300000 */
  maxLeaseTtlMs?: number;
  /** How often the certificate's age is checked for renewal. @default 60000 */
  renewCheckIntervalMs?: number;
  /** First reconnect delay. @default 500 */
  backoffInitialMs?: number;
  /** Longest reconnect delay after the join token was refused (or while there is none). @default 300000 */
  joinTokenBackoffMaxMs?: number;
  /** IMDS base URL, or "off" to skip the EC2 lookup. @default http://169.254.169.254 */
  imdsEndpoint?: string;
  /** Management networks and ports no network fault touches (--management). @default [] */
  management?: readonly ManagementTarget[];
  /** Rules of processes no process fault signals, besides the built-in ones (--protect-process). @default [] */
  protectedProcesses?: readonly string[];
  /** Fault kinds; the shipped ones by default. */
  registry?: FaultRegistry;
  /** How often running faults report measurements. @default 2000 */
  progressIntervalMs?: number;
  /** Longest reconnect delay. @default 30000 */
  backoffMaxMs?: number;
  /**
   * How long without a heartbeat of this agent's event loop makes it stalled: the guard then
   * reverts faults past their deadline or lease itself (`--stall-after`). @default 2000
   */
  stallAfterMs?: number;
  /** Most faults held at once; one more is refused (`--max-faults`). @default 4 */
  maxFaults?: number;
  /**
   * How often a fault left in the journal whose revert failed at start is tried again (the agent
   * starts anyway and reports it revert_failed). @default 60000
   */
  journalRetryMs?: number;
  /**
   * argv that starts the guard (`firedrill-agent guard`), which reverts the journal if this
   * process dies without a clean stop. No guard when absent (library use, unit tests).
   */
  guardCommand?: string[];
}

/** A running agent. */
export interface Agent {
  /** The agent id: server-chosen (the certificate's CN), or self-chosen with `insecure`; undefined until enrolled. */
  readonly agentId: string | undefined;
  /** Reverts every fault (reason shutdown), reports it if the link is up, closes the link. */
  stop(): Promise<void>;
  /**
   * Resolves when the control plane, verified against the pinned CA, said this agent is revoked:
   * it must stop for good (the CLI exits 3). Never on an unverified server's word.
   */
  readonly refused: Promise<grpc.ServiceError>;
}

/** Most queued events kept while the link is down; older progress events are dropped first. */
const MAX_QUEUED_EVENTS = 1000;
/** Default longest lease TTL accepted. */
export const DEFAULT_MAX_LEASE_TTL_MS = 300_000;
const DEFAULT_JOIN_TOKEN_BACKOFF_MAX_MS = 300_000;
/** Host facts older than this are gathered again (in the background) at the next Hello. */
const FACTS_REFRESH_MS = 60_000;
/** Default of {@link AgentOptions.journalRetryMs}. */
const DEFAULT_JOURNAL_RETRY_MS = 60_000;

/** How the link authenticates: decided at start from the flags and the state dir. */
type LinkSetup =
  | { mode: "insecure"; agentId: string; token: string }
  | { mode: "tls"; identity: StoredIdentity | undefined; joinToken: { text: string; parts: NonNullable<ReturnType<typeof parseJoinToken>> } | undefined };

const JOIN_TOKEN_HINT = "create one on the control plane with `firedrill join-token create` and pass it with --token-file (or FIREDRILL_TOKEN)";

/**
 * Decides how to authenticate. Thrown when the configuration cannot work: AgentConfigError (insecure
 * mode to a non-loopback server, a token that pins no CA, no certificate and no join token).
 */
function resolveLinkSetup(options: AgentOptions, log: Logger): LinkSetup {
  const token = options.token?.trim() || undefined;
  if (options.insecure) {
    for (const server of serversOf(options)) {
      if (isLoopbackHost(splitServer(server).host)) continue;
      throw new AgentConfigError(
        `--insecure: ${server} is not a loopback address; plain gRPC is only allowed to a control plane on 127.0.0.1, ::1 or localhost (drop --insecure: TLS is pinned by the join token)`,
      );
    }
    if (!token || token.length < 8) throw new AgentConfigError(`--token: is missing or too short: with --insecure the join token authenticates every connect; ${JOIN_TOKEN_HINT}`);
    return { mode: "insecure", agentId: loadOrCreateAgentId(options.stateDir), token };
  }
  const parts = token !== undefined ? parseJoinToken(token) : undefined;
  if (token !== undefined && !parts) {
    throw new AgentConfigError(
      `--token: this is not a join token that pins the control plane's CA (fdj_<id>_<secret>_<CA sha256>); ${JOIN_TOKEN_HINT}`,
    );
  }
  const loaded = readIdentity(options.stateDir);
  let identity = loaded.identity;
  if (!identity && loaded.problem) log.warn({ stateDir: options.stateDir }, `${loaded.problem}; enrolling again`);
  if (identity && parts && identity.caFingerprint !== `sha256:${parts.caSha256}`) {
    log.warn(
      { enrolledWith: identity.caFingerprint, tokenPins: `sha256:${parts.caSha256}` },
      "the join token pins another control plane's CA than the one this agent enrolled with: enrolling again with the token",
    );
    identity = undefined;
  }
  const usable = identity !== undefined && identity.notAfter > Date.now();
  if (!usable && !parts) {
    throw new AgentConfigError(
      `this agent is not enrolled (no valid certificate in ${options.stateDir}) and has no join token: ${JOIN_TOKEN_HINT}`,
    );
  }
  return { mode: "tls", identity, joinToken: parts && token ? { text: token, parts } : undefined };
}

/**
 * Starts an agent: recovers the journal, then connects.
 * Thrown when the state dir is unsafe (UnsafePathError) or held by another live agent
 * (StateDirLockedError). Faults the journal holds that cannot be reverted do not stop it: they are
 * logged, reported revert_failed and retried every `journalRetryMs`.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const log = options.log;
  if (serversOf(options).length === 0) throw new AgentConfigError("--server: no control plane address; give its gRPC address, host:port");
  ensureStateDir(options.stateDir);
  // A guard left by a crashed agent may be reverting (or watching a dead agent): take over from it.
  // A live agent holding the dir is refused below, and its guard is left alone.
  const holder = stateDirHolder(options.stateDir);
  const guard = readGuard(options.stateDir);
  if (!holder || (guard && holder.pid === guard.pid)) {
    const stopped = await stopGuard(options.stateDir);
    if (stopped) log.info({ guardPid: stopped.pid }, "took over from the guard of a previous agent");
  }
  const unlock = lockStateDir(options.stateDir);
  try {
    const registry = options.registry ?? createDefaultFaultRegistry();
    const journal = new Journal(options.stateDir);
    const reports = new PendingReports(options.stateDir);

    const recovery = await recoverJournal({ journal, registry, log: log.child({ component: "recovery" }), reports });
    if (recovery.reverted.length > 0) {
      log.warn({ faults: recovery.reverted.map((r) => r.faultId) }, "reverted faults left in the journal by a previous agent");
    }
    // A fault that cannot be reverted now must not keep the agent down for good: the lease, the
    // stops and every other fault need it running. Its record stays in the journal, its
    // revert_failed report is stored for the control plane, and its revert is retried while the
    // agent runs (and on every start, by `recover` and by the guard).
    const unreverted = new Set(recovery.failed.map((f) => f.record.faultId));
    if (recovery.failed.length > 0 || recovery.corrupt.length > 0) {
      log.error(
        { failed: recovery.failed.map((f) => ({ faultId: f.record.faultId, kind: f.record.kind, error: f.error })), corrupt: recovery.corrupt },
        `${new RecoveryError(recovery).message}\nstarting anyway: they are reported as revert_failed, kept in the journal and retried every ${Math.round((options.journalRetryMs ?? DEFAULT_JOURNAL_RETRY_MS) / 1000)} s`,
      );
    }

    // After the recovery: a crashed agent's faults are reverted even when this one cannot connect.
    const setup = resolveLinkSetup(options, log);
    return await runAgent(options, { setup, registry, journal, reports, unlock, unreverted });
  } catch (err) {
    unlock();
    throw err;
  }
}

async function runAgent(
  options: AgentOptions,
  deps: { setup: LinkSetup; registry: FaultRegistry; journal: Journal; reports: PendingReports; unlock: () => void; unreverted: Set<string> },
): Promise<Agent> {
  const { setup, registry, journal, reports } = deps;
  const log = options.log;
  const servers = serversOf(options);
  // status.json: what `firedrill-agent status` and the install script read.
  const status = createStatusReporter({ stateDir: options.stateDir, server: servers[0]!, servers, log });
  const queue: FaultEvent[] = [];
  let link: AgentLink | undefined;
  const guard: GuardSupervisor | undefined = options.guardCommand
    ? superviseGuard({
        command: options.guardCommand,
        stateDir: options.stateDir,
        log: log.child({ component: "guard" }),
        ...(options.stallAfterMs !== undefined ? { stallAfterMs: options.stallAfterMs } : {}),
      })
    : undefined;

  const sendEvent = (event: FaultEvent): boolean =>
    link?.send(create(ConnectRequestSchema, { message: { case: "faultEvent", value: event } }), () => {
      if (isFinal(event)) reports.delete(event.faultId);
    }) ?? false;

  const emit = (event: FaultEvent): void => {
    // A fault's final event must reach the control plane even across a restart.
    if (isFinal(event)) reports.put(event);
    if (sendEvent(event)) return;
    if (isFinal(event)) return; // delivered from the reports store on reconnect
    queue.push(event);
    while (queue.length > MAX_QUEUED_EVENTS) {
      const progress = queue.findIndex((e) => e.type === FaultEventType.PROGRESS);
      queue.splice(progress >= 0 ? progress : 0, 1);
    }
  };

  /** Writes the heartbeat now (set once the heartbeat runs, below). */
  let beatNow: (() => void) | undefined;
  const runtime = new FaultRuntime({
    registry,
    journal,
    onJournaled: () => beatNow?.(),
    host: {
      cpuCount: cpus().length,
      stateDir: options.stateDir,
      protectedPids: () => [1, process.pid, process.ppid, ...(guard?.pid() !== undefined ? [guard.pid()!] : [])],
      processProtection: await processProtection(options),
      networkExclusions: await computeNetworkExclusions(servers, options.management ?? []),
      controlPlaneHost: splitServer(servers[0]!).host,
      controlPlaneHosts: [...new Set(servers.map((s) => splitServer(s).host))],
    },
    log: log.child({ component: "runtime" }),
    holder: selfProcess(),
    emit,
    ...(options.progressIntervalMs !== undefined ? { progressIntervalMs: options.progressIntervalMs } : {}),
    ...(options.maxFaults !== undefined ? { maxFaults: options.maxFaults } : {}),
  });

  const lease = new Lease({
    onExpire(silentForMs) {
      if (runtime.activeCount === 0) return;
      log.warn(
        { silentForMs: Math.round(silentForMs), faults: runtime.activeCount },
        "lease expired: no word from the control plane; reverting every fault",
      );
      void runtime.stopAll(RevertReason.LEASE);
    },
  });

  // Liveness: the guard reads this heartbeat; a stall makes it revert what is past its deadline or
  // lease. Every tick (and on resume) faults whose record the guard removed are ended here too.
  const heartbeat = startHeartbeat({
    stateDir: options.stateDir,
    self: selfProcess(),
    leaseRemainingMs: () => lease.remainingMs(),
    faults: () => runtime.activeCount,
    ...(options.stallAfterMs !== undefined ? { stallAfterMs: options.stallAfterMs } : {}),
    onTick() {
      const ended = runtime.reconcileWithJournal();
      if (ended.length > 0) log.warn({ faults: ended }, "the guard reverted these faults from the journal; ended them here and reporting them (recovery)");
    },
    onResume(stalledForMs, how) {
      log.warn({ stalledForMs: Math.round(stalledForMs), how }, "this agent was stalled (stopped, or its event loop blocked); reconciling its faults with the journal");
      const ended = runtime.reconcileWithJournal();
      if (ended.length > 0) log.warn({ faults: ended }, "the guard reverted these faults while the agent was stalled; ended them here and reporting them (recovery)");
    },
  });

  beatNow = () => heartbeat.beat();

  const imdsEndpoint = options.imdsEndpoint ?? DEFAULT_IMDS_ENDPOINT;
  // The default endpoint gets 300 ms, so that a host off EC2 starts without delay; an endpoint the
  // operator named is expected to answer, so a slow start (a loaded host) must not lose the identity.
  const ec2: Ec2Identity =
    imdsEndpoint === "off"
      ? { instanceId: "", availabilityZone: "", region: "" }
      : await readEc2Identity(imdsEndpoint, imdsEndpoint === DEFAULT_IMDS_ENDPOINT ? 300 : 3000);
  if (ec2.instanceId) log.info({ instanceId: ec2.instanceId, az: ec2.availabilityZone }, "running on EC2");
  const capabilities = detectCapabilities([...registry.keys()]);

  // Gathering the host facts takes a second or more (systeminformation runs commands): a reconnect
  // (a failover to another replica) sends the facts of the previous Hello and refreshes them in the
  // background for the next one, so that it is not slowed by them. The first Hello waits for them.
  let facts: { at: number; value: Promise<HostFacts> } | undefined;
  let refreshingFacts = false;
  const hostFacts = (): Promise<HostFacts> => {
    if (!facts) {
      const entry = { at: performance.now(), value: gatherHostFacts(ec2) };
      facts = entry;
      entry.value.catch(() => {
        if (facts === entry) facts = undefined;
      });
      return entry.value;
    }
    if (!refreshingFacts && performance.now() - facts.at > FACTS_REFRESH_MS) {
      refreshingFacts = true;
      const at = performance.now();
      gatherHostFacts(ec2)
        .then((value) => {
          facts = { at, value: Promise.resolve(value) };
        }, () => {})
        .finally(() => {
          refreshingFacts = false;
        });
    }
    return facts.value;
  };

  const hello = async (channel: { agentId: string }): Promise<Hello> => {
    const pending = reports.list();
    return create(HelloSchema, {
      agentId: channel.agentId,
      version: AGENT_VERSION,
      facts: await hostFacts(),
      labels: options.labels,
      capabilities,
      heldFaults: [
        ...runtime.held(),
        ...pending.map((e) =>
          create(HeldFaultSchema, {
            faultId: e.faultId,
            kind: e.kind,
            // revert_failed: the effect may still be there, and its revert is being retried.
            state:
              e.type === FaultEventType.FAILED
                ? FaultState.FAILED
                : e.type === FaultEventType.REVERT_FAILED
                  ? FaultState.REVERTING
                  : FaultState.REVERTED,
          }),
        ),
      ],
    });
  };

  const maxLeaseTtlMs = options.maxLeaseTtlMs ?? DEFAULT_MAX_LEASE_TTL_MS;
  let leaseClampWarned = false;
  // The control plane cannot make the agent hold faults longer without it than the host allows.
  const capLeaseTtl = (ttl: number): number => {
    if (ttl <= maxLeaseTtlMs) return ttl;
    if (!leaseClampWarned) {
      leaseClampWarned = true;
      log.warn({ askedMs: ttl, maxMs: maxLeaseTtlMs }, "the control plane asked for a lease longer than --max-lease-ttl: using the maximum");
    }
    return maxLeaseTtlMs;
  };

  const onMessage = (message: ConnectResponse): void => {
    // Any word from the control plane renews the lease.
    const m = message.message;
    const ttl = m.case === "welcome" || m.case === "leaseRenewal" ? capLeaseTtl(durationToMs(m.value.leaseTtl)) : undefined;
    lease.renew(ttl);
    switch (m.case) {
      case "startFault":
        void runtime.start(m.value);
        break;
      case "stopFault":
        void runtime.stop(m.value.faultId, m.value.reason || RevertReason.STOPPED);
        break;
      case "stopAll":
        log.warn({ reason: revertReasonName(m.value.reason), message: m.value.message }, "stop-all from the control plane");
        void runtime.stopAll(m.value.reason || RevertReason.STOPPED);
        break;
      case "previewFault":
        // A dry run: answered on the stream, nothing journaled or touched.
        void runtime.preview(m.value).then((value) => link?.send(create(ConnectRequestSchema, { message: { case: "faultPreview", value } })));
        break;
      default:
        break;
    }
  };

  let resolveRefused: (err: grpc.ServiceError) => void = () => {};
  const refused = new Promise<grpc.ServiceError>((resolve) => {
    resolveRefused = resolve;
  });

  const joinTokenBackoffMaxMs = options.joinTokenBackoffMaxMs ?? DEFAULT_JOIN_TOKEN_BACKOFF_MAX_MS;
  const revoked = (error: grpc.ServiceError): void => {
    status.update({ connected: false, lastError: `revoked by the control plane: ${error.details}; this agent stops for good (enroll it again with a new join token)` });
    log.fatal(
      { server: link?.server, details: error.details },
      `the control plane revoked this agent (${error.details}); stopping for good: to bring it back, enroll it again with a new join token after removing agent.crt and agent.key from ${options.stateDir}`,
    );
    resolveRefused(error);
  };
  let enrollment: Enrollment | undefined;
  let agentId: string | undefined;
  let prepare: (server: string) => Promise<PrepareResult>;
  if (setup.mode === "insecure") {
    agentId = setup.agentId;
    status.update({ agentId });
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(setup.token));
    const channel = { key: "insecure", credentials: grpc.credentials.createInsecure(), metadata, verified: false, agentId: setup.agentId };
    log.warn({ servers }, "--insecure: plain gRPC to a loopback control plane; the join token is sent on every connect");
    prepare = () => Promise.resolve({ channel });
  } else {
    const e = new Enrollment({
      server: servers[0]!,
      stateDir: options.stateDir,
      joinToken: setup.joinToken,
      identity: setup.identity,
      hostname: hostname(),
      log: log.child({ component: "identity" }),
      joinTokenBackoffMaxMs,
      ...(options.renewCheckIntervalMs !== undefined ? { renewCheckIntervalMs: options.renewCheckIntervalMs } : {}),
      onRevoked: revoked,
      onIdentity(identity) {
        agentId = identity?.agentId;
        status.update({ agentId });
      },
      onProblem(message) {
        status.update({ connected: false, lastError: message });
      },
    });
    enrollment = e;
    agentId = setup.identity?.agentId;
    status.update({ agentId });
    prepare = (server) => e.prepare(server);
    e.start();
  }

  const onRefused = ({ error, refusal, verified, server }: LinkRefusal): RefusalDecision => {
    const context = { server, code: grpc.status[error.code], refusal, details: error.details };
    status.update({ connected: false, server, lastError: `refused by the control plane at ${server}: ${error.details}` });
    if (!verified) {
      // Nothing proves who said it: never stop on it.
      log.warn(context, `refused by the control plane on an unverified (insecure) link: ${error.details}; retrying`);
      return { retry: true, ...(refusal === "join-token" ? { maxDelayMs: joinTokenBackoffMaxMs } : {}) };
    }
    switch (refusal) {
      case "revoked":
        revoked(error);
        return "stop";
      case "not-enrolled":
        enrollment?.drop();
        if (setup.mode === "tls" && setup.joinToken) {
          log.warn(context, "the control plane does not accept this agent's certificate: enrolling again with the join token");
          return { retry: true };
        }
        log.error(context, `the control plane does not accept this agent's certificate and there is no join token to enroll again: ${JOIN_TOKEN_HINT}; retrying meanwhile`);
        return { retry: true, maxDelayMs: joinTokenBackoffMaxMs };
      case "join-token":
        log.error(context, `the control plane refused the join token: ${error.details}; ${JOIN_TOKEN_HINT}; retrying meanwhile`);
        return { retry: true, maxDelayMs: joinTokenBackoffMaxMs };
      case "limit":
        log.warn(context, "the control plane is at its agent limit; retrying");
        return { retry: true, maxDelayMs: joinTokenBackoffMaxMs };
      case "identity-mismatch":
        log.error(context, "the control plane says the Hello's agent id is not this certificate's; retrying");
        return { retry: true };
      default:
        log.warn(context, `refused by the control plane: ${error.details}; retrying`);
        return { retry: true };
    }
  };

  link = new AgentLink({
    servers,
    prepare,
    log: log.child({ component: "link" }),
    hello,
    onMessage,
    onRefused,
    activeFaults: () => runtime.activeCount,
    onConnectFailed(message, server) {
      status.update({ connected: false, server, lastError: message });
    },
    ...(options.backoffMaxMs !== undefined ? { backoffMaxMs: options.backoffMaxMs } : {}),
    ...(options.backoffInitialMs !== undefined ? { backoffInitialMs: options.backoffInitialMs } : {}),
    onConnected(welcome, server) {
      log.info(
        {
          server,
          agentId,
          leaseTtlMs: capLeaseTtl(durationToMs(welcome.leaseTtl)),
          heartbeatMs: durationToMs(welcome.heartbeatInterval),
        },
        "connected to the control plane",
      );
      status.update({ agentId, connected: true, server, lastError: undefined });
      void enrollment?.maybeRenew();
      // Deliver what happened while the link was down: final events first (durable), then the rest.
      for (const event of reports.list()) sendEvent(event);
      for (const event of queue.splice(0)) sendEvent(event);
    },
    onDisconnected(error, server, nextServer) {
      const next = servers.length > 1 ? `; reconnecting, to ${nextServer} first` : "; reconnecting";
      status.update({ connected: false, server, lastError: `lost the control plane at ${server}: ${error?.message ?? "the stream ended"}${next}` });
      // The faults keep running: the lease lasts until a new stream renews it (on any replica).
      log.warn(
        { server, next: nextServer, err: error?.message, leaseRemainingMs: Math.round(lease.remainingMs() ?? 0) },
        `lost the control plane at ${server}${next}`,
      );
    },
  });
  link.start();

  // Faults left in the journal that could not be reverted at start: retried until they are.
  const { unreverted } = deps;
  let retrying = false;
  const retryJournal = setInterval(() => {
    if (retrying) return;
    // Reverted meanwhile by another process (the guard, while this agent was stalled).
    for (const id of unreverted) if (!journal.has(id)) unreverted.delete(id);
    if (unreverted.size === 0) return clearInterval(retryJournal);
    retrying = true;
    void recoverJournal({ journal, registry, log: log.child({ component: "recovery" }), reports, select: (r) => unreverted.has(r.faultId) })
      .then((result) => {
        for (const record of result.reverted) {
          unreverted.delete(record.faultId);
          log.warn({ faultId: record.faultId, kind: record.kind }, "reverted a fault left in the journal on a later try");
        }
        const done = new Set(result.reverted.map((r) => r.faultId));
        for (const event of reports.list()) if (done.has(event.faultId)) sendEvent(event);
      })
      .finally(() => {
        retrying = false;
      });
  }, options.journalRetryMs ?? DEFAULT_JOURNAL_RETRY_MS);
  retryJournal.unref();

  let stopping: Promise<void> | undefined;
  return {
    get agentId() {
      return agentId;
    },
    refused,
    stop() {
      stopping ??= (async () => {
        clearInterval(retryJournal);
        lease.close();
        enrollment?.close();
        await runtime.stopAll(RevertReason.SHUTDOWN);
        await link?.close();
        status.update({ connected: false, lastError: "the agent stopped" });
        // Everything is reverted: the guard has nothing left to watch for.
        await guard?.stop();
        heartbeat.stop();
        deps.unlock();
      })();
      return stopping;
    },
  };
}

/** The local process protections: --protect-process, and the control plane's port if it runs here. */
async function processProtection(options: AgentOptions): Promise<ProcessProtectionConfig> {
  // The first address on this host (a control plane replica running beside its agent).
  let port: number | undefined;
  for (const server of serversOf(options)) {
    port = await localControlPlanePort(server);
    if (port !== undefined) break;
  }
  return { rules: options.protectedProcesses ?? [], ...(port !== undefined ? { controlPlanePort: port } : {}) };
}

/** The control plane addresses of the options, in order. */
function serversOf(options: Pick<AgentOptions, "server">): readonly string[] {
  return typeof options.server === "string" ? [options.server] : options.server;
}

function isFinal(event: FaultEvent): boolean {
  return event.type === FaultEventType.REVERTED || event.type === FaultEventType.FAILED || event.type === FaultEventType.REVERT_FAILED;
}
