/**
 * The agent hub: one gRPC `AgentService.Connect` stream per agent. It authenticates the join token,
 * answers Hello with Welcome, renews the agent's lease every heartbeat interval (the agent's
 * dead-man switch), records fault events, and reconciles the store with the faults the agent holds.
 */
import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AGENT_TOKEN_METADATA_KEY,
  ConnectResponseSchema,
  FaultState as HeldFaultState,
  RevertReason,
  durationFromMs,
  formatDuration,
  parseBearer,
} from "@firedrill/protocol";
import type { ConnectRequest, ConnectResponse, FaultEvent, Hello } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/store.js";
import type { FaultEventType, FaultRecord } from "../store/types.js";
import { CONTROL_PLANE_VERSION } from "../version.js";
import { agentFromHello, faultEventFromProto } from "./convert.js";

/** A change to a fault, announced to in-process listeners (e.g. HTTP requests awaiting an ack). */
export interface FaultUpdate {
  fault: FaultRecord;
  /** The event that caused it; `reconciled` when the control plane ended the fault itself. */
  cause: FaultEventType | "reconciled";
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
  /** Whether a presented join token is valid. */
  verifyToken: (token: string) => boolean;
  /** Where the join token lives, for the hint in authentication errors. */
  joinTokenFile: string;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  /** Delay between Welcome and reconciling held faults, so events the agent flushes win. */
  reconcileGraceMs: number;
  /** How long a new stream may take to send Hello. @default 10000 */
  helloTimeoutMs?: number;
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
  /** Ends every stream (status UNAVAILABLE) and stops all timers. */
  close(): void;
}

/** A message to an agent: one case of ConnectResponse, as an init object. */
export type AgentMessage = NonNullable<MessageInitShape<typeof ConnectResponseSchema>["message"]>;

interface Session {
  readonly serial: number;
  readonly call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>;
  log: Logger;
  agentId: string | undefined;
  lastMessageAt: number;
  lastTouchAt: number;
  closed: boolean;
  readonly timers: Set<NodeJS.Timeout>;
}

interface StatusError {
  code: grpc.status;
  details: string;
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
  const tokenHint = `start firedrill-agent with --token (the token is in ${options.joinTokenFile} on the control plane host)`;

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
      call.emit("error", { ...status, metadata: new grpc.Metadata() });
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
      store.markAgentDisconnected(agentId, Date.now());
      session.log.info("agent disconnected");
      events.emit("disconnected", agentId);
    }
  }

  function onHello(session: Session, hello: Hello): void {
    const agentId = hello.agentId;
    if (!AGENT_ID_PATTERN.test(agentId)) {
      end(session, {
        code: grpc.status.INVALID_ARGUMENT,
        details: `Hello.agent_id ${JSON.stringify(agentId)} is not valid: use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
      });
      return;
    }
    const now = Date.now();
    session.agentId = agentId;
    session.log = session.log.child({ agentId });
    const previous = byAgent.get(agentId);
    byAgent.set(agentId, session);
    if (previous && previous !== session) {
      end(previous, {
        code: grpc.status.ABORTED,
        details: "replaced by a newer connection of the same agent id",
      });
    }
    const record = store.upsertAgent(agentFromHello(hello), now);
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
        const silentMs = Date.now() - session.lastMessageAt;
        if (silentMs > inactivityMs) {
          end(session, {
            code: grpc.status.UNAVAILABLE,
            details: `nothing arrived from the agent for ${formatDuration(silentMs)} (limit ${formatDuration(inactivityMs)}); closing the link, reconnect to resume`,
          });
          return;
        }
        write(session, { case: "leaseRenewal", value: { leaseTtl: durationFromMs(leaseTtlMs) } });
      },
      heartbeatIntervalMs,
      true,
    );

    // Faults the agent holds but the store does not know, or knows as ended, must not keep running.
    for (const held of hello.heldFaults) {
      if (held.state !== HeldFaultState.STARTING && held.state !== HeldFaultState.RUNNING && held.state !== HeldFaultState.UNSPECIFIED) continue;
      const fault = store.getFault(held.faultId);
      if (fault && fault.agentId === agentId && fault.endedAt === null) continue;
      session.log.warn(
        { faultId: held.faultId, kind: held.kind, known: fault !== undefined },
        fault ? "agent still holds a fault that has ended; stopping it" : "agent holds a fault this control plane does not know; stopping it",
      );
      write(session, { case: "stopFault", value: { faultId: held.faultId, reason: RevertReason.STOPPED } });
    }

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
        session.log.warn({ faultId: fault.id, kind: fault.kind }, "agent no longer holds a fault; marked reverted (reason unknown)");
        events.emit("fault", { fault: result.fault, cause: "reconciled" });
      }
    }
  }

  function onFaultEvent(session: Session, agentId: string, event: FaultEvent): void {
    const now = Date.now();
    const input = faultEventFromProto(agentId, event, now);
    if (!input) {
      session.log.warn({ faultId: event.faultId }, "ignoring a fault event with an unspecified type");
      return;
    }
    metrics.faultEvents.inc({ type: input.type });
    const result = store.recordFaultEvent(input, now);
    if (!result.fault) {
      session.log.warn({ faultId: input.faultId, type: input.type }, "fault event for a fault this control plane does not know");
      if (input.type === "accepted" || input.type === "started" || input.type === "progress") {
        write(session, { case: "stopFault", value: { faultId: input.faultId, reason: RevertReason.STOPPED } });
      }
      return;
    }
    if (result.fault.agentId !== agentId) {
      session.log.warn({ faultId: input.faultId, owner: result.fault.agentId }, "ignoring an event about another agent's fault");
      return;
    }
    if (!result.recorded) {
      session.log.debug({ faultId: input.faultId, type: input.type }, "duplicate fault event ignored");
      return;
    }
    session.log.info(
      { faultId: input.faultId, type: input.type, state: result.fault.state, reason: input.reason ?? undefined, error: input.error ?? undefined },
      "fault event",
    );
    events.emit("fault", { fault: result.fault, cause: input.type });
  }

  function onMessage(session: Session, request: ConnectRequest): void {
    if (session.closed) return;
    const now = Date.now();
    session.lastMessageAt = now;
    const message = request.message;
    if (session.agentId === undefined) {
      if (message.case !== "hello") {
        end(session, {
          code: grpc.status.INVALID_ARGUMENT,
          details: `the first message on the agent link must be Hello, got ${message.case ?? "an empty message"}`,
        });
        return;
      }
      onHello(session, message.value);
      return;
    }
    const agentId = session.agentId;
    if (now - session.lastTouchAt >= 1000) {
      session.lastTouchAt = now;
      store.touchAgent(agentId, now);
    }
    switch (message.case) {
      case "heartbeat":
        break;
      case "faultEvent":
        onFaultEvent(session, agentId, message.value);
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
      lastMessageAt: now,
      lastTouchAt: now,
      closed: false,
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
    const values = call.metadata.get(AGENT_TOKEN_METADATA_KEY);
    const raw = values[0];
    const token = parseBearer(typeof raw === "string" ? raw : raw?.toString("utf8"));
    if (token === undefined) {
      end(session, { code: grpc.status.UNAUTHENTICATED, details: `missing join token: ${tokenHint}` });
      return;
    }
    if (!options.verifyToken(token)) {
      end(session, {
        code: grpc.status.UNAUTHENTICATED,
        details: `invalid join token: it does not match this control plane's; ${tokenHint}`,
      });
      return;
    }
    timer(
      session,
      () => {
        if (session.agentId === undefined) {
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
    isConnected: (agentId) => byAgent.has(agentId),
    send(agentId, message) {
      const session = byAgent.get(agentId);
      return session ? write(session, message) : false;
    },
    close() {
      closing = true;
      for (const session of [...open]) {
        end(session, { code: grpc.status.UNAVAILABLE, details: "the control plane is shutting down; reconnect later" });
      }
    },
  };
}
