/**
 * Calendar arithmetic for schedules: Chaos-Monkey windows, local dates, workdays. Wall-clock time
 * in a zone comes from the guardrails' `localTime`, so windows mean the same thing to a schedule
 * as to an experiment's guardrails.
 */
import { localTime, zonedInstant } from "../experiments/guardrails.js";
import { formatDays, parseDays, parseHours, WEEKDAYS } from "../experiments/spec-values.js";
import type { Parsed } from "../experiments/spec-values.js";
import type { ChaosWindow } from "./types.js";

/** An example window, for messages. */
export const WINDOW_EXAMPLE = `"mon-fri 10:00-16:00"`;

/** A window with its hours as minutes since local midnight, [start, end). */
export interface ParsedWindow extends ChaosWindow {
  startMinute: number;
  endMinute: number;
}

/** Parses `DAYS HH:MM-HH:MM`, e.g. `mon-fri 10:00-16:00` or `mon,wed,fri 09:30-11:00`. */
export function parseWindow(text: string): Parsed<ParsedWindow> {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 2 || parts[0] === "" || parts[1] === undefined) {
    return {
      ok: false,
      message: `${JSON.stringify(text)} is not a window; write the days, a space, then the hours, e.g. ${WINDOW_EXAMPLE}`,
    };
  }
  const days = parseDays(parts[0]!);
  if (!days.ok) return { ok: false, message: `window days: ${days.message}` };
  const hours = parseHours(parts[1]);
  if (!hours.ok) return { ok: false, message: `window hours: ${hours.message}` };
  return {
    ok: true,
    value: { days: days.value, hours: parts[1], startMinute: hours.value.startMinute, endMinute: hours.value.endMinute },
  };
}

/** The minutes of a stored window. */
export function windowMinutes(window: ChaosWindow): ParsedWindow {
  const hours = parseHours(window.hours);
  if (!hours.ok) throw new Error(`stored window hours ${JSON.stringify(window.hours)} are invalid: ${hours.message}`);
  return { ...window, ...hours.value };
}

/** `mon-fri 10:00-16:00`. */
export function formatWindow(window: ChaosWindow): string {
  return `${formatDays(window.days)} ${window.hours}`;
}

const dayNumber = (date: string): number => Date.UTC(Number(date.slice(0, 4)), Number(date.slice(5, 7)) - 1, Number(date.slice(8, 10))) / 86_400_000;
const fromDayNumber = (n: number): string => new Date(n * 86_400_000).toISOString().slice(0, 10);

/** The calendar date `n` days after `date` (YYYY-MM-DD). */
export function addDays(date: string, n: number): string {
  return fromDayNumber(dayNumber(date) + n);
}

/** Days from `a` to `b` (b - a). */
export function daysBetween(a: string, b: string): number {
  return dayNumber(b) - dayNumber(a);
}

/** The day of the week of a calendar date: `mon`…`sun`. */
export function weekdayOf(date: string): string {
  // Day 0 of the epoch (1970-01-01) was a Thursday.
  const n = dayNumber(date);
  return WEEKDAYS[(((n + 3) % 7) + 7) % 7]!;
}

/** The local calendar date (YYYY-MM-DD) of an instant in `tz`. */
export function localDate(instant: Date | number, tz: string): string {
  return localTime(instant, tz).date;
}

/**
 * The instant at wall-clock `minute` (since local midnight) of `date` in `tz`. A wall time skipped
 * by a DST change resolves to the instant the same distance after the change.
 */
export function localInstant(date: string, minute: number, tz: string): number {
  const [year, month, day] = date.split("-").map(Number) as [number, number, number];
  return zonedInstant(year, month, day, minute, tz);
}

/** Which days count as workdays: the window's days, less the blackout dates. */
export interface Workdays {
  days: readonly string[];
  blackoutDates: ReadonlySet<string>;
}

/** Whether `date` is a day of the window (ignoring blackouts). */
export function isWindowDay(date: string, w: Workdays): boolean {
  return w.days.includes(weekdayOf(date));
}

/** Whether `date` is a workday: a day of the window that is not a blackout date. */
export function isWorkday(date: string, w: Workdays): boolean {
  return isWindowDay(date, w) && !w.blackoutDates.has(date);
}

/**
 * Workdays after `from` up to and including `to`: how many workdays ago `from` was, seen from
 * `to`. Counting stops at `cap` (the answer is then at least `cap`).
 */
export function workdaysSince(from: string, to: string, w: Workdays, cap = Number.POSITIVE_INFINITY): number {
  let count = 0;
  const span = daysBetween(from, to);
  for (let i = 1; i <= span && count < cap; i++) if (isWorkday(addDays(from, i), w)) count++;
  return count;
}

/** Whether `instant` falls inside a guardrail window (its days and hours, in its zone). */
export function insideWindow(window: { days: readonly string[]; startMinute: number; endMinute: number; tz: string }, instant: Date | number): boolean {
  const t = localTime(instant, window.tz);
  return window.days.includes(t.weekday) && t.minute >= window.startMinute && t.minute < window.endMinute;
}
