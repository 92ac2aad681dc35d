/**
 * What a fault did to its host, in one line, from the measurements its agent reported (see each
 * kind's `measure()` in packages/agent/src/faults/): "cpu busy 81 % (asked 80 %)", "filled to 91 %",
 * "loss seen 30 %", "3 processes killed, 3 came back". A kind this control plane does not know is
 * described by its last measurements as `key=value`.
 */

/** Measurements at one moment. */
export interface MeasurementPoint {
  /** Epoch ms. */
  at: number;
  m: Record<string, number>;
}

/** Measurements listed for a kind without an effect line of its own. */
const SHOWN_MEASUREMENTS = 6;

function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v) ? String(v) : String(Math.round(v * 10) / 10);
}

function count(n: number, one: string, many: string): string {
  return `${num(n)} ${n === 1 ? one : many}`;
}

/** The values of `key` along the series (those that are numbers). */
function valuesOf(series: readonly MeasurementPoint[], key: string): number[] {
  const out: number[] = [];
  for (const p of series) {
    const v = p.m[key];
    if (typeof v === "number" && Number.isFinite(v)) out.push(v);
  }
  return out;
}

function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function max(values: readonly number[]): number | undefined {
  return values.length === 0 ? undefined : Math.max(...values);
}

/** `key=value` for up to six measurements, keys sorted. */
export function formatMeasurementPairs(m: Record<string, number>): string {
  return Object.keys(m)
    .sort()
    .slice(0, SHOWN_MEASUREMENTS)
    .map((k) => `${k}=${num(m[k]!)}`)
    .join(" ");
}

/**
 * The effect of a fault of `kind` on its host in one line, from its measurements over time
 * (`series`, oldest first; the last point is the latest the agent reported). "no measurement
 * reported" when there is none.
 */
export function describeEffect(kind: string, series: readonly MeasurementPoint[]): string {
  const last = series.at(-1)?.m;
  if (!last || Object.keys(last).length === 0) return "no measurement reported";
  const lastOf = (key: string): number | undefined => {
    const v = last[key];
    return typeof v === "number" && Number.isFinite(v) ? v : undefined;
  };
  switch (kind) {
    case "cpu-burn": {
      // The busy level the burn held (its median), not a first or last partial interval.
      const busy = median(valuesOf(series, "cpu_percent_selected"));
      const asked = lastOf("load_asked");
      if (busy === undefined) break;
      return `cpu busy ${num(busy)} %${asked !== undefined ? ` (asked ${num(asked)} %)` : ""}`;
    }
    case "disk-fill": {
      const filled = max(valuesOf(series, "usage_percent"));
      const target = lastOf("target_percent");
      if (filled === undefined) break;
      return `filled to ${num(filled)} %${target !== undefined ? ` (asked ${num(target)} %)` : ""}`;
    }
    case "network-loss": {
      const seen = lastOf("loss_percent_measured");
      if (seen === undefined) break;
      const asked = lastOf("loss_percent_asked");
      const dropped = lastOf("packets_dropped");
      const matched = lastOf("packets_matched");
      const packets = dropped !== undefined && matched !== undefined ? `, ${num(dropped)} of ${count(matched, "packet", "packets")} dropped` : "";
      return `loss seen ${num(seen)} %${asked !== undefined ? ` (asked ${num(asked)} %)` : ""}${packets}`;
    }
    case "network-blackhole": {
      const dropped = lastOf("packets_dropped");
      if (dropped === undefined) break;
      return `${count(dropped, "packet", "packets")} dropped`;
    }
    case "network-delay": {
      const delayed = lastOf("delayed_packets");
      if (delayed === undefined) break;
      const asked = lastOf("delay_ms_asked");
      const jitter = lastOf("jitter_ms_asked");
      const delay = asked !== undefined ? ` by ${num(asked)} ms${jitter ? ` ± ${num(jitter)} ms` : ""}` : "";
      const drops = lastOf("netem_drops");
      return `${count(delayed, "packet", "packets")} delayed${delay}${drops ? `, ${num(drops)} dropped by the queue` : ""}`;
    }
    case "process-kill": {
      const killed = lastOf("killed");
      if (killed === undefined) break;
      const back = lastOf("came_back");
      return `${count(killed, "process", "processes")} killed${back !== undefined ? `, ${num(back)} came back` : ""}`;
    }
    case "process-stop": {
      const stopped = max(valuesOf(series, "stopped"));
      if (stopped === undefined) break;
      const processes = lastOf("processes");
      const gone = lastOf("gone");
      return `${processes !== undefined ? `${num(stopped)} of ${count(processes, "process", "processes")}` : count(stopped, "process", "processes")} stopped${gone ? `, ${num(gone)} gone` : ""}`;
    }
    default:
      break;
  }
  return formatMeasurementPairs(last);
}
