import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runCli } from "../program.js";
import { renderScheduleList } from "./schedule.js";
import type { ScheduleJson, SlotJson } from "@firedrill/control-plane";

/** A stand-in control plane: answers with `answer`, recording each request. */
let server: Server;
let url: string;
let answer: { status: number; body: unknown };
const asked: { method: string; url: string; body: unknown }[] = [];
let dir: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => (text += c.toString()));
    req.on("end", () => {
      asked.push({ method: req.method ?? "", url: req.url ?? "", body: text ? JSON.parse(text) : undefined });
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = mkdtempSync(join(tmpdir(), "firedrill-cli-schedule-"));
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  asked.length = 0;
});

async function cli(...args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(["node", "firedrill", "--server", url, ...args], { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const EXPERIMENT: ScheduleJson = {
  id: "sch_0123456789ab",
  kind: "experiment",
  name: "nightly-burn",
  state: "active",
  tz: "Europe/Berlin",
  cron: "0 10 * * 1-5",
  window: null,
  group: null,
  region: null,
  meanWorkdays: null,
  minWorkdays: null,
  killChance: null,
  leashed: null,
  createdBy: "sre@laptop",
  createdAt: "2026-03-02T08:30:00.000Z",
  updatedAt: "2026-03-02T08:30:00.000Z",
  activeSince: "2026-03-02T08:30:00.000Z",
  nextSlot: { at: "2026-03-03T09:00:00.000Z", note: "the experiment runs (if its guardrails allow it then)" },
  lastSlot: {
    slot: "at:2026-03-02T09:00:00Z",
    plannedAt: "2026-03-02T09:00:00.000Z",
    outcome: "started",
    detail: "run run_aaaaaaaaaaaa started for the slot at 2026-03-02T09:00:00Z",
    runId: "run_aaaaaaaaaaaa",
    instanceId: null,
    decidedAt: "2026-03-02T09:00:05.000Z",
  },
};

const MONKEY: ScheduleJson = {
  ...EXPERIMENT,
  id: "sch_ba9876543210",
  kind: "chaos-monkey",
  name: "chaos-monkey web-asg",
  tz: "America/New_York",
  cron: null,
  window: "mon-fri 10:00-16:00",
  group: "web-asg",
  region: "us-east-1",
  meanWorkdays: 2,
  minWorkdays: 1,
  killChance: 0.5,
  leashed: true,
  nextSlot: null,
  state: "paused",
  lastSlot: {
    slot: "day:2026-03-02",
    plannedAt: "2026-03-02T18:17:00.000Z",
    outcome: "would-kill",
    detail: "leashed: would have terminated i-0b (us-east-1a), one of 4 running in web-asg (us-east-1); nothing was killed",
    runId: null,
    instanceId: "i-0b",
    decidedAt: "2026-03-02T18:17:00.000Z",
  },
};

describe("firedrill schedule", () => {
  it("add FILE --cron --tz posts the experiment as written", async () => {
    const file = join(dir, "burn.yaml");
    writeFileSync(file, "apiVersion: firedrill/v1\nkind: Experiment\n");
    answer = { status: 201, body: { schedule: EXPERIMENT } };
    const run = await cli("schedule", "add", file, "--cron", "0 10 * * 1-5", "--tz", "Europe/Berlin");
    expect(run.code).toBe(0);
    expect(asked).toEqual([
      {
        method: "POST",
        url: "/api/v1/schedules",
        body: { kind: "experiment", spec: "apiVersion: firedrill/v1\nkind: Experiment\n", cron: "0 10 * * 1-5", tz: "Europe/Berlin" },
      },
    ]);
    expect(run.out).toMatch(/^schedule sch_0123456789ab created: nightly-burn at "0 10 \* \* 1-5" \(Europe\/Berlin\)\nnext slot: Tue 2026-03-03 10:00 Europe\/Berlin \(.*\): the experiment runs/);
  });

  it("chaos-monkey sends numbers and leashed; the API's issues name the flags", async () => {
    answer = { status: 201, body: { schedule: { ...MONKEY, state: "active" } } };
    const run = await cli(
      "schedule", "chaos-monkey", "--group", "web-asg", "--region", "us-east-1", "--mean-workdays", "2", "--min-workdays", "1",
      "--window", "mon-fri 10:00-16:00", "--tz", "America/New_York", "--leashed",
    );
    expect(run.code).toBe(0);
    expect(asked[0]!.body).toEqual({
      kind: "chaos-monkey",
      group: "web-asg",
      region: "us-east-1",
      meanWorkdays: 2,
      minWorkdays: 1,
      window: "mon-fri 10:00-16:00",
      tz: "America/New_York",
      leashed: true,
    });
    expect(run.out).toBe("schedule sch_ba9876543210 created: web-asg: mon-fri 10:00-16:00, mean 2 / min 1 workdays (America/New_York), leashed\n");

    answer = {
      status: 400,
      body: {
        error: {
          code: "invalid_schedule",
          message: "invalid schedule: minWorkdays: 3 is more than meanWorkdays 2; window: bad",
          issues: [
            { field: "minWorkdays", message: "3 is more than meanWorkdays 2: ..." },
            { field: "window", message: `"mon-fri" is not a window` },
          ],
        },
      },
    };
    const bad = await cli("schedule", "chaos-monkey", "--group", "g", "--mean-workdays", "2", "--min-workdays", "3", "--window", "mon-fri", "--tz", "UTC");
    expect(bad).toEqual({
      code: 1,
      out: "",
      err: `error: the control plane refused the schedule (2 problems)\n  --min-workdays: 3 is more than meanWorkdays 2: ...\n  --window: "mon-fri" is not a window\n`,
    });
  });

  it("spec issues point into the file, with their line", async () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "x: 1\n");
    answer = {
      status: 400,
      body: { error: { code: "invalid_schedule", message: "invalid schedule", issues: [{ field: "spec.steps[0].params.load", message: "500 is above 100", line: 9 }] } },
    };
    const run = await cli("schedule", "add", file, "--cron", "0 10 * * *", "--tz", "UTC");
    expect(run.err).toBe(`error: the control plane refused the schedule (1 problem)\n  ${file}: steps[0].params.load (line 9): 500 is above 100\n`);
  });

  it("missing flags are refused before anything is sent", async () => {
    const run = await cli("schedule", "chaos-monkey", "--group", "g");
    expect(run.code).toBe(1);
    expect(run.err).toContain("required option '--mean-workdays <n>' not specified");
    expect(asked).toEqual([]);
  });

  it("list: id, kind, name or group, cron or window, tz, state, next slot, last outcome; --json", async () => {
    answer = { status: 200, body: { schedules: [EXPERIMENT, MONKEY] } };
    const run = await cli("schedule", "list");
    expect(asked[0]).toMatchObject({ method: "GET", url: "/api/v1/schedules" });
    const lines = run.out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID +KIND +NAME +WHEN +TZ +STATE +NEXT SLOT +LAST OUTCOME$/);
    expect(lines[1]).toMatch(
      /^sch_0123456789ab +experiment +nightly-burn +0 10 \* \* 1-5 +Europe\/Berlin +active +Tue 2026-03-03 10:00 \(.+\) +started run_aaaaaaaaaaaa \(2026-03-02T09:00:00Z\)$/,
    );
    expect(lines[2]).toMatch(
      /^sch_ba9876543210 +chaos-monkey \(leashed\) +web-asg \(us-east-1\) +mon-fri 10:00-16:00, mean 2 \/ min 1 workdays +America\/New_York +paused +paused +would-kill i-0b \(2026-03-02\)$/,
    );
    expect(JSON.parse((await cli("schedule", "list", "--json")).out)).toEqual([EXPERIMENT, MONKEY]);
    answer = { status: 200, body: { schedules: [] } };
    expect((await cli("schedule", "list")).out).toContain("no schedules: add one with firedrill schedule add");
  });

  it("show: the schedule and its slots", async () => {
    const slots: SlotJson[] = [
      MONKEY.lastSlot!,
      { slot: "day:2026-02-27", plannedAt: "2026-02-27T15:00:00.000Z", outcome: "skipped", detail: "no kill today (rolled 0.731; a kill needs < 0.500, a chance of 1 in 2)", runId: null, instanceId: null, decidedAt: "2026-02-27T05:00:00.000Z" },
    ];
    answer = { status: 200, body: { schedule: MONKEY, slots } };
    const run = await cli("schedule", "show", "sch_ba9876543210", "--slots", "5");
    expect(asked[0]!.url).toBe("/api/v1/schedules/sch_ba9876543210?slots=5");
    expect(run.out).toContain("sch_ba9876543210  chaos-monkey web-asg  (chaos-monkey, paused)");
    expect(run.out).toContain("  group:     web-asg in us-east-1");
    expect(run.out).toContain("  window:    mon-fri 10:00-16:00 America/New_York");
    expect(run.out).toContain("  kills:     mean 2 workdays apart, at least 1; chance 1 in 2 on each eligible workday");
    expect(run.out).toContain("  leashed:   yes");
    expect(run.out).toContain("  next slot: none while paused (firedrill schedule resume)");
    expect(run.out).toMatch(/day:2026-03-02 +Mon 2026-03-02 13:17 +would-kill +i-0b +leashed: would have terminated i-0b/);
    expect(run.out).toMatch(/day:2026-02-27 +Fri 2026-02-27 10:00 +skipped +- +no kill today/);
    expect(JSON.parse((await cli("schedule", "show", "sch_ba9876543210", "--json")).out)).toEqual({ schedule: MONKEY, slots });
  });

  it("pause, resume, rm; an unknown id is the API's 404", async () => {
    answer = { status: 200, body: { schedule: { ...EXPERIMENT, state: "paused", nextSlot: null } } };
    expect((await cli("schedule", "pause", "sch_0123456789ab")).out).toBe("schedule sch_0123456789ab (nightly-burn) paused\n");
    answer = { status: 200, body: { schedule: EXPERIMENT } };
    expect((await cli("schedule", "resume", "sch_0123456789ab")).out).toBe(
      "schedule sch_0123456789ab (nightly-burn) resumed; next slot Tue 2026-03-03 10:00 Europe/Berlin\n",
    );
    answer = { status: 200, body: { removed: { id: "sch_0123456789ab", name: "nightly-burn", kind: "experiment" } } };
    expect((await cli("schedule", "rm", "sch_0123456789ab")).out).toBe("schedule sch_0123456789ab (nightly-burn) removed\n");
    expect(asked.map((a) => `${a.method} ${a.url}`)).toEqual([
      "POST /api/v1/schedules/sch_0123456789ab/pause",
      "POST /api/v1/schedules/sch_0123456789ab/resume",
      "DELETE /api/v1/schedules/sch_0123456789ab",
    ]);
    answer = { status: 404, body: { error: { code: "schedule_not_found", message: `schedule "sch_nope" does not exist; list schedules with GET /api/v1/schedules (firedrill schedule list)` } } };
    expect(await cli("schedule", "rm", "sch_nope")).toEqual({
      code: 1,
      out: "",
      err: `error: schedule "sch_nope" does not exist; list schedules with GET /api/v1/schedules (firedrill schedule list)\n`,
    });
  });

  it("renders relative next slots against a given now", () => {
    expect(renderScheduleList([EXPERIMENT], Date.parse("2026-03-03T08:00:00Z"))).toContain("Tue 2026-03-03 10:00 (in 1h)");
  });
});
