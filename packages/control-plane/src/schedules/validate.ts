/**
 * Checks a new schedule (the body of `POST /api/v1/schedules`) and says, per field, what is wrong
 * and what would be right.
 */
import { Cron } from "croner";
import { ApiError } from "../errors.js";
import type { Issue } from "../errors.js";
import { ExperimentSpecError, parseExperiment } from "../experiments/spec.js";
import { parseTimeZone } from "../experiments/spec-values.js";
import { parseWindow, WINDOW_EXAMPLE } from "./calendar.js";
import type { NewSchedule } from "./types.js";

/** An example cron, for messages. */
export const CRON_EXAMPLE = `"0 10 * * 1-5" (10:00 Monday to Friday)`;

const CRON_FORMAT = "5 fields: minute hour day-of-month month day-of-week";

const FIELDS = {
  experiment: ["kind", "spec", "cron", "tz", "name"],
  "chaos-monkey": ["kind", "group", "region", "meanWorkdays", "minWorkdays", "window", "tz", "leashed", "name"],
} as const;

/**
 * Builds the cron of an experiment schedule: 5 fields, in `tz`, day-of-month and day-of-week
 * combined with OR as in classic cron.
 * Thrown when the expression is invalid: the croner error.
 */
export function createCron(expression: string, tz: string): Cron {
  return new Cron(expression, { timezone: tz, mode: "5-part" });
}

/** Checks a cron expression in a zone; undefined when valid, else the message. */
export function checkCron(expression: string, tz: string, now: Date = new Date()): string | undefined {
  let cron: Cron;
  try {
    cron = createCron(expression, tz);
  } catch (err) {
    const reason = (err as Error).message.replace(/^CronPattern: /, "");
    return `${JSON.stringify(expression)} is not a valid cron expression: ${reason}; use ${CRON_FORMAT}, e.g. ${CRON_EXAMPLE}`;
  }
  if (cron.nextRun(now) === null) {
    return `${JSON.stringify(expression)} never matches a time (e.g. February 30th); use ${CRON_FORMAT}, e.g. ${CRON_EXAMPLE}`;
  }
  return undefined;
}

function fail(issues: Issue[]): never {
  throw new ApiError(
    400,
    "invalid_schedule",
    `invalid schedule: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`,
    issues,
  );
}

/**
 * An experiment spec already parsed off the event loop (the API parses it in the worker pool
 * before validating the schedule), keyed by its text.
 */
export interface ParsedScheduleSpec {
  text: string;
  result: { name: string } | { error: ExperimentSpecError };
}

/**
 * Checks a new schedule and returns it typed (with defaults: `leashed` false). An experiment's spec
 * is parsed here unless `parsed` holds the result for the same text.
 * Thrown when anything is wrong: ApiError 400 `invalid_schedule` with one issue per problem.
 */
export function validateNewSchedule(
  input: unknown,
  now: Date = new Date(),
  parsed?: ParsedScheduleSpec,
): NewSchedule & { experimentName?: string } {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    fail([{ field: "body", message: "must be a JSON object with kind: experiment or chaos-monkey" }]);
  }
  const b = input as Record<string, unknown>;
  if (b.kind !== "experiment" && b.kind !== "chaos-monkey") {
    fail([
      {
        field: "kind",
        message: `${b.kind === undefined ? "is required" : `${JSON.stringify(b.kind)} is not a schedule kind`}; use "experiment" (an experiment at cron slots) or "chaos-monkey" (random terminations in an Auto Scaling group)`,
      },
    ]);
  }
  const kind = b.kind;
  const issues: Issue[] = [];
  const allowed: readonly string[] = FIELDS[kind];
  for (const key of Object.keys(b)) {
    if (!allowed.includes(key) && b[key] !== undefined) {
      issues.push({ field: key, message: `is not a field of ${kind === "experiment" ? "an experiment" : "a chaos-monkey"} schedule; allowed: ${allowed.join(", ")}` });
    }
  }
  const str = (field: string, required: boolean, max = 200): string | undefined => {
    const v = b[field];
    if (v === undefined || v === null) {
      if (required) issues.push({ field, message: "is required" });
      return undefined;
    }
    if (typeof v !== "string" || v.trim() === "") {
      issues.push({ field, message: "must be a non-empty string" });
      return undefined;
    }
    if (v.length > max) {
      issues.push({ field, message: `is longer than ${max} characters` });
      return undefined;
    }
    // The experiment YAML is kept byte for byte; other fields lose stray spaces.
    return field === "spec" ? v : v.trim();
  };

  const name = str("name", false);
  const tzText = str("tz", true, 100);
  let tz: string | undefined;
  if (tzText !== undefined) {
    const parsed = parseTimeZone(tzText);
    if (parsed.ok) tz = parsed.value;
    else issues.push({ field: "tz", message: parsed.message });
  }

  if (kind === "experiment") {
    const spec = str("spec", true, 1_000_000);
    const cron = str("cron", true);
    let experimentName: string | undefined;
    if (spec !== undefined) {
      let result: ParsedScheduleSpec["result"];
      if (parsed?.text === spec) {
        result = parsed.result;
      } else {
        try {
          result = { name: parseExperiment(spec).metadata.name };
        } catch (err) {
          if (!(err instanceof ExperimentSpecError)) throw err;
          result = { error: err };
        }
      }
      if ("name" in result) {
        experimentName = result.name;
      } else {
        for (const i of result.error.issues) {
          issues.push({ field: `spec.${i.path}`, message: i.message, ...(i.line !== undefined ? { line: i.line } : {}) });
        }
      }
    }
    if (cron !== undefined && tz !== undefined) {
      const problem = checkCron(cron, tz, now);
      if (problem) issues.push({ field: "cron", message: problem });
    }
    if (issues.length > 0) fail(issues);
    return {
      kind,
      spec: spec!,
      cron: cron!,
      tz: tz!,
      ...(name !== undefined ? { name } : {}),
      ...(experimentName !== undefined ? { experimentName } : {}),
    };
  }

  const group = str("group", true, 255);
  const region = str("region", false, 50);
  if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    issues.push({ field: "region", message: `${JSON.stringify(region)} is not an AWS region; use e.g. "eu-central-1" or leave it out for the SDK's default` });
  }
  const number = (field: string, opts: { integer: boolean; min: number }): number | undefined => {
    const v = b[field];
    if (v === undefined || v === null) {
      issues.push({ field, message: `is required (${opts.integer ? "a whole number" : "a number"} of workdays, at least ${opts.min})` });
      return undefined;
    }
    if (typeof v !== "number" || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || v < opts.min || v > 365) {
      issues.push({
        field,
        message: `${JSON.stringify(v)} is not allowed; use ${opts.integer ? "a whole number" : "a number"} of workdays from ${opts.min} to 365`,
      });
      return undefined;
    }
    return v;
  };
  const meanWorkdays = number("meanWorkdays", { integer: false, min: 1 });
  const minWorkdays = number("minWorkdays", { integer: true, min: 1 });
  if (meanWorkdays !== undefined && minWorkdays !== undefined && minWorkdays > meanWorkdays) {
    issues.push({
      field: "minWorkdays",
      message: `${minWorkdays} is more than meanWorkdays ${meanWorkdays}: the gap between kills can never be shorter than the minimum, so the mean cannot be below it; lower minWorkdays or raise meanWorkdays`,
    });
  }
  let window: string | undefined;
  if (b.window === undefined || b.window === null) {
    issues.push({ field: "window", message: `is required: the days and hours kills may happen in, e.g. ${WINDOW_EXAMPLE}` });
  } else {
    const text = str("window", true);
    if (text !== undefined) {
      const parsed = parseWindow(text);
      if (parsed.ok) window = text;
      else issues.push({ field: "window", message: parsed.message });
    }
  }
  const leashed = b.leashed ?? false;
  if (typeof leashed !== "boolean") issues.push({ field: "leashed", message: "must be true or false" });
  if (issues.length > 0) fail(issues);
  return {
    kind,
    group: group!,
    ...(region !== undefined ? { region } : {}),
    meanWorkdays: meanWorkdays!,
    minWorkdays: minWorkdays!,
    window: window!,
    tz: tz!,
    leashed: leashed as boolean,
    ...(name !== undefined ? { name } : {}),
  };
}
