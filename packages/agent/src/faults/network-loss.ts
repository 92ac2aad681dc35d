/**
 * network-loss: drops `percent` of the packets to (egress) and/or from (ingress) the destinations
 * and remote ports asked for, with an nftables table owned by firedrill (`numgen random mod 100`).
 * The control plane, IMDS and DNS are always accepted first. See nft-fault.ts and nft-plan.ts.
 */
import { parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind } from "@firedrill/protocol";
import { createNftFaultKind } from "./nft-fault.js";
import type { NftFaultOptions, NftFaultPlan } from "./nft-fault.js";
import type { FaultKindDefinition } from "./types.js";

type NetworkLossParams = FaultParamsByKind["network-loss"];

/** Creates the network-loss kind. */
export function createNetworkLoss(options: NftFaultOptions = {}): FaultKindDefinition<NftFaultPlan<NetworkLossParams>> {
  return createNftFaultKind<NetworkLossParams>({
    kind: "network-loss",
    parse: (params) => parseFaultParams("network-loss", params),
    action: (p) => ({ kind: "loss", percent: p.percent }),
    measurements: (p, c) => ({
      loss_percent_asked: p.percent,
      packets_matched: c.matched,
      packets_dropped: c.dropped,
      // What the drop rule actually did to the matching packets so far.
      loss_percent_measured: c.matched > 0 ? Math.round((c.dropped / c.matched) * 1000) / 10 : 0,
    }),
    options,
  });
}

/** The network-loss fault kind. */
export const networkLoss: FaultKindDefinition<NftFaultPlan<NetworkLossParams>> = createNetworkLoss();
