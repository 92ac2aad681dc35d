/**
 * A worker of the simulated fleet (see sim-fleet.ts): hosts many simulated agents in one process,
 * each with its own grpc-js channel (its own TCP connection, as a separate host has) and one
 * Connect stream, behaving as firedrill-agent's link, lease and runtime do without touching the
 * host. Driven by its parent over IPC: "start" (its share of the agents), "stats", "reset", "close".
 * Exits when the parent goes away.
 *
 * Kept small per agent (one object, its channel and stream, timers only for what it is doing): the
 * lease and silence checks are one sweep over all agents per process, not a timer each.
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import { backoffDelay } from "@firedrill/agent";
import {
  AGENT_TOKEN_METADATA_KEY,
  AgentService,
  ConnectRequestSchema,
  FaultEventType,
  FaultState,
  MAX_FAULT_DURATION_MS,
  MIN_FAULT_DURATION_MS,
  RevertReason,
  bearer,
  createClientConstructor,
  durationToMs,
  formatDuration,
  revertReasonName,
  timestampFromMs,
} from "@firedrill/protocol";
import type { ClientOf, ConnectRequest, ConnectResponse, StartFault } from "@firedrill/protocol";
import { emptySimStats } from "./sim-fleet.js";
import type { SimFleetStats, SimWorkerConfig, SimWorkerMessage, SimWorkerRequest } from "./sim-fleet.js";

type AgentClient = ClientOf<typeof AgentService>;
type Metadata = NonNullable<Parameters<AgentClient["connect"]>[0]>;
type Stream = ReturnType<AgentClient["connect"]>;
const Client = createClientConstructor(AgentService);
type ChannelCredentials = ConstructorParameters<typeof Client>[1];

// The root package depends on neither @grpc/grpc-js nor @bufbuild/protobuf: both come from
// @firedrill/protocol's own dependencies (for grpc-js, the very module its clients are built on: a
// second copy would not recognise the Metadata or the credentials).
const ROOT = join(import.meta.dirname, "../..");
const fromProtocol = createRequire(join(ROOT, "packages/protocol/package.json"));
const grpc = fromProtocol("@grpc/grpc-js") as {
  credentials: { createInsecure(): ChannelCredentials };
  Metadata: new () => Metadata;
  status: Record<number, string>;
};
type RequestCase = NonNullable<ConnectRequest["message"]["case"]>;
const { create } = fromProtocol("@bufbuild/protobuf") as {
  create(schema: typeof ConnectRequestSchema, init: { message: { case: RequestCase; value: object } }): ConnectRequest;
};

/** The fault kinds a real agent without root reports (cpu-burn, disk-fill, process-kill). */
const FAULT_KINDS = ["cpu-burn", "disk-fill", "process-kill"];
/** As the real agent's link: wait this long for the Welcome, then cancel and reconnect. */
const WELCOME_TIMEOUT_MS = 10_000;
/** The real agent's defaults: most faults held at once, longest lease accepted. */
const MAX_FAULTS = 4;
const MAX_LEASE_TTL_MS = 300_000;
/** Ended fault ids remembered per agent, so that a re-sent StartFault never runs twice. */
const ENDED_MEMORY = 16;
/** Non-final events kept per agent while its link is down (PROGRESS dropped first). */
const MAX_QUEUED = 16;
/** How often leases and silent links are checked (the real Lease checks every 100 ms). */
const SWEEP_MS = 100;

/** A fault event, as the fields of a FaultEvent message. */
interface EventInit {
  faultId: string;
  kind: string;
  type: FaultEventType;
  time: ReturnType<typeof timestampFromMs>;
  reason: RevertReason;
  error: string;
  message: string;
  measurements: Record<string, number>;
}

interface SimFault {
  id: string;
  kind: string;
  load: number;
  startedAt: number;
  endsAt: number;
  durationTimer: NodeJS.Timeout;
  progressTimer: NodeJS.Timeout;
}

const epochNow = (): number => performance.timeOrigin + performance.now();

/** The agents of this process and what they share. */
class Fleet {
  readonly agents: SimAgent[] = [];
  readonly credentials = grpc.credentials.createInsecure();
  readonly metadata = new grpc.Metadata();
  closing = false;
  counters = zeroCounters();
  private sweepTimer: NodeJS.Timeout | undefined;
  private dialTimer: NodeJS.Timeout | undefined;

  constructor(readonly config: SimWorkerConfig) {
    this.metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(config.joinToken));
    for (const id of config.agentIds) this.agents.push(new SimAgent(id, this));
  }

  /** Dials every agent, `dialsPerSecond` at most, and starts the lease / silence sweep. */
  start(): void {
    const t0 = performance.now();
    let next = 0;
    const dialDue = () => {
      const due = Math.min(this.agents.length, Math.ceil(((performance.now() - t0) / 1000) * this.config.dialsPerSecond) + 1);
      while (next < due) this.agents[next++]!.dial();
      if (next >= this.agents.length) clearInterval(this.dialTimer);
    };
    this.dialTimer = setInterval(dialDue, 10);
    dialDue();
    this.sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const agent of this.agents) agent.check(now);
    }, SWEEP_MS);
  }

  stats(): SimFleetStats {
    let connected = 0;
    let heldFaults = 0;
    for (const agent of this.agents) {
      if (agent.welcomed) connected++;
      heldFaults += agent.faults?.size ?? 0;
    }
    return { ...this.counters, connected, heldFaults };
  }

  close(): void {
    this.closing = true;
    clearInterval(this.dialTimer);
    clearInterval(this.sweepTimer);
    for (const agent of this.agents) agent.close();
  }
}

type Counters = Omit<SimFleetStats, "connected" | "heldFaults">;

function zeroCounters(): Counters {
  const { connected: _connected, heldFaults: _held, ...counters } = emptySimStats();
  return counters;
}

/** One simulated agent. */
class SimAgent {
  private client: AgentClient | undefined;
  private stream: Stream | undefined;
  /** A Welcome arrived on the current stream. */
  welcomed = false;
  private attempt = 0;
  private heartbeatMs = 5000;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private welcomeTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last message from the control plane. */
  private lastHeard = 0;
  private leaseTtlMs = 0;
  private leaseRenewedAt = 0;
  private leaseArmed = false;
  faults: Map<string, SimFault> | undefined;
  /** Final events not yet delivered (reverted while the link was down), sent after the next Welcome. */
  private finals: EventInit[] | undefined;
  /** Other events not yet delivered, bounded. */
  private queued: EventInit[] | undefined;
  private ended: string[] | undefined;

  constructor(
    readonly id: string,
    private readonly fleet: Fleet,
  ) {}

  dial(): void {
    const fleet = this.fleet;
    if (fleet.closing) return;
    this.client ??= new Client(fleet.config.address, fleet.credentials, {
      // Its own connection, as a separate host would have (grpc-js otherwise shares one connection
      // between channels with equal credentials: every plain-gRPC agent would ride on one socket).
      "grpc.use_local_subchannel_pool": 1,
      // As the agent's link does: reconnect timing is ours, keep grpc's own short.
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 1000,
      // Client-side bookkeeping only: thousands of channels need not keep channelz traces.
      "grpc.enable_channelz": 0,
    });
    const stream = this.client.connect(fleet.metadata.clone());
    this.stream = stream;
    this.welcomed = false;
    let ended = false;
    const onEnd = (error?: Error) => {
      if (ended) return;
      ended = true;
      const current = this.stream === stream;
      const wasWelcomed = current && this.welcomed;
      if (current) {
        clearTimeout(this.welcomeTimer);
        clearInterval(this.heartbeatTimer);
        this.stream = undefined;
        this.welcomed = false;
      }
      if (fleet.closing) return;
      fleet.counters.linksDropped++;
      if (!wasWelcomed) fleet.counters.droppedBeforeWelcome++;
      const code = (error as { code?: number } | undefined)?.code;
      const why = `${wasWelcomed ? "after" : "before"} Welcome: ${code === undefined ? "ended" : (grpc.status[code] ?? code)}`;
      fleet.counters.endedBy[why] = (fleet.counters.endedBy[why] ?? 0) + 1;
      if (current) this.reconnectTimer = setTimeout(() => this.dial(), backoffDelay(this.attempt++, this.fleet.config.backoff.initialMs, this.fleet.config.backoff.maxMs));
    };
    this.welcomeTimer = setTimeout(() => {
      if (this.stream === stream && !this.welcomed) stream.cancel();
    }, WELCOME_TIMEOUT_MS);
    stream.on("data", (message: ConnectResponse) => this.onMessage(stream, message));
    stream.on("error", onEnd);
    stream.on("end", () => onEnd());
    stream.on("close", () => onEnd());
    stream.write(create(ConnectRequestSchema, { message: { case: "hello", value: this.hello() } }));
  }

  private hello(): object {
    const held: object[] = [];
    for (const f of this.faults?.values() ?? []) {
      held.push({ faultId: f.id, kind: f.kind, state: FaultState.RUNNING, startedAt: timestampFromMs(f.startedAt), endsAt: timestampFromMs(f.endsAt) });
    }
    for (const e of this.finals ?? []) {
      held.push({ faultId: e.faultId, kind: e.kind, state: e.type === FaultEventType.FAILED ? FaultState.FAILED : FaultState.REVERTED });
    }
    return {
      agentId: this.id,
      version: "0.1.0-sim",
      facts: { hostname: `${this.id}.sim`, osPlatform: "linux", arch: "x64", cpuCount: 2, memoryBytes: 4n * 1024n ** 3n },
      labels: this.fleet.config.labels,
      capabilities: { faultKinds: FAULT_KINDS, root: false },
      heldFaults: held,
    };
  }

  private onMessage(stream: Stream, message: ConnectResponse): void {
    if (this.stream !== stream) return;
    const now = performance.now();
    this.lastHeard = now;
    const m = message.message;
    // Any word from the control plane renews the lease; Welcome and LeaseRenewal set its TTL.
    this.renewLease(now, m.case === "welcome" || m.case === "leaseRenewal" ? Math.min(MAX_LEASE_TTL_MS, durationToMs(m.value.leaseTtl)) : undefined);
    const counters = this.fleet.counters;
    switch (m.case) {
      case "welcome": {
        clearTimeout(this.welcomeTimer);
        this.welcomed = true;
        this.attempt = 0;
        counters.welcomes++;
        this.heartbeatMs = Math.max(200, durationToMs(m.value.heartbeatInterval) || 5000);
        clearInterval(this.heartbeatTimer);
        this.heartbeatTimer = setInterval(() => {
          this.write("heartbeat", { time: timestampFromMs(Date.now()), activeFaults: this.faults?.size ?? 0 });
        }, this.heartbeatMs);
        // Deliver what happened while the link was down: final events first, then the rest.
        for (const event of this.finals?.splice(0) ?? []) this.send(event);
        for (const event of this.queued?.splice(0) ?? []) this.send(event);
        break;
      }
      case "startFault":
        counters.startFaults++;
        counters.lastStartFaultAt = epochNow();
        this.startFault(m.value);
        break;
      case "stopFault":
        counters.stopFaults++;
        counters.lastStopFaultAt = epochNow();
        this.revert(m.value.faultId, m.value.reason || RevertReason.STOPPED);
        break;
      case "stopAll":
        counters.stopAlls++;
        counters.lastStopAllAt = epochNow();
        this.revertAll(m.value.reason || RevertReason.STOPPED);
        break;
      case "previewFault":
        // A dry run: nothing to select on a simulated host.
        this.write("faultPreview", {
          requestId: m.value.requestId,
          error: FAULT_KINDS.includes(m.value.kind) ? "" : `kind: unknown fault kind ${JSON.stringify(m.value.kind)}; this agent runs: ${FAULT_KINDS.join(", ")}`,
        });
        break;
      default:
        break;
    }
  }

  private renewLease(now: number, ttlMs: number | undefined): void {
    if (ttlMs !== undefined && ttlMs > 0) this.leaseTtlMs = ttlMs;
    if (this.leaseTtlMs <= 0) return;
    this.leaseRenewedAt = now;
    this.leaseArmed = true;
  }

  /** The sweep: the lease (reverting every fault when it runs out), and a silent control plane. */
  check(now: number): void {
    if (this.leaseArmed && now - this.leaseRenewedAt >= this.leaseTtlMs) {
      this.leaseArmed = false;
      this.fleet.counters.leasesExpired++;
      this.revertAll(RevertReason.LEASE);
    }
    // As the real link: the control plane renews the lease every interval, so a stream silent for
    // two intervals and a second is a dead one.
    if (this.welcomed && this.stream && now - this.lastHeard > 2 * this.heartbeatMs + 1000) this.stream.cancel();
  }

  private startFault(request: StartFault): void {
    const { faultId: id, kind } = request;
    if (this.faults?.has(id) || this.ended?.includes(id)) return;
    const fail = (error: string) => this.send(event(id, kind, FaultEventType.FAILED, { error }));
    if (!FAULT_KINDS.includes(kind)) return fail(`kind: unknown fault kind ${JSON.stringify(kind)}; this agent runs: ${FAULT_KINDS.join(", ")}`);
    const durationMs = durationToMs(request.duration);
    if (durationMs < MIN_FAULT_DURATION_MS || durationMs > MAX_FAULT_DURATION_MS) return fail(`duration: ${formatDuration(durationMs)} is outside the allowed 1s-12h`);
    const faults = (this.faults ??= new Map());
    if (faults.size >= MAX_FAULTS) {
      return fail(`this host already holds ${faults.size} faults, the most this agent allows (--max-faults ${MAX_FAULTS}); stop one of them first`);
    }
    const load = typeof request.params?.load === "number" ? request.params.load : 100;
    const startedAt = Date.now();
    const fault: SimFault = {
      id,
      kind,
      load,
      startedAt,
      endsAt: startedAt + durationMs,
      durationTimer: setTimeout(() => this.revert(id, RevertReason.DURATION), durationMs),
      progressTimer: setInterval(() => {
        this.send(event(id, kind, FaultEventType.PROGRESS, { measurements: measure(fault) }));
      }, this.fleet.config.progressEveryMs),
    };
    faults.set(id, fault);
    this.send(event(id, kind, FaultEventType.ACCEPTED, { message: `accepted for ${formatDuration(durationMs)}` }));
    this.send(event(id, kind, FaultEventType.STARTED, { message: `running until ${new Date(fault.endsAt).toISOString()}`, measurements: measure(fault) }));
  }

  private revert(id: string, reason: RevertReason): void {
    const fault = this.faults?.get(id);
    if (!fault) return;
    clearTimeout(fault.durationTimer);
    clearInterval(fault.progressTimer);
    this.faults!.delete(id);
    const ended = (this.ended ??= []);
    ended.push(id);
    if (ended.length > ENDED_MEMORY) ended.shift();
    this.send(event(id, fault.kind, FaultEventType.REVERTED, { reason, message: `reverted (${revertReasonName(reason)})`, measurements: measure(fault) }));
  }

  private revertAll(reason: RevertReason): void {
    for (const id of [...(this.faults?.keys() ?? [])]) this.revert(id, reason);
  }

  /** Sends an event on the live link; otherwise keeps it for the next Welcome (as the real agent). */
  private send(e: EventInit): void {
    if (this.welcomed && this.stream) {
      this.write("faultEvent", e);
      const counters = this.fleet.counters;
      if (e.type === FaultEventType.REVERTED) {
        counters.reverted++;
        counters.lastRevertAt = epochNow();
      } else if (e.type === FaultEventType.FAILED) counters.failed++;
      else if (e.type === FaultEventType.PROGRESS) counters.progress++;
      return;
    }
    if (e.type === FaultEventType.REVERTED || e.type === FaultEventType.FAILED) {
      (this.finals ??= []).push(e);
      return;
    }
    const queued = (this.queued ??= []);
    queued.push(e);
    if (queued.length > MAX_QUEUED) {
      const progress = queued.findIndex((q) => q.type === FaultEventType.PROGRESS);
      queued.splice(progress >= 0 ? progress : 0, 1);
    }
  }

  private write(kind: RequestCase, value: object): void {
    this.stream?.write(create(ConnectRequestSchema, { message: { case: kind, value } }));
  }

  close(): void {
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.welcomeTimer);
    clearInterval(this.heartbeatTimer);
    for (const f of this.faults?.values() ?? []) {
      clearTimeout(f.durationTimer);
      clearInterval(f.progressTimer);
    }
    this.stream?.cancel();
    this.stream = undefined;
    this.welcomed = false;
    this.client?.close();
  }
}

function event(faultId: string, kind: string, type: FaultEventType, extra: { reason?: RevertReason; error?: string; message?: string; measurements?: Record<string, number> } = {}): EventInit {
  return {
    faultId,
    kind,
    type,
    time: timestampFromMs(Date.now()),
    reason: extra.reason ?? RevertReason.UNSPECIFIED,
    error: extra.error ?? "",
    message: extra.message ?? "",
    measurements: extra.measurements ?? {},
  };
}

/** A cpu-burn's measurements, as the real one names them (the simulated burn delivers what was asked). */
function measure(fault: SimFault): Record<string, number> {
  return { load_asked: fault.load, burner_percent: fault.load };
}

// The IPC loop.
const send = (message: SimWorkerMessage): void => {
  process.send!(message);
};
if (!process.send) {
  console.error("sim-fleet-worker: started without an IPC channel; start it with startSimFleet (test/support/sim-fleet.ts)");
  process.exit(2);
}
// The fleet controller went away (its process died): nothing should outlive it.
process.on("disconnect", () => process.exit(0));
let fleet: Fleet | undefined;
process.on("message", (request: SimWorkerRequest) => {
  try {
    switch (request.type) {
      case "start":
        if (fleet) throw new Error("already started");
        fleet = new Fleet(request.config);
        fleet.start();
        send({ type: "reply", id: request.id });
        break;
      case "stats":
        send({ type: "reply", id: request.id, stats: fleet?.stats() ?? { ...zeroCounters(), connected: 0, heldFaults: 0 } });
        break;
      case "reset":
        if (fleet) fleet.counters = zeroCounters();
        send({ type: "reply", id: request.id });
        break;
      case "close":
        fleet?.close();
        // Once the reply is out, give the cancellations a moment to leave, then go.
        process.send!({ type: "reply", id: request.id } satisfies SimWorkerMessage, () => setTimeout(() => process.exit(0), 200));
        break;
    }
  } catch (err) {
    send({ type: "reply", id: request.id, error: (err as Error).message });
  }
});
send({ type: "ready" });
