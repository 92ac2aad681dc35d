/**
 * The control plane's store: SQLite (better-sqlite3, WAL) in `<dataDir>/firedrill.db` by default,
 * or PostgreSQL (`--store postgres://…`, shared by replicas; docs/ha.md) through the same
 * synchronous {@link SqlDatabase}. Every method is synchronous and each write is one transaction.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import type { JsonObject } from "@firedrill/protocol";
import { ensureDataDir, ensurePrivateFile } from "./data-dir.js";
import { acceptsEvent, faultChangeFor } from "./fault-state.js";
import { migrate } from "./migrations.js";
import { createPostgresDatabase } from "./postgres/database.js";
import { migratePostgres } from "./postgres/migrations.js";
import { sqliteDatabase } from "./sql/sqlite.js";
import type { SqlDatabase } from "./sql/types.js";
import type {
  AgentHello,
  AgentRecord,
  FaultEventInput,
  FaultEventRecord,
  FaultRecord,
  FaultState,
  NewFault,
  StopReason,
} from "./types.js";

/** The database file name inside the data dir. */
export const DATABASE_FILE = "firedrill.db";

/** Options of {@link createStore}. */
export interface StoreOptions {
  /**
   * Directory holding `firedrill.db`; created (mode 0700) if missing. Refused (UnsafePathError)
   * when another user owns it or can write to it (or to a directory on the way).
   */
  dataDir: string;
  /**
   * `postgres://user:password@host:port/db`: the store lives in PostgreSQL instead of the data
   * dir's SQLite file (the data dir still holds this replica's files).
   */
  postgresUrl?: string;
}

/** Which faults a listing returns. */
export interface FaultQuery {
  agentId?: string;
  /** Only the faults of this experiment run. */
  runId?: string;
  /**
   * `active`: pending, accepted or running — and revert_failed, whose effect may still be on the
   * host (until a later revert is reported). @default "all"
   */
  state?: "active" | "all";
  /** @default 100 */
  limit?: number;
}

/** The outcome of recording a fault event. */
export interface RecordedFaultEvent {
  /** False when the event was a duplicate and was dropped. */
  recorded: boolean;
  /** The fault after the event (undefined when the store does not know the fault). */
  fault: FaultRecord | undefined;
  /** Whether the fault changed. */
  changed: boolean;
}

/** The store's operations. */
export interface Store {
  readonly path: string;
  /** The database, for the stores of other parts (runs) that share it. */
  readonly db: SqlDatabase;
  getSetting(key: string): string | undefined;
  setSetting(key: string, value: string): void;
  /** Inserts or updates an agent from its Hello and marks it connected. */
  upsertAgent(hello: AgentHello, now: number): AgentRecord;
  touchAgent(id: string, now: number): void;
  /** Sets when each agent was last heard, in one transaction (never moves `lastSeen` back). */
  touchAgents(seen: ReadonlyMap<string, number>): void;
  markAgentDisconnected(id: string, now: number): void;
  /** Marks every agent disconnected (at start-up and shut-down: no stream survives either). */
  markAllAgentsDisconnected(): number;
  getAgent(id: string): AgentRecord | undefined;
  /** Agents not removed, by id. */
  listAgents(): AgentRecord[];
  /** Hides an agent from listings and targets for good (history kept); false when unknown or removed. */
  removeAgent(id: string, now: number): boolean;
  /** Whether `firedrill agents rm` removed this agent id. */
  isAgentRemoved(id: string): boolean;
  countConnectedAgents(): number;
  insertFault(fault: NewFault): FaultRecord;
  getFault(id: string): FaultRecord | undefined;
  listFaults(query?: FaultQuery): FaultRecord[];
  listActiveFaults(agentId: string): FaultRecord[];
  /** The kind of every active fault, per agent: the whole fleet, no cap (for guardrails' per-host rules). */
  activeFaultKindsByAgent(): Map<string, string[]>;
  /** How many faults of a run have not ended and did not fail to start (its host faults still to revert). */
  countUnendedFaultsOfRun(runId: string): number;
  /**
   * Records stops for many faults in one transaction (the first request per fault wins). Returns
   * the faults whose stop is now wanted (not ended yet).
   */
  requestStopMany(faultIds: readonly string[], reason: StopReason, by: string, now: number): FaultRecord[];
  countActiveFaultsByKind(): Map<string, number>;
  /**
   * Stores an event and applies it to its fault; duplicates and events for ended faults change
   * nothing (but a final report replaces a provisional end: see isProvisionalEnd).
   */
  recordFaultEvent(event: FaultEventInput, now: number, current?: FaultRecord): RecordedFaultEvent;
  /**
   * Records that the control plane wants an active fault ended (the first request wins). Returns
   * the fault as it is now (undefined when unknown); a fault that has ended is returned unchanged.
   */
  requestStop(faultId: string, reason: StopReason, by: string, now: number): FaultRecord | undefined;
  /**
   * The same for every active fault of a run (`{ runId }`), of an agent (`{ agentId }`), or of
   * every agent (`{}`, e.g. a halt). Returns how many faults it marked.
   */
  requestStops(which: { runId?: string; agentId?: string }, reason: StopReason, by: string, now: number): number;
  /** Faults the control plane wants ended that have not ended yet, oldest request first (of one agent, or all). */
  listStopsWanted(agentId?: string): FaultRecord[];
  countStopsWanted(): number;
  /** Whether the run has ended (completed, aborted, failed); false for unknown runs. */
  isRunEnded(runId: string): boolean;
  listFaultEvents(faultId: string): FaultEventRecord[];
  close(): void;
}

interface AgentRow {
  id: string;
  hostname: string;
  version: string;
  facts: string;
  labels: string;
  capabilities: string;
  instance_id: string | null;
  availability_zone: string | null;
  connected: number;
  first_seen: number;
  last_seen: number;
  connected_at: number | null;
  active_faults: number;
  removed_at: number | null;
  cert_not_after: number | null;
  revoked_at: number | null;
  enrolled: number;
}

interface FaultRow {
  id: string;
  agent_id: string;
  run_id: string | null;
  kind: string;
  params: string;
  duration_ms: number;
  state: FaultState;
  reason: string | null;
  error: string | null;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  measurements: string | null;
  updated_at: number;
  actor: string | null;
  policy_override: string | null;
  details: string | null;
  stop_requested_at: number | null;
  stop_reason: StopReason | null;
  stop_requested_by: string | null;
}

interface FaultEventRow {
  id: number;
  fault_id: string;
  agent_id: string;
  type: FaultEventRecord["type"];
  time: number;
  reason: string | null;
  error: string | null;
  message: string | null;
  measurements: string | null;
  received_at: number;
}

const ACTIVE_SQL = "state IN ('pending', 'accepted', 'running')";
/** What `fault list` calls active: also faults whose revert failed (their effect may remain). */
const LISTED_ACTIVE_SQL = "state IN ('pending', 'accepted', 'running', 'revert_failed')";
const STOP_WANTED_SQL = "stop_requested_at IS NOT NULL AND ended_at IS NULL";

export function toAgent(row: AgentRow): AgentRecord {
  return {
    id: row.id,
    hostname: row.hostname,
    version: row.version,
    facts: JSON.parse(row.facts) as AgentRecord["facts"],
    labels: JSON.parse(row.labels) as Record<string, string>,
    capabilities: { systemd: false, ...(JSON.parse(row.capabilities) as Partial<AgentRecord["capabilities"]>) } as AgentRecord["capabilities"],
    instanceId: row.instance_id,
    availabilityZone: row.availability_zone,
    connected: row.connected === 1,
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    connectedAt: row.connected_at,
    activeFaults: row.active_faults,
    enrolled: row.enrolled === 1,
    certificateNotAfter: row.cert_not_after,
    revokedAt: row.revoked_at,
  };
}

export function toFault(row: FaultRow): FaultRecord {
  return {
    id: row.id,
    agentId: row.agent_id,
    runId: row.run_id,
    kind: row.kind,
    params: JSON.parse(row.params) as JsonObject,
    durationMs: row.duration_ms,
    state: row.state,
    reason: row.reason,
    error: row.error,
    createdAt: row.created_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    measurements: row.measurements === null ? null : (JSON.parse(row.measurements) as Record<string, number>),
    updatedAt: row.updated_at,
    actor: row.actor,
    policyOverride: row.policy_override,
    details: row.details === null ? [] : (JSON.parse(row.details) as string[]),
    stopRequestedAt: row.stop_requested_at,
    stopReason: row.stop_reason,
    stopRequestedBy: row.stop_requested_by,
  };
}

function toFaultEvent(row: FaultEventRow): FaultEventRecord {
  return {
    id: row.id,
    faultId: row.fault_id,
    agentId: row.agent_id,
    type: row.type,
    time: row.time,
    reason: row.reason,
    error: row.error,
    message: row.message,
    measurements: row.measurements === null ? null : (JSON.parse(row.measurements) as Record<string, number>),
    receivedAt: row.received_at,
  };
}

/** The SQLite file in the data dir, private and migrated. */
function openSqlite(dataDir: string): SqlDatabase {
  const path = join(dataDir, DATABASE_FILE);
  // The database holds token hashes and the audit log: owner-only (0600) from its first byte, like
  // the directory, even in a data dir that existed before. SQLite creates the -wal and -shm files
  // with the database file's mode; ones an older version left wider are narrowed too.
  ensurePrivateFile(path, { create: true });
  ensurePrivateFile(`${path}-wal`, { create: false });
  ensurePrivateFile(`${path}-shm`, { create: false });
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  // A checkpoint (WAL → database file, with an fsync) every 10,000 pages rather than 1,000: on a
  // large fleet the same hot pages (running faults) are rewritten many times between two.
  db.pragma("wal_autocheckpoint = 10000");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  return sqliteDatabase(db);
}

/** The PostgreSQL database at `url`, migrated. */
function openPostgres(url: string): SqlDatabase {
  const db = createPostgresDatabase({ url, applicationName: "firedrill-server", statementTimeoutMs: 3000 });
  try {
    migratePostgres(db);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

/** Opens (creating and migrating as needed) the store in `dataDir`. */
export function createStore(options: StoreOptions): Store {
  ensureDataDir(options.dataDir);
  const db = options.postgresUrl === undefined ? openSqlite(options.dataDir) : openPostgres(options.postgresUrl);
  const path = db.location;

  const agentSelect = `
    SELECT a.*, (SELECT COUNT(*) FROM faults f WHERE f.agent_id = a.id AND f.${ACTIVE_SQL}) AS active_faults,
      i.cert_not_after AS cert_not_after, i.revoked_at AS revoked_at,
      CASE WHEN i.agent_id IS NOT NULL THEN 1 ELSE 0 END AS enrolled
    FROM agents a LEFT JOIN agent_identities i ON i.agent_id = a.id`;
  const stmt = {
    getSetting: db.prepare<[string], { value: string }>("SELECT value FROM settings WHERE key = ?"),
    setSetting: db.prepare<[string, string]>(
      "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ),
    upsertAgent: db.prepare(`
      INSERT INTO agents (id, hostname, version, facts, labels, capabilities, instance_id, availability_zone,
                          connected, first_seen, last_seen, connected_at)
      VALUES (@id, @hostname, @version, @facts, @labels, @capabilities, @instanceId, @availabilityZone,
              1, @now, @now, @now)
      ON CONFLICT(id) DO UPDATE SET
        hostname = excluded.hostname, version = excluded.version, facts = excluded.facts,
        labels = excluded.labels, capabilities = excluded.capabilities, instance_id = excluded.instance_id,
        availability_zone = excluded.availability_zone, connected = 1, last_seen = excluded.last_seen,
        connected_at = excluded.connected_at`),
    touchAgentsPg:
      db.engine === "postgres"
        ? db.prepare<[string[], number[]]>(
            "UPDATE agents SET last_seen = GREATEST(agents.last_seen, v.t) FROM unnest(CAST(? AS TEXT[]), CAST(? AS BIGINT[])) AS v(id, t) WHERE agents.id = v.id",
          )
        : undefined,
    touchAgent: db.prepare<[number, string]>(`UPDATE agents SET last_seen = ${db.engine === "postgres" ? "GREATEST" : "MAX"}(last_seen, ?) WHERE id = ?`),
    disconnectAgent: db.prepare<[number, string]>("UPDATE agents SET connected = 0, last_seen = ? WHERE id = ?"),
    disconnectAll: db.prepare("UPDATE agents SET connected = 0 WHERE connected = 1"),
    getAgent: db.prepare<[string], AgentRow>(`${agentSelect} WHERE a.id = ?`),
    listAgents: db.prepare<[], AgentRow>(`${agentSelect} WHERE a.removed_at IS NULL ORDER BY a.id`),
    removeAgent: db.prepare<[number, string]>("UPDATE agents SET removed_at = ?, connected = 0 WHERE id = ? AND removed_at IS NULL"),
    removed: db.prepare<[string], { removed_at: number | null }>("SELECT removed_at FROM agents WHERE id = ?"),
    countConnected: db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM agents WHERE connected = 1"),
    insertFault: db.prepare(`
      INSERT INTO faults (id, agent_id, run_id, kind, params, duration_ms, state, created_at, updated_at, actor, policy_override)
      VALUES (@id, @agentId, @runId, @kind, @params, @durationMs, 'pending', @createdAt, @createdAt, @actor, @policyOverride)`),
    getFault: db.prepare<[string], FaultRow>("SELECT * FROM faults WHERE id = ?"),
    activeFaults: db.prepare<[string], FaultRow>(
      `SELECT * FROM faults WHERE agent_id = ? AND ${ACTIVE_SQL} ORDER BY created_at, rowid`,
    ),
    activeKinds: db.prepare<[], { agent_id: string; kind: string }>(`SELECT agent_id, kind FROM faults WHERE ${ACTIVE_SQL}`),
    unendedOfRun: db.prepare<[string], { n: number }>("SELECT COUNT(*) AS n FROM faults WHERE run_id = ? AND ended_at IS NULL AND state != 'failed'"),
    activeByKind: db.prepare<[], { kind: string; n: number }>(
      `SELECT kind, COUNT(*) AS n FROM faults WHERE ${ACTIVE_SQL} GROUP BY kind`,
    ),
    insertEvent: db.prepare(`
      INSERT INTO fault_events (fault_id, agent_id, type, time, reason, error, message, measurements, received_at)
      VALUES (@faultId, @agentId, @type, @time, @reason, @error, @message, @measurements, @receivedAt)
      ON CONFLICT DO NOTHING`),
    updateFault: db.prepare(`
      UPDATE faults SET state = @state, reason = @reason, error = @error, started_at = @startedAt,
        ended_at = @endedAt, measurements = @measurements, details = @details, updated_at = @updatedAt
      WHERE id = @id`),
    requestStop: db.prepare(`
      UPDATE faults SET stop_requested_at = @now, stop_reason = @reason, stop_requested_by = @by, updated_at = @now
      WHERE id = @id AND ended_at IS NULL AND stop_requested_at IS NULL`),
    requestStopsOfRun: db.prepare(`
      UPDATE faults SET stop_requested_at = @now, stop_reason = @reason, stop_requested_by = @by, updated_at = @now
      WHERE run_id = @runId AND ended_at IS NULL AND stop_requested_at IS NULL`),
    requestStopsOfAgent: db.prepare(`
      UPDATE faults SET stop_requested_at = @now, stop_reason = @reason, stop_requested_by = @by, updated_at = @now
      WHERE agent_id = @agentId AND ${ACTIVE_SQL} AND stop_requested_at IS NULL`),
    requestStopsOfAll: db.prepare(`
      UPDATE faults SET stop_requested_at = @now, stop_reason = @reason, stop_requested_by = @by, updated_at = @now
      WHERE ${ACTIVE_SQL} AND stop_requested_at IS NULL`),
    stopsWanted: db.prepare<[], FaultRow>(`SELECT * FROM faults WHERE ${STOP_WANTED_SQL} ORDER BY stop_requested_at`),
    stopsWantedOf: db.prepare<[string], FaultRow>(
      `SELECT * FROM faults WHERE agent_id = ? AND ${STOP_WANTED_SQL} ORDER BY stop_requested_at`,
    ),
    countStopsWanted: db.prepare<[], { n: number }>(`SELECT COUNT(*) AS n FROM faults WHERE ${STOP_WANTED_SQL}`),
    runState: db.prepare<[string], { state: string }>("SELECT state FROM runs WHERE id = ?"),
    listEvents: db.prepare<[string], FaultEventRow>("SELECT * FROM fault_events WHERE fault_id = ? ORDER BY time, id"),
  };

  const recordFaultEvent = db.transaction((event: FaultEventInput, now: number, current: FaultRecord | undefined): RecordedFaultEvent => {
    // `current`: the fault as the caller just read it in this transaction (saves reading it again).
    const row = current?.id === event.faultId ? undefined : stmt.getFault.get(event.faultId);
    const fault = current?.id === event.faultId ? current : row ? toFault(row) : undefined;
    // Events from an agent about another agent's fault are dropped: ids are chosen by the control plane.
    if (fault && fault.agentId !== event.agentId) return { recorded: false, fault, changed: false };
    // An event for a fault that has already ended is a re-send: nothing to record or change —
    // unless the end was provisional and the agent now reports how it really ended.
    if (fault && fault.endedAt !== null && !acceptsEvent(fault, event)) return { recorded: false, fault, changed: false };
    const skipHistory = event.type === "progress" && event.history === false;
    const inserted = skipHistory ? { changes: 1 } : stmt.insertEvent.run({
      faultId: event.faultId,
      agentId: event.agentId,
      type: event.type,
      time: event.time,
      reason: event.reason,
      error: event.error,
      message: event.message,
      measurements: event.measurements ? JSON.stringify(event.measurements) : null,
      receivedAt: now,
    });
    if (inserted.changes === 0 || !fault) return { recorded: inserted.changes > 0, fault, changed: false };
    const change = faultChangeFor(fault, event);
    if (!change) return { recorded: true, fault, changed: false };
    const next: FaultRecord = { ...fault, ...change, updatedAt: now };
    stmt.updateFault.run({
      id: next.id,
      state: next.state,
      reason: next.reason,
      error: next.error,
      startedAt: next.startedAt,
      endedAt: next.endedAt,
      measurements: next.measurements ? JSON.stringify(next.measurements) : null,
      details: next.details.length > 0 ? JSON.stringify(next.details) : null,
      updatedAt: now,
    });
    return { recorded: true, fault: next, changed: true };
  });

  return {
    path,
    db,
    getSetting: (key) => stmt.getSetting.get(key)?.value,
    setSetting: (key, value) => void stmt.setSetting.run(key, value),
    upsertAgent(hello, now) {
      stmt.upsertAgent.run({
        id: hello.id,
        hostname: hello.hostname,
        version: hello.version,
        facts: JSON.stringify(hello.facts),
        labels: JSON.stringify(hello.labels),
        capabilities: JSON.stringify(hello.capabilities),
        instanceId: hello.instanceId,
        availabilityZone: hello.availabilityZone,
        now,
      });
      return toAgent(stmt.getAgent.get(hello.id)!);
    },
    touchAgent: (id, now) => void stmt.touchAgent.run(now, id),
    touchAgents:
      db.engine === "postgres"
        ? (seen: ReadonlyMap<string, number>) => {
            // One statement per 5,000 agents (not one round trip per agent): arrays unnested.
            const entries = [...seen];
            for (let i = 0; i < entries.length; i += 5000) {
              const chunk = entries.slice(i, i + 5000);
              stmt.touchAgentsPg!.run(chunk.map(([id]) => id), chunk.map(([, at]) => at));
            }
          }
        : db.transaction((seen: ReadonlyMap<string, number>) => {
            for (const [id, at] of seen) stmt.touchAgent.run(at, id);
          }),
    markAgentDisconnected: (id, now) => void stmt.disconnectAgent.run(now, id),
    markAllAgentsDisconnected: () => stmt.disconnectAll.run().changes,
    getAgent(id) {
      const row = stmt.getAgent.get(id);
      return row ? toAgent(row) : undefined;
    },
    listAgents: () => stmt.listAgents.all().map(toAgent),
    removeAgent: (id, now) => stmt.removeAgent.run(now, id).changes > 0,
    isAgentRemoved: (id) => (stmt.removed.get(id)?.removed_at ?? null) !== null,
    countConnectedAgents: () => stmt.countConnected.get()?.n ?? 0,
    insertFault(fault) {
      stmt.insertFault.run({ ...fault, params: JSON.stringify(fault.params), actor: fault.actor ?? null, policyOverride: fault.policyOverride ?? null });
      return toFault(stmt.getFault.get(fault.id)!);
    },
    getFault(id) {
      const row = stmt.getFault.get(id);
      return row ? toFault(row) : undefined;
    },
    listFaults(query = {}) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (query.agentId !== undefined) {
        where.push("agent_id = ?");
        args.push(query.agentId);
      }
      if (query.runId !== undefined) {
        where.push("run_id = ?");
        args.push(query.runId);
      }
      if (query.state === "active") where.push(LISTED_ACTIVE_SQL);
      const sql = `SELECT * FROM faults ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
        ORDER BY created_at DESC, rowid DESC LIMIT ?`;
      return db
        .prepare<(string | number)[], FaultRow>(sql)
        .all(...args, query.limit ?? 100)
        .map(toFault);
    },
    listActiveFaults: (agentId) => stmt.activeFaults.all(agentId).map(toFault),
    activeFaultKindsByAgent() {
      const map = new Map<string, string[]>();
      for (const { agent_id, kind } of stmt.activeKinds.all()) {
        const kinds = map.get(agent_id);
        if (kinds) kinds.push(kind);
        else map.set(agent_id, [kind]);
      }
      return map;
    },
    countUnendedFaultsOfRun: (runId) => stmt.unendedOfRun.get(runId)?.n ?? 0,
    requestStopMany: db.transaction((faultIds: readonly string[], reason: StopReason, by: string, now: number): FaultRecord[] => {
      const wanted: FaultRecord[] = [];
      for (const id of faultIds) {
        stmt.requestStop.run({ id, reason, by, now });
        const row = stmt.getFault.get(id);
        if (row && row.ended_at === null) wanted.push(toFault(row));
      }
      return wanted;
    }),
    countActiveFaultsByKind: () => new Map(stmt.activeByKind.all().map((r) => [r.kind, r.n])),
    recordFaultEvent: (event, now, current) => recordFaultEvent(event, now, current),
    requestStop(faultId, reason, by, now) {
      stmt.requestStop.run({ id: faultId, reason, by, now });
      const row = stmt.getFault.get(faultId);
      return row ? toFault(row) : undefined;
    },
    requestStops(which, reason, by, now) {
      const args = { reason, by, now };
      if (which.runId !== undefined) return stmt.requestStopsOfRun.run({ ...args, runId: which.runId }).changes;
      if (which.agentId !== undefined) return stmt.requestStopsOfAgent.run({ ...args, agentId: which.agentId }).changes;
      return stmt.requestStopsOfAll.run(args).changes;
    },
    listStopsWanted: (agentId) => (agentId === undefined ? stmt.stopsWanted.all() : stmt.stopsWantedOf.all(agentId)).map(toFault),
    countStopsWanted: () => stmt.countStopsWanted.get()?.n ?? 0,
    isRunEnded(runId) {
      const state = stmt.runState.get(runId)?.state;
      return state === "completed" || state === "aborted" || state === "failed";
    },
    listFaultEvents: (faultId) => stmt.listEvents.all(faultId).map(toFaultEvent),
    close() {
      if (db.open) db.close();
    },
  };
}
