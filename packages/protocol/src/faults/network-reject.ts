import type { ParamReader } from "../params.js";
import { readDestinations, readDirection, readPorts } from "./net-params.js";
import type { CidrBlock, NetworkDirection } from "./net-params.js";
import { NFT_FAULT_LIMITS } from "./network-loss.js";

/** The ICMP answer network-reject gives non-TCP packets (nftables `reject with icmpx type …`). */
export type RejectWith = "port-unreachable" | "admin-prohibited" | "host-unreachable" | "no-route";
/** The allowed `with` values. */
export const REJECT_WITH: readonly RejectWith[] = ["port-unreachable", "admin-prohibited", "host-unreachable", "no-route"];

/** Parameters of `network-reject`. */
export interface NetworkRejectParams {
  /** Only traffic with these remote blocks; all traffic when absent. */
  destinations?: CidrBlock[];
  /** Only traffic with these remote TCP/UDP ports; all traffic when absent. */
  ports?: number[];
  /** Outgoing packets, incoming packets, or both. @default "egress" */
  direction: NetworkDirection;
  /** The ICMP error non-TCP packets get (TCP always gets a reset). @default "port-unreachable" */
  with: RejectWith;
}

/** Reads network-reject parameters; problems are collected by the reader. */
export function parseNetworkRejectParams(reader: ParamReader): NetworkRejectParams {
  const destinations = readDestinations(reader, { max: NFT_FAULT_LIMITS.destinations });
  const ports = readPorts(reader, { max: NFT_FAULT_LIMITS.ports });
  const direction = readDirection(reader, "egress");
  const answer = (reader.string("with", { oneOf: REJECT_WITH, default: "port-unreachable" }) ?? "port-unreachable") as RejectWith;
  reader.rejectUnknown("network-reject", ["destinations", "ports", "direction", "with"]);
  return {
    ...(destinations ? { destinations } : {}),
    ...(ports ? { ports } : {}),
    direction,
    with: answer,
  };
}
