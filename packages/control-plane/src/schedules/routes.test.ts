import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installErrorHandlers } from "../http/errors.js";
import { createAuditLog } from "../auth/audit.js";
import { createHostPolicy } from "../auth/hosts.js";
import { installAuth } from "../auth/http.js";
import { createIdentityStore } from "../auth/identity-store.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { registerScheduleRoutes } from "./routes.js";
import type { ScheduleJson, SlotJson } from "./routes.js";
import { createScheduler } from "./scheduler.js";
import type { Scheduler } from "./scheduler.js";

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

const NOW = Date.parse("2026-03-02T08:30:00Z"); // Monday 09:30 in Berlin

let dir: string;
let store: Store;
let scheduler: Scheduler;
let app: FastifyInstance;
let clock = NOW;
let auth: { authorization: string };

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "firedrill-schedule-routes-"));
  store = createStore({ dataDir: dir });
  clock = NOW;
  scheduler = createScheduler({
    db: store.db,
    runner: { start: () => ({ id: "run_000000000001" }) },
    policy: {},
    log: pino({ level: "silent" }),
    now: () => new Date(clock),
  });
  app = Fastify();
  installErrorHandlers(app);
  const identities = createIdentityStore(store.db);
  installAuth(app, { identities, audit: createAuditLog(store.db), hosts: createHostPolicy({ bindHost: "127.0.0.1" }), log: pino({ level: "silent" }) });
  auth = { authorization: `Bearer ${identities.createToken({ name: "sre@test", role: "operator", createdBy: "test" }, Date.now()).text}` };
  registerScheduleRoutes(app, { scheduler });
  await app.ready();
});

afterEach(async () => {
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(body: unknown) {
  const res = await app.inject({ method: "POST", url: "/api/v1/schedules", payload: body as object, headers: auth });
  return { status: res.statusCode, body: res.json() as { schedule: ScheduleJson; error: { code: string; message: string; issues: { field: string; message: string }[] } } };
}

const chaos = (extra: Record<string, unknown> = {}) => ({
  kind: "chaos-monkey",
  group: "web-asg",
  meanWorkdays: 2,
  minWorkdays: 1,
  window: "mon-fri 10:00-16:00",
  tz: "Europe/Berlin",
  leashed: true,
  ...extra,
});

describe("POST /api/v1/schedules: precise 400s", () => {
  it("a bad cron: the croner error and an example", async () => {
    const res = await post({ kind: "experiment", spec: EXPERIMENT, cron: "61 10 * * 1-5", tz: "Europe/Berlin" });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_schedule");
    expect(res.body.error.issues).toEqual([
      {
        field: "cron",
        message: `"61 10 * * 1-5" is not a valid cron expression: Invalid value for minute: 61; use 5 fields: minute hour day-of-month month day-of-week, e.g. "0 10 * * 1-5" (10:00 Monday to Friday)`,
      },
    ]);
    const six = await post({ kind: "experiment", spec: EXPERIMENT, cron: "0 0 10 * * 1", tz: "UTC" });
    expect(six.body.error.issues[0]!.message).toContain("requires exactly 5 parts");
    const never = await post({ kind: "experiment", spec: EXPERIMENT, cron: "0 10 30 2 *", tz: "UTC" });
    expect(never.body.error.issues[0]!.message).toContain("never matches a time");
  });

  it("a bad time zone, a bad window, minWorkdays above meanWorkdays, a bad region — all at once", async () => {
    const res = await post(chaos({ tz: "Europe/Berlinn", window: "mon-fry 10:00-16:00", minWorkdays: 3, region: "frankfurt" }));
    expect(res.status).toBe(400);
    expect(res.body.error.issues).toEqual([
      { field: "tz", message: `"Europe/Berlinn" is not a known IANA time zone; use a name such as UTC, Europe/Berlin or America/New_York` },
      { field: "region", message: `"frankfurt" is not an AWS region; use e.g. "eu-central-1" or leave it out for the SDK's default` },
      {
        field: "minWorkdays",
        message:
          "3 is more than meanWorkdays 2: the gap between kills can never be shorter than the minimum, so the mean cannot be below it; lower minWorkdays or raise meanWorkdays",
      },
      { field: "window", message: expect.stringContaining(`window days: "mon-fry" is not a day range`) },
    ]);
    expect(res.body.error.message).toMatch(/^invalid schedule: tz: .*; region: .*; minWorkdays: .*; window: /);
  });

  it("window shapes and hours", async () => {
    const noHours = await post(chaos({ window: "mon-fri" }));
    expect(noHours.body.error.issues).toEqual([
      { field: "window", message: `"mon-fri" is not a window; write the days, a space, then the hours, e.g. "mon-fri 10:00-16:00"` },
    ]);
    const backwards = await post(chaos({ window: "mon-fri 16:00-10:00" }));
    expect(backwards.body.error.issues[0]!.message).toContain("ends before it starts");
    const missing = await post(chaos({ window: undefined }));
    expect(missing.body.error.issues).toEqual([{ field: "window", message: `is required: the days and hours kills may happen in, e.g. "mon-fri 10:00-16:00"` }]);
  });

  it("numbers of workdays", async () => {
    const res = await post(chaos({ meanWorkdays: 0, minWorkdays: 1.5 }));
    expect(res.body.error.issues).toEqual([
      { field: "meanWorkdays", message: "0 is not allowed; use a number of workdays from 1 to 365" },
      { field: "minWorkdays", message: "1.5 is not allowed; use a whole number of workdays from 1 to 365" },
    ]);
    const missing = await post(chaos({ meanWorkdays: undefined }));
    expect(missing.body.error.issues).toEqual([{ field: "meanWorkdays", message: "is required (a number of workdays, at least 1)" }]);
  });

  it("the experiment is validated with parseExperiment, issues under spec.", async () => {
    const res = await post({ kind: "experiment", spec: EXPERIMENT.replace("load: 50", "load: 500"), cron: "0 10 * * 1-5", tz: "UTC" });
    expect(res.status).toBe(400);
    expect(res.body.error.issues).toEqual([{ field: "spec.steps[0].params.load", message: expect.stringContaining("500"), line: 9 }]);
  });

  it("kind, unknown fields and the body", async () => {
    const noKind = await post({ spec: EXPERIMENT });
    expect(noKind.body.error.issues).toEqual([
      { field: "kind", message: `is required; use "experiment" (an experiment at cron slots) or "chaos-monkey" (random terminations in an Auto Scaling group)` },
    ]);
    const unknown = await post({ kind: "experiment", spec: EXPERIMENT, cron: "0 10 * * *", tz: "UTC", group: "web-asg" });
    expect(unknown.body.error.issues).toEqual([
      { field: "group", message: "is not a field of an experiment schedule; allowed: kind, spec, cron, tz, name" },
    ]);
    const notObject = await app.inject({ method: "POST", url: "/api/v1/schedules", payload: "[1]", headers: { ...auth, "content-type": "application/json" } });
    expect(notObject.statusCode).toBe(400);
    expect(notObject.json().error.issues).toEqual([{ field: "body", message: "must be a JSON object with kind: experiment or chaos-monkey" }]);
    const missing = await post({ kind: "experiment" });
    expect(missing.body.error.issues.map((i) => `${i.field}: ${i.message}`)).toEqual(["tz: is required", "spec: is required", "cron: is required"]);
  });
});

describe("schedule routes", () => {
  it("create, list with next slots, show with slots, pause, resume, delete", async () => {
    const exp = await post({ kind: "experiment", spec: EXPERIMENT, cron: "0 10 * * 1-5", tz: "Europe/Berlin" });
    expect(exp.status).toBe(201);
    expect(exp.body.schedule).toMatchObject({
      id: expect.stringMatching(/^sch_[0-9a-f]{12}$/),
      kind: "experiment",
      name: "nightly-burn",
      state: "active",
      cron: "0 10 * * 1-5",
      tz: "Europe/Berlin",
      createdBy: "sre@test",
      nextSlot: { at: "2026-03-02T09:00:00.000Z" },
      lastSlot: null,
    });
    const monkey = await post(chaos());
    expect(monkey.status).toBe(201);
    expect(monkey.body.schedule).toMatchObject({
      kind: "chaos-monkey",
      name: "chaos-monkey web-asg",
      window: "mon-fri 10:00-16:00",
      group: "web-asg",
      region: null,
      meanWorkdays: 2,
      minWorkdays: 1,
      killChance: 0.5,
      leashed: true,
      cron: null,
      nextSlot: { at: "2026-03-02T09:00:00.000Z", note: expect.stringContaining("chance 1 in 2") },
    });

    const list = await app.inject({ method: "GET", url: "/api/v1/schedules", headers: auth });
    expect((list.json().schedules as ScheduleJson[]).map((s) => s.id)).toEqual([exp.body.schedule.id, monkey.body.schedule.id]);

    clock = Date.parse("2026-03-02T09:00:10Z");
    await scheduler.tick(new Date(clock));
    const shown = await app.inject({ method: "GET", url: `/api/v1/schedules/${exp.body.schedule.id}`, headers: auth });
    expect(shown.statusCode).toBe(200);
    const slots = shown.json().slots as SlotJson[];
    expect(slots).toEqual([
      {
        slot: "at:2026-03-02T09:00:00Z",
        plannedAt: "2026-03-02T09:00:00.000Z",
        outcome: "started",
        detail: "run run_000000000001 started for the slot at 2026-03-02T09:00:00Z",
        runId: "run_000000000001",
        instanceId: null,
        decidedAt: "2026-03-02T09:00:10.000Z",
      },
    ]);
    expect(shown.json().schedule.lastSlot).toEqual(slots[0]);
    expect(shown.json().schedule.nextSlot.at).toBe("2026-03-03T09:00:00.000Z");

    const paused = await app.inject({ method: "POST", url: `/api/v1/schedules/${exp.body.schedule.id}/pause`, headers: auth });
    expect(paused.json().schedule).toMatchObject({ state: "paused", nextSlot: null });
    const resumed = await app.inject({ method: "POST", url: `/api/v1/schedules/${exp.body.schedule.id}/resume`, headers: auth });
    expect(resumed.json().schedule).toMatchObject({ state: "active", activeSince: "2026-03-02T09:00:10.000Z" });

    const removed = await app.inject({ method: "DELETE", url: `/api/v1/schedules/${exp.body.schedule.id}`, headers: auth });
    expect(removed.json()).toEqual({ removed: { id: exp.body.schedule.id, name: "nightly-burn", kind: "experiment" } });
    const gone = await app.inject({ method: "GET", url: `/api/v1/schedules/${exp.body.schedule.id}`, headers: auth });
    expect(gone.statusCode).toBe(404);
    expect(gone.json().error).toEqual({
      code: "schedule_not_found",
      message: `schedule "${exp.body.schedule.id}" does not exist; list schedules with GET /api/v1/schedules (firedrill schedule list)`,
    });
    expect(store.db.prepare("SELECT COUNT(*) AS n FROM schedule_slots WHERE schedule_id = ?").get(exp.body.schedule.id)).toEqual({ n: 0 });
  });

  it("a bad slots query is a 400", async () => {
    const monkey = await post(chaos());
    const res = await app.inject({ method: "GET", url: `/api/v1/schedules/${monkey.body.schedule.id}?slots=0`, headers: auth });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.issues).toEqual([{ field: "query.slots", message: "must be a whole number from 1 to 1000" }]);
  });
});
