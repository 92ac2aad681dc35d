import type { ParamReader } from "../params.js";
import { INTERFACE_NAME, readDestinations, readPorts } from "./net-params.js";
import type { CidrBlock } from "./net-params.js";

/** Parameters of `network-delay`. */
export interface NetworkDelayParams {
  /** The device to delay traffic on; the default route's device when absent. */
  interface?: string;
  /** Added delay in milliseconds, 1-60000. */
  delayMs: number;
  /** Random variation of the delay, ± milliseconds, 0 to delayMs. @default 0 */
  jitterMs: number;
  /** How much each packet's jitter depends on the previous one's, percent 0-100. @default 0 */
  correlation: number;
  /** Only traffic to these blocks is delayed; all traffic when absent. */
  destinations?: CidrBlock[];
  /** Only traffic to these remote TCP/UDP ports is delayed; all ports when absent. */
  ports?: number[];
}

/** At most this many destinations, ports, and destination × port pairs (one tc filter pair each). */
export const NETWORK_DELAY_LIMITS = { destinations: 32, ports: 16, pairs: 64 } as const;

/** Reads network-delay parameters; problems are collected by the reader. */
export function parseNetworkDelayParams(reader: ParamReader): NetworkDelayParams {
  const iface = reader.string("interface", { pattern: INTERFACE_NAME, patternHint: "a network interface name such as eth0 or ens5" });
  const delayMs = reader.number("delayMs", { min: 1, max: 60_000, integer: true, unit: " ms" });
  const jitterMs = reader.number("jitterMs", { min: 0, max: 60_000, integer: true, unit: " ms", default: 0 });
  const correlation = reader.number("correlation", { min: 0, max: 100, unit: "%", default: 0 });
  const destinations = readDestinations(reader, { max: NETWORK_DELAY_LIMITS.destinations });
  const ports = readPorts(reader, { max: NETWORK_DELAY_LIMITS.ports });
  if (delayMs !== undefined && jitterMs !== undefined && jitterMs > delayMs) {
    reader.fail("jitterMs", `${jitterMs} is more than delayMs ${delayMs}; the delay varies by ± jitterMs, so keep jitterMs at most delayMs`);
  }
  if (correlation !== undefined && correlation > 0 && jitterMs === 0) {
    reader.fail("correlation", `${correlation}% has no effect without jitter; set jitterMs too, or leave correlation out`);
  }
  const pairs = (destinations?.length ?? 1) * (ports?.length ?? 1);
  if (destinations && ports && pairs > NETWORK_DELAY_LIMITS.pairs) {
    reader.fail(
      "ports",
      `${destinations.length} destinations × ${ports.length} ports make ${pairs} filters; at most ${NETWORK_DELAY_LIMITS.pairs} destination × port pairs are allowed (use wider CIDRs or fewer ports)`,
    );
  }
  reader.rejectUnknown("network-delay", ["interface", "delayMs", "jitterMs", "correlation", "destinations", "ports"]);
  return {
    ...(iface !== undefined ? { interface: iface } : {}),
    delayMs: delayMs ?? 0,
    jitterMs: jitterMs ?? 0,
    correlation: correlation ?? 0,
    ...(destinations ? { destinations } : {}),
    ...(ports ? { ports } : {}),
  };
}
