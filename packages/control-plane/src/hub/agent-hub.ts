/**
 * The agent hub: one gRPC `AgentService.Connect` stream per agent. It authenticates the join token,
 * answers Hello with Welcome, renews the agent's lease every heartbeat interval (the agent's
 * dead-man switch), records fault events, and reconciles the store with the faults the agent holds.
 *
 * Built for fleets of 10,000 agents on one event loop (docs/architecture.md, "Fleet scale"):
 * - Hellos and fault events are queued as they arrive and handled in slices of at most ~16
 *   milliseconds, one SQLite transaction per slice (what the slice writes to streams, e.g. the
 *   Welcomes, goes out once it is committed), so lease renewals and heartbeats are never starved;
 *   a PROGRESS still queued is replaced by the next one of the same fault (at most one per fault);
 * - whoever waits for a fault's ack or end watches that fault ({@link AgentHub.watchFault}): an
 *   event costs O(1) however many faults are pending;
 * - "agent last heard" is written once a second for all agents in one transaction;
 * - the inactivity check does not count time the event loop itself was stalled (messages that
 *   sat unread in socket buffers meanwhile are not silence).
 */
import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/** What every server call offers: metadata, the peer, the TLS auth context. */
type ServerCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;
import {
  ConnectResponseSchema,
  REFUSAL_METADATA_KEY,
  FaultState as HeldFaultState,
  FaultEventType as ProtoEventType,
  RevertReason,
  durationFromMs,
  formatDuration,
} from "@firedrill/protocol";
import type { ConnectRequest, ConnectResponse, FaultEvent, Hello, JsonObject, Refusal } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/store.js";
import type { FaultEventInput, FaultEventType, FaultRecord, StopReason } from "../store/types.js";
import { describeHalt, readHalt } from "../halt.js";
import { CONTROL_PLANE_VERSION } from "../version.js";
import { agentFromHello, faultEventFromProto } from "./convert.js";
import { createPreviewRequests } from "./previews.js";
import type { AgentPreview } from "./previews.js";
import { createStopKeeper } from "./stop-keeper.js";
import type { StopRequest } from "./stop-keeper.js";
import { createStallTracker } from "./stall-tracker.js";
import { createMeasurementRings } from "./measurement-rings.js";
import type { FaultMeasurementsJson, MeasurementRingsOptions } from "./measurement-rings.js";

/** A change to a fault, announced to in-process listeners (e.g. HTTP requests awaiting an ack). */
export interface FaultUpdate {
  fault: FaultRecord;
  /**
   * The event that caused it; `reconciled` when the control plane ended the fault itself (the
   * agent no longer holds it), `lease-assumed` when it closed it as reverted by the agent's lease
   * without a confirmation.
   */
  cause: FaultEventType | "reconciled" | "lease-assumed";
}

/** Events of {@link AgentHub.events}. */
export interface AgentHubEvents {
  fault: [update: FaultUpdate];
  connected: [agentId: string];
  disconnected: [agentId: string];
}

/** Options of {@link createAgentHub}. */
export interface AgentHubOptions {
  store: Store;
  metrics: Metrics;
  logger: Logger;
  /**
   * Who a new stream is: with mTLS, the agent id of its client certificate and the labels its join
   * token gave it; in insecure-agents mode (loopback only), anyone holding a valid join token
   * (`agentId` undefined: Hello names it). Or why it is refused.
   */
  authenticate: (call: ServerCall) => StreamIdentity | HubRefusal;
  /** Refuses an agent id (revoked or removed) at Hello. */
  refuseAgent?: (agentId: string) => HubRefusal | undefined;
  /** Records a refused Hello (identity mismatch) in the audit log. */
  onRefusedHello?: (details: { peer: string; certificateId: string; claimedId: string }) => void;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  /** Delay between Welcome and reconciling held faults, so events the agent flushes win. */
  reconcileGraceMs: number;
  /** How long a new stream may take to send Hello. @default 10000 */
  helloTimeoutMs?: number;
  /** How often a stop not confirmed yet is sent again on a live link. @default 2000 */
  stopRetryMs?: number;
  /**
   * Above this many running faults, a PROGRESS that comes less than PROGRESS_HISTORY_MS after the
   * fault's last stored one is held in memory (the newest wins) and stored with the next one or
   * before the fault's next event (e.g. its end), instead of being written at once. @default 1000
   */
  progressHoldAbove?: number;
  /** Longest slice of queued agent messages handled in one transaction before yielding the event loop. @default 16 */
  eventSliceMs?: number;
  /** Bounds of the in-memory measurement rings (see hub/measurement-rings.ts). */
  measurementRings?: MeasurementRingsOptions;
  /**
   * The other replicas on a shared PostgreSQL store (docs/ha.md): where a message goes when another
   * replica holds the agent's stream, and who hears of the fault changes this one stores.
   */
  cluster?: HubCluster;
}

/**
 * What the hub needs from its replica set (ha/hub-link.ts implements it). Every method is cheap
 * and never throws (a PostgreSQL outage is logged by the implementation; the hub carries on with
 * what it holds).
 */
export interface HubCluster {
  /** This replica now holds the agent's stream. */
  streamOpened(agentId: string): void;
  /** This replica's stream of the agent ended. */
  streamClosed(agentId: string): void;
  /** Whether another live replica holds the agent's stream now. */
  heldElsewhere(agentId: string): boolean;
  /** Sends a message to an agent held by another replica; false when no live replica holds it. */
  sendRemote(agentId: string, message: AgentMessage): boolean;
  /** Sends a message to every agent the other replicas hold. */
  broadcastRemote(message: AgentMessage): void;
  /** Tells the other replicas that this one stored a change to a fault. */
  faultChanged(update: FaultUpdate): void;
}

/** The agent hub. */
export interface AgentHub {
  /** The grpc-js handler of `AgentService.Connect`. */
  readonly connect: grpc.handleBidiStreamingCall<ConnectRequest, ConnectResponse>;
  /** Fault changes and agent (dis)connections. */
  readonly events: EventEmitter<AgentHubEvents>;
  /** Whether the agent has a live stream. */
  isConnected(agentId: string): boolean;
  /** Sends a message to a connected agent. Returns false when it has no live stream. */
  send(agentId: string, message: AgentMessage): boolean;
  /** Ends the agent's stream with a refusal (e.g. revoked); false when it had none. */
  disconnect(agentId: string, refusal: HubRefusal): boolean;
  /**
   * Asks a connected agent for a dry run of a fault (PreviewFault): its refusal, or what it would
   * act on (e.g. the processes a process fault would hit). At most a few pending per agent.
   * Rejected with PreviewUnavailableError when the agent is not connected, does not answer within
   * `timeoutMs`, disconnects first, or has too many previews pending.
   */
  preview(agentId: string, kind: string, params: JsonObject, timeoutMs: number): Promise<AgentPreview>;
  /**
   * Records in the store that the control plane wants the fault ended, and sends StopFault now if
   * its agent is connected. The stop is sent again right after every Welcome of that agent and
   * every few seconds on its live link until the agent reports the fault ended, or until the
   * agent's lease must have ended it (then it is closed as reverted, reason `lease-assumed`).
   */
  requestStop(faultId: string, reason: StopReason, by: string): StopRequest;
  /**
   * The same for every active fault of an agent (`{ agentId }`) or of every agent (`{}`, a halt),
   * recorded only: the caller sends StopAll to connected agents; unconfirmed stops are re-sent
   * per fault. Returns how many faults it marked.
   */
  requestStops(which: { agentId?: string }, reason: StopReason, by: string): number;
  /**
   * Records stops for many faults (one transaction per thousand) and sends StopFault to those whose
   * agent is connected, yielding the event loop between chunks. Resolves with how many were
   * wanted (not ended yet) and how many went out on a live link; the rest are re-sent like
   * {@link requestStop}'s.
   */
  requestStopMany(faultIds: readonly string[], reason: StopReason, by: string): Promise<{ wanted: number; sent: number }>;
  /** Sends a message to every connected agent; returns how many. */
  broadcast(message: AgentMessage): number;
  /** Ids of the agents connected now. */
  connectedAgentIds(): string[];
  /**
   * Calls `listener` with every change to this fault (after it is stored), until the returned
   * function is called. O(1) per event, however many faults are watched.
   */
  watchFault(faultId: string, listener: (update: FaultUpdate) => void): () => void;
  /** Calls `listener` when this agent's stream ends, until the returned function is called. */
  watchDisconnect(agentId: string, listener: () => void): () => void;
  /**
   * Runs `fn` in one store transaction; what it sends to agents goes out once that is committed
   * (e.g. a step's StartFaults: recorded, then sent, a chunk per transaction).
   */
  batch<T>(fn: () => T): T;
  /**
   * Resolves once every fault event received so far is recorded (the queue drained): e.g. before
   * concluding that an ack did not arrive in time.
   */
  drained(): Promise<void>;
  /**
   * The agent's recent faults, newest first (at most `limit`, default 50), each with its last
   * PROGRESS measurements held in memory (at most one a second, the last 720; faults that ended
   * more than an hour ago are forgotten). Empty for an unknown agent.
   */
  measurements(agentId: string, limit?: number): FaultMeasurementsJson[];
  /** Ends every stream (status UNAVAILABLE) and stops all timers. */
  close(): void;
  /** Writes a message to the agent's stream on this replica only (a command routed here); false when it is not here. */
  deliverLocal(agentId: string, message: AgentMessage): boolean;
  /** Writes a message to every agent stream on this replica; returns how many. */
  broadcastLocal(message: AgentMessage): number;
  /**
   * Announces a fault change another replica stored (read back from the store) to this replica's
   * listeners and watchers, e.g. a run here whose faults run on agents held there.
   */
  announceFromPeer(faultId: string, cause: FaultUpdate["cause"]): void;
}

/** Who a stream is, once authenticated. */
export interface StreamIdentity {
  /** The certificate's agent id; undefined in insecure-agents mode. */
  agentId: string | undefined;
  /** Labels set by the join token the agent enrolled with: they win over Hello's. */
  labels: Record<string, string>;
}

/** A refused stream: status, message and the refusal reason for the trailing metadata. */
export interface HubRefusal {
  code: grpc.status;
  details: string;
  refusal: Refusal;
}

/** Queued agent messages beyond which a new PROGRESS is dropped (state-changing events are still queued). */
export const QUEUE_LIMIT = 100_000;

/** A running fault's event history keeps at most one PROGRESS this often (the fault keeps the latest measurements). */
export const PROGRESS_HISTORY_MS = 10_000;

/** Bounds on what an agent may send (see docs/security.md). */
export const AGENT_BOUNDS = {
  hostname: 255,
  version: 64,
  labels: 64,
  labelKey: 128,
  labelValue: 253,
  filesystems: 256,
  interfaces: 256,
  addressesPerInterface: 64,
  factString: 255,
  heldFaults: 1000,
  eventText: 4096,
  measurements: 32,
  /** Messages per second per stream (sustained), and the burst. */
  messagesPerSecond: 200,
  messageBurst: 2000,
} as const;

/** A message to an agent: one case of ConnectResponse, as an init object. */
export type AgentMessage = NonNullable<MessageInitShape<typeof ConnectResponseSchema>["message"]>;

interface Session {
  readonly serial: number;
  readonly call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>;
  log: Logger;
  agentId: string | undefined;
  /** From the client certificate: Hello must name this id. */
  certAgentId: string | undefined;
  tokenLabels: Record<string, string>;
  /** Message rate limit (token bucket). */
  bucket: number;
  bucketAt: number;
  dropped: number;
  lastMessageAt: number;
  lastTouchAt: number;
  closed: boolean;
  /** Hello arrived and waits in the queue. */
  helloQueued: boolean;
  readonly timers: Set<NodeJS.Timeout>;
}

interface StatusError {
  code: grpc.status;
  details: string;
  refusal?: Refusal;
}

const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Creates the agent hub. Serve its `connect` handler with {@link startGrpcServer}. */
export function createAgentHub(options: AgentHubOptions): AgentHub {
  const { store, metrics, leaseTtlMs, heartbeatIntervalMs } = options;
  const log = options.logger;
  const helloTimeoutMs = options.helloTimeoutMs ?? 10_000;
  const inactivityMs = heartbeatIntervalMs * 3;
  const events = new EventEmitter<AgentHubEvents>();
  events.setMaxListeners(0);
  const open = new Set<Session>();
  const byAgent = new Map<string, Session>();
  let serial = 0;
  let closing = false;
  const faultWatchers = new Map<string, Set<(update: FaultUpdate) => void>>();
  /**
   * Running faults whose PROGRESS was stored (so known to be this agent's): when it last was, when
   * one last went into the fault's event history, and the newest PROGRESS held since, not stored yet.
   */
  const progressStored = new Map<string, { agentId: string; at: number; historyAt: number; held: FaultEventInput | undefined }>();
  const progressHoldAbove = options.progressHoldAbove ?? 1000;
  const disconnectWatchers = new Map<string, Set<() => void>>();
  const stalls = createStallTracker();
  const eventSliceMs = options.eventSliceMs ?? 16;
  const rings = createMeasurementRings(options.measurementRings);
  const cluster = options.cluster;
  /** Sends to the agent's stream here, else through the replica that holds it. */
  const sendAnywhere = (agentId: string, message: AgentMessage): boolean => {
    const session = byAgent.get(agentId);
    if (session) return write(session, message);
    return cluster?.sendRemote(agentId, message) ?? false;
  };
  const connectedAnywhere = (agentId: string): boolean => byAgent.has(agentId) || (cluster?.heldElsewhere(agentId) ?? false);

  /** Announces a stored change: to the hub's listeners, then to whoever watches that fault. */
  function announce(update: FaultUpdate): void {
    cluster?.faultChanged(update);
    announceHere(update);
  }

  /** The local half of {@link announce}: this replica's listeners and watchers. */
  function announceHere(update: FaultUpdate): void {
    if (update.fault.endedAt !== null) {
      progressStored.delete(update.fault.id);
    }
    rings.track(update.fault);
    try {
      events.emit("fault", update);
    } catch (err) {
      log.error({ err, faultId: update.fault.id }, "a fault listener failed");
    }
    const watchers = faultWatchers.get(update.fault.id);
    if (!watchers) return;
    for (const watcher of [...watchers]) {
      try {
        watcher(update);
      } catch (err) {
        log.error({ err, faultId: update.fault.id }, "a fault watcher failed");
      }
    }
  }

  function watch<K, V>(map: Map<K, Set<V>>, key: K, value: V): () => void {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(value);
    return () => {
      const current = map.get(key);
      if (!current) return;
      current.delete(value);
      if (current.size === 0) map.delete(key);
    };
  }

  // Hellos and fault events wait here between their arrival and their handling (see the file's comment).
  interface QueuedEvent {
    session: Session;
    /** Undefined for a Hello, and for an event that arrived right behind its stream's queued Hello. */
    agentId: string | undefined;
    event: FaultEvent | undefined;
    hello?: Hello;
    receivedAt: number;
  }
  let queue: QueuedEvent[] = [];
  let queueHead = 0;
  /** Index in `queue` of the PROGRESS of each fault still waiting to be recorded. */
  const queuedProgress = new Map<string, number>();
  let drainScheduled = false;
  let drainedWaiters: (() => void)[] = [];

  function enqueueHello(session: Session, hello: Hello, receivedAt: number): void {
    queue.push({ session, agentId: undefined, event: undefined, hello, receivedAt });
    metrics.faultEventQueue.set(queue.length - queueHead);
    scheduleDrain();
  }

  function enqueue(session: Session, agentId: string | undefined, event: FaultEvent, receivedAt: number): void {
    if (event.type === ProtoEventType.PROGRESS && event.faultId.length <= 128 && agentId !== undefined) {
      const at = queuedProgress.get(event.faultId);
      const queued = at === undefined ? undefined : queue[at];
      if (queued && queued.agentId === agentId && queued.event) {
        queued.event = event;
        queued.receivedAt = receivedAt;
        metrics.progressCoalesced.inc();
        return;
      }
      if (queue.length - queueHead >= QUEUE_LIMIT) {
        // Full: a PROGRESS is only a measurement; events that change a fault still get in.
        metrics.agentMessagesDropped.inc({ reason: "queue-full" });
        return;
      }
      queuedProgress.set(event.faultId, queue.length);
    }
    queue.push({ session, agentId, event, receivedAt });
    metrics.faultEventQueue.set(queue.length - queueHead);
    scheduleDrain();
  }

  function scheduleDrain(): void {
    if (drainScheduled) return;
    drainScheduled = true;
    setImmediate(drain);
  }

  const recordSlice = (deadline: number, sessions: Set<Session>): void => {
    let n = 0;
    while (queueHead < queue.length) {
      // The clock is read every 32 items: a slice ends within a few items of its deadline.
      if (n > 0 && n % 32 === 0 && performance.now() >= deadline) break;
      const item = queue[queueHead]!;
      queue[queueHead] = undefined as unknown as QueuedEvent;
      queueHead += 1;
      n += 1;
      sessions.add(item.session);
      try {
        if (item.hello) {
          if (!item.session.closed) onHello(item.session, item.hello);
          continue;
        }
        const event = item.event!;
        if (event.type === ProtoEventType.PROGRESS && queuedProgress.get(event.faultId) === queueHead - 1) queuedProgress.delete(event.faultId);
        // An event that arrived behind its stream's Hello belongs to the agent that Hello named (if it was let in).
        const agentId = item.agentId ?? item.session.agentId;
        if (agentId !== undefined) onFaultEvent(item.session, agentId, event, item.receivedAt);
      } catch (err) {
        item.session.log.error({ err }, "failed to handle an agent message");
        end(item.session, { code: grpc.status.INTERNAL, details: "the control plane failed to handle a message; see its log" });
      }
    }
  };

  // Writes to streams made while a slice (or a batch) is in its transaction wait for its commit:
  // nothing goes out that the store might not keep.
  let deferred: [Session, AgentMessage][] | undefined;
  function inTransaction<T>(fn: () => T): T {
    if (deferred) return fn();
    const pending: [Session, AgentMessage][] = [];
    deferred = pending;
    let result: T;
    // PostgreSQL re-runs a transaction that lost a serialization conflict (with another replica);
    // a slice cannot be re-run (it consumed its queue, its handlers touched memory), so a second
    // attempt fails the slice instead: its agents reconnect and report again, as for any failure.
    let attempts = 0;
    try {
      result = store.db.transaction(() => {
        attempts += 1;
        if (attempts > 1) throw new Error("the slice's transaction conflicted with another writer and was rolled back");
        return fn();
      })();
    } catch (err) {
      deferred = undefined;
      for (const [session] of pending) {
        end(session, { code: grpc.status.UNAVAILABLE, details: "the control plane could not record what the agent sent; reconnect" });
      }
      throw err;
    }
    deferred = undefined;
    for (const [session, message] of pending) write(session, message);
    return result;
  }

  function drain(): void {
    drainScheduled = false;
    if (!store.db.open) return;
    const sessions = new Set<Session>();
    try {
      inTransaction(() => recordSlice(performance.now() + eventSliceMs, sessions));
    } catch (err) {
      // Nothing of the slice was stored: its agents reconnect, and their Hello's held faults
      // reconcile the store (a fault no longer held is closed as reverted, reason unknown).
      log.error({ err, messages: sessions.size }, "failed to record a slice of agent messages; closing those agents' links so that they report again");
      for (const session of sessions) end(session, { code: grpc.status.UNAVAILABLE, details: "the control plane could not record what the agent sent; reconnect" });
    }
    if (queueHead >= queue.length) {
      queue = [];
      queueHead = 0;
      queuedProgress.clear();
      metrics.faultEventQueue.set(0);
      const waiters = drainedWaiters;
      drainedWaiters = [];
      for (const wake of waiters) wake();
      return;
    }
    if (queueHead > 4096 && queueHead * 2 > queue.length) {
      queue = queue.slice(queueHead);
      for (const [faultId, at] of queuedProgress) queuedProgress.set(faultId, at - queueHead);
      queueHead = 0;
    }
    metrics.faultEventQueue.set(queue.length - queueHead);
    scheduleDrain();
  }

  // When each agent was last heard, written for all of them once a second.
  let touched = new Map<string, number>();
  const touchTimer = setInterval(flushTouched, 1000);
  touchTimer.unref();
  function flushTouched(): void {
    if (touched.size === 0 || !store.db.open) return;
    const batch = touched;
    touched = new Map();
    try {
      store.touchAgents(batch);
    } catch (err) {
      log.error({ err }, "could not record when agents were last heard; retrying");
      for (const [id, at] of batch) if (!touched.has(id)) touched.set(id, at);
    }
  }
  const stops = createStopKeeper({
    store,
    metrics,
    log: log.child({ component: "stops" }),
    leaseTtlMs,
    // The agent's lease runs from the last message it received; the control plane may write to a
    // silent link for up to `inactivityMs` after it last heard the agent (which is when lastSeen
    // is updated, at the latest on disconnect), and then a margin for late delivery.
    assumeAfterMs: leaseTtlMs + inactivityMs + 2000,
    retryMs: options.stopRetryMs ?? 2000,
    send: (agentId, faultId, reason) => sendAnywhere(agentId, { case: "stopFault", value: { faultId, reason } }),
    isConnected: connectedAnywhere,
    closed: (fault) => announce({ fault, cause: "lease-assumed" }),
  });

  const previews = createPreviewRequests({
    log: log.child({ component: "previews" }),
    send(agentId, request) {
      const session = byAgent.get(agentId);
      return session ? write(session, { case: "previewFault", value: request }) : false;
    },
  });

  function timer(session: Session, fn: () => void, ms: number, repeat = false): void {
    const handle = repeat
      ? setInterval(fn, ms)
      : setTimeout(() => {
          session.timers.delete(handle);
          fn();
        }, ms);
    session.timers.add(handle);
  }

  function write(session: Session, message: AgentMessage): boolean {
    if (session.closed) return false;
    if (deferred) {
      deferred.push([session, message]);
      return true;
    }
    try {
      session.call.write(create(ConnectResponseSchema, { message }));
      return true;
    } catch (err) {
      session.log.warn({ err }, "could not write to the agent stream");
      return false;
    }
  }

  /** Ends a stream: OK when `status` is undefined, else with that status. */
  function end(session: Session, status?: StatusError): void {
    if (session.closed) return;
    const call = session.call;
    const gone = call.cancelled || (call as unknown as { destroyed?: boolean }).destroyed === true;
    detach(session);
    if (gone) return;
    if (status) {
      session.log.info({ code: grpc.status[status.code], details: status.details }, "ending agent stream");
      // grpc-js: an 'error' emitted on a server stream becomes the call's final status.
      const metadata = new grpc.Metadata();
      if (status.refusal) {
        metadata.set(REFUSAL_METADATA_KEY, status.refusal);
        metrics.agentRefusals.inc({ refusal: status.refusal });
      }
      call.emit("error", { code: status.code, details: status.details, metadata });
    } else {
      call.end();
    }
  }

  /** Forgets a stream; if it was its agent's current stream, the agent is disconnected. */
  function detach(session: Session): void {
    if (session.closed) return;
    session.closed = true;
    for (const t of session.timers) clearTimeout(t);
    session.timers.clear();
    open.delete(session);
    const agentId = session.agentId;
    if (agentId !== undefined && byAgent.get(agentId) === session) {
      byAgent.delete(agentId);
      previews.disconnected(agentId);
      touched.delete(agentId);
      cluster?.streamClosed(agentId);
      // An agent that moved to another replica stays connected there.
      if (!(cluster?.heldElsewhere(agentId) ?? false)) store.markAgentDisconnected(agentId, Date.now());
      session.log.info("agent disconnected");
      events.emit("disconnected", agentId);
      const watchers = disconnectWatchers.get(agentId);
      if (watchers) for (const watcher of [...watchers]) watcher();
    }
  }

  function onHello(session: Session, hello: Hello): void {
    const agentId = hello.agentId;
    if (!AGENT_ID_PATTERN.test(agentId)) {
      end(session, {
        code: grpc.status.INVALID_ARGUMENT,
        details: `Hello.agent_id ${JSON.stringify(agentId.slice(0, 200))} is not valid: use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
      });
      return;
    }
    if (session.certAgentId !== undefined && agentId !== session.certAgentId) {
      options.onRefusedHello?.({ peer: session.call.getPeer(), certificateId: session.certAgentId, claimedId: agentId });
      end(session, {
        code: grpc.status.PERMISSION_DENIED,
        refusal: "identity-mismatch",
        details: `Hello names agent ${agentId}, but the client certificate is agent ${session.certAgentId}'s: an agent can only be itself`,
      });
      return;
    }
    const outOfBounds = helloBoundsIssue(hello);
    if (outOfBounds) {
      metrics.agentMessagesDropped.inc({ reason: "hello-bounds" });
      end(session, { code: grpc.status.INVALID_ARGUMENT, details: `Hello is out of bounds: ${outOfBounds}` });
      return;
    }
    const refused = options.refuseAgent?.(agentId);
    if (refused) {
      end(session, refused);
      return;
    }
    if (store.isAgentRemoved(agentId)) {
      end(session, {
        code: grpc.status.PERMISSION_DENIED,
        refusal: "revoked",
        details: `agent ${agentId} was removed from this control plane (firedrill agents rm); it cannot connect again`,
      });
      return;
    }
    // Labels set by the join token win over the agent's own (an enrolled host cannot opt itself in).
    const hostLabels = { ...hello.labels, ...session.tokenLabels };
    const now = Date.now();
    session.agentId = agentId;
    session.log = session.log.child({ agentId });
    const previous = byAgent.get(agentId);
    byAgent.set(agentId, session);
    cluster?.streamOpened(agentId);
    if (previous && previous !== session) {
      end(previous, {
        code: grpc.status.ABORTED,
        details: "replaced by a newer connection of the same agent id",
      });
    }
    const record = store.upsertAgent({ ...agentFromHello(hello), labels: hostLabels }, now);
    session.lastTouchAt = now;
    metrics.agentConnections.inc();
    write(session, {
      case: "welcome",
      value: {
        agentId,
        heartbeatInterval: durationFromMs(heartbeatIntervalMs),
        leaseTtl: durationFromMs(leaseTtlMs),
        serverVersion: CONTROL_PLANE_VERSION,
      },
    });
    session.log.info(
      { hostname: record.hostname, version: hello.version, heldFaults: hello.heldFaults.length },
      "agent connected",
    );

    timer(
      session,
      () => {
        if (silence(session) > inactivityMs) {
          // Read what sits in the socket buffers first (the poll phase runs before setImmediate):
          // after a stall of this process, the agent's heartbeats are there, not missing.
          setImmediate(() => {
            const silentMs = silence(session);
            if (session.closed || silentMs <= inactivityMs) return;
            end(session, {
              code: grpc.status.UNAVAILABLE,
              details: `nothing arrived from the agent for ${formatDuration(silentMs)} (limit ${formatDuration(inactivityMs)}); closing the link, reconnect to resume`,
            });
          });
        }
        write(session, { case: "leaseRenewal", value: { leaseTtl: durationFromMs(leaseTtlMs) } });
      },
      heartbeatIntervalMs,
      true,
    );

    // Faults the agent holds but the store does not know, or knows as ended, must not keep running;
    // nor may faults the control plane wants ended (stopped, their run over, a halt): their stop is
    // sent again right after Welcome, whatever happened to the first one.
    const halt = readHalt(store);
    for (const held of hello.heldFaults) {
      if (held.state !== HeldFaultState.STARTING && held.state !== HeldFaultState.RUNNING && held.state !== HeldFaultState.UNSPECIFIED) continue;
      const fault = store.getFault(held.faultId);
      if (fault && fault.agentId === agentId && fault.endedAt === null) {
        if (fault.stopRequestedAt === null) {
          if (halt) stops.mark(fault.id, "halt", describeHalt(halt));
          else if (fault.runId !== null && store.isRunEnded(fault.runId)) stops.mark(fault.id, "aborted", `run ${fault.runId} has ended`);
        }
        continue;
      }
      session.log.warn(
        { faultId: held.faultId, kind: held.kind, known: fault !== undefined },
        fault ? "agent still holds a fault that has ended; stopping it" : "agent holds a fault this control plane does not know; stopping it",
      );
      write(session, { case: "stopFault", value: { faultId: held.faultId, reason: RevertReason.STOPPED } });
    }
    stops.afterWelcome(agentId);

    const held = new Set(hello.heldFaults.map((f) => f.faultId));
    timer(session, () => reconcile(session, held, now), options.reconcileGraceMs);
    events.emit("connected", agentId);
  }

  /**
   * Ends faults the store has active for this agent that the agent no longer holds. Runs after the
   * grace period, so REVERTED events the agent flushed after Welcome (lease, recovery) win.
   */
  function reconcile(session: Session, held: Set<string>, helloAt: number): void {
    const agentId = session.agentId;
    if (session.closed || agentId === undefined || byAgent.get(agentId) !== session) return;
    const now = Date.now();
    for (const fault of store.listActiveFaults(agentId)) {
      if (held.has(fault.id) || fault.createdAt > helloAt) continue;
      const result = store.recordFaultEvent(
        {
          faultId: fault.id,
          agentId,
          type: "reverted",
          time: now,
          reason: "unknown",
          error: "the agent no longer holds this fault",
          message: "reconciled when the agent reconnected: it neither holds nor reported this fault",
          measurements: null,
        },
        now,
      );
      if (result.changed && result.fault) {
        stops.ended(fault.id);
        session.log.warn({ faultId: fault.id, kind: fault.kind }, "agent no longer holds a fault; marked reverted (reason unknown)");
        announce({ fault: result.fault, cause: "reconciled" });
      }
    }
  }

  /** How long the agent has been silent, not counting the time this process's event loop was stalled. */
  function silence(session: Session): number {
    const now = Date.now();
    return now - session.lastMessageAt - stalls.stalledSince(session.lastMessageAt, now);
  }

  function onFaultEvent(session: Session, agentId: string, event: FaultEvent, now: number): void {
    const input = faultEventFromProto(agentId, boundedEvent(event), now);
    if (!input) {
      session.log.warn({ faultId: event.faultId.slice(0, 100) }, "ignoring a fault event with an unspecified type");
      return;
    }
    const stored = progressStored.get(input.faultId);
    if (stored && stored.agentId === agentId) {
      if (input.type === "progress" && progressStored.size > progressHoldAbove && now - stored.at < PROGRESS_HISTORY_MS) {
        // A large fleet: measurements are stored at most every PROGRESS_HISTORY_MS per fault.
        stored.held = input;
        rings.sample(input.faultId, agentId, now, input.measurements);
        metrics.faultEvents.inc({ type: input.type });
        return;
      }
      if (stored.held) {
        // The newest measurements go in before anything else happens to the fault.
        const held = stored.held;
        stored.held = undefined;
        held.history = false;
        const result = store.recordFaultEvent(held, now);
        if (result.changed && result.fault) announce({ fault: result.fault, cause: "progress" });
      }
    }
    // Only events about faults this control plane sent to this agent are stored.
    const known = event.faultId.length <= 128 ? store.getFault(event.faultId) : undefined;
    if (!known || known.agentId !== agentId) {
      const reason = known ? "foreign-fault" : "unknown-fault";
      metrics.agentMessagesDropped.inc({ reason });
      session.dropped += 1;
      if (session.dropped <= 10 || session.dropped % 1000 === 0) {
        session.log.warn({ faultId: input.faultId.slice(0, 100), type: input.type, reason, dropped: session.dropped }, "dropped a fault event: not a fault this control plane sent to this agent");
      }
      if (!known && (input.type === "accepted" || input.type === "started" || input.type === "progress") && session.dropped <= 1000) {
        write(session, { case: "stopFault", value: { faultId: input.faultId, reason: RevertReason.STOPPED } });
      }
      return;
    }
    metrics.faultEvents.inc({ type: input.type });
    // Every PROGRESS updates the fault's measurements; its history keeps one every PROGRESS_HISTORY_MS.
    const historyAt = stored?.agentId === agentId ? stored.historyAt : undefined;
    if (input.type === "progress" && historyAt !== undefined && now - historyAt < PROGRESS_HISTORY_MS) input.history = false;
    // Read just above, in the same transaction (the slice's).
    const result = store.recordFaultEvent(input, now, known);
    if (!result.fault) return;
    if (!result.recorded) {
      session.log.debug({ faultId: input.faultId, type: input.type }, "duplicate fault event ignored");
      return;
    }
    // One line per fault event at info would be tens of thousands per run on a large fleet: the
    // store keeps every event (GET /api/v1/faults/ID); the log keeps what needs a look.
    const notable = input.type === "failed" || input.type === "revert_failed" || (input.type === "reverted" && input.reason !== "duration" && input.reason !== "stopped" && input.reason !== "aborted" && input.reason !== "halt");
    session.log[notable ? "info" : "debug"](
      { faultId: input.faultId, type: input.type, state: result.fault.state, reason: input.reason ?? undefined, error: input.error ?? undefined },
      "fault event",
    );
    if (result.fault.endedAt !== null) stops.ended(result.fault.id);
    else if (input.type === "progress") progressStored.set(result.fault.id, { agentId, at: now, historyAt: input.history === false ? historyAt! : now, held: undefined });
    if (result.changed && result.fault.state === "revert_failed") {
      metrics.revertFailures.inc({ kind: result.fault.kind });
      session.log.error({ faultId: result.fault.id, kind: result.fault.kind, error: result.fault.error }, "the agent gave up reverting a fault: its effect may still be on the host");
    }
    announce({ fault: result.fault, cause: input.type });
    if (input.type === "progress") rings.sample(input.faultId, agentId, now, input.measurements);
  }

  function onMessage(session: Session, request: ConnectRequest): void {
    if (session.closed) return;
    const now = Date.now();
    session.lastMessageAt = now;
    session.bucket = Math.min(AGENT_BOUNDS.messageBurst, session.bucket + ((now - session.bucketAt) / 1000) * AGENT_BOUNDS.messagesPerSecond);
    session.bucketAt = now;
    if (session.bucket < 1) {
      metrics.agentMessagesDropped.inc({ reason: "rate-limit" });
      session.dropped += 1;
      if (session.dropped % 1000 === 1) session.log.warn({ dropped: session.dropped }, "agent sends faster than the per-stream limit; dropping messages");
      if (session.dropped > 100_000) {
        end(session, { code: grpc.status.RESOURCE_EXHAUSTED, details: `more than ${AGENT_BOUNDS.messagesPerSecond} messages per second for too long; closing the link` });
      }
      return;
    }
    session.bucket -= 1;
    const message = request.message;
    if (session.agentId === undefined) {
      if (session.helloQueued) {
        // The Hello waits in the queue: an event keeps its place behind it; the rest needs the Welcome first.
        if (message.case === "faultEvent") enqueue(session, undefined, message.value, now);
        return;
      }
      if (message.case !== "hello") {
        end(session, {
          code: grpc.status.INVALID_ARGUMENT,
          details: `the first message on the agent link must be Hello, got ${message.case ?? "an empty message"}`,
        });
        return;
      }
      session.helloQueued = true;
      enqueueHello(session, message.value, now);
      return;
    }
    const agentId = session.agentId;
    if (now - session.lastTouchAt >= 1000) {
      session.lastTouchAt = now;
      touched.set(agentId, now);
    }
    switch (message.case) {
      case "heartbeat":
        break;
      case "faultEvent":
        enqueue(session, agentId, message.value, now);
        break;
      case "faultPreview":
        previews.answer(agentId, message.value);
        break;
      case "hello":
        session.log.warn("ignoring a second Hello on the same stream");
        break;
      default:
        session.log.warn("ignoring an empty message");
    }
  }

  const connect: grpc.handleBidiStreamingCall<ConnectRequest, ConnectResponse> = (call) => {
    const now = Date.now();
    serial += 1;
    const session: Session = {
      serial,
      call,
      log: log.child({ stream: serial, peer: call.getPeer() }),
      agentId: undefined,
      certAgentId: undefined,
      tokenLabels: {},
      bucket: AGENT_BOUNDS.messageBurst,
      bucketAt: now,
      dropped: 0,
      lastMessageAt: now,
      lastTouchAt: now,
      closed: false,
      helloQueued: false,
      timers: new Set(),
    };
    open.add(session);
    call.on("error", (err: Error) => {
      session.log.debug({ err }, "agent stream error");
      detach(session);
    });
    call.on("cancelled", () => detach(session));
    call.on("close", () => detach(session));
    // The agent half-closed: it is leaving; end our side too.
    call.on("end", () => end(session));
    call.on("data", (request: ConnectRequest) => {
      try {
        onMessage(session, request);
      } catch (err) {
        session.log.error({ err }, "failed to handle an agent message");
        end(session, { code: grpc.status.INTERNAL, details: "the control plane failed to handle a message; see its log" });
      }
    });

    if (closing) {
      end(session, { code: grpc.status.UNAVAILABLE, details: "the control plane is shutting down; reconnect later" });
      return;
    }
    const identity = options.authenticate(call);
    if ("refusal" in identity) {
      end(session, identity);
      return;
    }
    session.certAgentId = identity.agentId;
    session.tokenLabels = identity.labels;
    timer(
      session,
      () => {
        if (session.agentId === undefined && !session.helloQueued) {
          end(session, {
            code: grpc.status.INVALID_ARGUMENT,
            details: `no Hello within ${formatDuration(helloTimeoutMs)}: the first message on the agent link must be Hello`,
          });
        }
      },
      helloTimeoutMs,
    );
  };

  return {
    connect,
    events,
    isConnected: connectedAnywhere,
    send: sendAnywhere,
    deliverLocal(agentId, message) {
      const session = byAgent.get(agentId);
      return session ? write(session, message) : false;
    },
    broadcastLocal(message) {
      let n = 0;
      for (const session of byAgent.values()) if (write(session, message)) n += 1;
      return n;
    },
    announceFromPeer(faultId, cause) {
      const fault = store.getFault(faultId);
      if (fault) announceHere({ fault, cause });
    },
    disconnect(agentId, refusal) {
      const session = byAgent.get(agentId);
      if (!session) return false;
      end(session, refusal);
      return true;
    },
    requestStop: (faultId, reason, by) => stops.request(faultId, reason, by),
    requestStops: (which, reason, by) => store.requestStops(which, reason, by, Date.now()),
    async requestStopMany(faultIds, reason, by) {
      let wanted = 0;
      let sent = 0;
      for (let i = 0; i < faultIds.length; i += 1000) {
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        for (const fault of store.requestStopMany(faultIds.slice(i, i + 1000), reason, by, Date.now())) {
          wanted += 1;
          if (stops.send(fault)) sent += 1;
        }
      }
      log.info({ faults: faultIds.length, wanted, sent, reason, by }, "stops sent");
      return { wanted, sent };
    },
    broadcast(message) {
      let n = 0;
      for (const session of byAgent.values()) if (write(session, message)) n += 1;
      cluster?.broadcastRemote(message);
      return n;
    },
    connectedAgentIds: () => [...byAgent.keys()],
    batch: (fn) => inTransaction(fn),
    watchFault: (faultId, listener) => watch(faultWatchers, faultId, listener),
    watchDisconnect: (agentId, listener) => watch(disconnectWatchers, agentId, listener),
    drained() {
      if (queueHead >= queue.length && !drainScheduled) return Promise.resolve();
      return new Promise((resolve) => drainedWaiters.push(resolve));
    },
    preview: (agentId, kind, params, timeoutMs) => previews.request(agentId, kind, params, timeoutMs),
    measurements: (agentId, limit) => rings.list(agentId, limit),
    close() {
      closing = true;
      previews.close();
      stops.close();
      stalls.close();
      clearInterval(touchTimer);
      if (queueHead < queue.length) drain();
      flushTouched();
      for (const session of [...open]) {
        end(session, { code: grpc.status.UNAVAILABLE, details: "the control plane is shutting down; reconnect later" });
      }
    },
  };
}

/** Why a Hello is out of {@link AGENT_BOUNDS}, or undefined when it is within them. */
export function helloBoundsIssue(hello: Hello): string | undefined {
  const b = AGENT_BOUNDS;
  const facts = hello.facts;
  const bytes = (text: string) => Buffer.byteLength(text, "utf8");
  if (bytes(facts?.hostname ?? "") > b.hostname) return `facts.hostname is longer than ${b.hostname} bytes`;
  if (bytes(hello.version) > b.version) return `version is longer than ${b.version} bytes`;
  const labels = Object.entries(hello.labels);
  if (labels.length > b.labels) return `${labels.length} labels; at most ${b.labels}`;
  for (const [k, v] of labels) {
    if (bytes(k) > b.labelKey) return `label key ${JSON.stringify(k.slice(0, 40))}… is longer than ${b.labelKey} bytes`;
    if (bytes(v) > b.labelValue) return `label ${JSON.stringify(k.slice(0, 40))} has a value longer than ${b.labelValue} bytes`;
  }
  if (hello.heldFaults.length > b.heldFaults) return `${hello.heldFaults.length} held faults; at most ${b.heldFaults}`;
  if (facts) {
    if (facts.filesystems.length > b.filesystems) return `${facts.filesystems.length} filesystems; at most ${b.filesystems}`;
    if (facts.interfaces.length > b.interfaces) return `${facts.interfaces.length} interfaces; at most ${b.interfaces}`;
    for (const i of facts.interfaces) if (i.addresses.length > b.addressesPerInterface) return `interface ${i.name.slice(0, 40)} has more than ${b.addressesPerInterface} addresses`;
    const strings = [facts.osPlatform, facts.osDistro, facts.osRelease, facts.kernel, facts.arch, facts.cpuModel, facts.instanceId, facts.availabilityZone, facts.region,
      ...facts.filesystems.flatMap((f) => [f.device, f.type, f.mount]), ...facts.interfaces.flatMap((i) => [i.name, i.mac, ...i.addresses])];
    if (strings.some((t) => bytes(t) > b.factString)) return `a host fact is longer than ${b.factString} bytes`;
  }
  return undefined;
}

/** A fault event with its texts and measurements cut to {@link AGENT_BOUNDS}. */
function boundedEvent(event: FaultEvent): FaultEvent {
  const clip = (text: string) => (text.length > AGENT_BOUNDS.eventText ? `${text.slice(0, AGENT_BOUNDS.eventText - 1)}…` : text);
  const entries = Object.entries(event.measurements);
  if (event.message.length <= AGENT_BOUNDS.eventText && event.error.length <= AGENT_BOUNDS.eventText && entries.length <= AGENT_BOUNDS.measurements) return event;
  return { ...event, message: clip(event.message), error: clip(event.error), measurements: Object.fromEntries(entries.slice(0, AGENT_BOUNDS.measurements)) };
}
