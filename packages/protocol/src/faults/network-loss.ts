import type { ParamReader } from "../params.js";
import { readDestinations, readDirection, readPorts } from "./net-params.js";
import type { CidrBlock, NetworkDirection } from "./net-params.js";

/** Parameters of `network-loss`. */
export interface NetworkLossParams {
  /** Percent of the matching packets to drop, 1-100. */
  percent: number;
  /** Only traffic with these remote blocks; all traffic when absent. */
  destinations?: CidrBlock[];
  /** Only traffic with these remote TCP/UDP ports; all traffic when absent. */
  ports?: number[];
  /** Outgoing packets, incoming packets, or both. @default "egress" */
  direction: NetworkDirection;
}

/** At most this many destinations and ports (nftables sets). */
export const NFT_FAULT_LIMITS = { destinations: 64, ports: 32 } as const;

/** Reads network-loss parameters; problems are collected by the reader. */
export function parseNetworkLossParams(reader: ParamReader): NetworkLossParams {
  const percent = reader.number("percent", { min: 1, max: 100, integer: true, unit: "%" });
  const destinations = readDestinations(reader, { max: NFT_FAULT_LIMITS.destinations });
  const ports = readPorts(reader, { max: NFT_FAULT_LIMITS.ports });
  const direction = readDirection(reader, "egress");
  reader.rejectUnknown("network-loss", ["percent", "destinations", "ports", "direction"]);
  return {
    percent: percent ?? 0,
    ...(destinations ? { destinations } : {}),
    ...(ports ? { ports } : {}),
    direction,
  };
}
