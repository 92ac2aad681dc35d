/**
 * Schedules and their slots in the control plane's database (SQLite or PostgreSQL). A slot row is
 * inserted before anything acts on the slot; its primary key (schedule, slot key) is what makes
 * each slot run at most once, across restarts and across schedulers (replicas) sharing the database.
 */
import { randomBytes } from "node:crypto";
import type { SqlDatabase, SqlStatement } from "../store/sql/types.js";
import type { ChaosMonkeyConfig, ScheduleKind, ScheduleRecord, ScheduleState, SlotOutcome, SlotRecord } from "./types.js";

/** Creates a schedule id: `sch_` and 12 hex characters. */
export function newScheduleId(): string {
  return `sch_${randomBytes(6).toString("hex")}`;
}

/** A slot to claim. */
export interface NewSlot {
  scheduleId: string;
  slotKey: string;
  plannedAt: number;
  outcome: SlotOutcome;
  detail?: string | null;
  runId?: string | null;
  instanceId?: string | null;
  decidedAt: number;
}

/** What a slot update sets. */
export interface SlotUpdate {
  outcome: SlotOutcome;
  detail?: string | null;
  runId?: string | null;
  instanceId?: string | null;
  decidedAt: number;
}

/** The schedule tables' operations. Every method is synchronous. */
export interface ScheduleStore {
  insertSchedule(schedule: ScheduleRecord): ScheduleRecord;
  getSchedule(id: string): ScheduleRecord | undefined;
  /** Every schedule, oldest first. */
  listSchedules(): ScheduleRecord[];
  /** Sets the state; resuming moves `activeSince` to `now`. Returns the schedule, or undefined if it is gone. */
  setState(id: string, state: ScheduleState, now: number): ScheduleRecord | undefined;
  /** Deletes a schedule and its slots. False when there was no such schedule. */
  deleteSchedule(id: string): boolean;
  getSlot(scheduleId: string, slotKey: string): SlotRecord | undefined;
  /** The newest slots first (by planned time). */
  listSlots(scheduleId: string, limit?: number): SlotRecord[];
  /** The slot with the latest planned time whose key starts with `prefix`. */
  latestSlot(scheduleId: string, prefix: string): SlotRecord | undefined;
  /**
   * Claims a slot: inserts its row in an immediate transaction. False when the row exists (another
   * scheduler, or an earlier life of this one, has it) or the schedule was removed meanwhile.
   */
  claimSlot(slot: NewSlot): boolean;
  /** Updates a slot only if its outcome is one of `from` (compare-and-set). True when it did. */
  updateSlot(scheduleId: string, slotKey: string, from: readonly SlotOutcome[], update: SlotUpdate): boolean;
  /**
   * The latest day (YYYY-MM-DD) with a kill in the group, as seen by schedule `selfId`: a kill by
   * any Chaos-Monkey schedule of the group, a kill planned or under way by an unleashed one (or by
   * `selfId`), and the pretend kills (would-kill) of `selfId`, so that a leashed schedule behaves
   * as it would unleashed. A group is its region and name: same-named groups in two regions are
   * two groups. A schedule without a region is in `defaultRegion` (the AWS default; "" when unknown).
   */
  lastKillDay(group: { region: string; name: string; defaultRegion: string }, selfId: string): string | undefined;
  /** Slots with one of the outcomes whose planned time is before `before`. */
  slotsBefore(outcomes: readonly SlotOutcome[], before: number): SlotRecord[];
  /** Claimed slots last decided before `before`. */
  claimedBefore(before: number): SlotRecord[];
  /**
   * Runs `fn` in an immediate (write-locking) transaction: SQLite's write lock, or PostgreSQL's
   * SERIALIZABLE, where `fn` may run again after a serialization failure (it must only read and
   * write the database, or be safe to repeat).
   */
  transaction<T>(fn: () => T): T;
}

interface ScheduleRow {
  id: string;
  kind: ScheduleKind;
  name: string;
  spec_yaml: string | null;
  cron: string | null;
  tz: string;
  config: string;
  state: ScheduleState;
  active_since: number;
  created_by: string;
  created_at: number;
  updated_at: number;
}

interface SlotRow {
  schedule_id: string;
  slot_key: string;
  planned_at: number;
  outcome: SlotOutcome;
  detail: string | null;
  run_id: string | null;
  instance_id: string | null;
  decided_at: number;
}

function toSchedule(row: ScheduleRow): ScheduleRecord {
  const config = JSON.parse(row.config) as Record<string, unknown>;
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    specYaml: row.spec_yaml,
    cron: row.cron,
    tz: row.tz,
    chaos: row.kind === "chaos-monkey" ? (config as unknown as ChaosMonkeyConfig) : null,
    state: row.state,
    activeSince: row.active_since,
    createdBy: row.created_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toSlot(row: SlotRow): SlotRecord {
  return {
    scheduleId: row.schedule_id,
    slotKey: row.slot_key,
    plannedAt: row.planned_at,
    outcome: row.outcome,
    detail: row.detail,
    runId: row.run_id,
    instanceId: row.instance_id,
    decidedAt: row.decided_at,
  };
}

const placeholders = (n: number): string => Array.from({ length: n }, () => "?").join(", ");

/** The schedule store on the control plane's database (migrated by createStore). */
export function createScheduleStore(db: SqlDatabase): ScheduleStore {
  // A field of the config JSON, as text (SQLite's json_extract keeps the JSON type: false is 0).
  const config = (field: string) => (db.engine === "postgres" ? `(s.config::jsonb ->> '${field}')` : `json_extract(s.config, '$.${field}')`);
  const notLeashed = db.engine === "postgres" ? `${config("leashed")} IN ('false', '0')` : `${config("leashed")} = 0`;
  const stmt = {
    insertSchedule: db.prepare(`
      INSERT INTO schedules (id, kind, name, spec_yaml, cron, tz, config, state, active_since, created_by, created_at, updated_at)
      VALUES (@id, @kind, @name, @specYaml, @cron, @tz, @config, @state, @activeSince, @createdBy, @createdAt, @updatedAt)`),
    getSchedule: db.prepare<[string], ScheduleRow>("SELECT * FROM schedules WHERE id = ?"),
    listSchedules: db.prepare<[], ScheduleRow>("SELECT * FROM schedules ORDER BY created_at, rowid"),
    pause: db.prepare<[number, string]>("UPDATE schedules SET state = 'paused', updated_at = ? WHERE id = ?"),
    resume: db.prepare<[number, number, string]>(
      "UPDATE schedules SET state = 'active', active_since = ?, updated_at = ? WHERE id = ? AND state = 'paused'",
    ),
    deleteSchedule: db.prepare<[string]>("DELETE FROM schedules WHERE id = ?"),
    getSlot: db.prepare<[string, string], SlotRow>("SELECT * FROM schedule_slots WHERE schedule_id = ? AND slot_key = ?"),
    listSlots: db.prepare<[string, number], SlotRow>(
      "SELECT * FROM schedule_slots WHERE schedule_id = ? ORDER BY planned_at DESC, slot_key DESC LIMIT ?",
    ),
    latestSlot: db.prepare<{ id: string; prefix: string }, SlotRow>(
      "SELECT * FROM schedule_slots WHERE schedule_id = @id AND substr(slot_key, 1, length(CAST(@prefix AS TEXT))) = CAST(@prefix AS TEXT) ORDER BY planned_at DESC LIMIT 1",
    ),
    claimSlot: db.prepare(`
      INSERT INTO schedule_slots (schedule_id, slot_key, planned_at, outcome, detail, run_id, instance_id, decided_at)
      VALUES (@scheduleId, @slotKey, @plannedAt, @outcome, @detail, @runId, @instanceId, @decidedAt)
      ON CONFLICT (schedule_id, slot_key) DO NOTHING`),
    lastKillDay: db.prepare<{ group: string; region: string; defaultRegion: string; self: string }, { day: string | null }>(`
      SELECT MAX(substr(sl.slot_key, 5)) AS day
      FROM schedule_slots sl JOIN schedules s ON s.id = sl.schedule_id
      WHERE s.kind = 'chaos-monkey' AND ${config("group")} = CAST(@group AS TEXT)
        AND COALESCE(${config("region")}, CAST(@defaultRegion AS TEXT)) = CAST(@region AS TEXT) AND sl.slot_key LIKE 'day:%'
        AND (sl.outcome = 'killed'
          OR (sl.outcome IN ('planned', 'claimed') AND (${notLeashed} OR s.id = @self))
          OR (sl.outcome = 'would-kill' AND s.id = @self))`),
    claimedBefore: db.prepare<[number], SlotRow>("SELECT * FROM schedule_slots WHERE outcome = 'claimed' AND decided_at < ?"),
  };

  const transaction = <T>(fn: () => T): T => db.transaction(fn).immediate();
  // Statements whose IN lists vary with the caller, prepared once per shape.
  const prepared = new Map<string, SqlStatement<unknown[], SlotRow>>();
  const prepare = (sql: string): SqlStatement<unknown[], SlotRow> => {
    let statement = prepared.get(sql);
    if (!statement) prepared.set(sql, (statement = db.prepare<unknown[], SlotRow>(sql)));
    return statement;
  };

  return {
    insertSchedule(schedule) {
      stmt.insertSchedule.run({
        id: schedule.id,
        kind: schedule.kind,
        name: schedule.name,
        specYaml: schedule.specYaml,
        cron: schedule.cron,
        tz: schedule.tz,
        config: JSON.stringify(schedule.chaos ?? {}),
        state: schedule.state,
        activeSince: schedule.activeSince,
        createdBy: schedule.createdBy,
        createdAt: schedule.createdAt,
        updatedAt: schedule.updatedAt,
      });
      return toSchedule(stmt.getSchedule.get(schedule.id)!);
    },
    getSchedule(id) {
      const row = stmt.getSchedule.get(id);
      return row ? toSchedule(row) : undefined;
    },
    listSchedules: () => stmt.listSchedules.all().map(toSchedule),
    setState(id, state, now) {
      if (state === "paused") stmt.pause.run(now, id);
      else stmt.resume.run(now, now, id);
      const row = stmt.getSchedule.get(id);
      return row ? toSchedule(row) : undefined;
    },
    deleteSchedule: (id) => stmt.deleteSchedule.run(id).changes > 0,
    getSlot(scheduleId, slotKey) {
      const row = stmt.getSlot.get(scheduleId, slotKey);
      return row ? toSlot(row) : undefined;
    },
    listSlots: (scheduleId, limit = 20) => stmt.listSlots.all(scheduleId, limit).map(toSlot),
    latestSlot(scheduleId, prefix) {
      const row = stmt.latestSlot.get({ id: scheduleId, prefix });
      return row ? toSlot(row) : undefined;
    },
    claimSlot(slot) {
      return transaction(() => {
        if (!stmt.getSchedule.get(slot.scheduleId)) return false;
        const inserted = stmt.claimSlot.run({ detail: null, runId: null, instanceId: null, ...slot });
        return inserted.changes === 1;
      });
    },
    updateSlot(scheduleId, slotKey, from, update) {
      const sql = `UPDATE schedule_slots SET outcome = ?, detail = ?, run_id = COALESCE(?, run_id),
        instance_id = COALESCE(?, instance_id), decided_at = ?
        WHERE schedule_id = ? AND slot_key = ? AND outcome IN (${placeholders(from.length)})`;
      const result = prepare(sql).run(update.outcome, update.detail ?? null, update.runId ?? null, update.instanceId ?? null, update.decidedAt, scheduleId, slotKey, ...from);
      return result.changes === 1;
    },
    lastKillDay: (group, selfId) => stmt.lastKillDay.get({ group: group.name, region: group.region, defaultRegion: group.defaultRegion, self: selfId })?.day ?? undefined,
    slotsBefore(outcomes, before) {
      const sql = `SELECT * FROM schedule_slots WHERE outcome IN (${placeholders(outcomes.length)}) AND planned_at < ? ORDER BY planned_at`;
      return prepare(sql)
        .all(...outcomes, before)
        .map(toSlot);
    },
    claimedBefore: (before) => stmt.claimedBefore.all(before).map(toSlot),
    transaction,
  };
}
