/**
 * The command bus: a command for an agent reaches the replica that holds the agent's stream.
 *
 * Each replica records the streams it holds in `agent_streams` (at Hello; cleared at stream end).
 * {@link CommandBus.send} delivers locally when this replica holds the stream; otherwise it
 * inserts the command into `agent_commands`, targeted at the holder, and NOTIFYs the holder's
 * channel in the same transaction. Every replica claims its commands (DELETE … RETURNING) on a
 * notification, on a poll (`pollMs`, the safety net) and after the listener reconnects, and hands
 * them to the `deliver` callback (a claim that fails while PostgreSQL is away is retried every
 * 250 ms until it succeeds). A command whose agent has moved on is re-targeted at the new
 * holder (a few hops at most); one for an agent nobody live holds is not queued ("unrouted"): the
 * hub re-sends stops and reconciles faults at the agent's next Welcome, so commands must be
 * idempotent. Commands older than `maxAgeMs` are dropped and counted.
 *
 * {@link CommandBus.broadcast} (halt's StopAll) runs the local handler at once and NOTIFYs every
 * other replica that may hold streams (even one that missed heartbeats for a few seconds): instant
 * from any replica, not a poll.
 */
import type { Logger } from "pino";
import type { SqlDatabase } from "../store/sql/types.js";
import type { NotifyListener } from "./notify.js";
import { notify } from "./notify.js";
import type { Replica } from "./replica.js";
import { DB_NOW_MS } from "./schema.js";

/** A command for an agent: `kind` names it, `payload` is any JSON value (kept small). */
export interface AgentCommand {
  kind: string;
  payload: unknown;
}

/** What {@link CommandBus.send} did. */
export type SendOutcome =
  /** Delivered to the agent's stream on this replica. */
  | "local"
  /** Queued for the replica that holds the agent's stream, and that replica notified. */
  | "routed"
  /** No live replica holds the agent's stream: left for the agent's next Welcome. */
  | "unrouted";

/** Counters of a {@link CommandBus}. */
export interface CommandBusStats {
  sentLocal: number;
  routed: number;
  unrouted: number;
  /** Commands claimed from the table and delivered here. */
  received: number;
  /** Claimed commands re-targeted because their agent had moved. */
  rerouted: number;
  /** Commands dropped: too old, too many hops, or the agent gone. */
  dropped: number;
  broadcastsReceived: number;
}

/** Options of {@link createCommandBus}. */
export interface CommandBusOptions {
  /** This replica (its db is the PostgreSQL store, HA tables migrated). */
  replica: Replica;
  /** The listening connection (notify.ts). */
  listener: NotifyListener;
  logger: Logger;
  /**
   * Hands a command to the agent's stream on this replica; returns false when the stream is not
   * here (any more). Must not throw for an unknown agent.
   */
  deliver(agentId: string, command: AgentCommand): boolean;
  /** Runs a broadcast on this replica (e.g. StopAll to every agent it holds). */
  onBroadcast(command: AgentCommand): void;
  /** Safety-net poll of this replica's queued commands. @default 1000 */
  pollMs?: number;
  /** A queued command older than this is dropped. @default 60000 */
  maxAgeMs?: number;
  /** How many times a command may be re-targeted after its agent moved. @default 3 */
  maxHops?: number;
}

/** The command bus of one replica. */
export interface CommandBus {
  /** This replica now holds `agentId`'s stream (call at Hello). Never throws; false when not recorded yet (retried). */
  streamOpened(agentId: string): boolean;
  /** A stream of `agentId` on this replica ended (call at stream end). Never throws. */
  streamClosed(agentId: string): void;
  /** Sends `command` to the agent, wherever its stream is. Throws StoreUnavailableError when it must be routed and PostgreSQL is down. */
  send(agentId: string, command: AgentCommand): SendOutcome;
  /**
   * Runs `command` on this replica's onBroadcast now, then queues it for every other replica not
   * stopped that heartbeat within `maxAgeMs` and notifies them. Returns how many other replicas it
   * was sent to. Throws StoreUnavailableError
   * when PostgreSQL is down (the local part has run).
   */
  broadcast(command: AgentCommand): number;
  /** Claims and delivers this replica's queued commands now; returns how many were claimed. Never throws. */
  pump(): number;
  /** Which live replica holds `agentId`'s stream, or undefined. */
  holderOf(agentId: string): string | undefined;
  stats(): CommandBusStats;
  /** Stops the poll, unsubscribes, and forgets this replica's streams in the table. */
  close(): void;
}

/** The NOTIFY channel of a replica's command queue. */
export function commandChannel(replicaId: string): string {
  return `firedrill_cmd_${replicaId}`;
}

interface CommandRow {
  id: number;
  agent_id: string | null;
  kind: string;
  payload: string;
  hops: number;
  created_at: number;
  from_replica_id: string;
  now: number;
}

/** Starts the bus: subscribes to this replica's channel and starts the poll (unref'd). */
export function createCommandBus(options: CommandBusOptions): CommandBus {
  const { replica, listener } = options;
  const db: SqlDatabase = replica.db;
  const me = replica.id;
  const channel = commandChannel(me);
  const log = options.logger.child({ component: "ha-commands", replica: me });
  const pollMs = options.pollMs ?? 1000;
  const maxAgeMs = options.maxAgeMs ?? 60_000;
  const maxHops = options.maxHops ?? 3;
  const stats: CommandBusStats = { sentLocal: 0, routed: 0, unrouted: 0, received: 0, rerouted: 0, dropped: 0, broadcastsReceived: 0 };
  /** Streams held here: agent id → number of open streams (a reconnect may open before the old one closes). */
  const held = new Map<string, number>();
  /** Agents whose agent_streams row could not be written yet. */
  const unsynced = new Set<string>();
  let closed = false;
  let failing = false;
  let lastSweep = 0;
  let retry: NodeJS.Timeout | undefined;

  const upsertStream = db.prepare<[string, string]>(
    `INSERT INTO agent_streams (agent_id, replica_id, since) VALUES (?, ?, ${DB_NOW_MS})
     ON CONFLICT (agent_id) DO UPDATE SET replica_id = EXCLUDED.replica_id, since = EXCLUDED.since`,
  );
  const deleteStream = db.prepare<[string, string]>("DELETE FROM agent_streams WHERE agent_id = ? AND replica_id = ?");
  const holder = db.prepare<[string, number], { replica_id: string }>(
    `SELECT s.replica_id FROM agent_streams s JOIN replicas r ON r.id = s.replica_id
     WHERE s.agent_id = ? AND r.stopped_at IS NULL AND r.heartbeat_at > ${DB_NOW_MS} - ?`,
  );
  const insert = db.prepare<[string | null, string, string, string, string, number]>(
    `INSERT INTO agent_commands (agent_id, replica_id, from_replica_id, kind, payload, hops, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ${DB_NOW_MS})`,
  );
  const insertAged = db.prepare<[string, string, string, string, string, number, number]>(
    `INSERT INTO agent_commands (agent_id, replica_id, from_replica_id, kind, payload, hops, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  const claim = db.prepare<[string], CommandRow>(
    `DELETE FROM agent_commands WHERE replica_id = ?
     RETURNING id, agent_id, kind, payload, hops, created_at, from_replica_id, ${DB_NOW_MS} AS now`,
  );
  const liveOthers = db.prepare<[string, number], { id: string }>(
    `SELECT id FROM replicas WHERE id <> ? AND stopped_at IS NULL AND heartbeat_at > ${DB_NOW_MS} - ?`,
  );
  const sweep = db.prepare<[number]>(`DELETE FROM agent_commands WHERE created_at < ${DB_NOW_MS} - CAST(? AS BIGINT)`);

  const holderOf = (agentId: string): string | undefined => holder.get(agentId, replica.deadAfterMs)?.replica_id;

  const deliverLocal = (agentId: string, command: AgentCommand): boolean => {
    try {
      return options.deliver(agentId, command);
    } catch (err) {
      log.error({ err, agentId, kind: command.kind }, "delivering a command to a local stream failed");
      return false;
    }
  };

  const encode = (command: AgentCommand): string => {
    const text = JSON.stringify(command.payload ?? null);
    if (text.length > 1_000_000) throw new Error(`a ${command.kind} command's payload is ${text.length} bytes: commands carry ids and small settings, not data`);
    return text;
  };

  const pump = (): number => {
    if (closed) return 0;
    let rows: CommandRow[];
    try {
      rows = claim.all(me);
      for (const agentId of [...unsynced]) {
        if (held.has(agentId)) upsertStream.run(agentId, me);
        unsynced.delete(agentId);
      }
      if (Date.now() - lastSweep > 10_000) {
        lastSweep = Date.now();
        const swept = sweep.run(maxAgeMs).changes;
        if (swept > 0) {
          stats.dropped += swept;
          log.warn({ count: swept, maxAgeMs }, "dropped queued agent commands nobody claimed in time (their replicas died); the agents reconcile at their next Welcome");
        }
      }
      if (failing) log.info("the command queue is reachable again");
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err }, "cannot read the command queue (PostgreSQL unreachable?); retrying");
      failing = true;
      // A notification (or the listener's reconnect) can come before the store's own connection
      // is back: retry soon rather than at the next poll.
      if (retry === undefined) {
        retry = setTimeout(() => {
          retry = undefined;
          pump();
        }, 250);
        retry.unref();
      }
      return 0;
    }
    rows.sort((a, b) => a.id - b.id);
    for (const row of rows) {
      let command: AgentCommand;
      try {
        command = { kind: row.kind, payload: JSON.parse(row.payload) as unknown };
      } catch {
        stats.dropped++;
        log.error({ id: row.id, kind: row.kind }, "dropped a queued command whose payload is not JSON");
        continue;
      }
      if (row.now - row.created_at > maxAgeMs) {
        stats.dropped++;
        log.warn({ id: row.id, kind: row.kind, agentId: row.agent_id, ageMs: row.now - row.created_at }, "dropped a queued command older than maxAgeMs; the agent reconciles at its next Welcome");
        continue;
      }
      if (row.agent_id === null) {
        stats.broadcastsReceived++;
        try {
          options.onBroadcast(command);
        } catch (err) {
          log.error({ err, kind: command.kind }, "a broadcast handler failed");
        }
        continue;
      }
      if (deliverLocal(row.agent_id, command)) {
        stats.received++;
        continue;
      }
      // The stream is not here (any more): send it on to where it is now.
      try {
        const next = holderOf(row.agent_id);
        if (next !== undefined && next !== me && row.hops < maxHops) {
          db.transaction(() => {
            insertAged.run(row.agent_id!, next, row.from_replica_id, row.kind, row.payload, row.hops + 1, row.created_at);
            notify(db, commandChannel(next), "");
          })();
          stats.rerouted++;
          continue;
        }
      } catch (err) {
        log.warn({ err, agentId: row.agent_id, kind: row.kind }, "could not re-target a command whose agent moved");
      }
      stats.dropped++;
      log.info({ agentId: row.agent_id, kind: row.kind }, "dropped a command for an agent no live replica holds; it reconciles at its next Welcome");
    }
    return rows.length;
  };

  const unsubscribe = listener.listen(channel, () => pump());
  const unhook = listener.onReconnect(() => {
    for (const agentId of held.keys()) unsynced.add(agentId);
    pump();
  });
  const timer = setInterval(pump, pollMs);
  timer.unref();

  return {
    streamOpened(agentId) {
      held.set(agentId, (held.get(agentId) ?? 0) + 1);
      try {
        upsertStream.run(agentId, me);
        unsynced.delete(agentId);
        return true;
      } catch (err) {
        log.warn({ err, agentId }, "could not record that this replica holds the agent's stream; retrying at the next poll");
        unsynced.add(agentId);
        return false;
      }
    },
    streamClosed(agentId) {
      const n = (held.get(agentId) ?? 0) - 1;
      if (n > 0) {
        held.set(agentId, n);
        return;
      }
      held.delete(agentId);
      unsynced.delete(agentId);
      try {
        deleteStream.run(agentId, me);
      } catch (err) {
        log.warn({ err, agentId }, "could not clear the agent's stream record; it goes stale with this replica's heartbeat or is replaced at the agent's next Hello");
      }
    },
    send(agentId, command) {
      if (held.has(agentId) && deliverLocal(agentId, command)) {
        stats.sentLocal++;
        return "local";
      }
      const payload = encode(command);
      const target = holderOf(agentId);
      if (target === undefined || target === me) {
        stats.unrouted++;
        return "unrouted";
      }
      db.transaction(() => {
        insert.run(agentId, target, me, command.kind, payload, 0);
        notify(db, commandChannel(target), "");
      })();
      stats.routed++;
      return "routed";
    },
    broadcast(command) {
      const payload = encode(command);
      try {
        options.onBroadcast(command);
      } catch (err) {
        log.error({ err, kind: command.kind }, "the local broadcast handler failed");
      }
      return db.transaction(() => {
        // Every replica that may still hold streams: one that merely missed heartbeats (cut off from
        // PostgreSQL for a few seconds) must get the halt when it is back. Rows for a replica that
        // is really dead are swept after maxAgeMs.
        const others = liveOthers.all(me, maxAgeMs);
        for (const other of others) {
          insert.run(null, other.id, me, command.kind, payload, 0);
          notify(db, commandChannel(other.id), "");
        }
        return others.length;
      })();
    },
    pump,
    holderOf,
    stats: () => ({ ...stats }),
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      if (retry !== undefined) clearTimeout(retry);
      unsubscribe();
      unhook();
      try {
        db.prepare("DELETE FROM agent_streams WHERE replica_id = ?").run(me);
      } catch (err) {
        log.warn({ err }, "could not clear this replica's stream records; they go stale with its heartbeat");
      }
      held.clear();
    },
  };
}
