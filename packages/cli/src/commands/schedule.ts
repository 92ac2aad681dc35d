/**
 * `firedrill schedule`: experiments at cron slots and Chaos-Monkey terminations, kept by the
 * control plane. `add`, `chaos-monkey`, `list`, `show`, `pause`, `resume`, `rm`.
 */
import type { Command } from "commander";
import type { ScheduleJson, SlotJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { ApiRequestError, CliError } from "../errors.js";
import { EMPTY, formatRelativeTime, renderTable } from "../format.js";
import { segment } from "../http-client.js";
import { readExperimentFile } from "./experiment-io.js";

/** API field → the flag that sets it, so the API's issues name what the user typed. */
const FLAGS: Record<string, string> = {
  cron: "--cron",
  tz: "--tz",
  name: "--name",
  group: "--group",
  region: "--region",
  meanWorkdays: "--mean-workdays",
  minWorkdays: "--min-workdays",
  window: "--window",
  leashed: "--leashed",
};

/** Posts a new schedule; the API's field names in errors become the flags. */
async function createSchedule(ctx: CommandContext, body: Record<string, unknown>, file?: string): Promise<ScheduleJson> {
  try {
    const { body: answer } = await ctx.client().post<{ schedule: ScheduleJson }>("/api/v1/schedules", body);
    return answer.schedule;
  } catch (err) {
    if (!(err instanceof ApiRequestError) || err.issues.length === 0) throw err;
    const rename = (field: string): string => {
      if (field.startsWith("spec.") && file) return `${file}: ${field.slice(5)}`;
      return FLAGS[field] ?? field;
    };
    const issues = err.issues.map((i) => ({ ...i, field: `${rename(i.field)}${(i as { line?: number }).line ? ` (line ${(i as { line?: number }).line})` : ""}` }));
    throw new ApiRequestError(err.status, err.code, `the control plane refused the schedule (${issues.length} ${issues.length === 1 ? "problem" : "problems"})`, issues);
  }
}

/** `2026-03-02 10:00 Europe/Berlin` for an ISO instant. */
export function formatZoned(isoTime: string, tz: string): string {
  const parts: Record<string, string> = {};
  const fmt = new Intl.DateTimeFormat("en-CA", {
    timeZone: tz,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    weekday: "short",
  });
  for (const p of fmt.formatToParts(new Date(isoTime))) parts[p.type] = p.value;
  return `${parts["weekday"]} ${parts["year"]}-${parts["month"]}-${parts["day"]} ${parts["hour"]}:${parts["minute"]}`;
}

/** What a schedule does, in one cell: the cron, or the window with the odds. */
function when(s: ScheduleJson): string {
  if (s.kind === "experiment") return s.cron ?? EMPTY;
  return `${s.window ?? EMPTY}, mean ${s.meanWorkdays} / min ${s.minWorkdays} workdays`;
}

function next(s: ScheduleJson, now: number): string {
  if (!s.nextSlot) return s.state === "paused" ? "paused" : EMPTY;
  return `${formatZoned(s.nextSlot.at, s.tz)} (${formatRelativeTime(s.nextSlot.at, now)})`;
}

function outcomeText(slot: SlotJson | null): string {
  if (!slot) return EMPTY;
  const what = slot.runId ?? slot.instanceId;
  return `${slot.outcome}${what ? ` ${what}` : ""} (${slot.slot.replace(/^(at|day):/, "")})`;
}

/** The `schedule list` table. */
export function renderScheduleList(schedules: readonly ScheduleJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "KIND", "NAME", "WHEN", "TZ", "STATE", "NEXT SLOT", "LAST OUTCOME"],
    schedules.map((s) => [
      s.id,
      s.kind === "chaos-monkey" && s.leashed ? "chaos-monkey (leashed)" : s.kind,
      s.kind === "chaos-monkey" ? `${s.group}${s.region ? ` (${s.region})` : ""}` : s.name,
      when(s),
      s.tz,
      s.state,
      next(s, now),
      outcomeText(s.lastSlot),
    ]),
  );
}

/** The `schedule show` text: the schedule, then its recent slots. */
export function renderSchedule(s: ScheduleJson, slots: readonly SlotJson[], now: number = Date.now()): string {
  const lines: string[] = [`${s.id}  ${s.name}  (${s.kind}, ${s.state})`];
  if (s.kind === "experiment") {
    lines.push(`  cron:      ${s.cron} in ${s.tz}`);
  } else {
    lines.push(`  group:     ${s.group}${s.region ? ` in ${s.region}` : " (the control plane's default region)"}`);
    lines.push(`  window:    ${s.window} ${s.tz}`);
    lines.push(
      `  kills:     mean ${s.meanWorkdays} workdays apart, at least ${s.minWorkdays}; chance ${s.killChance === null ? EMPTY : `1 in ${+(1 / s.killChance).toFixed(2)}`} on each eligible workday`,
    );
    if (s.leashed) lines.push("  leashed:   yes: each kill is checked against every guardrail and recorded as would-kill or refused; nothing is terminated");
  }
  lines.push(`  created:   ${formatZoned(s.createdAt, s.tz)} ${s.tz} by ${s.createdBy}`);
  lines.push(`  next slot: ${s.nextSlot ? `${formatZoned(s.nextSlot.at, s.tz)} ${s.tz} (${formatRelativeTime(s.nextSlot.at, now)}): ${s.nextSlot.note}` : s.state === "paused" ? "none while paused (firedrill schedule resume)" : EMPTY}`);
  lines.push("");
  if (slots.length === 0) {
    lines.push("no slots yet\n");
    return lines.join("\n");
  }
  lines.push(
    renderTable(
      ["SLOT", `PLANNED (${s.tz})`, "OUTCOME", "RUN/INSTANCE", "DETAIL"],
      slots.map((sl) => [sl.slot, formatZoned(sl.plannedAt, s.tz), sl.outcome, sl.runId ?? sl.instanceId ?? EMPTY, sl.detail ?? EMPTY]),
    ),
  );
  return lines.join("\n");
}

/** Parses a number flag, leaving anything else for the control plane to refuse precisely. */
function numberFlag(value: string): number | string {
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
}

function created(ctx: CommandContext, s: ScheduleJson, json: boolean | undefined): void {
  if (json) return printJson(ctx.io, s);
  const what = s.kind === "experiment" ? `${s.name} at "${s.cron}" (${s.tz})` : `${s.group}: ${when(s)} (${s.tz})${s.leashed ? ", leashed" : ""}`;
  ctx.io.out(`schedule ${s.id} created: ${what}\n`);
  if (s.nextSlot) ctx.io.out(`next slot: ${formatZoned(s.nextSlot.at, s.tz)} ${s.tz} (${formatRelativeTime(s.nextSlot.at)}): ${s.nextSlot.note}\n`);
}

/** Registers `schedule` and its subcommands. */
export function registerScheduleCommands(program: Command, ctx: CommandContext): void {
  const schedule = program
    .command("schedule")
    .description("run experiments at cron slots, or let Chaos-Monkey terminate instances on workdays (list, show, pause, resume, rm)");

  schedule
    .command("add")
    .description("run an experiment at every slot of a cron expression in a time zone (each slot at most once; missed slots are not run late)")
    .argument("<file>", "the experiment YAML")
    .requiredOption("--cron <expression>", `5 fields: minute hour day-of-month month day-of-week, e.g. "0 10 * * 1-5"`)
    .requiredOption("--tz <zone>", "the IANA time zone of the cron, e.g. Europe/Berlin")
    .option("--name <name>", "a name for the schedule (default: the experiment's metadata.name)")
    .option("--json", "print the schedule as JSON")
    .action(async (file: string, options: { cron: string; tz: string; name?: string; json?: boolean }) => {
      const spec = readExperimentFile(file);
      const s = await createSchedule(
        ctx,
        { kind: "experiment", spec, cron: options.cron, tz: options.tz, ...(options.name !== undefined ? { name: options.name } : {}) },
        file,
      );
      created(ctx, s, options.json);
    });

  schedule
    .command("chaos-monkey")
    .description(
      "terminate a random instance of an Auto Scaling group on some workdays: a kill with chance 1/(mean-min+1) on each eligible workday, at a random minute in the window",
    )
    .requiredOption("--group <name>", "the Auto Scaling group")
    .option("--region <region>", "the group's region (default: the control plane's)")
    .requiredOption("--mean-workdays <n>", "the mean number of workdays between kills, e.g. 2")
    .requiredOption("--min-workdays <n>", "the least number of workdays between kills in the group, e.g. 1")
    .requiredOption("--window <days hours>", `when kills may happen, e.g. "mon-fri 10:00-16:00"`)
    .requiredOption("--tz <zone>", "the IANA time zone of the window, e.g. America/New_York")
    .option("--leashed", "record what would be killed; kill nothing")
    .option("--name <name>", "a name for the schedule (default: chaos-monkey GROUP)")
    .option("--json", "print the schedule as JSON")
    .action(
      async (options: {
        group: string;
        region?: string;
        meanWorkdays: string;
        minWorkdays: string;
        window: string;
        tz: string;
        leashed?: boolean;
        name?: string;
        json?: boolean;
      }) => {
        const s = await createSchedule(ctx, {
          kind: "chaos-monkey",
          group: options.group,
          ...(options.region !== undefined ? { region: options.region } : {}),
          meanWorkdays: numberFlag(options.meanWorkdays),
          minWorkdays: numberFlag(options.minWorkdays),
          window: options.window,
          tz: options.tz,
          leashed: options.leashed ?? false,
          ...(options.name !== undefined ? { name: options.name } : {}),
        });
        created(ctx, s, options.json);
      },
    );

  schedule
    .command("list")
    .description("list schedules with their next slot and last outcome")
    .option("--json", "print the schedules as JSON")
    .action(async (options: { json?: boolean }) => {
      const { body } = await ctx.client().get<{ schedules: ScheduleJson[] }>("/api/v1/schedules");
      if (options.json) return printJson(ctx.io, body.schedules);
      if (body.schedules.length === 0) {
        return ctx.io.out("no schedules: add one with firedrill schedule add FILE --cron ... --tz ... or firedrill schedule chaos-monkey ...\n");
      }
      ctx.io.out(renderScheduleList(body.schedules));
    });

  schedule
    .command("show")
    .description("show a schedule and its recent slots (what ran, was skipped, missed, killed or refused, and why)")
    .argument("<id>", "the schedule (see firedrill schedule list)")
    .option("--slots <n>", "how many recent slots", "20")
    .option("--json", "print the schedule and its slots as JSON")
    .action(async (id: string, options: { slots: string; json?: boolean }) => {
      if (!/^\d+$/.test(options.slots)) throw new CliError(`--slots ${JSON.stringify(options.slots)} is not a number; use e.g. --slots 50`);
      const { body } = await ctx.client().get<{ schedule: ScheduleJson; slots: SlotJson[] }>(`/api/v1/schedules/${segment(id)}`, { slots: options.slots });
      if (options.json) return printJson(ctx.io, body);
      ctx.io.out(renderSchedule(body.schedule, body.slots));
    });

  for (const [verb, description, done] of [
    ["pause", "pause a schedule: no new slots until resumed (a Chaos-Monkey kill planned for later today is dropped)", "paused"],
    ["resume", "resume a paused schedule; slots that fell in the pause are not run", "resumed"],
  ] as const) {
    schedule
      .command(verb)
      .description(description)
      .argument("<id>", "the schedule (see firedrill schedule list)")
      .option("--json", "print the schedule as JSON")
      .action(async (id: string, options: { json?: boolean }) => {
        const { body } = await ctx.client().post<{ schedule: ScheduleJson }>(`/api/v1/schedules/${segment(id)}/${verb}`, {});
        if (options.json) return printJson(ctx.io, body.schedule);
        const s = body.schedule;
        ctx.io.out(`schedule ${s.id} (${s.name}) ${done}${s.nextSlot ? `; next slot ${formatZoned(s.nextSlot.at, s.tz)} ${s.tz}` : ""}\n`);
      });
  }

  schedule
    .command("rm")
    .description("remove a schedule and its slot history")
    .argument("<id>", "the schedule (see firedrill schedule list)")
    .option("--json", "print what was removed as JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      const { body } = await ctx.client().delete<{ removed: { id: string; name: string; kind: string } }>(`/api/v1/schedules/${segment(id)}`);
      if (options.json) return printJson(ctx.io, body.removed);
      ctx.io.out(`schedule ${body.removed.id} (${body.removed.name}) removed\n`);
    });

  schedule.exitOverride();
  for (const command of schedule.commands) command.exitOverride();
}
