import type { JsonValue } from "@bufbuild/protobuf";
import type { ParamReader } from "../params.js";
import { parseSize } from "./disk-fill.js";
import { INTERFACE_NAME, readDestinations, readPorts } from "./net-params.js";
import type { CidrBlock } from "./net-params.js";
import { NETWORK_DELAY_LIMITS } from "./network-delay.js";

/** Parameters of `network-bandwidth`. */
export interface NetworkBandwidthParams {
  /** The device to limit traffic on; the default route's device when absent. */
  interface?: string;
  /** The rate limit, in bits per second (from `rate`: "10mbit", "500kbit", "2mbps"). */
  rateBitsPerSecond: number;
  /** The text asked for, e.g. "10mbit". */
  rateText: string;
  /** How many bytes may leave at once at full speed (tc's burst); from the rate when absent. */
  burstBytes?: number;
  /** Only traffic to these blocks is limited; all traffic when absent. */
  destinations?: CidrBlock[];
  /** Only traffic to these remote TCP/UDP ports is limited; all ports when absent. */
  ports?: number[];
}

/** Bounds of `rate` (bits/s) and `burst` (bytes); destinations and ports as network-delay (tc filters). */
export const NETWORK_BANDWIDTH_LIMITS = {
  minRate: 8_000,
  maxRate: 100_000_000_000,
  minBurst: 1600,
  maxBurst: 64 * 1024 * 1024,
  ...NETWORK_DELAY_LIMITS,
} as const;

/** Rate units as tc reads them: `bit` units are bits/s, `bps` units BYTES/s; k, m, g are powers of 1000. */
const RATE_UNITS: Record<string, number> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

/** What a rate looks like, for error messages. */
export const RATE_HINT =
  "a rate such as 10mbit, 500kbit or 1gbit (bits per second), or 2mbps (BYTES per second, as tc reads it); k, m and g are powers of 1000";

/**
 * Parses a rate as tc does: a number and a unit, `bit`/`kbit`/`mbit`/`gbit` (bits per second) or
 * `bps`/`kbps`/`mbps`/`gbps` (bytes per second), case-insensitive, k/m/g powers of 1000. A bare
 * number is refused: without a unit it is ambiguous. Returns whole bits per second, or undefined.
 */
export function parseRate(value: JsonValue | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/.exec(value.trim());
  const unit = match ? RATE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) return undefined;
  const bits = Math.round(Number(match[1]) * unit);
  return Number.isFinite(bits) ? bits : undefined;
}

/** A rate in bits per second as people read it: "10 Mbit/s", "500 kbit/s", "1.5 Gbit/s". */
export function formatRate(bitsPerSecond: number): string {
  const units: [number, string][] = [
    [1e9, "Gbit/s"],
    [1e6, "Mbit/s"],
    [1e3, "kbit/s"],
  ];
  for (const [size, name] of units) {
    if (bitsPerSecond >= size) return `${Math.round((bitsPerSecond / size) * 1000) / 1000} ${name}`;
  }
  return `${bitsPerSecond} bit/s`;
}

/** Reads network-bandwidth parameters; problems are collected by the reader. */
export function parseNetworkBandwidthParams(reader: ParamReader): NetworkBandwidthParams {
  const iface = reader.string("interface", { pattern: INTERFACE_NAME, patternHint: "a network interface name such as eth0 or ens5" });
  const rawRate = reader.raw("rate");
  let rate: number | undefined;
  if (rawRate === undefined) reader.fail("rate", `is required; use ${RATE_HINT}`);
  else {
    rate = parseRate(rawRate);
    const { minRate, maxRate } = NETWORK_BANDWIDTH_LIMITS;
    if (rate === undefined) {
      reader.fail("rate", `${JSON.stringify(rawRate)} is not a rate; use ${RATE_HINT}`);
    } else if (rate < minRate || rate > maxRate) {
      reader.fail("rate", `${JSON.stringify(rawRate)} (${formatRate(rate)}) is out of range; use ${formatRate(minRate)} to ${formatRate(maxRate)}`);
      rate = undefined;
    }
  }
  const rawBurst = reader.raw("burst");
  let burst: number | undefined;
  if (rawBurst !== undefined) {
    burst = parseSize(rawBurst);
    const { minBurst, maxBurst } = NETWORK_BANDWIDTH_LIMITS;
    if (burst === undefined) {
      reader.fail("burst", `${JSON.stringify(rawBurst)} is not a size; use a number of bytes or a size such as 32KiB, 1MiB (KiB, MiB are powers of 1024; KB, MB of 1000)`);
    } else if (burst < minBurst || burst > maxBurst) {
      reader.fail("burst", `${JSON.stringify(rawBurst)} (${burst} bytes) is out of range; use ${minBurst} bytes (one full frame) to 64MiB`);
      burst = undefined;
    }
  }
  const destinations = readDestinations(reader, { max: NETWORK_BANDWIDTH_LIMITS.destinations });
  const ports = readPorts(reader, { max: NETWORK_BANDWIDTH_LIMITS.ports });
  const pairs = (destinations?.length ?? 1) * (ports?.length ?? 1);
  if (destinations && ports && pairs > NETWORK_BANDWIDTH_LIMITS.pairs) {
    reader.fail(
      "ports",
      `${destinations.length} destinations × ${ports.length} ports make ${pairs} filters; at most ${NETWORK_BANDWIDTH_LIMITS.pairs} destination × port pairs are allowed (use wider CIDRs or fewer ports)`,
    );
  }
  reader.rejectUnknown("network-bandwidth", ["rate", "burst", "interface", "destinations", "ports"]);
  return {
    ...(iface !== undefined ? { interface: iface } : {}),
    rateBitsPerSecond: rate ?? 0,
    rateText: typeof rawRate === "string" ? rawRate.trim() : "",
    ...(burst !== undefined ? { burstBytes: burst } : {}),
    ...(destinations ? { destinations } : {}),
    ...(ports ? { ports } : {}),
  };
}
