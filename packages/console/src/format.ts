/** Formatting shared by the pages and the report: times in local time, ISO-like. */

const pad = (n: number, w = 2): string => String(n).padStart(w, "0");

/** Epoch ms or ISO text, as a number (NaN when neither). */
export function toMs(t: number | string | null | undefined): number {
  if (t === null || t === undefined) return NaN;
  return typeof t === "number" ? t : Date.parse(t);
}

/** `2026-01-31 10:00:05` in local time; `—` when there is no time. */
export function fmtTime(t: number | string | null | undefined): string {
  const ms = toMs(t);
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `10:00:05.123`, local time of day with milliseconds (timelines). */
export function fmtClock(t: number | string | null | undefined): string {
  const ms = toMs(t);
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The local time zone as an offset, e.g. `UTC+01:00`. */
export function fmtZone(at: number = Date.now()): string {
  const off = -new Date(at).getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  return `UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

/** `1h 2m 3s`, `450 ms`. */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return [h ? `${h}h` : "", m ? `${m}m` : "", s || (!h && !m) ? `${s}s` : ""].filter(Boolean).join(" ");
}

/** A number for people: at most 3 significant decimals. */
export function fmtNumber(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (Number.isInteger(v)) return v.toLocaleString("en");
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

/** `3 hosts`, `1 host`. */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n.toLocaleString("en")} ${n === 1 ? one : many}`;
