import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, TerminateInstanceInAutoScalingGroupCommand } from "@aws-sdk/client-auto-scaling";
import { DescribeInstancesCommand, EC2Client, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAwsClients } from "../aws/clients.js";
import { createAwsService } from "../aws/service.js";
import { asgGroup, describeFrom, ec2Instance } from "../aws/test-support.js";
import type { ActionContext, AwsInstance, AwsSelector, AwsService, InstanceActionResult } from "../aws/types.js";
import { ApiError } from "../errors.js";
import { localTime } from "../experiments/guardrails.js";
import { seededRandom } from "../experiments/targets.js";
import type { GuardrailsSpec } from "../experiments/types.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { describeEachEngine, type StoreEngine } from "../test-support/store-engines.js";
import { localInstant, workdaysSince } from "./calendar.js";
import { createScheduler } from "./scheduler.js";
import type { Scheduler, ScheduleRunner } from "./scheduler.js";
import type { SlotRecord } from "./types.js";

const NY = "America/New_York";
const MINUTE = 60_000;
const DAY = 86_400_000;
const silent = pino({ level: "silent" });

const EXPERIMENT = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: nightly-burn }
spec:
  hypothesis: "web stays up"
  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 50 }, duration: 1m }
`;

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** The engine of the block running (each engine's block sets it). */
let engine: StoreEngine;
/** The PostgreSQL database of each data dir (one store, reopened as often as a test likes). */
const databases = new Map<string, string>();

/** A new data dir: an empty store (on PostgreSQL, with its own new database). */
async function tempDir(): Promise<string> {
  if (engine.engine === "postgres") {
    const options = await engine.freshStoreOptions();
    databases.set(options.dataDir, options.postgresUrl!);
    return options.dataDir;
  }
  const dir = mkdtempSync(join(tmpdir(), "firedrill-schedules-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openStore(dataDir: string): Store {
  const postgresUrl = databases.get(dataDir);
  const store = createStore(postgresUrl === undefined ? { dataDir } : { dataDir, postgresUrl });
  cleanups.push(() => store.close());
  return store;
}

/** A clock the test moves. */
function simClock(start: number) {
  const clock = { t: start, now: () => new Date(clock.t) };
  return clock;
}

/** A fake AwsService: every instance of the asked group is running; terminate records its calls. */
function fakeAws(options: { instances?: string[]; delayMs?: number; clock: () => Date; result?: (i: AwsInstance) => InstanceActionResult }) {
  const instances = options.instances ?? ["i-0a", "i-0b", "i-0c", "i-0d"];
  const terminated: { instanceIds: string[]; ctx: ActionContext; at: number }[] = [];
  const resolved: AwsSelector[] = [];
  const checked: string[][] = [];
  const unused = () => Promise.reject(new Error("not used by the scheduler"));
  const aws: AwsService = {
    async resolveInstances(selector) {
      resolved.push(selector);
      if (options.delayMs) await sleep(options.delayMs);
      const group = selector.autoScalingGroups?.[0];
      return instances.map((instanceId) => ({
        instanceId,
        region: selector.region ?? "us-east-1",
        availabilityZone: "us-east-1a",
        state: "running",
        tags: { "firedrill:opt-in": "true" },
        ...(group !== undefined ? { autoScalingGroup: group } : {}),
      }));
    },
    async terminate(list, ctx) {
      terminated.push({ instanceIds: list.map((i) => i.instanceId), ctx, at: options.clock().getTime() });
      if (options.delayMs) await sleep(options.delayMs);
      return list.map(
        (i) =>
          options.result?.(i) ?? {
            instanceId: i.instanceId,
            action: "terminate",
            ok: true,
            call: "TerminateInstanceInAutoScalingGroup",
          },
      );
    },
    async checkTerminate(list) {
      checked.push(list.map((i) => i.instanceId));
      return list.map((i) => {
        const r = options.result?.(i);
        return r ?? { instanceId: i.instanceId, action: "terminate", ok: true, call: "TerminateInstanceInAutoScalingGroup", note: "every guardrail passes at this moment" };
      });
    },
    region: async (explicit) => explicit ?? "us-east-1",
    describeGroups: unused,
    listGroups: unused,
    stop: unused,
    start: unused,
    alarmStates: unused,
  };
  return { aws, terminated, resolved, checked };
}

/** A fake runner: records the runs it starts, or throws what `refuse` returns. */
function fakeRunner(refuse?: () => Error | undefined) {
  const started: { spec: string; actor: string; id: string }[] = [];
  const runner: ScheduleRunner = {
    start(spec, actor) {
      const err = refuse?.();
      if (err) throw err;
      const id = `run_${String(started.length + 1).padStart(12, "0")}`;
      started.push({ spec, actor, id });
      return { id };
    },
  };
  return { runner, started };
}

interface Setup {
  store: Store;
  clock: ReturnType<typeof simClock>;
  random?: () => number;
  aws?: AwsService;
  runner?: ScheduleRunner;
  policy?: GuardrailsSpec;
}

function scheduler(setup: Setup): Scheduler {
  const s = createScheduler({
    db: setup.store.db,
    runner: setup.runner ?? fakeRunner().runner,
    ...(setup.aws ? { aws: setup.aws } : {}),
    policy: setup.policy ?? {},
    log: silent,
    now: setup.clock.now,
    random: setup.random ?? seededRandom(1),
  });
  cleanups.push(() => void s.stop());
  return s;
}

/** Ticks every `stepMs` from `from` (inclusive) to `to` (exclusive), moving the clock along. */
async function run(s: Scheduler, clock: ReturnType<typeof simClock>, from: number, to: number, stepMs = MINUTE): Promise<void> {
  for (let t = from; t < to; t += stepMs) {
    clock.t = t;
    await s.tick(new Date(t));
  }
}

const slotsOf = (store: Store, id: string): SlotRecord[] =>
  store.db
    .prepare<[string], { slot_key: string; planned_at: number; outcome: SlotRecord["outcome"]; detail: string | null; run_id: string | null; instance_id: string | null; decided_at: number }>(
      "SELECT * FROM schedule_slots WHERE schedule_id = ? ORDER BY planned_at",
    )
    .all(id)
    .map((r) => ({
      scheduleId: id,
      slotKey: r.slot_key,
      plannedAt: r.planned_at,
      outcome: r.outcome,
      detail: r.detail,
      runId: r.run_id,
      instanceId: r.instance_id,
      decidedAt: r.decided_at,
    }));

const chaosBody = (extra: Record<string, unknown> = {}) => ({
  kind: "chaos-monkey",
  group: "web-asg",
  region: "us-east-1",
  meanWorkdays: 2,
  minWorkdays: 1,
  window: "mon-fri 10:00-16:00",
  tz: NY,
  leashed: false,
  ...extra,
});

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"];

/** Mean of the workday gaps between consecutive kill days. */
function gaps(days: string[], blackoutDates: string[]): number[] {
  const wd = { days: WEEKDAYS, blackoutDates: new Set(blackoutDates) };
  return days.slice(1).map((d, i) => workdaysSince(days[i]!, d, wd));
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describeEachEngine("scheduler", (blockEngine) => {
  // Day- and month-long simulations make hundreds of thousands of store round trips: minutes on
  // PostgreSQL. They run on SQLite; on PostgreSQL the claims and races run (the same SQL).
  const simulation = it.skipIf(blockEngine.engine === "postgres");
  beforeAll(() => {
    engine = blockEngine;
  });

  describe("Chaos-Monkey schedules", () => {
    simulation("over a simulated month in New York: kills only on workdays inside the window, none on blackout dates, gaps ≥ minWorkdays", async () => {
      const store = openStore(await tempDir());
      // Across the US DST change (2026-03-08): the window stays 10:00-16:00 local.
      const from = Date.parse("2026-02-23T05:00:00Z"); // Mon 00:00 EST
      const to = Date.parse("2026-04-04T04:00:00Z"); // Sat 00:00 EDT
      const clock = simClock(from);
      const blackoutDates = ["2026-03-10", "2026-03-11", "2026-03-20"];
      const fake = fakeAws({ clock: clock.now });
      const s = scheduler({ store, clock, aws: fake.aws, random: seededRandom(42), policy: { blackoutDates } });
      const { schedule } = s.create(chaosBody({ meanWorkdays: 3, minWorkdays: 2 }), "sre@test");
      await run(s, clock, from, to);

      const kills = fake.terminated;
      expect(kills.length).toBeGreaterThanOrEqual(5);
      const killDays: string[] = [];
      for (const k of kills) {
        const local = localTime(k.at, NY);
        expect(WEEKDAYS).toContain(local.weekday);
        expect(local.minute).toBeGreaterThanOrEqual(10 * 60);
        expect(local.minute).toBeLessThan(16 * 60);
        expect(blackoutDates).not.toContain(local.date);
        expect(k.instanceIds).toHaveLength(1);
        expect(k.ctx).toMatchObject({ actor: `chaos-monkey:${schedule.id}`, scheduleId: schedule.id });
        expect(k.ctx.guardrails.optInTag).toBe("firedrill:opt-in=true");
        killDays.push(local.date);
      }
      expect(new Set(killDays).size).toBe(killDays.length);
      for (const gap of gaps(killDays, blackoutDates)) expect(gap).toBeGreaterThanOrEqual(2);
      expect(fake.resolved.every((sel) => sel.autoScalingGroups?.[0] === "web-asg" && sel.region === "us-east-1")).toBe(true);

      // One decision per workday, recorded; the kills are the `killed` slots, at their planned minute.
      const slots = slotsOf(store, schedule.id);
      const workdays = slots.map((sl) => sl.slotKey.slice(4));
      expect(new Set(workdays).size).toBe(workdays.length);
      expect(workdays.every((d) => WEEKDAYS.includes(localTime(Date.parse(`${d}T17:00:00Z`), NY).weekday))).toBe(true);
      expect(slots).toHaveLength(30); // the 30 weekdays from 2026-02-23 to 2026-04-03; none on weekends
      const killed = slots.filter((sl) => sl.outcome === "killed");
      expect(killed.map((sl) => sl.slotKey.slice(4))).toEqual(killDays);
      for (const [i, sl] of killed.entries()) {
        expect(kills[i]!.at - sl.plannedAt).toBeGreaterThanOrEqual(0);
        expect(kills[i]!.at - sl.plannedAt).toBeLessThan(MINUTE);
        expect(sl.instanceId).toBe(kills[i]!.instanceIds[0]);
      }
      for (const d of blackoutDates) {
        expect(slots.find((sl) => sl.slotKey === `day:${d}`)).toMatchObject({ outcome: "skipped", detail: expect.stringContaining("blackout") });
      }
      expect(slots.every((sl) => ["killed", "skipped"].includes(sl.outcome))).toBe(true);
    }, 120_000);

    // Two simulated years of ticks: a test of the scheduler's statistics, not of the store (on
    // PostgreSQL each tick's round trips make it minutes long; the month above runs on both).
    it.skipIf(blockEngine.engine === "postgres")("the mean number of workdays between kills is near the asked value over a year", async () => {
      // ~250 workdays: ~125 gaps for a mean of 2 (sd of a gap 1.4, so the mean is within 0.4 at 3 sigma),
      // ~83 for a mean of 3 with min 2 (same sd: within 0.5).
      for (const [asked, min, seed, tolerance] of [
        [2, 1, 1, 0.4],
        [3, 2, 2, 0.5],
      ] as const) {
        const store = openStore(await tempDir());
        const from = Date.parse("2026-01-05T05:00:00Z");
        const to = Date.parse("2027-01-04T05:00:00Z");
        const clock = simClock(from);
        const blackoutDates = ["2026-01-19", "2026-02-16", "2026-05-25", "2026-06-19", "2026-07-03", "2026-09-07", "2026-11-26", "2026-12-25"];
        const fake = fakeAws({ clock: clock.now });
        const s = scheduler({ store, clock, aws: fake.aws, random: seededRandom(seed), policy: { blackoutDates } });
        const { schedule } = s.create(chaosBody({ meanWorkdays: asked, minWorkdays: min }), "sre@test");
        // Every 2 minutes: within the 2-minute grace, so no planned kill is missed (the month above ticks every minute).
        await run(s, clock, from, to, 2 * MINUTE);
        expect(slotsOf(store, schedule.id).filter((sl) => !["killed", "skipped"].includes(sl.outcome))).toEqual([]);
        const days = fake.terminated.map((k) => localTime(k.at, NY).date);
        const g = gaps(days, blackoutDates);
        const measured = mean(g);
        console.log(
          `chaos-monkey meanWorkdays ${asked} minWorkdays ${min}: ${days.length} kills in a year, mean gap ${measured.toFixed(2)} workdays (min ${Math.min(...g)}, max ${Math.max(...g)})`,
        );
        expect(Math.min(...g)).toBeGreaterThanOrEqual(min);
        expect(Math.abs(measured - asked)).toBeLessThan(tolerance);
      }
    }, 300_000);

    simulation("leashed: records would-kill with the instance, kills nothing", async () => {
      const store = openStore(await tempDir());
      const from = Date.parse("2026-03-02T05:00:00Z");
      const to = Date.parse("2026-03-14T05:00:00Z");
      const clock = simClock(from);
      const fake = fakeAws({ clock: clock.now });
      const s = scheduler({ store, clock, aws: fake.aws, random: seededRandom(3) });
      const { schedule } = s.create(chaosBody({ meanWorkdays: 1, leashed: true }), "sre@test");
      await run(s, clock, from, to);
      expect(fake.terminated).toHaveLength(0);
      const slots = slotsOf(store, schedule.id);
      expect(slots).toHaveLength(10);
      expect(slots.every((sl) => sl.outcome === "would-kill")).toBe(true);
      // Every would-kill was checked against the guardrails at its moment.
      expect(fake.checked).toHaveLength(10);
      for (const sl of slots) {
        expect(["i-0a", "i-0b", "i-0c", "i-0d"]).toContain(sl.instanceId);
        expect(sl.detail).toMatch(/^leashed: would have terminated i-0\w \(us-east-1a\), one of 4 running in web-asg \(us-east-1\); every guardrail passes now; nothing was killed$/);
      }
    });

    simulation("records guardrail refusals and AWS failures per slot, and refuses while halted", async () => {
      const store = openStore(await tempDir());
      const from = Date.parse("2026-03-02T05:00:00Z");
      const clock = simClock(from);
      let verdict: "refuse" | "fail" = "refuse";
      const fake = fakeAws({
        clock: clock.now,
        result: (i) =>
          verdict === "refuse"
            ? { instanceId: i.instanceId, action: "terminate", ok: false, refusedBy: "guardrail", error: "min-healthy: web-asg has 2 InService, minHealthy 2" }
            : { instanceId: i.instanceId, action: "terminate", ok: false, refusedBy: "aws", error: "UnauthorizedOperation: not allowed" },
      });
      let halt: { reason: string; actor: string; at: number } | undefined;
      const runner: ScheduleRunner = { start: () => ({ id: "run_x" }), haltState: () => halt };
      const s = scheduler({ store, clock, aws: fake.aws, runner, random: seededRandom(5) });
      const { schedule } = s.create(chaosBody({ meanWorkdays: 1 }), "sre@test");
      await run(s, clock, from, from + DAY);
      verdict = "fail";
      await run(s, clock, from + DAY, from + 2 * DAY);
      halt = { reason: "incident", actor: "oncall", at: from };
      await run(s, clock, from + 2 * DAY, from + 3 * DAY);
      const slots = slotsOf(store, schedule.id);
      expect(slots.map((sl) => sl.outcome)).toEqual(["refused", "failed", "refused"]);
      expect(slots[0]!.detail).toContain("min-healthy: web-asg has 2 InService");
      expect(slots[1]!.detail).toContain("UnauthorizedOperation");
      expect(slots[2]!.detail).toContain("firedrill is halted (incident, by oncall");
      expect(fake.terminated).toHaveLength(2);
    });

    simulation("without AWS access a due kill is recorded failed; pause drops today's planned kill", async () => {
      const store = openStore(await tempDir());
      const from = Date.parse("2026-03-02T05:00:00Z");
      const clock = simClock(from);
      const s = scheduler({ store, clock, random: seededRandom(5) });
      const { schedule } = s.create(chaosBody({ meanWorkdays: 1 }), "sre@test");
      await run(s, clock, from, from + DAY);
      expect(slotsOf(store, schedule.id)[0]).toMatchObject({ outcome: "failed", detail: expect.stringContaining("no AWS access") });
      // Tuesday: decided at midnight, paused before the window opens.
      await run(s, clock, from + DAY, from + DAY + 10 * MINUTE);
      expect(slotsOf(store, schedule.id)[1]!.outcome).toBe("planned");
      s.pause(schedule.id, "sre@test");
      await run(s, clock, from + DAY + 10 * MINUTE, from + 2 * DAY);
      expect(slotsOf(store, schedule.id)[1]).toMatchObject({ outcome: "skipped", detail: expect.stringContaining("paused by sre@test") });
      expect(s.get(schedule.id).next).toBeNull();
      // Resumed on Thursday: Wednesday fell in the pause and is neither run nor missed.
      clock.t = from + 3 * DAY;
      s.resume(schedule.id, "sre@test");
      await run(s, clock, from + 3 * DAY, from + 4 * DAY);
      expect(slotsOf(store, schedule.id).map((sl) => sl.slotKey)).toEqual(["day:2026-03-02", "day:2026-03-03", "day:2026-03-05"]);
    });
  });

  describe("Chaos-Monkey and the AWS guardrails (mocked SDK, the real AWS service)", () => {
    const ec2 = mockClient(EC2Client);
    const asg = mockClient(AutoScalingClient);
    const TAGS = { "firedrill:opt-in": "true", "aws:autoscaling:groupName": "web-asg" };
    afterAll(() => {
      ec2.restore();
      asg.restore();
    });

    simulation("leashed evaluates every guardrail at the kill minute: would-be-refused at the floor or for an exclusion tag, would-kill otherwise; nothing killed or recorded", async () => {
      ec2.reset();
      asg.reset();
      const live = new Map(["i-0a", "i-0b", "i-0c"].map((id) => [id, ec2Instance(id, TAGS, "us-east-1a")]));
      ec2.on(DescribeInstancesCommand).callsFake(describeFrom(live));
      let group = asgGroup("web-asg", { min: 2, desired: 2, inService: ["i-0a", "i-0b"], instanceAz: () => "us-east-1a" });
      asg.on(DescribeAutoScalingGroupsCommand).callsFake(() => ({ AutoScalingGroups: [group] }));
      const store = openStore(await tempDir());
      const aws = createAwsService({ clients: createAwsClients({ region: "us-east-1" }), db: store.db, log: silent, sleep: async () => {} });
      const from = Date.parse("2026-03-02T05:00:00Z"); // Monday 00:00 in New York
      const clock = simClock(from);
      const s = scheduler({ store, clock, aws, random: seededRandom(3), policy: { excludeTags: ["firedrill:exclude"] } });
      const { schedule } = s.create(chaosBody({ meanWorkdays: 1, leashed: true }), "sre@test");

      // Monday: the group sits at its floor (MinSize 2, 2 InService).
      await run(s, clock, from, from + DAY);
      // Tuesday: scaled to 3, so a kill would pass.
      group = asgGroup("web-asg", { min: 2, desired: 3, inService: ["i-0a", "i-0b", "i-0c"], instanceAz: () => "us-east-1a" });
      await run(s, clock, from + DAY, from + 2 * DAY);
      // Wednesday: every instance was tagged firedrill:exclude in the meantime.
      for (const id of live.keys()) live.set(id, ec2Instance(id, { ...TAGS, "firedrill:exclude": "true" }, "us-east-1a"));
      await run(s, clock, from + 2 * DAY, from + 3 * DAY);

      const slots = slotsOf(store, schedule.id);
      expect(slots.map((sl) => sl.outcome)).toEqual(["refused", "would-kill", "refused"]);
      expect(slots[0]!.detail).toMatch(
        /^leashed: would have been refused: i-0[ab]: min-healthy: would leave web-asg with 1 InService instance \(2 now\), below max\(MinSize 2, minHealthy 1\) = 2; nothing was killed$/,
      );
      expect(slots[1]!.detail).toMatch(/^leashed: would have terminated i-0[abc] \(us-east-1a\), one of 3 running in web-asg \(us-east-1\); every guardrail passes now; nothing was killed$/);
      expect(slots[2]!.detail).toMatch(/^leashed: would have been refused: i-0[abc]: exclusion-tags: i-0[abc] carries the exclusion tag firedrill:exclude \(tags read at the moment of the action\); nothing was killed$/);
      expect(asg.commandCalls(TerminateInstanceInAutoScalingGroupCommand)).toHaveLength(0);
      expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
      expect(aws.ledger.list()).toEqual([]);
    });
  });

  describe("Chaos-Monkey groups are keyed by region and name", () => {
    simulation("same-named groups in two regions are two groups; a schedule without a region is in the default one", async () => {
      const store = openStore(await tempDir());
      const from = Date.parse("2026-03-02T05:00:00Z");
      const clock = simClock(from);
      const fake = fakeAws({ clock: clock.now });
      const s = scheduler({ store, clock, aws: fake.aws, random: seededRandom(7) });
      // A kill every workday is certain (mean = min), and then no other for 5 workdays in the group.
      const east = s.create(chaosBody({ meanWorkdays: 5, minWorkdays: 5, region: "us-east-1" }), "sre@test").schedule;
      const west = s.create(chaosBody({ meanWorkdays: 5, minWorkdays: 5, region: "eu-west-1" }), "sre@test").schedule;
      const { region: _r, ...noRegion } = chaosBody({ meanWorkdays: 5, minWorkdays: 5 });
      const defaulted = s.create(noRegion, "sre@test").schedule; // the default region (us-east-1): the same group as `east`
      await run(s, clock, from, from + DAY);

      expect(slotsOf(store, east.id).map((sl) => sl.outcome)).toEqual(["killed"]);
      expect(slotsOf(store, west.id).map((sl) => sl.outcome)).toEqual(["killed"]);
      expect(slotsOf(store, defaulted.id)[0]).toMatchObject({ outcome: "skipped", detail: expect.stringMatching(/^the last kill in web-asg \(us-east-1\) was on 2026-03-02, 0 workdays ago; minWorkdays is 5/) });
      expect(fake.resolved.map((sel) => sel.region).sort()).toEqual(["eu-west-1", "us-east-1"]);
    });
  });

  describe("two schedulers on one database", () => {
    it("race for the same Chaos-Monkey slot: exactly one kill", async () => {
      const dataDir = await tempDir();
      const storeA = openStore(dataDir);
      const storeB = openStore(dataDir);
      const from = Date.parse("2026-03-02T05:00:00Z");
      const clockA = simClock(from);
      const clockB = simClock(from);
      // Both AWS fakes count into one list; their calls take a while, so both kills would overlap.
      const shared = fakeAws({ clock: clockA.now, delayMs: 20 });
      const a = scheduler({ store: storeA, clock: clockA, aws: shared.aws, random: seededRandom(1) });
      const b = scheduler({ store: storeB, clock: clockB, aws: shared.aws, random: seededRandom(2) });
      const { schedule } = a.create(chaosBody({ meanWorkdays: 1 }), "sre@test");
      for (let t = from; t < from + 5 * DAY; t += MINUTE) {
        clockA.t = clockB.t = t;
        await Promise.all([a.tick(new Date(t)), b.tick(new Date(t))]);
      }
      const slots = slotsOf(storeA, schedule.id);
      expect(slots).toHaveLength(5);
      expect(slots.every((sl) => sl.outcome === "killed")).toBe(true);
      expect(shared.terminated).toHaveLength(5); // one per workday, never two
      expect(new Set(shared.terminated.map((k) => localTime(k.at, NY).date)).size).toBe(5);
    });

    it("race for the same experiment slot: exactly one run started", async () => {
      const dataDir = await tempDir();
      const storeA = openStore(dataDir);
      const storeB = openStore(dataDir);
      const from = Date.parse("2026-03-02T08:00:00Z");
      const clock = simClock(from);
      const ra = fakeRunner();
      const rb = fakeRunner();
      const a = scheduler({ store: storeA, clock, runner: ra.runner });
      const b = scheduler({ store: storeB, clock, runner: rb.runner });
      clock.t = from - 1000;
      const { schedule } = a.create({ kind: "experiment", spec: EXPERIMENT, cron: "*/5 * * * *", tz: "Europe/Berlin" }, "sre@test");
      for (let t = from; t < from + 60 * MINUTE; t += 15_000) {
        clock.t = t;
        await Promise.all([a.tick(new Date(t)), b.tick(new Date(t))]);
      }
      expect(ra.started.length + rb.started.length).toBe(12);
      const slots = slotsOf(storeA, schedule.id);
      expect(slots).toHaveLength(12);
      expect(slots.every((sl) => sl.outcome === "started")).toBe(true);
      expect(new Set(slots.map((sl) => sl.runId)).size).toBe(12);
    });
  });

  describe("restarts", () => {
    it("a new scheduler does not re-run a claimed slot; slots that passed while none ran are missed, not run", async () => {
      const dataDir = await tempDir();
      const from = Date.parse("2026-03-02T08:59:00Z"); // 09:59 in Berlin
      const clock = simClock(from);
      const first = openStore(dataDir);
      const r1 = fakeRunner();
      const a = scheduler({ store: first, clock, runner: r1.runner });
      const { schedule } = a.create({ kind: "experiment", spec: EXPERIMENT, cron: "0 * * * *", tz: "Europe/Berlin" }, "sre@test");
      await run(a, clock, from, from + 2 * MINUTE); // the 10:00 slot runs
      expect(r1.started).toHaveLength(1);
      await a.stop();
      first.close();

      // Restarted within the same minute: the slot is not run again.
      const second = openStore(dataDir);
      const r2 = fakeRunner();
      const b = scheduler({ store: second, clock, runner: r2.runner });
      await b.tick(new Date(from + MINUTE + 30_000));
      expect(r2.started).toHaveLength(0);
      await b.stop();
      second.close();

      // Down from 10:01 to 13:00:30: 11:00 and 12:00 are missed, 13:00 runs (30 s late, within the grace).
      const third = openStore(dataDir);
      const r3 = fakeRunner();
      const c = scheduler({ store: third, clock, runner: r3.runner });
      clock.t = Date.parse("2026-03-02T12:00:30Z");
      await c.tick(new Date(clock.t));
      expect(r3.started).toHaveLength(1);
      const slots = slotsOf(third, schedule.id);
      expect(slots.map((sl) => [sl.slotKey, sl.outcome])).toEqual([
        ["at:2026-03-02T09:00:00Z", "started"],
        ["at:2026-03-02T10:00:00Z", "missed"],
        ["at:2026-03-02T11:00:00Z", "missed"],
        ["at:2026-03-02T12:00:00Z", "started"],
      ]);
      expect(slots[1]!.detail).toContain("no scheduler was running then; not run late");
      // A tick more than the grace late: missed, and it says so.
      await run(c, clock, clock.t + MINUTE, Date.parse("2026-03-02T12:59:00Z"));
      clock.t = Date.parse("2026-03-02T13:03:00Z");
      await c.tick(new Date(clock.t));
      expect(r3.started).toHaveLength(1);
      expect(slotsOf(third, schedule.id).at(-1)).toMatchObject({ outcome: "missed", detail: expect.stringContaining("its tick came late") });
    });

    simulation("Chaos-Monkey: a restart does not re-roll the day; a kill due while down is missed; whole days down are missed", async () => {
      const dataDir = await tempDir();
      const monday = Date.parse("2026-03-02T05:00:00Z"); // 00:00 in New York
      const clock = simClock(monday);
      const first = openStore(dataDir);
      const fake1 = fakeAws({ clock: clock.now });
      const a = scheduler({ store: first, clock, aws: fake1.aws, random: seededRandom(9) });
      const { schedule } = a.create(chaosBody({ meanWorkdays: 1 }), "sre@test");
      await a.tick(new Date(monday));
      const planned = slotsOf(first, schedule.id)[0]!;
      expect(planned.outcome).toBe("planned");
      await a.stop();
      first.close();

      // Restart before the kill minute with other randomness: the decision stands and the kill happens at its minute.
      const second = openStore(dataDir);
      const fake2 = fakeAws({ clock: clock.now });
      const b = scheduler({ store: second, clock, aws: fake2.aws, random: seededRandom(12345) });
      await run(b, clock, monday + 60 * MINUTE, monday + DAY);
      expect(fake2.terminated).toHaveLength(1);
      expect(fake2.terminated[0]!.at - planned.plannedAt).toBeLessThan(MINUTE);
      expect(slotsOf(second, schedule.id)[0]).toMatchObject({ slotKey: "day:2026-03-02", outcome: "killed", plannedAt: planned.plannedAt });
      // Tuesday planned, then the scheduler is down from 00:01 Tuesday to Thursday 17:00.
      await run(b, clock, monday + DAY, monday + DAY + MINUTE);
      const tuesday = slotsOf(second, schedule.id)[1]!;
      expect(tuesday.outcome).toBe("planned");
      await b.stop();
      second.close();

      const third = openStore(dataDir);
      const fake3 = fakeAws({ clock: clock.now });
      const c = scheduler({ store: third, clock, aws: fake3.aws, random: seededRandom(1) });
      clock.t = monday + 3 * DAY + 17 * 60 * MINUTE;
      await c.tick(new Date(clock.t));
      expect(fake3.terminated).toHaveLength(0);
      const slots = slotsOf(third, schedule.id);
      expect(slots.map((sl) => [sl.slotKey, sl.outcome])).toEqual([
        ["day:2026-03-02", "killed"],
        ["day:2026-03-03", "missed"],
        ["day:2026-03-04", "missed"],
        ["day:2026-03-05", "missed"],
      ]);
      expect(slots[1]!.detail).toContain(`a kill was planned for ${new Date(tuesday.plannedAt).toISOString().replace(".000Z", "Z")}`);
      expect(slots[2]!.detail).toContain("no scheduler was running on this workday");
      expect(slots[3]!.detail).toContain("no scheduler was running during today's window");
    });

    it("a slot claimed by a scheduler that died while acting is recorded failed after the claim timeout", async () => {
      const dataDir = await tempDir();
      const store = openStore(dataDir);
      const from = Date.parse("2026-03-02T15:00:00Z");
      const clock = simClock(from);
      const s = scheduler({ store, clock });
      const { schedule } = s.create(chaosBody(), "sre@test");
      store.db
        .prepare("INSERT INTO schedule_slots (schedule_id, slot_key, planned_at, outcome, detail, decided_at) VALUES (?, 'day:2026-03-02', ?, 'claimed', 'picking', ?)")
        .run(schedule.id, from, from);
      await s.tick(new Date(from + 5 * MINUTE));
      expect(slotsOf(store, schedule.id)[0]!.outcome).toBe("claimed");
      await s.tick(new Date(from + 11 * MINUTE));
      expect(slotsOf(store, schedule.id)[0]).toMatchObject({ outcome: "failed", detail: expect.stringContaining("recorded no outcome") });
    });
  });

  describe("experiment schedules", () => {
    simulation("cron slots in Europe/Berlin across the DST change; runner.start gets the spec and schedule:<id>", async () => {
      const store = openStore(await tempDir());
      const from = Date.parse("2026-03-25T00:00:00Z");
      const to = Date.parse("2026-04-02T00:00:00Z");
      const clock = simClock(from);
      const fake = fakeRunner();
      const times: number[] = [];
      const runner: ScheduleRunner = {
        start(spec, actor) {
          times.push(clock.t);
          return fake.runner.start(spec, actor);
        },
      };
      const s = scheduler({ store, clock, runner });
      const { schedule, next } = s.create({ kind: "experiment", spec: EXPERIMENT, cron: "0 10 * * 1-5", tz: "Europe/Berlin" }, "sre@test");
      expect(schedule.name).toBe("nightly-burn");
      expect(next?.at).toBe(Date.parse("2026-03-25T09:00:00Z"));
      await run(s, clock, from, to, 30_000);
      // Wed, Thu, Fri at 10:00 CET (09:00Z); after the change on Sunday 29th, 10:00 CEST (08:00Z).
      expect(times.map((t) => new Date(t).toISOString())).toEqual([
        "2026-03-25T09:00:00.000Z",
        "2026-03-26T09:00:00.000Z",
        "2026-03-27T09:00:00.000Z",
        "2026-03-30T08:00:00.000Z",
        "2026-03-31T08:00:00.000Z",
        "2026-04-01T08:00:00.000Z",
      ]);
      expect(fake.started.every((r) => r.spec === EXPERIMENT && r.actor === `schedule:${schedule.id}`)).toBe(true);
      const slots = slotsOf(store, schedule.id);
      expect(slots.map((sl) => sl.slotKey)).toEqual([
        "at:2026-03-25T09:00:00Z",
        "at:2026-03-26T09:00:00Z",
        "at:2026-03-27T09:00:00Z",
        "at:2026-03-30T08:00:00Z",
        "at:2026-03-31T08:00:00Z",
        "at:2026-04-01T08:00:00Z",
      ]);
      expect(slots.map((sl) => sl.runId)).toEqual(fake.started.map((r) => r.id));
      expect(localInstant("2026-03-30", 600, "Europe/Berlin")).toBe(Date.parse("2026-03-30T08:00:00Z"));
    });

    simulation("a refusal by the guardrails or the halt is recorded with its message and not retried; other errors are failed", async () => {
      const store = openStore(await tempDir());
      const from = Date.parse("2026-03-02T09:00:00Z");
      const clock = simClock(from);
      const errors: (Error | undefined)[] = [
        new ApiError(422, "guardrail_refused", "the guardrails refuse this run: windows: now is Mon 2026-03-02 10:00 Europe/Berlin, outside the experiment's window sat,sun 10:00-16:00 Europe/Berlin"),
        new ApiError(409, "halted", "firedrill is halted (incident, by oncall at 2026-03-02T08:00:00.000Z); no run can start until the halt is lifted (firedrill unhalt)"),
        new Error("database is locked"),
      ];
      let calls = 0;
      const fake = fakeRunner(() => errors[calls++]);
      const s = scheduler({ store, clock, runner: fake.runner });
      clock.t = from - MINUTE; // created just before the 10:00 slot
      const { schedule } = s.create({ kind: "experiment", spec: EXPERIMENT, cron: "0 * * * *", tz: "Europe/Berlin" }, "sre@test");
      await run(s, clock, from, from + 3 * 60 * MINUTE + 30_000, 30_000);
      expect(calls).toBe(4);
      const slots = slotsOf(store, schedule.id);
      expect(slots.map((sl) => sl.outcome)).toEqual(["refused", "refused", "failed", "started"]);
      expect(slots[0]!.detail).toContain("outside the experiment's window sat,sun 10:00-16:00");
      expect(slots[1]!.detail).toContain("firedrill is halted");
      expect(slots[2]!.detail).toBe("the run could not start: database is locked");
      expect(s.get(schedule.id).last).toMatchObject({ outcome: "started" });
    });
  });

  /**
   * Two scheduler processes on one database file, acting on the same slots at the same wall-clock
   * moments (each step at START + k·STEP_MS): SQLite's locking, not JavaScript's single thread,
   * decides who gets each slot.
   */
  const RACER = `
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { createStore } from "./src/store/store.ts";
import { createScheduler } from "./src/schedules/scheduler.ts";
import { seededRandom } from "./src/experiments/targets.ts";

const { DATA_DIR, POSTGRES_URL, OUT, SEED, GO, STEP_MS, STEPS } = process.env;
const store = createStore(POSTGRES_URL ? { dataDir: DATA_DIR, postgresUrl: POSTGRES_URL } : { dataDir: DATA_DIR });
// Ready (modules loaded, store open): the test starts both racers' clocks together once both are.
writeFileSync(OUT + ".ready", "");
const deadline = Date.now() + 120000;
while (!existsSync(GO) && Date.now() < deadline) await sleep(20);
const START = readFileSync(GO, "utf8");
let now = 0;
const aws = {
  async resolveInstances() {
    return ["i-0a", "i-0b", "i-0c"].map((instanceId) => ({ instanceId, region: "us-east-1", availabilityZone: "us-east-1a", state: "running", tags: {} }));
  },
  async terminate(list) {
    appendFileSync(OUT, "kill " + list[0].instanceId + " " + now + "\\n");
    await sleep(5);
    return list.map((i) => ({ instanceId: i.instanceId, action: "terminate", ok: true }));
  },
};
const runner = { start(spec, actor) { appendFileSync(OUT, "run " + actor + " " + now + "\\n"); return { id: "run_" + SEED + "_" + now }; } };
const scheduler = createScheduler({ db: store.db, runner, aws, policy: {}, log: pino({ level: "silent" }), now: () => new Date(now), random: seededRandom(Number(SEED)) });
const planned = store.db.prepare("SELECT planned_at FROM schedule_slots WHERE slot_key = ? AND outcome IN ('planned', 'claimed', 'killed')");
for (const [k, step] of JSON.parse(STEPS).entries()) {
  const wait = Number(START) + k * Number(STEP_MS) - Date.now();
  if (wait > 0) await sleep(wait);
  // "kill:<day>" steps tick at the minute the day's decision planned (read from the store).
  now = typeof step === "number" ? step : (planned.get("day:" + step.slice(5))?.planned_at ?? 0);
  if (now) await scheduler.tick(new Date(now));
}
store.close();
`;

  describe("two scheduler processes on one database file", () => {
    it("each Chaos-Monkey kill and each experiment slot happens exactly once", async () => {
      const { spawn } = await import("node:child_process");
      const { readFileSync, existsSync, renameSync, writeFileSync } = await import("node:fs");
      const dataDir = await tempDir();
      const store = openStore(dataDir);
      const monday = Date.parse("2026-03-02T05:00:00Z");
      const clock = simClock(monday - MINUTE);
      const s = scheduler({ store, clock });
      const monkey = s.create(chaosBody({ meanWorkdays: 1 }), "sre@test").schedule;
      clock.t = monday + 10 * DAY - MINUTE; // the experiment's slots begin after the Chaos-Monkey week
      const exp = s.create({ kind: "experiment", spec: EXPERIMENT, cron: "* * * * *", tz: "UTC" }, "sre@test").schedule;
      const steps: (number | string)[] = [];
      for (let d = 0; d < 5; d++) {
        const day = new Date(monday + d * DAY + 12 * 3_600_000).toISOString().slice(0, 10);
        steps.push(monday + d * DAY, `kill:${day}`);
      }
      for (let m = 0; m < 10; m++) steps.push(monday + 10 * DAY + m * MINUTE);
      // Both racers load (tsx, seconds on a busy machine), say they are ready, then step on one clock.
      const go = join(dataDir, "go");
      const cwd = join(import.meta.dirname, "../..");
      const outs = [1, 2].map((n) => join(dataDir, `racer-${n}.log`));
      const exits = outs.map(
        (out, i) =>
          new Promise<number | null>((resolve, reject) => {
            const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", "--input-type=module", "-e", RACER], {
              cwd,
              env: { ...process.env, DATA_DIR: dataDir, POSTGRES_URL: databases.get(dataDir) ?? "", OUT: out, SEED: String(i + 1), GO: go, STEP_MS: "60", STEPS: JSON.stringify(steps) },
              stdio: ["ignore", "inherit", "inherit"],
            });
            child.on("error", reject);
            child.on("close", resolve);
          }),
      );
      const readyBy = Date.now() + 60_000;
      while (!outs.every((f) => existsSync(`${f}.ready`)) && Date.now() < readyBy) await new Promise((r) => setTimeout(r, 50));
      expect(outs.map((f) => existsSync(`${f}.ready`))).toEqual([true, true]);
      writeFileSync(`${go}.tmp`, String(Date.now() + 300));
      renameSync(`${go}.tmp`, go); // whole, never read half-written
      expect(await Promise.all(exits)).toEqual([0, 0]);
      const lines = outs.flatMap((f) => (existsSync(f) ? readFileSync(f, "utf8").trim().split("\n").filter(Boolean) : []));
      const kills = lines.filter((l) => l.startsWith("kill "));
      const runs = lines.filter((l) => l.startsWith("run "));
      expect(kills).toHaveLength(5);
      expect(new Set(kills.map((l) => localTime(Number(l.split(" ")[2]), NY).date)).size).toBe(5);
      expect(runs).toHaveLength(10);
      expect(new Set(runs.map((l) => l.split(" ")[2])).size).toBe(10);
      expect(runs.every((l) => l.startsWith(`run schedule:${exp.id} `))).toBe(true);
      expect(slotsOf(store, monkey.id).slice(0, 5).map((sl) => sl.outcome)).toEqual(["killed", "killed", "killed", "killed", "killed"]);
      expect(slotsOf(store, exp.id).filter((sl) => sl.outcome === "started")).toHaveLength(10);
      // Both processes did act: neither simply sat it out.
      expect(outs.every((f) => existsSync(f))).toBe(true);
    }, 60_000);
  });
});
