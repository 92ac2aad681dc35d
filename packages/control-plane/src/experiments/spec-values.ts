/**
 * Parsers for the small value languages of an experiment file: durations, days of the week, hour
 * ranges, time zones, dates, label terms and URLs. Each returns the parsed value or a message
 * saying what is wrong and what is allowed.
 */
import { formatDuration, MAX_FAULT_DURATION_MS, MIN_FAULT_DURATION_MS, parseDuration } from "@firedrill/protocol";

/** A parse result: the value, or a message for the user. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });

/** Longest text quoted whole in a message; longer text is shortened, with its length. */
const MAX_QUOTED = 60;

/**
 * Quotes text for a message (as JSON), shortened when long: `"aaaa…" (300000 characters)`, so a
 * message never repeats a huge value back.
 */
export function quote(text: string): string {
  if (text.length <= MAX_QUOTED) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, MAX_QUOTED - 12)).slice(0, -1)}…" (${text.length} characters)`;
}
const fail = (message: string): Parsed<never> => ({ ok: false, message });

/** Days of the week, in order, as written in windows. */
export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
/** A day of the week. */
export type Weekday = (typeof WEEKDAYS)[number];

/** The duration syntax, for JSON Schema: `500ms`, `30s`, `2m`, `1h30m`. */
export const DURATION_PATTERN = "^(\\d+(\\.\\d+)?(ms|s|m|h))+$";
/** Example durations for messages. */
export const DURATION_EXAMPLES = "e.g. 30s, 2m, 1h30m";

/**
 * Parses a duration with a unit (`30s`, `2m`, `1h30m`) and checks it against [min, max].
 * A bare number is refused: YAML `duration: 30` is ambiguous between seconds and milliseconds.
 */
export function parseDurationText(
  text: string,
  bounds: { min?: number; max?: number } = { min: MIN_FAULT_DURATION_MS, max: MAX_FAULT_DURATION_MS },
): Parsed<number> {
  const ms = new RegExp(DURATION_PATTERN).test(text.trim()) ? parseDuration(text) : undefined;
  if (ms === undefined) return fail(`${quote(text)} is not a duration; use a number with a unit (ms, s, m, h), ${DURATION_EXAMPLES}`);
  if (bounds.min !== undefined && ms < bounds.min) {
    return fail(`${text} is shorter than the minimum ${formatDuration(bounds.min)}`);
  }
  if (bounds.max !== undefined && ms > bounds.max) {
    return fail(`${text} is longer than the maximum ${formatDuration(bounds.max)}`);
  }
  return ok(ms);
}

function dayRange(term: string): Parsed<Weekday[]> {
  const allowed = `use day names (${WEEKDAYS.join(", ")}), ranges such as mon-fri, or lists such as sat,sun`;
  const parts = term.split("-").map((p) => p.trim().toLowerCase());
  const index = (d: string): number => WEEKDAYS.indexOf(d as Weekday);
  if (parts.length === 1) {
    const i = index(parts[0]!);
    return i < 0 ? fail(`${quote(term)} is not a day; ${allowed}`) : ok([WEEKDAYS[i]!]);
  }
  if (parts.length !== 2) return fail(`${quote(term)} is not a day range; ${allowed}`);
  const from = index(parts[0]!);
  const to = index(parts[1]!);
  if (from < 0 || to < 0) return fail(`${quote(term)} is not a day range; ${allowed}`);
  // A range may wrap around the week end: fri-mon is fri, sat, sun, mon.
  const days: Weekday[] = [];
  for (let i = from; ; i = (i + 1) % 7) {
    days.push(WEEKDAYS[i]!);
    if (i === to) break;
  }
  return ok(days);
}

/** Parses days of the week: `mon-fri`, `sat,sun`, or a list of such terms. Result in week order. */
export function parseDays(input: string | readonly string[]): Parsed<Weekday[]> {
  const terms = (typeof input === "string" ? [input] : input).flatMap((t) => t.split(",")).map((t) => t.trim());
  if (terms.length === 0 || terms.some((t) => t === "")) {
    return fail(`${typeof input === "string" ? quote(input) : quote(input.join(","))} has an empty day; use e.g. mon-fri or sat,sun`);
  }
  const set = new Set<Weekday>();
  for (const term of terms) {
    const parsed = dayRange(term);
    if (!parsed.ok) return parsed;
    for (const d of parsed.value) set.add(d);
  }
  return ok(WEEKDAYS.filter((d) => set.has(d)));
}

/** Formats days compactly: `mon-fri`, `sat,sun`, `mon,wed-fri`. */
export function formatDays(days: readonly string[]): string {
  const idx = WEEKDAYS.map((d, i) => (days.includes(d) ? i : -1)).filter((i) => i >= 0);
  if (idx.length === 7) return "every day";
  const runs: string[] = [];
  for (let k = 0; k < idx.length; ) {
    let end = k;
    while (end + 1 < idx.length && idx[end + 1] === idx[end]! + 1) end++;
    const span = end - k + 1;
    if (span >= 3) runs.push(`${WEEKDAYS[idx[k]!]}-${WEEKDAYS[idx[end]!]}`);
    else for (let j = k; j <= end; j++) runs.push(WEEKDAYS[idx[j]!]!);
    k = end + 1;
  }
  return runs.join(",");
}

/** The hour-range syntax, for JSON Schema. */
export const HOURS_PATTERN = "^\\d{2}:\\d{2}-\\d{2}:\\d{2}$";

/** Parses `HH:MM-HH:MM` into minutes since midnight, [start, end). `24:00` may end a range. */
export function parseHours(text: string): Parsed<{ startMinute: number; endMinute: number }> {
  const m = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(text.trim());
  const hint = `use HH:MM-HH:MM in 24-hour time, e.g. "10:00-16:00"`;
  if (!m) return fail(`${quote(text)} is not an hour range; ${hint}`);
  const [h1, m1, h2, m2] = m.slice(1).map(Number) as [number, number, number, number];
  const start = h1 * 60 + m1;
  const end = h2 * 60 + m2;
  if (h1 > 23 || m1 > 59 || m2 > 59 || h2 > 24 || (h2 === 24 && m2 !== 0)) {
    return fail(`${quote(text)} has a time that does not exist; ${hint} (00:00 to 24:00)`);
  }
  if (start >= end) {
    return fail(
      `${quote(text)} ends before it starts; a window must start before it ends on the same day (for a window across midnight, use two windows: "22:00-24:00" and "00:00-06:00")`,
    );
  }
  return ok({ startMinute: start, endMinute: end });
}

/** Formats minutes since midnight as HH:MM. */
export function formatMinute(minute: number): string {
  return `${String(Math.floor(minute / 60)).padStart(2, "0")}:${String(minute % 60).padStart(2, "0")}`;
}

/** Whether `tz` is an IANA time zone this runtime knows. */
export function isValidTimeZone(tz: string): boolean {
  if (tz.trim() === "") return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Checks an IANA time zone name. */
export function parseTimeZone(tz: string): Parsed<string> {
  return isValidTimeZone(tz)
    ? ok(tz)
    : fail(`${quote(tz)} is not a known IANA time zone; use a name such as UTC, Europe/Berlin or America/New_York`);
}

/** The date syntax, for JSON Schema. */
export const DATE_PATTERN = "^\\d{4}-\\d{2}-\\d{2}$";

/** Checks a calendar date written YYYY-MM-DD. */
export function parseDate(text: string): Parsed<string> {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return fail(`${quote(text)} is not a date; use YYYY-MM-DD, e.g. "2026-12-24"`);
  const [y, mo, d] = m.slice(1).map(Number) as [number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) {
    return fail(`${quote(text)} is not a day of the calendar; use YYYY-MM-DD, e.g. "2026-12-24"`);
  }
  return ok(text);
}

/** Checks an http(s) URL. */
export function parseHttpUrl(text: string): Parsed<string> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(`${quote(text)} is not a URL; use an absolute http(s) URL such as "http://web.internal/health"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return fail(`${quote(text)} uses ${url.protocol.slice(0, -1)}; only http and https URLs are allowed`);
  }
  if (url.hostname === "") return fail(`${quote(text)} has no host; use e.g. "http://web.internal/health"`);
  return ok(text);
}

/** A label term: `key=value`, or (for exclusions) `key` for any value. */
export interface LabelTerm {
  key: string;
  /** Undefined when any value matches. */
  value?: string;
}

/** Parses `key=value` (and, when `keyOnly` is allowed, `key`). */
export function parseLabelTerm(text: string, opts: { keyOnly: boolean }): Parsed<LabelTerm> {
  const hint = opts.keyOnly ? `use key=value (e.g. "tier=db") or a key alone for any value (e.g. "pci")` : `use key=value, e.g. "firedrill:opt-in=true"`;
  const eq = text.indexOf("=");
  if (eq < 0) {
    if (opts.keyOnly && /^\S+$/.test(text)) return ok({ key: text });
    return fail(`${quote(text)} is not a label; ${hint}`);
  }
  const key = text.slice(0, eq);
  const value = text.slice(eq + 1);
  if (!/^\S+$/.test(key) || !/^[^\s=]+$/.test(value)) return fail(`${quote(text)} is not a label; ${hint}`);
  return ok({ key, value });
}

/** Whether labels carry a term (`key=value`, or `key` with any value). */
export function hasLabel(labels: Readonly<Record<string, string>>, term: string): boolean {
  const eq = term.indexOf("=");
  if (eq < 0) return Object.hasOwn(labels, term);
  const key = term.slice(0, eq);
  return Object.hasOwn(labels, key) && labels[key] === term.slice(eq + 1);
}

/** The AWS region syntax, for JSON Schema: `eu-west-1`, `us-gov-west-1`. */
export const AWS_REGION_PATTERN = "^[a-z]{2}(-[a-z]+)+-\\d+$";

/** Checks an AWS region name (syntax only: AWS answers for whether it exists). */
export function parseAwsRegion(text: string): Parsed<string> {
  return new RegExp(AWS_REGION_PATTERN).test(text) ? ok(text) : fail(`${quote(text)} is not an AWS region; use a region name such as eu-west-1 or us-east-2`);
}

/** The EC2 instance id syntax, for JSON Schema: `i-` and 8 or 17 hex digits. */
export const INSTANCE_ID_PATTERN = "^i-([0-9a-f]{8}|[0-9a-f]{17})$";

/** Checks an EC2 instance id. */
export function parseInstanceId(text: string): Parsed<string> {
  return new RegExp(INSTANCE_ID_PATTERN).test(text) ? ok(text) : fail(`${quote(text)} is not an EC2 instance id; use i- and 8 or 17 hex digits, e.g. i-0abc123def4567890`);
}

/** Parses an EC2 tag term: `key=value`, or (for exclusions) `key` for any value. */
export function parseTagTerm(text: string, opts: { keyOnly: boolean }): Parsed<LabelTerm> {
  const parsed = parseLabelTerm(text, opts);
  return parsed.ok ? parsed : fail(parsed.message.replace(" is not a label;", " is not a tag;"));
}
