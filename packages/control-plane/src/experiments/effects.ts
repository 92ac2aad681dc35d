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

/** What dns-fault acted on, from its params: "NXDOMAIN for *.payments.internal". */
function dnsFaultTarget(params: Readonly<Record<string, unknown>> | undefined): string | undefined {
  if (!params) return undefined;
  const raw = typeof params.mode === "string" ? params.mode.toLowerCase() : "nxdomain";
  const mode = raw === "servfail" ? "SERVFAIL" : raw === "timeout" ? "no answer" : "NXDOMAIN";
  const list = Array.isArray(params.domains) ? params.domains : typeof params.domains === "string" ? params.domains.split(",") : [];
  const domains = list.filter((d): d is string => typeof d === "string").map((d) => d.trim()).filter((d) => d !== "");
  const names = domains.length === 0 || domains.includes("*") ? "every name" : domains.length <= 3 ? domains.join(", ") : `${domains.slice(0, 3).join(", ")} and ${domains.length - 3} more`;
  return `${mode} for ${names}`;
}

/**
 * The effect of a fault of `kind` on its host in one line, from its measurements over time
 * (`series`, oldest first; the last point is the latest the agent reported) and, for kinds whose
 * line names what was asked (dns-fault), its `params`. "no measurement reported" when there is none.
 */
export function describeEffect(kind: string, series: readonly MeasurementPoint[], params?: Readonly<Record<string, unknown>>): string {
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
    case "memory-stress": {
      // The most the hold reached, and the least memory the host had left meanwhile.
      const held = max(valuesOf(series, "held_mib"));
      if (held === undefined) break;
      const asked = lastOf("asked_mib");
      const target = lastOf("target_mib");
      const available = valuesOf(series, "available_mib");
      const released = lastOf("released_mib");
      const cap = asked !== undefined && target !== undefined && target < asked ? `, capped to ${num(Math.round(target))} by the reserve` : "";
      return (
        `held ${num(Math.round(held))} MiB${asked !== undefined ? ` (asked ${num(Math.round(asked))}${cap})` : ""}` +
        `${available.length > 0 ? `, ${num(Math.round(Math.min(...available)))} MiB still available` : ""}` +
        `${released ? `, ${num(Math.round(released))} MiB given back to keep the reserve` : ""}`
      );
    }
    case "io-stress": {
      // The mix as it ran: its median throughput and p99, the file's lay-out left out.
      const mixing = series.filter((p) => p.m.laying_out === 0);
      const mbps = median(valuesOf(mixing, "mbps_achieved"));
      if (mbps === undefined) break;
      const asked = lastOf("mbps_asked");
      const read = median(valuesOf(mixing, "read_mbps"));
      const write = median(valuesOf(mixing, "write_mbps"));
      const p99 = median(valuesOf(mixing, "p99_ms"));
      const split = read !== undefined && write !== undefined ? `: ${num(read)} read, ${num(write)} write` : "";
      return `io ${num(mbps)} MB/s (${asked !== undefined ? `asked ${num(asked)}` : "asked max"}${split})${p99 !== undefined ? `, p99 ${num(p99)} ms per block` : ""}`;
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
    case "dns-fault": {
      // "NXDOMAIN for *.payments.internal: 12 queries answered with the fault, 30 forwarded"
      const faulted = lastOf("queries_faulted");
      if (faulted === undefined) break;
      const forwarded = lastOf("queries_forwarded") ?? 0;
      const errors = lastOf("forward_errors");
      const target = dnsFaultTarget(params);
      const unanswered = target?.startsWith("no answer") === true;
      const what = `${count(faulted, "query", "queries")} ${unanswered ? "left unanswered" : target ? "answered with the fault" : "faulted"}`;
      return `${target ? `${target}: ` : ""}${what}, ${num(forwarded)} forwarded${errors ? ` (${count(errors, "forward", "forwards")} failed)` : ""}`;
    }
    case "network-bandwidth": {
      // "limited to 10 Mbit/s, up to 9.6 Mbit/s achieved, 48.2 MB sent through the limit, 12 packets dropped by its queue"
      const asked = lastOf("rate_asked_mbit");
      if (asked === undefined) break;
      const peak = max(valuesOf(series, "rate_achieved_mbit"));
      const sent = lastOf("sent_bytes");
      const drops = lastOf("dropped_packets");
      const bytes = sent === undefined ? "" : sent >= 1e6 ? `, ${num(sent / 1e6)} MB sent through the limit` : `, ${num(sent / 1e3)} kB sent through the limit`;
      return `limited to ${num(asked)} Mbit/s${peak !== undefined ? `, up to ${num(peak)} Mbit/s achieved` : ""}${bytes}${drops ? `, ${count(drops, "packet", "packets")} dropped by its queue` : ""}`;
    }
    case "network-reject": {
      // "35 packets rejected (30 TCP resets, 5 UDP answered with ICMP)"
      const rejected = lastOf("packets_rejected");
      if (rejected === undefined) break;
      const tcp = lastOf("tcp_packets_reset");
      const udp = lastOf("udp_packets_rejected");
      const split = tcp !== undefined && udp !== undefined && rejected > 0 ? ` (${count(tcp, "TCP reset", "TCP resets")}, ${num(udp)} UDP answered with ICMP)` : "";
      return `${count(rejected, "packet", "packets")} rejected${split}`;
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
    case "service-stop": {
      // "fd-demo.service stopped; started again on revert", "web.service killed (SIGKILL); systemd restarted it 1 time"
      const wasActive = lastOf("was_active");
      if (wasActive === undefined) break;
      const unit = typeof params?.unit === "string" ? params.unit : "the unit";
      if (wasActive === 0) return `${unit} was not active: nothing stopped, left as it was`;
      const killed = params?.mode === "kill";
      const restarts = max(valuesOf(series, "restarts_seen")) ?? 0;
      const upDuring = valuesOf(series, "active").some((v) => v === 1);
      const what = killed ? `${unit} killed (SIGKILL)` : `${unit} stopped`;
      if (restarts > 0) return `${what}; systemd restarted it ${count(restarts, "time", "times")}; started again on revert if down`;
      if (upDuring) return `${what}, but up again during the fault (started by something else: a socket, a timer, a dependency, by hand); started again on revert if down`;
      return `${what}, down for the whole fault; started again on revert`;
    }
    default:
      break;
  }
  return formatMeasurementPairs(last);
}
