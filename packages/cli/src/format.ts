/** Terminal rendering: tables, relative times, labels and measurements. */
import { formatDuration } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";

/** What an empty cell shows. */
export const EMPTY = "-";

/** Renders rows under headers, columns separated by two spaces; the last column is not padded. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    headers
      .map((_, i) => {
        const cell = cells[i] ?? "";
        return i === headers.length - 1 ? cell : cell.padEnd(widths[i] ?? 0);
      })
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** A time relative to `now`: `just now`, `42s ago`, `5m ago`, `3h ago`, `2d ago`, `in 30s`; `-` when absent. */
export function formatRelativeTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return EMPTY;
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return EMPTY;
  const delta = now - at;
  const abs = Math.abs(delta);
  if (abs < 1000) return "just now";
  let text: string;
  if (abs < 60_000) text = `${Math.floor(abs / 1000)}s`;
  else if (abs < 3_600_000) text = `${Math.floor(abs / 60_000)}m`;
  else if (abs < 86_400_000) text = `${Math.floor(abs / 3_600_000)}h`;
  else text = `${Math.floor(abs / 86_400_000)}d`;
  return delta >= 0 ? `${text} ago` : `in ${text}`;
}

/** `app=web,tier=front`, sorted by key; `-` when empty. */
export function formatLabels(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(",") : EMPTY;
}

function round(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** Short measurements: `cpu_percent=79.5 cores=2`; `-` when there are none. */
export function formatMeasurements(measurements: Record<string, number> | null | undefined): string {
  const entries = Object.entries(measurements ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${round(v)}`).join(" ") : EMPTY;
}

/** Fault parameters as `load=50 cores=all`; `-` when there are none. */
export function formatParams(params: JsonObject): string {
  const entries = Object.entries(params);
  return entries.length
    ? entries.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")
    : EMPTY;
}

/** A fault's duration, e.g. `30s`, `1h30m`. */
export function formatFaultDuration(ms: number): string {
  return formatDuration(ms);
}

/** A state with its reason: `reverted (stopped)`, `running`. */
export function formatState(state: string, reason: string | null): string {
  return reason ? `${state} (${reason})` : state;
}

/** The fields of a fault that say how it is or how it ended. */
export interface FaultStatus {
  state: string;
  reason: string | null;
  error: string | null;
  endedAt: string | null;
  stopRequestedAt?: string | null;
}

/** The first line of a text, cut to `max` characters. */
export function clipLine(text: string, max: number): string {
  const line = text.split("\n", 1)[0] ?? "";
  return line.length > max || line.length < text.length ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * A fault's state for a table: `running`, `running (stopping)` while a stop is not confirmed,
 * `REVERT FAILED` (the effect may still be on the host), `reverted`.
 */
export function formatFaultState(f: FaultStatus): string {
  if (f.state === "revert_failed") return "REVERT FAILED";
  if (f.endedAt === null && f.stopRequestedAt) return `${f.state} (stopping)`;
  return f.state;
}

/**
 * Why a fault is where it is, for a table: the revert reason; for a refused or failed fault, and a
 * revert that failed, the error (first line, cut to `max`); `-` when there is none.
 */
export function formatFaultReason(f: FaultStatus, max = 60): string {
  if ((f.state === "failed" || f.state === "revert_failed") && f.error) return clipLine(f.error, max);
  return f.reason ?? (f.error ? clipLine(f.error, max) : EMPTY);
}
