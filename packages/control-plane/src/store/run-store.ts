/**
 * Experiment runs and their timelines, in the control plane's store (SQLite or PostgreSQL). Every state change,
 * ack, measurement and breach is a timestamped run event.
 */
import type { SqlDatabase } from "./sql/types.js";

/** Where a run is. */
export type RunState = "pending" | "preflight" | "running" | "completed" | "aborted" | "failed";

/** States a run can still leave. */
export const ACTIVE_RUN_STATES: readonly RunState[] = ["pending", "preflight", "running"];

/** Whether the run has ended. */
export function isTerminalRunState(state: RunState): boolean {
  return !ACTIVE_RUN_STATES.includes(state);
}

/** A run as stored. */
export interface RunRecord {
  id: string;
  name: string;
  specYaml: string;
  /** The parsed experiment (JSON). */
  experiment: unknown;
  /** The plan the run was started with: targets per step and guardrail verdicts (JSON). */
  plan: unknown;
  state: RunState;
  reason: string | null;
  actor: string;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
}

/** Kinds of run events. */
export type RunEventType =
  | "state"
  | "plan"
  | "step-started"
  | "step-ended"
  | "fault-sent"
  | "fault-acked"
  | "fault-refused"
  | "fault-started"
  | "measurement"
  | "fault-reverted"
  | "fault-failed"
  | "revert-failed"
  | "revert-assumed"
  | "stop-condition"
  | "breach"
  | "abort"
  | "unconfirmed"
  | "agent-lost"
  | "cloud-action"
  | "cloud-reverted"
  | "irreversible";

/** One entry of a run's timeline. */
export interface RunEvent {
  id: number;
  runId: string;
  time: number;
  type: RunEventType;
  step: string | null;
  agentId: string | null;
  faultId: string | null;
  message: string;
  data: unknown;
}

/** A new timeline entry. */
export type NewRunEvent = Omit<RunEvent, "id" | "runId" | "time" | "step" | "agentId" | "faultId" | "data"> &
  Partial<Pick<RunEvent, "time" | "step" | "agentId" | "faultId" | "data">>;

interface RunRow {
  id: string;
  name: string;
  spec_yaml: string;
  experiment: string;
  plan: string;
  state: RunState;
  reason: string | null;
  actor: string;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
}

interface RunEventRow {
  id: number;
  run_id: string;
  time: number;
  type: RunEventType;
  step: string | null;
  agent_id: string | null;
  fault_id: string | null;
  message: string;
  data: string | null;
}

/** One observation of one of a run's stop conditions (a point of its chart). */
export interface RunSample {
  /** The condition's index in `spec.stopConditions`. */
  condition: number;
  /** Epoch ms. */
  at: number;
  /** What the chart plots (see StopConditionStatus.value); null: nothing to plot (e.g. no answer). */
  value: number | null;
  healthy: boolean;
}

/** A stop-condition breach as the run's timeline recorded it. */
export interface RunBreach {
  /** The condition's index in `spec.stopConditions`; null for breaches recorded before it was kept. */
  index: number | null;
  /** The condition's description. */
  condition: string;
  reason: string;
  /** Epoch ms. */
  at: number;
}

/** A run without its spec, experiment and plan (a listing: those are large on a big fleet). */
export type RunSummary = Omit<RunRecord, "specYaml" | "experiment" | "plan">;

function toRunSummary(row: Omit<RunRow, "spec_yaml" | "experiment" | "plan">): RunSummary {
  return {
    id: row.id,
    name: row.name,
    state: row.state,
    reason: row.reason,
    actor: row.actor,
    createdAt: row.created_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
  };
}

function toRun(row: RunRow): RunRecord {
  return {
    ...toRunSummary(row),
    specYaml: row.spec_yaml,
    experiment: JSON.parse(row.experiment) as unknown,
    plan: JSON.parse(row.plan) as unknown,
  };
}

const SUMMARY_COLUMNS = "id, name, state, reason, actor, created_at, started_at, ended_at";

function toEvent(row: RunEventRow): RunEvent {
  return {
    id: row.id,
    runId: row.run_id,
    time: row.time,
    type: row.type,
    step: row.step,
    agentId: row.agent_id,
    faultId: row.fault_id,
    message: row.message,
    data: row.data === null ? null : (JSON.parse(row.data) as unknown),
  };
}

function toBreach(row: { time: number; message: string; data: string | null }): RunBreach {
  let data: Record<string, unknown> = {};
  try {
    const parsed = row.data === null ? null : (JSON.parse(row.data) as unknown);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) data = parsed as Record<string, unknown>;
  } catch {
    // a timeline entry without data: the message says it all
  }
  return {
    index: typeof data.index === "number" && Number.isInteger(data.index) ? data.index : null,
    condition: typeof data.condition === "string" ? data.condition : row.message,
    reason: typeof data.reason === "string" ? data.reason : row.message,
    at: typeof data.at === "number" ? data.at : row.time,
  };
}

/** Run operations. */
export interface RunStore {
  insertRun(run: Omit<RunRecord, "startedAt" | "endedAt" | "reason">): RunRecord;
  getRun(id: string): RunRecord | undefined;
  /** The run's state alone (undefined when unknown): cheap, unlike getRun which parses its plan. */
  runState(id: string): RunState | undefined;
  /** Runs, newest first, without their spec and plan. */
  listRuns(opts?: { limit?: number; active?: boolean }): RunSummary[];
  countActiveRuns(): number;
  /**
   * Moves a run to `state` (setting started/ended times) and records the transition as an event.
   * `reason` is why the run is in `state`; null clears the previous state's (a running run does not
   * keep "checking the steady state").
   */
  transition(id: string, state: RunState, reason: string | null, now?: number): RunEvent;
  addEvent(runId: string, event: NewRunEvent): RunEvent;
  listEvents(runId: string, afterId?: number): RunEvent[];
  /** Marks every run that was active when the control plane stopped as failed; returns them. */
  failInterruptedRuns(reason: string, now?: number): RunSummary[];
  /**
   * Stores stop-condition samples of a run (call it inside a transaction to store many at once:
   * the runner writes those of one turn of the event loop together).
   */
  addSamples(runId: string, samples: readonly RunSample[]): void;
  /** Every sample of a run, by condition then time. */
  listSamples(runId: string): RunSample[];
  /** How many samples the run has stored. */
  countSamples(runId: string): number;
  /** Whether the condition's latest sample was healthy; undefined when it has none. */
  lastSampleHealthy(runId: string, condition: number): boolean | undefined;
  /** The run's stop-condition breaches, oldest first. */
  listBreaches(runId: string): RunBreach[];
}

/** Creates the run store on the control plane's database (migrations already applied). */
export function createRunStore(db: SqlDatabase): RunStore {
  const stmt = {
    insert: db.prepare(`
      INSERT INTO runs (id, name, spec_yaml, experiment, plan, state, actor, created_at, updated_at)
      VALUES (@id, @name, @specYaml, @experiment, @plan, @state, @actor, @createdAt, @createdAt)`),
    get: db.prepare<[string], RunRow>("SELECT * FROM runs WHERE id = ?"),
    state: db.prepare<[string], { state: RunState }>("SELECT state FROM runs WHERE id = ?"),
    list: db.prepare<[number], RunRow>(`SELECT ${SUMMARY_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?`),
    listActive: db.prepare<[], RunRow>(
      `SELECT ${SUMMARY_COLUMNS} FROM runs WHERE state IN ('pending', 'preflight', 'running') ORDER BY created_at DESC`,
    ),
    countActive: db.prepare<[], { n: number }>(
      "SELECT COUNT(*) AS n FROM runs WHERE state IN ('pending', 'preflight', 'running')",
    ),
    setState: db.prepare(`
      UPDATE runs SET state = @state, reason = @reason, updated_at = @now,
        started_at = CASE WHEN @state = 'running' AND started_at IS NULL THEN @now ELSE started_at END,
        ended_at = CASE WHEN @state IN ('completed', 'aborted', 'failed') THEN @now ELSE ended_at END
      WHERE id = @id`),
    addEvent: db.prepare<Record<string, unknown>, RunEventRow>(`
      INSERT INTO run_events (run_id, time, type, step, agent_id, fault_id, message, data)
      VALUES (@runId, @time, @type, @step, @agentId, @faultId, @message, @data)
      RETURNING *`),
    // A run that ends wants its faults ended: the hub re-sends the stop until each is confirmed.
    stopFaults: db.prepare(`
      UPDATE faults SET stop_requested_at = @now, stop_reason = 'aborted', stop_requested_by = @by, updated_at = @now
      WHERE run_id = @id AND ended_at IS NULL AND stop_requested_at IS NULL`),
    listEvents: db.prepare<[string, number], RunEventRow>("SELECT * FROM run_events WHERE run_id = ? AND id > ? ORDER BY id"),
    addSample: db.prepare<[string, number, number, number | null, number]>("INSERT INTO run_samples (run_id, condition, at, value, healthy) VALUES (?, ?, ?, ?, ?)"),
    listSamples: db.prepare<[string], { condition: number; at: number; value: number | null; healthy: number }>(
      "SELECT condition, at, value, healthy FROM run_samples WHERE run_id = ? ORDER BY condition, at, rowid",
    ),
    countSamples: db.prepare<[string], { n: number }>("SELECT COUNT(*) AS n FROM run_samples WHERE run_id = ?"),
    lastSample: db.prepare<[string, number], { healthy: number }>(
      "SELECT healthy FROM run_samples WHERE run_id = ? AND condition = ? ORDER BY at DESC, rowid DESC LIMIT 1",
    ),
    breaches: db.prepare<[string], { time: number; message: string; data: string | null }>(
      "SELECT time, message, data FROM run_events WHERE run_id = ? AND type = 'breach' ORDER BY id",
    ),
  };

  const addEvent = (runId: string, event: NewRunEvent): RunEvent => {
    const row = stmt.addEvent.get({
      runId,
      time: event.time ?? Date.now(),
      type: event.type,
      step: event.step ?? null,
      agentId: event.agentId ?? null,
      faultId: event.faultId ?? null,
      message: event.message,
      data: event.data === undefined || event.data === null ? null : JSON.stringify(event.data),
    });
    return toEvent(row!);
  };

  const transition = db.transaction((id: string, state: RunState, reason: string | null, now: number): RunEvent => {
    stmt.setState.run({ id, state, reason, now });
    if (isTerminalRunState(state)) {
      const why = `run ${id} ${state}${reason ? `: ${reason}` : ""}`;
      stmt.stopFaults.run({ id, now, by: why.length > 500 ? `${why.slice(0, 499)}…` : why });
    }
    return addEvent(id, { type: "state", time: now, message: reason ? `${state}: ${reason}` : state, data: { state, reason } });
  });

  return {
    insertRun(run) {
      stmt.insert.run({ ...run, experiment: JSON.stringify(run.experiment), plan: JSON.stringify(run.plan) });
      return toRun(stmt.get.get(run.id)!);
    },
    getRun: (id) => {
      const row = stmt.get.get(id);
      return row ? toRun(row) : undefined;
    },
    runState: (id) => stmt.state.get(id)?.state,
    listRuns: (opts = {}) => (opts.active ? stmt.listActive.all() : stmt.list.all(opts.limit ?? 100)).map(toRunSummary),
    countActiveRuns: () => stmt.countActive.get()!.n,
    transition: (id, state, reason, now = Date.now()) => transition(id, state, reason, now),
    addEvent,
    listEvents: (runId, afterId = 0) => stmt.listEvents.all(runId, afterId).map(toEvent),
    failInterruptedRuns(reason, now = Date.now()) {
      const interrupted = stmt.listActive.all().map(toRunSummary);
      for (const run of interrupted) transition(run.id, "failed", reason, now);
      return interrupted;
    },
    addSamples(runId, samples) {
      for (const s of samples) {
        stmt.addSample.run(runId, s.condition, s.at, s.value !== null && Number.isFinite(s.value) ? s.value : null, s.healthy ? 1 : 0);
      }
    },
    listSamples: (runId) => stmt.listSamples.all(runId).map(({ condition, at, value, healthy }) => ({ condition, at, value, healthy: healthy === 1 })),
    countSamples: (runId) => stmt.countSamples.get(runId)!.n,
    lastSampleHealthy(runId, condition) {
      const row = stmt.lastSample.get(runId, condition);
      return row === undefined ? undefined : row.healthy === 1;
    },
    listBreaches: (runId) => stmt.breaches.all(runId).map(toBreach),
  };
}
