/**
 * The scheduler: runs experiments at their cron slots and makes Chaos-Monkey's workday decisions
 * and kills. Every slot is claimed by inserting its row (in a write transaction) before anything
 * acts on it, so a slot runs at most once, even across restarts and across schedulers sharing one
 * database. A slot whose time passed while no scheduler ran (or whose tick came more than the
 * grace late) is recorded as missed and never run late.
 */
import type { SqlDatabase } from "../store/sql/types.js";
import type { Cron } from "croner";
import type { Logger } from "pino";
import type { AwsGuardrails, AwsInstance, AwsService } from "../aws/types.js";
import { ApiError } from "../errors.js";
import { describeWindow, localTime } from "../experiments/guardrails.js";
import { DEFAULT_OPT_IN_LABEL } from "../experiments/policy.js";
import { formatMinute } from "../experiments/spec-values.js";
import type { GuardrailsSpec } from "../experiments/types.js";
import { describeHalt } from "../halt.js";
import type { HaltState } from "../halt.js";
import {
  addDays,
  daysBetween,
  formatWindow,
  insideWindow,
  isWindowDay,
  isWorkday,
  localDate,
  localInstant,
  parseWindow,
  windowMinutes,
  workdaysSince,
} from "./calendar.js";
import type { ParsedWindow, Workdays } from "./calendar.js";
import { createScheduleStore, newScheduleId } from "./store.js";
import type { ScheduleStore, SlotUpdate } from "./store.js";
import type { ScheduleRecord, SlotRecord } from "./types.js";
import { createCron, validateNewSchedule } from "./validate.js";
import type { ParsedScheduleSpec } from "./validate.js";

/** What the scheduler needs of the experiment runner (the control plane's Runner fits). */
export interface ScheduleRunner {
  /**
   * Starts a run. Thrown: ApiError 409 (halted) or 422 (a guardrail refused) — recorded as
   * `refused`; anything else — recorded as `failed`.
   */
  start(specYaml: string, actor: string): { id: string } | Promise<{ id: string }>;
  /** The global halt, if set: Chaos-Monkey kills are refused while it is. */
  haltState?(): HaltState | undefined;
}

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  /** The control plane's database (`store.db`), migrated. */
  db: SqlDatabase;
  runner: ScheduleRunner;
  /** AWS access; Chaos-Monkey schedules record `failed` without it. */
  aws?: AwsService;
  /** The server's guardrail policy: its blackout dates are no workdays; its windows bound kills. */
  policy: GuardrailsSpec;
  /**
   * Guardrails passed to `aws.terminate`. @default from the policy (optInTag, excludeTags,
   * minHealthy, maxPercentOfGroup, minTimeBetweenTerminationsMs), opt-in tag `firedrill:opt-in=true`,
   * minHealthy 1
   */
  awsGuardrails?: AwsGuardrails;
  log: Logger;
  /** Clock. @default () => new Date() */
  now?: () => Date;
  /** Randomness for Chaos-Monkey's rolls, kill minutes and picks. @default Math.random */
  random?: () => number;
  /** How often the scheduler looks for due slots. @default 15000 */
  tickMs?: number;
  /** How late a slot may still run; later, it is recorded as missed. @default 120000 */
  graceMs?: number;
  /** A claimed slot with no outcome after this long is recorded failed (its scheduler died). @default 600000 */
  claimTimeoutMs?: number;
}

/** The next slot of a schedule, for listings. */
export interface NextSlot {
  /** Epoch ms. */
  at: number;
  /** What happens then, in words. */
  note: string;
}

/** A schedule with its next and last slot. */
export interface ScheduleSummary {
  schedule: ScheduleRecord;
  next: NextSlot | null;
  last: SlotRecord | null;
}

/** The scheduler. */
export interface Scheduler {
  /**
   * Creates a schedule from a request body (see validate.ts).
   * Thrown: ApiError 400 `invalid_schedule` naming each bad field.
   */
  create(input: unknown, actor: string, parsed?: ParsedScheduleSpec): ScheduleSummary;
  /** Every schedule, oldest first, with its next and last slot. */
  list(): ScheduleSummary[];
  /** One schedule. Thrown: ApiError 404. */
  get(id: string): ScheduleSummary;
  /** A schedule's slots, newest first. Thrown: ApiError 404. */
  slots(id: string, limit?: number): SlotRecord[];
  /** Pauses a schedule (a Chaos-Monkey kill planned for later today is dropped). Thrown: ApiError 404. */
  pause(id: string, actor: string): ScheduleSummary;
  /** Resumes a schedule; slots that fell in the pause are not run. Thrown: ApiError 404. */
  resume(id: string, actor: string): ScheduleSummary;
  /** Removes a schedule and its slot history. Thrown: ApiError 404. */
  remove(id: string, actor: string): ScheduleRecord;
  /** Looks for due slots now and acts on them; then every `tickMs`. */
  start(): void;
  /** Stops ticking; resolves when a tick under way has finished. */
  stop(): Promise<void>;
  /** One pass over every active schedule at `now` (default: the clock). Exposed for tests. */
  tick(now?: Date): Promise<void>;
}

const SLOT_AT = "at:";
const SLOT_DAY = "day:";
/** Experiment slots further back than this are summed up in one missed row instead of one each. */
const MAX_CATCH_UP_MS = 7 * 86_400_000;
/** Chaos-Monkey days further back than this are not looked at. */
const MAX_CATCH_UP_DAYS = 31;

const iso = (ms: number): string => new Date(ms).toISOString().replace(".000Z", "Z");

/** The guardrails for terminations, from the policy's AWS fields. */
function awsGuardrailsFrom(p: GuardrailsSpec): AwsGuardrails {
  return {
    optInTag: p.optInTag ?? DEFAULT_OPT_IN_LABEL,
    excludeTags: p.excludeTags ?? [],
    minHealthy: p.minHealthy ?? 1,
    ...(p.maxPercentOfGroup !== undefined ? { maxPercentOfGroup: p.maxPercentOfGroup } : {}),
    ...(p.minTimeBetweenTerminationsMs !== undefined ? { minTimeBetweenTerminationsMs: p.minTimeBetweenTerminationsMs } : {}),
  };
}

/** The chance of a kill on an eligible workday, so that the mean gap is `meanWorkdays`. */
export function killChance(meanWorkdays: number, minWorkdays: number): number {
  // After a kill, minWorkdays - 1 workdays are blocked, then each workday rolls with chance p:
  // the gap is (min - 1) + a geometric wait of mean 1/p. p = 1 / (mean - min + 1) makes the mean
  // gap exactly meanWorkdays; with minWorkdays 1 it is the plain 1/meanWorkdays.
  return 1 / (meanWorkdays - minWorkdays + 1);
}

/** Creates the scheduler (not ticking until start()). */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const store: ScheduleStore = createScheduleStore(options.db);
  const log = options.log;
  const clock = options.now ?? (() => new Date());
  const random = options.random ?? Math.random;
  const tickMs = options.tickMs ?? 15_000;
  const graceMs = options.graceMs ?? 120_000;
  const claimTimeoutMs = options.claimTimeoutMs ?? 600_000;
  const guardrails = options.awsGuardrails ?? awsGuardrailsFrom(options.policy);
  const blackoutDates = new Set(options.policy.blackoutDates ?? []);
  const crons = new Map<string, Cron>();
  const windows = new Map<string, ParsedWindow>();
  /** The local day up to which each Chaos-Monkey schedule's earlier days have been recorded. */
  const caughtUp = new Map<string, string>();
  /** The first cron slot after each experiment schedule's last recorded slot. */
  const firstDue = new Map<string, { since: number; at: number | null }>();
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  /** When this scheduler last ticked (to tell a late tick from a scheduler that was not running). */
  let lastTickAt: number | undefined;
  /** The AWS default region (a Chaos-Monkey schedule without a region acts there); "" until known. */
  let defaultRegion = "";

  /** A Chaos-Monkey schedule's group: its region and name (same-named groups in two regions are two). */
  const groupKey = (s: ScheduleRecord) => ({ name: s.chaos!.group, region: s.chaos!.region ?? defaultRegion, defaultRegion });
  /** `web-asg (eu-west-1)`, or the bare name while the region is unknown. */
  const groupName = (s: ScheduleRecord): string => {
    const region = s.chaos!.region ?? defaultRegion;
    return region ? `${s.chaos!.group} (${region})` : s.chaos!.group;
  };

  const cronOf = (s: ScheduleRecord): Cron => {
    const key = `${s.cron}\u0000${s.tz}`;
    let cron = crons.get(key);
    if (!cron) crons.set(key, (cron = createCron(s.cron!, s.tz)));
    return cron;
  };

  const windowOf = (s: ScheduleRecord): ParsedWindow => {
    const hours = s.chaos!.window.hours;
    let w = windows.get(hours);
    if (!w) windows.set(hours, (w = windowMinutes({ days: [], hours })));
    return { ...w, days: s.chaos!.window.days };
  };

  const requireSchedule = (id: string): ScheduleRecord => {
    const s = store.getSchedule(id);
    if (!s) {
      throw new ApiError(404, "schedule_not_found", `schedule ${JSON.stringify(id)} does not exist; list schedules with GET /api/v1/schedules (firedrill schedule list)`);
    }
    return s;
  };

  const workdaysOf = (s: ScheduleRecord): Workdays => ({ days: s.chaos!.window.days, blackoutDates });

  function summarize(s: ScheduleRecord, now = clock().getTime()): ScheduleSummary {
    return { schedule: s, next: nextSlot(s, now), last: store.listSlots(s.id, 1)[0] ?? null };
  }

  function nextSlot(s: ScheduleRecord, now: number): NextSlot | null {
    if (s.state === "paused") return null;
    if (s.kind === "experiment") {
      const next = cronOf(s).nextRun(new Date(now));
      return next ? { at: next.getTime(), note: "the experiment runs (if its guardrails allow it then)" } : null;
    }
    const cfg = s.chaos!;
    const w = windowOf(s);
    const wd = workdaysOf(s);
    const today = localDate(now, s.tz);
    const row = store.getSlot(s.id, `${SLOT_DAY}${today}`);
    if (row?.outcome === "planned" && row.plannedAt > now) {
      return { at: row.plannedAt, note: cfg.leashed ? "a kill is planned (leashed: recorded, not made)" : "a kill is planned" };
    }
    const last = store.lastKillDay(groupKey(s), s.id);
    const chance = killChance(cfg.meanWorkdays, cfg.minWorkdays);
    for (let i = row ? 1 : 0; i <= 60; i++) {
      const day = addDays(today, i);
      if (!isWorkday(day, wd)) continue;
      const end = localInstant(day, w.endMinute, s.tz);
      if (end <= now) continue;
      if (last !== undefined && workdaysSince(last, day, wd, cfg.minWorkdays) < cfg.minWorkdays) continue;
      return {
        at: Math.max(localInstant(day, w.startMinute, s.tz), now),
        note: `the window opens: a kill with chance ${formatChance(chance)} at a random minute up to ${formatMinute(w.endMinute)}`,
      };
    }
    return null;
  }

  function create(input: unknown, actor: string, parsed?: ParsedScheduleSpec): ScheduleSummary {
    const now = clock();
    const v = validateNewSchedule(input, now, parsed);
    const t = now.getTime();
    const base = { id: newScheduleId(), tz: v.tz, state: "active" as const, activeSince: t, createdBy: actor, createdAt: t, updatedAt: t };
    let record: ScheduleRecord;
    if (v.kind === "experiment") {
      record = { ...base, kind: "experiment", name: v.name ?? v.experimentName ?? "experiment", specYaml: v.spec, cron: v.cron, chaos: null };
    } else {
      const window = parseWindow(v.window);
      if (!window.ok) throw new ApiError(400, "invalid_schedule", window.message);
      record = {
        ...base,
        kind: "chaos-monkey",
        name: v.name ?? `chaos-monkey ${v.group}`,
        specYaml: null,
        cron: null,
        chaos: {
          group: v.group,
          ...(v.region !== undefined ? { region: v.region } : {}),
          meanWorkdays: v.meanWorkdays,
          minWorkdays: v.minWorkdays,
          window: { days: window.value.days, hours: window.value.hours },
          leashed: v.leashed,
        },
      };
    }
    const stored = store.insertSchedule(record);
    log.info({ scheduleId: stored.id, kind: stored.kind, name: stored.name, actor }, "schedule created");
    return summarize(stored, t);
  }

  // ---- experiment schedules ----

  function missedReason(plannedAt: number): string {
    if (lastTickAt !== undefined && lastTickAt < plannedAt) {
      return `its tick came late (the previous one was at ${iso(lastTickAt)}), more than the grace of ${Math.round(graceMs / 1000)}s; not run late`;
    }
    return "no scheduler was running then; not run late";
  }

  async function tickExperiment(s: ScheduleRecord, now: number): Promise<void> {
    const cron = cronOf(s);
    const latest = store.latestSlot(s.id, "");
    let since = Math.max(s.activeSince, latest?.plannedAt ?? Number.NEGATIVE_INFINITY);
    const horizon = now - MAX_CATCH_UP_MS;
    if (since < horizon) {
      store.claimSlot({
        scheduleId: s.id,
        slotKey: `missed:${iso(since)}/${iso(horizon)}`,
        plannedAt: horizon,
        outcome: "missed",
        detail: `every slot from ${iso(since)} to ${iso(horizon)} was missed: no scheduler was running; not run late (slots of the last 7 days are listed one by one)`,
        decidedAt: now,
      });
      since = horizon;
    }
    // Most ticks find nothing due: the first slot after `since` is remembered until `since` moves.
    const cached = firstDue.get(s.id);
    const first = cached?.since === since ? cached.at : (cron.nextRun(new Date(since))?.getTime() ?? null);
    firstDue.set(s.id, { since, at: first });
    if (first === null || first > now) return;
    const due: number[] = [];
    for (let cursor = new Date(since); ; ) {
      const next = cron.nextRun(cursor);
      if (!next || next.getTime() > now) break;
      due.push(next.getTime());
      cursor = next;
    }
    for (const [i, at] of due.entries()) {
      const key = `${SLOT_AT}${iso(at)}`;
      const late = now - at;
      if (late > graceMs) {
        store.claimSlot({ scheduleId: s.id, slotKey: key, plannedAt: at, outcome: "missed", detail: `due at ${iso(at)}, found ${Math.round(late / 1000)}s later: ${missedReason(at)}`, decidedAt: now });
        continue;
      }
      if (i < due.length - 1) {
        store.claimSlot({ scheduleId: s.id, slotKey: key, plannedAt: at, outcome: "skipped", detail: `a later slot (${iso(due.at(-1)!)}) was due at the same tick; only the latest runs`, decidedAt: now });
        continue;
      }
      if (!store.claimSlot({ scheduleId: s.id, slotKey: key, plannedAt: at, outcome: "claimed", detail: "starting the run", decidedAt: now })) {
        continue; // another scheduler has this slot
      }
      const update = await startRun(s, at, now);
      store.updateSlot(s.id, key, ["claimed"], update);
      log.info({ scheduleId: s.id, slot: key, outcome: update.outcome, runId: update.runId, detail: update.detail }, "experiment slot");
    }
  }

  async function startRun(s: ScheduleRecord, at: number, now: number): Promise<SlotUpdate> {
    try {
      const run = await options.runner.start(s.specYaml!, `schedule:${s.id}`);
      return { outcome: "started", runId: run.id, detail: `run ${run.id} started for the slot at ${iso(at)}`, decidedAt: now };
    } catch (err) {
      if (err instanceof ApiError && (err.statusCode === 409 || err.statusCode === 422)) {
        return { outcome: "refused", detail: err.message, decidedAt: now };
      }
      log.error({ err, scheduleId: s.id }, "a scheduled run failed to start");
      return { outcome: "failed", detail: `the run could not start: ${(err as Error).message}`, decidedAt: now };
    }
  }

  // ---- Chaos-Monkey schedules ----

  function dayRow(s: ScheduleRecord, day: string, w: ParsedWindow, outcome: "skipped" | "missed", detail: string, now: number): void {
    store.claimSlot({ scheduleId: s.id, slotKey: `${SLOT_DAY}${day}`, plannedAt: localInstant(day, w.startMinute, s.tz), outcome, detail, decidedAt: now });
  }

  /** Records workdays before today on which no scheduler made a decision. */
  function catchUpDays(s: ScheduleRecord, w: ParsedWindow, today: string, now: number): void {
    const wd = workdaysOf(s);
    const latest = store.latestSlot(s.id, SLOT_DAY);
    const first = latest ? addDays(latest.slotKey.slice(SLOT_DAY.length), 1) : localDate(s.activeSince, s.tz);
    const from = daysBetween(first, today) > MAX_CATCH_UP_DAYS ? addDays(today, -MAX_CATCH_UP_DAYS) : first;
    for (let day = from; daysBetween(day, today) > 0; day = addDays(day, 1)) {
      if (!isWindowDay(day, wd)) continue;
      if (localInstant(day, w.endMinute, s.tz) <= s.activeSince) continue;
      if (!isWorkday(day, wd)) dayRow(s, day, w, "skipped", `${day} is a blackout date in the policy: no kill`, now);
      else dayRow(s, day, w, "missed", `no scheduler was running on this workday (${formatWindow(s.chaos!.window)} ${s.tz}): no kill was decided or made`, now);
    }
  }

  /** Decides, once, whether and when today brings a kill; the row is the claim. */
  function decideDay(s: ScheduleRecord, w: ParsedWindow, today: string, now: number): void {
    const cfg = s.chaos!;
    const wd = workdaysOf(s);
    const key = `${SLOT_DAY}${today}`;
    const start = localInstant(today, w.startMinute, s.tz);
    const end = localInstant(today, w.endMinute, s.tz);
    if (end <= s.activeSince) return; // today's window closed before the schedule existed
    store.transaction(() => {
      if (store.getSlot(s.id, key)) return; // decided already (by us earlier, or another scheduler)
      const row = (outcome: "planned" | "skipped" | "missed", plannedAt: number, detail: string) =>
        store.claimSlot({ scheduleId: s.id, slotKey: key, plannedAt, outcome, detail, decidedAt: now });
      if (!isWorkday(today, wd)) return row("skipped", start, `${today} is a blackout date in the policy: no kill`);
      if (now >= end) {
        return row("missed", start, `no scheduler was running during today's window (${formatWindow(cfg.window)} ${s.tz}): no kill was decided or made`);
      }
      const last = store.lastKillDay(groupKey(s), s.id);
      if (last !== undefined) {
        const gap = workdaysSince(last, today, wd, cfg.minWorkdays);
        if (gap < cfg.minWorkdays) {
          return row(
            "skipped",
            start,
            `the last kill in ${groupName(s)} was on ${last}, ${gap} workday${gap === 1 ? "" : "s"} ago; minWorkdays is ${cfg.minWorkdays}: no kill today`,
          );
        }
      }
      const chance = killChance(cfg.meanWorkdays, cfg.minWorkdays);
      const roll = random();
      if (roll >= chance) {
        return row("skipped", start, `no kill today (rolled ${roll.toFixed(3)}; a kill needs < ${chance.toFixed(3)}, a chance of ${formatChance(chance)})`);
      }
      // A schedule created mid-window only picks from the rest of it.
      const created = localTime(s.activeSince, s.tz);
      const lo = created.date === today ? Math.max(w.startMinute, created.minute + 1) : w.startMinute;
      if (lo >= w.endMinute) return row("skipped", start, "the schedule began after today's window: no kill today");
      const minute = lo + Math.floor(random() * (w.endMinute - lo));
      const at = localInstant(today, minute, s.tz);
      if (now - at > graceMs) {
        return row("missed", at, `a kill was rolled (chance ${formatChance(chance)}) for ${formatMinute(minute)} ${s.tz}, which had passed when the scheduler came up: not run late`);
      }
      return row("planned", at, `a kill is planned at ${formatMinute(minute)} ${s.tz} (rolled ${roll.toFixed(3)} < ${chance.toFixed(3)})${cfg.leashed ? "; leashed: it will be recorded, not made" : ""}`);
    });
  }

  async function tickChaos(s: ScheduleRecord, now: number): Promise<void> {
    const w = windowOf(s);
    const today = localDate(now, s.tz);
    // Earlier days only need looking at once per day (and schedule) in this process.
    if (caughtUp.get(s.id) !== today) {
      catchUpDays(s, w, today, now);
      caughtUp.set(s.id, today);
    }
    const key = `${SLOT_DAY}${today}`;
    let row = store.getSlot(s.id, key);
    if (!row && isWindowDay(today, workdaysOf(s))) {
      decideDay(s, w, today, now);
      row = store.getSlot(s.id, key);
    }
    if (row?.outcome === "planned" && row.plannedAt <= now && now - row.plannedAt <= graceMs) await kill(s, row, now);
  }

  async function kill(s: ScheduleRecord, slot: SlotRecord, now: number): Promise<void> {
    // The compare-and-set from planned to claimed is the claim: only one scheduler gets it.
    if (!store.updateSlot(s.id, slot.slotKey, ["planned"], { outcome: "claimed", detail: "picking an instance", decidedAt: now })) return;
    let update: SlotUpdate;
    try {
      update = await killOne(s, now);
    } catch (err) {
      log.error({ err, scheduleId: s.id }, "a Chaos-Monkey kill failed");
      update = { outcome: "failed", detail: `the kill failed: ${(err as Error).message}`, decidedAt: clock().getTime() };
    }
    if (!store.updateSlot(s.id, slot.slotKey, ["claimed"], update)) {
      log.warn({ scheduleId: s.id, slot: slot.slotKey, ...update }, "the schedule was removed while its kill was under way");
    }
    log.info({ scheduleId: s.id, group: s.chaos!.group, slot: slot.slotKey, outcome: update.outcome, instanceId: update.instanceId, detail: update.detail }, "chaos-monkey slot");
  }

  async function killOne(s: ScheduleRecord, now: number): Promise<SlotUpdate> {
    const cfg = s.chaos!;
    const done = (outcome: SlotUpdate["outcome"], detail: string, instanceId?: string): SlotUpdate => ({
      outcome,
      detail,
      decidedAt: clock().getTime(),
      ...(instanceId !== undefined ? { instanceId } : {}),
    });
    const halt = options.runner.haltState?.();
    if (halt) return done("refused", `${describeHalt(halt)}; no kill until the halt is lifted (firedrill unhalt)`);
    const windows = options.policy.windows ?? [];
    if (windows.length > 0 && !windows.some((pw) => insideWindow(pw, now))) {
      return done("refused", `now is outside the policy's windows (${windows.map(describeWindow).join(" or ")}): no kill`);
    }
    const aws = options.aws;
    if (!aws) return done("failed", "this control plane has no AWS access configured, so it cannot terminate instances; configure AWS or pause the schedule");
    const selector = { autoScalingGroups: [cfg.group], ...(cfg.region !== undefined ? { region: cfg.region } : {}) };
    const instances = (await aws.resolveInstances(selector))
      .filter((i) => i.state === "running")
      .sort((a, b) => a.instanceId.localeCompare(b.instanceId));
    const where = groupName(s);
    if (instances.length === 0) return done("failed", `the group ${where} has no running instance: nothing to kill; check the group name and region`);
    const pick: AwsInstance = instances[Math.min(instances.length - 1, Math.floor(random() * instances.length))]!;
    const what = `${pick.instanceId} (${pick.availabilityZone}), one of ${instances.length} running in ${where}`;
    const ctx = { actor: `chaos-monkey:${s.id}`, scheduleId: s.id, guardrails };
    if (cfg.leashed) {
      // Leashed means "what would happen": every guardrail, AWS ones included, read and checked now.
      const [check] = await aws.checkTerminate([pick], ctx);
      if (!check) return done("failed", `leashed: AWS reported nothing for ${pick.instanceId}; nothing was killed`, pick.instanceId);
      if (check.ok) return done("would-kill", `leashed: would have terminated ${what}; every guardrail passes now; nothing was killed`, pick.instanceId);
      return done("refused", `leashed: would have been refused: ${pick.instanceId}: ${check.error ?? "refused by a guardrail"}; nothing was killed`, pick.instanceId);
    }
    const results = await aws.terminate([pick], ctx);
    const result = results.find((r) => r.instanceId === pick.instanceId) ?? results[0];
    if (!result) return done("failed", `AWS reported nothing for ${pick.instanceId}; check the termination ledger and the instance`, pick.instanceId);
    if (result.ok) return done("killed", `terminated ${what}${result.call ? ` (${result.call})` : ""}`, pick.instanceId);
    if (result.refusedBy === "guardrail") return done("refused", `${pick.instanceId}: ${result.error ?? "refused by a guardrail"}`, pick.instanceId);
    return done("failed", `${pick.instanceId}: ${result.error ?? "AWS refused the termination"}`, pick.instanceId);
  }

  // ---- the tick ----

  function settleStale(now: number): void {
    for (const slot of store.claimedBefore(now - claimTimeoutMs)) {
      store.updateSlot(slot.scheduleId, slot.slotKey, ["claimed"], {
        outcome: "failed",
        detail: `a scheduler claimed this slot at ${iso(slot.decidedAt)} and recorded no outcome (it stopped while acting); check firedrill runs and the termination ledger for what it did`,
        decidedAt: now,
      });
    }
    // Kills planned for a time that passed more than the grace ago: the scheduler was down.
    for (const slot of store.slotsBefore(["planned"], now - graceMs)) {
      store.updateSlot(slot.scheduleId, slot.slotKey, ["planned"], {
        outcome: "missed",
        detail: `a kill was planned for ${iso(slot.plannedAt)}: ${missedReason(slot.plannedAt)}`,
        decidedAt: now,
      });
    }
  }

  async function runTick(at: Date): Promise<void> {
    const now = at.getTime();
    if (!defaultRegion && options.aws?.region) {
      // Without a default region, schedules without one are keyed "" (as before) until it is known.
      defaultRegion = await options.aws.region().catch(() => "");
    }
    settleStale(now);
    for (const s of store.listSchedules()) {
      if (s.state !== "active") continue;
      try {
        if (s.kind === "experiment") await tickExperiment(s, now);
        else await tickChaos(s, now);
      } catch (err) {
        log.error({ err, scheduleId: s.id }, "schedule tick failed");
      }
    }
    lastTickAt = now;
  }

  function tick(at: Date = clock()): Promise<void> {
    const run = (inFlight ?? Promise.resolve()).then(() => runTick(at));
    const tracked = run.finally(() => {
      if (inFlight === tracked) inFlight = undefined;
    });
    inFlight = tracked;
    return run;
  }

  return {
    create,
    list: () => {
      const now = clock().getTime();
      return store.listSchedules().map((s) => summarize(s, now));
    },
    get: (id) => summarize(requireSchedule(id)),
    slots: (id, limit = 20) => store.listSlots(requireSchedule(id).id, limit),
    pause(id, actor) {
      requireSchedule(id);
      const now = clock().getTime();
      const paused = store.transaction(() => {
        for (const slot of store.listSlots(id, 5)) {
          if (slot.outcome !== "planned") continue;
          store.updateSlot(id, slot.slotKey, ["planned"], { outcome: "skipped", detail: `the schedule was paused by ${actor} before the planned kill`, decidedAt: now });
        }
        return store.setState(id, "paused", now);
      });
      log.info({ scheduleId: id, actor }, "schedule paused");
      return summarize(paused ?? requireSchedule(id), now);
    },
    resume(id, actor) {
      const s = requireSchedule(id);
      const now = clock().getTime();
      const resumed = s.state === "paused" ? store.setState(id, "active", now) : s;
      log.info({ scheduleId: id, actor }, "schedule resumed");
      return summarize(resumed ?? requireSchedule(id), now);
    },
    remove(id, actor) {
      const s = requireSchedule(id);
      store.deleteSchedule(id);
      log.info({ scheduleId: id, name: s.name, actor }, "schedule removed");
      return s;
    },
    start() {
      if (timer) return;
      const onTick = () => {
        if (inFlight) return; // the previous tick is still acting (a slow AWS call): skip this one
        tick().catch((err: unknown) => log.error({ err }, "scheduler tick failed"));
      };
      onTick();
      timer = setInterval(onTick, tickMs);
      timer.unref();
      log.info({ tickMs, graceMs }, "scheduler started");
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await inFlight?.catch(() => {});
    },
    tick,
  };
}

/** `1 in 2`, `1 in 2.5`. */
function formatChance(p: number): string {
  const n = 1 / p;
  return `1 in ${Number.isInteger(n) ? n : n.toFixed(1)}`;
}
