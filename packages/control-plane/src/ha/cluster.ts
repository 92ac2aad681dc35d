/**
 * A control-plane replica's membership of its replica set (PostgreSQL store; docs/ha.md): the
 * pieces of this folder put together for the server.
 *
 * - the replica's heartbeat (replica.ts), the leader election (leader.ts), run ownership
 *   (run-owners.ts), the listening connection (notify.ts) and the command bus (commands.ts);
 * - {@link Cluster.hubLink}: what the agent hub needs ({@link HubCluster}): agent messages to a
 *   stream another replica holds go through the command bus (the protobuf message, base64), and
 *   every fault change this replica stores is announced on {@link FAULT_CHANNEL} so a run driven
 *   by another replica hears its agents (ids only, batched per turn of the event loop);
 * - replica-wide signals ({@link Cluster.signal}): a halt, or an abort for the replica that drives
 *   a run, sent as command-bus broadcasts (NOTIFY: instant, not a poll).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectResponseSchema } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { AgentHub, AgentMessage, FaultUpdate, HubCluster } from "../hub/agent-hub.js";
import type { SqlDatabase } from "../store/sql/types.js";
import { createCommandBus, type AgentCommand, type CommandBus } from "./commands.js";
import { createLeaderElection, type LeaderElection } from "./leader.js";
import { createNotifyListener, MAX_NOTIFY_PAYLOAD_BYTES, notify, type NotifyListener } from "./notify.js";
import { registerReplica, type Replica } from "./replica.js";
import { createRunOwners, type RunOwners } from "./run-owners.js";

/** The channel fault changes are announced on: `<replica>|<id>:<cause>,<id>:<cause>…`. */
export const FAULT_CHANNEL = "firedrill_faults";

/** Options of {@link joinCluster}. */
export interface ClusterOptions {
  /** The PostgreSQL store (HA tables migrated). */
  db: SqlDatabase;
  /** The store's URL, for the listening connection. */
  url: string;
  logger: Logger;
  grpcAddress: string;
  httpAddress: string;
  /** A replica silent this long is dead (its runs taken over, its agents' streams forgotten). @default 5000 */
  deadAfterMs?: number;
  /** The leader lease. @default 5000 */
  leaderTtlMs?: number;
}

/** A replica-wide signal: what {@link Cluster.signal} sends and {@link Cluster.onSignal} receives. */
export type ClusterSignal =
  | { kind: "halt"; reason: string; actor: string }
  | { kind: "run-abort"; runId: string; reason: string; actor: string };

/** This replica in its replica set. */
export interface Cluster {
  readonly replica: Replica;
  readonly leader: LeaderElection;
  readonly runOwners: RunOwners;
  readonly listener: NotifyListener;
  /** The agent hub's side (call once, before the hub is created; `hub` is read when messages arrive). */
  hubLink(hub: () => AgentHub | undefined): HubCluster;
  /** Sends a signal to every other live replica (not to this one). Throws when PostgreSQL is down. */
  signal(signal: ClusterSignal): void;
  /** Handles signals from other replicas. */
  onSignal(handler: (signal: ClusterSignal) => void): void;
  /** The command bus (stats, tests). */
  bus(): CommandBus | undefined;
  close(): Promise<void>;
}

const AGENT_MESSAGE = "agent-message";
const ALL_AGENTS = "agent-message-all";
const SIGNAL = "signal";
/** How long "which replica holds this agent" is remembered (it is asked per fault on busy paths). */
const HOLDER_CACHE_MS = 500;

function encodeMessage(message: AgentMessage): string {
  return Buffer.from(toBinary(ConnectResponseSchema, create(ConnectResponseSchema, { message }))).toString("base64");
}

function decodeMessage(payload: unknown): AgentMessage | undefined {
  if (typeof payload !== "string" || payload.length > 1_000_000) return undefined;
  const message = fromBinary(ConnectResponseSchema, Buffer.from(payload, "base64")).message;
  return message.case === undefined ? undefined : (message as AgentMessage);
}

/** Registers this replica, joins the election and starts listening; resolves once the listener is up. */
export async function joinCluster(options: ClusterOptions): Promise<Cluster> {
  const log = options.logger.child({ component: "ha" });
  const replica = registerReplica({
    db: options.db,
    logger: options.logger,
    grpcAddress: options.grpcAddress,
    httpAddress: options.httpAddress,
    ...(options.deadAfterMs !== undefined ? { deadAfterMs: options.deadAfterMs } : {}),
  });
  const me = replica.id;
  const listener = createNotifyListener({ url: options.url, logger: options.logger });
  const signalHandlers: ((signal: ClusterSignal) => void)[] = [];
  let bus: CommandBus | undefined;
  let hubOf: () => AgentHub | undefined = () => undefined;
  const holders = new Map<string, { holder: string | undefined; at: number }>();

  const runOwners = createRunOwners({ replica, logger: options.logger });
  // Every few heartbeats, the agents whose streams this replica holds are marked connected again:
  // the leader marks disconnected the agents of replicas that look dead, and a replica that was
  // only slow (a long stall, PostgreSQL away) must not leave its agents looking disconnected.
  const reassert = options.db.prepare<[string]>(
    "UPDATE agents SET connected = 1 WHERE connected = 0 AND id IN (SELECT agent_id FROM agent_streams WHERE replica_id = ?)",
  );
  let beats = 0;
  replica.onHeartbeat(() => {
    runOwners.heartbeat();
    if (++beats % 5 !== 0) return;
    try {
      const n = reassert.run(me).changes;
      if (n > 0) log.warn({ agents: n }, "marked connected again the agents whose streams this replica holds (another replica had taken this one for dead)");
    } catch (err) {
      log.warn({ err }, "could not re-assert this replica's agent streams");
    }
  });
  const leader = createLeaderElection({
    db: options.db,
    replicaId: me,
    logger: options.logger,
    ...(options.leaderTtlMs !== undefined ? { ttlMs: options.leaderTtlMs } : {}),
  });

  const dispatchSignal = (signal: ClusterSignal) => {
    for (const handler of signalHandlers) {
      try {
        handler(signal);
      } catch (err) {
        log.error({ err, signal: signal.kind }, "a replica signal handler failed");
      }
    }
  };

  // Fault changes other replicas stored.
  listener.listen(FAULT_CHANNEL, (payload) => {
    const bar = payload.indexOf("|");
    if (bar < 0 || payload.slice(0, bar) === me) return;
    const hub = hubOf();
    if (!hub) return;
    for (const pair of payload.slice(bar + 1).split(",")) {
      const colon = pair.lastIndexOf(":");
      if (colon <= 0) continue;
      try {
        hub.announceFromPeer(pair.slice(0, colon), pair.slice(colon + 1) as FaultUpdate["cause"]);
      } catch (err) {
        log.warn({ err }, "could not read a fault another replica changed");
      }
    }
  });
  await listener.ready(10_000);

  let pendingFaults: string[] = [];
  let flushScheduled = false;
  const flushFaults = () => {
    flushScheduled = false;
    const pairs = pendingFaults;
    pendingFaults = [];
    let chunk = `${me}|`;
    const send = (text: string) => {
      try {
        notify(options.db, FAULT_CHANNEL, text);
      } catch (err) {
        log.warn({ err }, "could not announce fault changes to the other replicas (they read them from the store later)");
      }
    };
    let count = 0;
    for (const pair of pairs) {
      if (Buffer.byteLength(chunk) + pair.length + 1 > MAX_NOTIFY_PAYLOAD_BYTES) {
        send(chunk.slice(0, -1));
        chunk = `${me}|`;
        count = 0;
      }
      chunk += `${pair},`;
      count++;
    }
    if (count > 0) send(chunk.slice(0, -1));
  };

  const holderOf = (agentId: string): string | undefined => {
    const cached = holders.get(agentId);
    const now = Date.now();
    if (cached && now - cached.at < HOLDER_CACHE_MS) return cached.holder;
    let holder: string | undefined;
    try {
      holder = bus?.holderOf(agentId);
    } catch (err) {
      log.warn({ err, agentId }, "cannot tell which replica holds an agent (PostgreSQL unreachable?)");
      holder = undefined;
    }
    if (holders.size > 100_000) holders.clear();
    holders.set(agentId, { holder, at: now });
    return holder;
  };

  const cluster: Cluster = {
    replica,
    leader,
    runOwners,
    listener,
    hubLink(getHub) {
      hubOf = getHub;
      bus = createCommandBus({
        replica,
        listener,
        logger: options.logger,
        deliver(agentId, command: AgentCommand) {
          if (command.kind !== AGENT_MESSAGE) return false;
          const message = decodeMessage(command.payload);
          return message !== undefined && (hubOf()?.deliverLocal(agentId, message) ?? false);
        },
        onBroadcast(command: AgentCommand) {
          const payload = command.payload as { from?: string; message?: string; signal?: ClusterSignal } | null;
          if (payload?.from === me) return; // this replica did its own part already
          if (command.kind === ALL_AGENTS) {
            const message = decodeMessage(payload?.message);
            if (message) hubOf()?.broadcastLocal(message);
          } else if (command.kind === SIGNAL && payload?.signal) {
            dispatchSignal(payload.signal);
          }
        },
      });
      const b = bus;
      return {
        streamOpened(agentId) {
          holders.delete(agentId);
          b.streamOpened(agentId);
        },
        streamClosed(agentId) {
          holders.delete(agentId);
          b.streamClosed(agentId);
        },
        heldElsewhere(agentId) {
          const holder = holderOf(agentId);
          return holder !== undefined && holder !== me;
        },
        sendRemote(agentId, message) {
          try {
            const outcome = b.send(agentId, { kind: AGENT_MESSAGE, payload: encodeMessage(message) });
            return outcome !== "unrouted";
          } catch (err) {
            log.warn({ err, agentId, message: message.case }, "cannot route a message to the replica holding the agent (PostgreSQL unreachable?)");
            return false;
          }
        },
        broadcastRemote(message) {
          try {
            b.broadcast({ kind: ALL_AGENTS, payload: { from: me, message: encodeMessage(message) } });
          } catch (err) {
            log.error({ err, message: message.case }, "cannot broadcast to the other replicas' agents (PostgreSQL unreachable?)");
          }
        },
        faultChanged(update: FaultUpdate) {
          if (update.cause === "progress") return; // measurements stay with the replica holding the agent
          pendingFaults.push(`${update.fault.id}:${update.cause}`);
          if (!flushScheduled) {
            flushScheduled = true;
            setImmediate(flushFaults);
          }
        },
      };
    },
    signal(signal) {
      if (!bus) throw new Error("the cluster's hub link is not set up");
      bus.broadcast({ kind: SIGNAL, payload: { from: me, signal } });
    },
    onSignal(handler) {
      signalHandlers.push(handler);
    },
    bus: () => bus,
    async close() {
      if (flushScheduled) flushFaults();
      leader.close();
      runOwners.close();
      bus?.close();
      replica.close();
      await listener.close();
    },
  };
  log.info({ replica: me }, "joined the replica set");
  return cluster;
}
