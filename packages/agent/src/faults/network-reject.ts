/**
 * network-reject: refuses traffic to (egress) and/or from (ingress) the destinations and remote
 * ports asked for, with an nftables table owned by firedrill: TCP gets a reset (a connect fails at
 * once with "connection refused", not after a blackhole's timeout), UDP an ICMP error of type
 * `with` (port-unreachable by default); other protocols (ICMP, neighbour discovery) pass. The
 * control plane, IMDS, DNS, SSH and --management are always accepted first. Reverted like
 * network-loss and network-blackhole (nft-revert.ts). See nft-fault.ts and nft-plan.ts.
 */
import { parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind } from "@firedrill/protocol";
import { createNftFaultKind } from "./nft-fault.js";
import type { NftFaultOptions, NftFaultPlan } from "./nft-fault.js";
import { REJECT_COMMENTS } from "./nft-plan.js";
import type { FaultKindDefinition } from "./types.js";

type NetworkRejectParams = FaultParamsByKind["network-reject"];

/** Creates the network-reject kind. */
export function createNetworkReject(options: NftFaultOptions = {}): FaultKindDefinition<NftFaultPlan<NetworkRejectParams>> {
  return createNftFaultKind<NetworkRejectParams>({
    kind: "network-reject",
    parse: (params) => parseFaultParams("network-reject", params),
    action: (p) => ({ kind: "reject", with: p.with }),
    measurements: (_p, c) => ({
      packets_rejected: c.dropped,
      // TCP packets answered with a reset; UDP packets answered with the ICMP error.
      tcp_packets_reset: c.byComment[REJECT_COMMENTS.tcp] ?? 0,
      udp_packets_rejected: c.byComment[REJECT_COMMENTS.udp] ?? 0,
    }),
    options,
  });
}

/** The network-reject fault kind. */
export const networkReject: FaultKindDefinition<NftFaultPlan<NetworkRejectParams>> = createNetworkReject();
