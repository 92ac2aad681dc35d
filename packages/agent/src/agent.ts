/**
 * firedrill-agent: ties the link, the lease, the journal and the fault runtime together.
 *
 * Start-up order matters: take the state dir, revert whatever the journal holds (a previous agent
 * crashed), and only then connect and accept work.
 */
import { cpus } from "node:os";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  ConnectRequestSchema,
  FaultEventType,
  FaultState,
  HeldFaultSchema,
  HelloSchema,
  RevertReason,
  durationToMs,
  revertReasonName,
} from "@firedrill/protocol";
import type { ConnectResponse, FaultEvent, Hello } from "@firedrill/protocol";
import type { Logger } from "pino";
import { detectCapabilities, gatherHostFacts } from "./facts.js";
import { createDefaultFaultRegistry } from "./faults/index.js";
import type { FaultRegistry } from "./faults/index.js";
import { readGuard, stopGuard, superviseGuard } from "./guard.js";
import type { GuardSupervisor } from "./guard.js";
import { ensureStateDir, loadOrCreateAgentId, lockStateDir, selfProcess, stateDirHolder } from "./identity.js";
import { DEFAULT_IMDS_ENDPOINT, readEc2Identity } from "./imds.js";
import type { Ec2Identity } from "./imds.js";
import { Journal } from "./journal.js";
import { Lease } from "./lease.js";
import { AgentLink } from "./link.js";
import { computeNetworkExclusions } from "./network-exclusions.js";
import { RecoveryError, recoverJournal } from "./recover.js";
import { PendingReports } from "./reports.js";
import { FaultRuntime } from "./runtime.js";
import { AGENT_VERSION } from "./version.js";

/** Options of a running agent. */
export interface AgentOptions {
  /** Control plane gRPC address, host:port. */
  server: string;
  /** Join token from the control plane's data dir. */
  token: string;
  /** Where the agent keeps its id, journal and pending reports. */
  stateDir: string;
  labels: Record<string, string>;
  credentials: grpc.ChannelCredentials;
  log: Logger;
  /** IMDS base URL, or "off" to skip the EC2 lookup. @default http://169.254.169.254 */
  imdsEndpoint?: string;
  /** Fault kinds; the shipped ones by default. */
  registry?: FaultRegistry;
  /** How often running faults report measurements. @default 2000 */
  progressIntervalMs?: number;
  /** Longest reconnect delay. @default 30000 */
  backoffMaxMs?: number;
  /**
   * argv that starts the guard (`firedrill-agent guard`), which reverts the journal if this
   * process dies without a clean stop. No guard when absent (library use, unit tests).
   */
  guardCommand?: string[];
}

/** A running agent. */
export interface Agent {
  readonly agentId: string;
  /** Reverts every fault (reason shutdown), reports it if the link is up, closes the link. */
  stop(): Promise<void>;
  /** Resolves when the control plane refused this agent for good (bad token). */
  readonly refused: Promise<grpc.ServiceError>;
}

/** Most queued events kept while the link is down; older progress events are dropped first. */
const MAX_QUEUED_EVENTS = 1000;

/**
 * Starts an agent: recovers the journal, then connects.
 * Thrown when the state dir is held by another live agent (StateDirLockedError), or when the
 * journal holds faults that could not be reverted (RecoveryError): no work is accepted then.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const log = options.log;
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
    const agentId = loadOrCreateAgentId(options.stateDir);
    const registry = options.registry ?? createDefaultFaultRegistry();
    const journal = new Journal(options.stateDir);
    const reports = new PendingReports(options.stateDir);

    const recovery = await recoverJournal({ journal, registry, log: log.child({ component: "recovery" }), reports });
    if (recovery.reverted.length > 0) {
      log.warn({ faults: recovery.reverted.map((r) => r.faultId) }, "reverted faults left in the journal by a previous agent");
    }
    if (recovery.failed.length > 0 || recovery.corrupt.length > 0) throw new RecoveryError(recovery);

    return await runAgent(options, { agentId, registry, journal, reports, unlock });
  } catch (err) {
    unlock();
    throw err;
  }
}

async function runAgent(
  options: AgentOptions,
  deps: { agentId: string; registry: FaultRegistry; journal: Journal; reports: PendingReports; unlock: () => void },
): Promise<Agent> {
  const { agentId, registry, journal, reports } = deps;
  const log = options.log.child({ agentId });
  const queue: FaultEvent[] = [];
  let link: AgentLink | undefined;
  const guard: GuardSupervisor | undefined = options.guardCommand
    ? superviseGuard({ command: options.guardCommand, stateDir: options.stateDir, log: log.child({ component: "guard" }) })
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

  const runtime = new FaultRuntime({
    registry,
    journal,
    host: {
      cpuCount: cpus().length,
      stateDir: options.stateDir,
      protectedPids: () => [1, process.pid, process.ppid, ...(guard?.pid() !== undefined ? [guard.pid()!] : [])],
      networkExclusions: await computeNetworkExclusions(options.server),
    },
    log: log.child({ component: "runtime" }),
    holder: selfProcess(),
    emit,
    ...(options.progressIntervalMs !== undefined ? { progressIntervalMs: options.progressIntervalMs } : {}),
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

  const imdsEndpoint = options.imdsEndpoint ?? DEFAULT_IMDS_ENDPOINT;
  const ec2: Ec2Identity =
    imdsEndpoint === "off" ? { instanceId: "", availabilityZone: "", region: "" } : await readEc2Identity(imdsEndpoint);
  if (ec2.instanceId) log.info({ instanceId: ec2.instanceId, az: ec2.availabilityZone }, "running on EC2");
  const capabilities = detectCapabilities([...registry.keys()]);

  const hello = async (): Promise<Hello> => {
    const pending = reports.list();
    return create(HelloSchema, {
      agentId,
      version: AGENT_VERSION,
      facts: await gatherHostFacts(ec2),
      labels: options.labels,
      capabilities,
      heldFaults: [
        ...runtime.held(),
        ...pending.map((e) =>
          create(HeldFaultSchema, {
            faultId: e.faultId,
            kind: e.kind,
            state: e.type === FaultEventType.FAILED ? FaultState.FAILED : FaultState.REVERTED,
          }),
        ),
      ],
    });
  };

  const onMessage = (message: ConnectResponse): void => {
    // Any word from the control plane renews the lease.
    const m = message.message;
    const ttl = m.case === "welcome" || m.case === "leaseRenewal" ? durationToMs(m.value.leaseTtl) : undefined;
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
      default:
        break;
    }
  };

  let resolveRefused: (err: grpc.ServiceError) => void = () => {};
  const refused = new Promise<grpc.ServiceError>((resolve) => {
    resolveRefused = resolve;
  });

  link = new AgentLink({
    server: options.server,
    token: options.token,
    credentials: options.credentials,
    log: log.child({ component: "link" }),
    hello,
    onMessage,
    activeFaults: () => runtime.activeCount,
    ...(options.backoffMaxMs !== undefined ? { backoffMaxMs: options.backoffMaxMs } : {}),
    onConnected(welcome) {
      log.info(
        { server: options.server, leaseTtlMs: durationToMs(welcome.leaseTtl), heartbeatMs: durationToMs(welcome.heartbeatInterval) },
        "connected to the control plane",
      );
      // Deliver what happened while the link was down: final events first (durable), then the rest.
      for (const event of reports.list()) sendEvent(event);
      for (const event of queue.splice(0)) sendEvent(event);
    },
    onDisconnected(error) {
      log.warn({ err: error?.message, leaseRemainingMs: Math.round(lease.remainingMs() ?? 0) }, "lost the control plane; reconnecting");
    },
    onRefused(error) {
      log.fatal({ code: error.code, details: error.details }, `the control plane refused this agent: ${error.details}`);
      resolveRefused(error);
    },
  });
  link.start();

  let stopping: Promise<void> | undefined;
  return {
    agentId,
    refused,
    stop() {
      stopping ??= (async () => {
        lease.close();
        await runtime.stopAll(RevertReason.SHUTDOWN);
        await link?.close();
        // Everything is reverted: the guard has nothing left to watch for.
        await guard?.stop();
        deps.unlock();
      })();
      return stopping;
    },
  };
}

function isFinal(event: FaultEvent): boolean {
  return event.type === FaultEventType.REVERTED || event.type === FaultEventType.FAILED;
}
