/**
 * Listings for fleets of any size: agents and faults a page at a time, by keyset (never OFFSET),
 * each filter walking an index in the listing's own order, so a page costs its size and not the
 * fleet's; with opaque cursors, and the counts shown beside a page. Reads only: it shares the
 * store's database.
 */
import type { SqlDatabase, SqlStatement } from "./sql/types.js";
import { toAgent, toFault } from "./store.js";
import type { AgentRecord, FaultRecord, FaultState } from "./types.js";

/** Page size when none is asked for. */
export const DEFAULT_PAGE_SIZE = 100;
/** The largest page a listing returns. */
export const MAX_PAGE_SIZE = 1000;
/** The most label requirements one agent listing takes. */
export const MAX_LABEL_FILTERS = 16;

/** An agent without its host facts (the compact view of `GET /api/v1/agents`). */
export type AgentSummary = Omit<AgentRecord, "facts">;

/** One page of a listing. */
export interface Page<T> {
  items: T[];
  /** Where the next page starts (pass it back unchanged); null on the last page. */
  nextCursor: string | null;
}

/** Which agents a page lists: agents not removed, by id. */
export interface AgentPageQuery {
  /** @default 100 (at most 1000) */
  limit?: number;
  /** The `nextCursor` of the previous page; absent: the first page. */
  cursor?: string;
  /** Only connected (true) or only disconnected (false) agents. */
  connected?: boolean;
  /** Only agents with every one of these labels, exactly (keys as LABEL_KEY_PATTERN allows). */
  labels?: Readonly<Record<string, string>>;
}

/** Which faults a page lists: newest first (created_at, then insertion order). */
export interface FaultPageQuery {
  /** @default 100 (at most 1000) */
  limit?: number;
  /** The `nextCursor` of the previous page; absent: the first page. */
  cursor?: string;
  agentId?: string;
  runId?: string;
  /** `active`: pending, accepted, running and revert_failed (as `fault list` means it). @default "all" */
  state?: "active" | "all";
}

/** The faults of a run, counted. */
export interface RunFaultCounts {
  /** How many are in each state (every state present, 0 when none). */
  byState: Record<FaultState, number>;
  total: number;
  /** Not ended: their agents still have them (ended_at unset; neither failed nor revert_failed, which are counted apart). */
  unended: number;
}

/** Thrown when a cursor is not one this listing returned (garbled, cut short, or another listing's). */
export class CursorError extends Error {
  override readonly name = "CursorError";
}

/** The listings over one store's database. */
export interface Listings {
  /** A page of agents with their host facts. Throws CursorError. */
  agents(query?: AgentPageQuery): Page<AgentRecord>;
  /** A page of agents without their host facts. Throws CursorError. */
  agentSummaries(query?: AgentPageQuery): Page<AgentSummary>;
  /** Agents not removed, and how many of them are connected (one query). */
  countAgents(): { total: number; connected: number };
  /** A page of faults. Throws CursorError. */
  faults(query?: FaultPageQuery): Page<FaultRecord>;
  /** Every fault matching `query`, page by page of {@link MAX_PAGE_SIZE} (each page one query), newest first. */
  faultPages(query?: Omit<FaultPageQuery, "limit" | "cursor">): Generator<FaultRecord[]>;
  /** How many faults of a run are in each state. */
  countRunFaults(runId: string): RunFaultCounts;
  /**
   * SQLite's plan of every page and count query (`EXPLAIN QUERY PLAN`), by shape: proof that a page
   * walks an index. SQLite only: throws on PostgreSQL.
   */
  queryPlans(): Record<string, string>;
}

type AgentRow = Parameters<typeof toAgent>[0];
type FaultRow = Parameters<typeof toFault>[0] & { row_id: number };

const FAULT_STATES: readonly FaultState[] = ["pending", "accepted", "running", "reverted", "failed", "revert_failed"];
/** What `fault list` calls active (the same words as the store's listFaults). */
const LISTED_ACTIVE_SQL = "state IN ('pending', 'accepted', 'running', 'revert_failed')";
/** What the agent's active fault count counts (the same as the store's). */
const ACTIVE_SQL = "f.state IN ('pending', 'accepted', 'running')";
/** Past every key: where the first page of faults starts. */
const TOP = Number.MAX_SAFE_INTEGER;
/** A cursor longer than this was not made here. */
const MAX_CURSOR_LENGTH = 2048;

const CURSOR_HINT = "pass the nextCursor of the previous page unchanged, or leave cursor out to start from the first page";

/** The opaque cursor of a key: base64url of JSON. */
function encodeCursor(key: readonly unknown[]): string {
  return Buffer.from(JSON.stringify(key)).toString("base64url");
}

/** The key in a cursor of `listing` (tagged "a" or "f"). Throws CursorError. */
function decodeCursor(cursor: string, tag: "a" | "f"): unknown[] {
  const listing = tag === "a" ? "an agent" : "a fault";
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new CursorError(`cursor is not ${listing} cursor (it must be the base64url text a page returned as nextCursor); ${CURSOR_HINT}`);
  }
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    key = undefined;
  }
  if (!Array.isArray(key) || key[0] !== tag) {
    const other = Array.isArray(key) && (key[0] === "a" || key[0] === "f") ? ` (it is a cursor of the ${key[0] === "a" ? "agent" : "fault"} listing)` : "";
    throw new CursorError(`cursor is not ${listing} cursor${other}; ${CURSOR_HINT}`);
  }
  return key;
}

function pageSize(limit: number | undefined): number {
  const n = limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_SIZE) throw new RangeError(`limit ${n} is not a whole number from 1 to ${MAX_PAGE_SIZE}`);
  return n;
}

/** Creates the listings over `db` (a store's database, migrated). */
export function createListings(db: SqlDatabase): Listings {
  const pg = db.engine === "postgres";
  /** SQLite is told which index walks the listing's order; PostgreSQL's planner picks it itself. */
  const indexedBy = (index: string) => (pg ? "" : `INDEXED BY ${index}`);
  // The agent's active faults: three probes of faults_agent_state per agent of the page.
  const agentColumns = (facts: boolean) => `
    a.id, a.hostname, a.version, ${facts ? "a.facts" : "'null' AS facts"}, a.labels, a.capabilities, a.instance_id,
    a.availability_zone, a.connected, a.first_seen, a.last_seen, a.connected_at, a.removed_at,
    (SELECT COUNT(*) FROM faults f WHERE f.agent_id = a.id AND ${ACTIVE_SQL}) AS active_faults,
    i.cert_not_after AS cert_not_after, i.revoked_at AS revoked_at, CASE WHEN i.agent_id IS NOT NULL THEN 1 ELSE 0 END AS enrolled`;

  const agentStatements = new Map<string, SqlStatement<Record<string, unknown>, AgentRow>>();
  /** A prepared page query per shape (facts or not, connected filter or not, number of labels). */
  function agentStatement(facts: boolean, connected: boolean, labels: number) {
    const cacheKey = `${facts}|${connected}|${labels}`;
    let stmt = agentStatements.get(cacheKey);
    if (!stmt) {
      // Without the connected filter the primary key's index gives the order: `+` keeps the
      // planner off agents_listed (which would need a sort of every agent).
      const where = [connected || pg ? "a.removed_at IS NULL" : "+a.removed_at IS NULL", "a.id > @after"];
      if (connected) where.push("a.connected = @connected");
      for (let i = 0; i < labels; i++) {
        where.push(pg ? `(a.labels::jsonb ->> CAST(@path${i} AS TEXT)) = CAST(@value${i} AS TEXT)` : `json_extract(a.labels, @path${i}) = @value${i}`);
      }
      // With the connected filter, agents_listed (removed_at, connected, id) gives the order.
      stmt = db.prepare<Record<string, unknown>, AgentRow>(`
        SELECT ${agentColumns(facts)}
        FROM agents a ${connected ? indexedBy("agents_listed") : ""} LEFT JOIN agent_identities i ON i.agent_id = a.id
        WHERE ${where.join(" AND ")}
        ORDER BY a.id LIMIT @limit`);
      agentStatements.set(cacheKey, stmt);
    }
    return stmt;
  }

  function agentRows(query: AgentPageQuery, facts: boolean): { rows: AgentRow[]; nextCursor: string | null } {
    const limit = pageSize(query.limit);
    let after = "";
    if (query.cursor !== undefined) {
      const key = decodeCursor(query.cursor, "a");
      if (key.length !== 2 || typeof key[1] !== "string") throw new CursorError(`cursor is not an agent cursor; ${CURSOR_HINT}`);
      after = key[1];
    }
    const labels = Object.entries(query.labels ?? {});
    if (labels.length > MAX_LABEL_FILTERS) throw new RangeError(`at most ${MAX_LABEL_FILTERS} label filters`);
    const params: Record<string, unknown> = { after, limit: limit + 1 };
    if (query.connected !== undefined) params.connected = query.connected ? 1 : 0;
    labels.forEach(([key, value], i) => {
      // Label keys never hold a double quote (LABEL_KEY_PATTERN); refuse one rather than mis-quote it.
      if (key.includes('"') || key.includes("\\")) throw new RangeError(`label key ${JSON.stringify(key)} is not valid`);
      params[`path${i}`] = pg ? key : `$."${key}"`;
      params[`value${i}`] = value;
    });
    const rows = agentStatement(facts, query.connected !== undefined, labels.length).all(params);
    if (rows.length <= limit) return { rows, nextCursor: null };
    rows.length = limit;
    return { rows, nextCursor: encodeCursor(["a", rows[limit - 1]!.id]) };
  }

  const countAgents = db.prepare<[], { total: number; connected: number | null }>(
    `SELECT COUNT(*) AS total, SUM(connected) AS connected FROM agents ${indexedBy("agents_listed")} WHERE removed_at IS NULL`,
  );

  const faultStatements = new Map<string, SqlStatement<Record<string, unknown>, FaultRow>>();
  /** A prepared page query per filter shape, each on the index that gives the order. */
  function faultStatement(agent: boolean, run: boolean, active: boolean) {
    const cacheKey = `${agent}|${run}|${active}`;
    let stmt = faultStatements.get(cacheKey);
    if (!stmt) {
      // After (createdAt, rowid) in the listing's order; PostgreSQL walks a row comparison on the index.
      const where = pg ? ["(created_at, rowid) < (@createdAt, @rowid)"] : ["created_at <= @createdAt", "(created_at < @createdAt OR rowid < @rowid)"];
      if (agent) where.push("agent_id = @agentId");
      if (run) where.push("run_id = @runId");
      if (active) where.push(LISTED_ACTIVE_SQL);
      // An agent's faults, or a run's, are few beside the whole table: their index, filtered by the
      // rest. All faults, active ones: the partial index of active faults by time. All: by time.
      const index = agent
        ? "faults_agent_created"
        : run
          ? "faults_run_created"
          : active
            ? "faults_listed_active"
            : "faults_created_at";
      stmt = db.prepare<Record<string, unknown>, FaultRow>(`
        SELECT rowid AS row_id, * FROM faults ${indexedBy(index)}
        WHERE ${where.join(" AND ")}
        ORDER BY created_at DESC, rowid DESC LIMIT @limit`);
      faultStatements.set(cacheKey, stmt);
    }
    return stmt;
  }

  function faultPage(query: FaultPageQuery, limit: number, from: readonly [number, number]): { rows: FaultRow[]; next: [number, number] | null } {
    const params: Record<string, unknown> = { createdAt: from[0], rowid: from[1], limit: limit + 1 };
    if (query.agentId !== undefined) params.agentId = query.agentId;
    if (query.runId !== undefined) params.runId = query.runId;
    const rows = faultStatement(query.agentId !== undefined, query.runId !== undefined, query.state === "active").all(params);
    if (rows.length <= limit) return { rows, next: null };
    rows.length = limit;
    const last = rows[limit - 1]!;
    return { rows, next: [last.created_at, last.row_id] };
  }

  const runFaultCounts = db.prepare<[string], { state: FaultState; n: number; unended: number }>(`
    SELECT state, COUNT(*) AS n, SUM(CASE WHEN ended_at IS NULL AND state NOT IN ('failed', 'revert_failed') THEN 1 ELSE 0 END) AS unended
    FROM faults ${indexedBy("faults_run_created")} WHERE run_id = ? GROUP BY state`);

  return {
    agents(query = {}) {
      const { rows, nextCursor } = agentRows(query, true);
      return { items: rows.map(toAgent), nextCursor };
    },
    agentSummaries(query = {}) {
      const { rows, nextCursor } = agentRows(query, false);
      return {
        items: rows.map((row) => {
          const { facts: _facts, ...summary } = toAgent(row);
          return summary;
        }),
        nextCursor,
      };
    },
    countAgents() {
      const row = countAgents.get()!;
      return { total: row.total, connected: row.connected ?? 0 };
    },
    faults(query = {}) {
      const limit = pageSize(query.limit);
      let from: [number, number] = [TOP, TOP];
      if (query.cursor !== undefined) {
        const key = decodeCursor(query.cursor, "f");
        if (key.length !== 3 || !Number.isSafeInteger(key[1]) || !Number.isSafeInteger(key[2])) {
          throw new CursorError(`cursor is not a fault cursor; ${CURSOR_HINT}`);
        }
        from = [key[1] as number, key[2] as number];
      }
      const { rows, next } = faultPage(query, limit, from);
      return { items: rows.map(toFault), nextCursor: next === null ? null : encodeCursor(["f", ...next]) };
    },
    *faultPages(query = {}) {
      let from: [number, number] | null = [TOP, TOP];
      while (from !== null) {
        const { rows, next }: { rows: FaultRow[]; next: [number, number] | null } = faultPage(query, MAX_PAGE_SIZE, from);
        if (rows.length > 0) yield rows.map(toFault);
        from = next;
      }
    },
    countRunFaults(runId) {
      const byState = Object.fromEntries(FAULT_STATES.map((s) => [s, 0])) as Record<FaultState, number>;
      let total = 0;
      let unended = 0;
      for (const row of runFaultCounts.all(runId)) {
        byState[row.state] = row.n;
        total += row.n;
        unended += row.unended;
      }
      return { byState, total, unended };
    },
    queryPlans() {
      if (pg) throw new Error(`queryPlans explains SQLite's plans (EXPLAIN QUERY PLAN); the store ${db.location} is PostgreSQL: use EXPLAIN in psql`);
      const plans: Record<string, string> = {};
      const explain = (name: string, stmt: { source: string }, params: Record<string, unknown> | unknown[]) => {
        const explained = db.prepare(`EXPLAIN QUERY PLAN ${stmt.source}`);
        const rows = (Array.isArray(params) ? explained.all(...params) : explained.all(params)) as { detail: string }[];
        plans[name] = rows.map((r) => r.detail).join("; ");
      };
      for (const facts of [false, true]) {
        for (const connected of [false, true]) {
          for (const labels of [0, 1]) {
            const params: Record<string, unknown> = { after: "", limit: 1, connected: 1, path0: '$."a"', value0: "b" };
            explain(`agents facts=${facts} connected=${connected} labels=${labels}`, agentStatement(facts, connected, labels), params);
          }
        }
      }
      explain("count agents", countAgents, []);
      for (const agent of [false, true]) {
        for (const run of [false, true]) {
          for (const active of [false, true]) {
            const params = { createdAt: TOP, rowid: TOP, limit: 1, agentId: "a", runId: "r" };
            explain(`faults agent=${agent} run=${run} active=${active}`, faultStatement(agent, run, active), params);
          }
        }
      }
      explain("count run faults", runFaultCounts, ["r"]);
      return plans;
    },
  };
}
