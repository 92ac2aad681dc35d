/**
 * Schedules: experiments run at cron slots, and Chaos-Monkey terminations on workdays. Both are
 * kept in the store, with one slot record per slot that decides whether it may run.
 */

/** What a schedule does. */
export type ScheduleKind = "experiment" | "chaos-monkey";

/** Paused schedules keep their history but take no new slots. */
export type ScheduleState = "active" | "paused";

/**
 * What became of a slot.
 * - `planned`: a Chaos-Monkey day whose kill is due at `plannedAt`.
 * - `claimed`: a scheduler holds the slot and is acting on it.
 * - `started`: the experiment run started (`runId`).
 * - `skipped`: nothing to do (no kill rolled, too soon after the last kill, blackout date, paused…).
 * - `killed` / `would-kill`: an instance was terminated / would have been (leashed).
 * - `refused`: a guardrail or the global halt refused it.
 * - `failed`: acting failed (the detail says why).
 * - `missed`: its time passed while no scheduler ran (or a tick came too late); never run late.
 */
export type SlotOutcome =
  | "planned"
  | "claimed"
  | "started"
  | "skipped"
  | "killed"
  | "would-kill"
  | "refused"
  | "failed"
  | "missed";

/** Outcomes that are final. */
export const FINAL_OUTCOMES: readonly SlotOutcome[] = ["started", "skipped", "killed", "would-kill", "refused", "failed", "missed"];

/** A Chaos-Monkey window: days of the week and an hour range, in the schedule's time zone. */
export interface ChaosWindow {
  /** Days in week order, e.g. ["mon","tue","wed","thu","fri"]. */
  days: string[];
  /** `HH:MM-HH:MM`, e.g. "10:00-16:00". */
  hours: string;
}

/** Chaos-Monkey settings. */
export interface ChaosMonkeyConfig {
  /** The Auto Scaling group whose instances may be terminated. */
  group: string;
  /** The group's region; the AWS SDK's default when absent. */
  region?: string;
  /** The mean number of workdays between two kills (≥ 1, ≥ minWorkdays). */
  meanWorkdays: number;
  /** The least number of workdays between two kills in the group (a whole number ≥ 1). */
  minWorkdays: number;
  window: ChaosWindow;
  /** Record what would be killed; kill nothing. */
  leashed: boolean;
}

/** A schedule as stored. */
export interface ScheduleRecord {
  /** `sch_` and 12 hex characters. */
  id: string;
  kind: ScheduleKind;
  /** The experiment's metadata.name, or `chaos-monkey <group>` (unless given). */
  name: string;
  /** The experiment YAML (experiment schedules). */
  specYaml: string | null;
  /** The 5-field cron expression (experiment schedules). */
  cron: string | null;
  /** IANA time zone of the cron or window. */
  tz: string;
  /** Chaos-Monkey settings (chaos-monkey schedules). */
  chaos: ChaosMonkeyConfig | null;
  state: ScheduleState;
  /** Epoch ms since when the schedule has been active (created or last resumed). */
  activeSince: number;
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

/** One slot: an experiment cron time (`at:<ISO>`) or a Chaos-Monkey workday (`day:YYYY-MM-DD`). */
export interface SlotRecord {
  scheduleId: string;
  slotKey: string;
  /** Epoch ms: the cron time, or the kill minute (or window opening) of a Chaos-Monkey day. */
  plannedAt: number;
  outcome: SlotOutcome;
  detail: string | null;
  runId: string | null;
  instanceId: string | null;
  /** Epoch ms of the last decision about the slot. */
  decidedAt: number;
}

/** A new experiment schedule. */
export interface NewExperimentSchedule {
  kind: "experiment";
  spec: string;
  cron: string;
  tz: string;
  name?: string;
}

/** A new Chaos-Monkey schedule. */
export interface NewChaosMonkeySchedule {
  kind: "chaos-monkey";
  group: string;
  region?: string;
  meanWorkdays: number;
  minWorkdays: number;
  /** `mon-fri 10:00-16:00` */
  window: string;
  tz: string;
  leashed: boolean;
  name?: string;
}

/** What `POST /api/v1/schedules` takes, after its shape is checked. */
export type NewSchedule = NewExperimentSchedule | NewChaosMonkeySchedule;
