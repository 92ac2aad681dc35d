/**
 * network-blackhole: drops every packet to (egress) and/or from (ingress) the destinations and
 * remote ports asked for, with an nftables table owned by firedrill. The control plane, IMDS and DNS
 * are always accepted first, so the agent's lease keeps flowing. See nft-fault.ts and nft-plan.ts.
 */
import { parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind } from "@firedrill/protocol";
import { createNftFaultKind } from "./nft-fault.js";
import type { NftFaultOptions, NftFaultPlan } from "./nft-fault.js";
import type { FaultKindDefinition } from "./types.js";

type NetworkBlackholeParams = FaultParamsByKind["network-blackhole"];

/** Creates the network-blackhole kind. */
export function createNetworkBlackhole(options: NftFaultOptions = {}): FaultKindDefinition<NftFaultPlan<NetworkBlackholeParams>> {
  return createNftFaultKind<NetworkBlackholeParams>({
    kind: "network-blackhole",
    parse: (params) => parseFaultParams("network-blackhole", params),
    action: () => ({ kind: "blackhole" }),
    measurements: (_p, c) => ({ packets_dropped: c.dropped }),
    options,
  });
}

/** The network-blackhole fault kind. */
export const networkBlackhole: FaultKindDefinition<NftFaultPlan<NetworkBlackholeParams>> = createNetworkBlackhole();
