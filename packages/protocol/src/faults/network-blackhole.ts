import type { ParamReader } from "../params.js";
import { readDestinations, readDirection, readPorts } from "./net-params.js";
import type { CidrBlock, NetworkDirection } from "./net-params.js";
import { NFT_FAULT_LIMITS } from "./network-loss.js";

/** Parameters of `network-blackhole`. */
export interface NetworkBlackholeParams {
  /** Only traffic with these remote blocks; all traffic when absent. */
  destinations?: CidrBlock[];
  /** Only traffic with these remote TCP/UDP ports; all traffic when absent. */
  ports?: number[];
  /** Outgoing packets, incoming packets, or both. @default "egress" */
  direction: NetworkDirection;
}

/** Reads network-blackhole parameters; problems are collected by the reader. */
export function parseNetworkBlackholeParams(reader: ParamReader): NetworkBlackholeParams {
  const destinations = readDestinations(reader, { max: NFT_FAULT_LIMITS.destinations });
  const ports = readPorts(reader, { max: NFT_FAULT_LIMITS.ports });
  const direction = readDirection(reader, "egress");
  reader.rejectUnknown("network-blackhole", ["destinations", "ports", "direction"]);
  return {
    ...(destinations ? { destinations } : {}),
    ...(ports ? { ports } : {}),
    direction,
  };
}
