/**
 * The revert half of every fault kind: how each is reverted from its journal record alone. What a
 * process that only reverts (the guard, see guard-bin.ts) loads instead of the full registry — no
 * fault parameter parsing, no host facts, no gRPC. Each kind's `revertRecord` in the full registry
 * is the very same function (faults/index.ts); faults/revert-registry.test.ts checks both list the
 * same kinds.
 */
import { revertCpuBurnRecord } from "./cpu-burn-revert.js";
import { revertDiskFillRecord } from "./disk-fill-revert.js";
import { revertIoStressRecord } from "./io-stress-revert.js";
import { revertMemoryStressRecord } from "./memory-stress-revert.js";
import { revertNetworkDelayRecord } from "./network-delay-revert.js";
import { revertNetworkBandwidthRecord } from "./network-bandwidth-revert.js";
import { revertNftRecord } from "./nft-revert.js";
import { revertDnsFaultRecord } from "./dns-fault-revert.js";
import { revertProcessKillRecord, revertProcessStopRecord } from "./process-revert.js";
import { revertServiceStopRecord } from "./service-stop-revert.js";
import type { FaultKindDefinition } from "./types.js";

/** How one fault kind is reverted from its journal record. */
export type FaultReverter = Pick<FaultKindDefinition, "revertRecord">;

/** Fault kinds by name, as far as reverting them goes. A full FaultRegistry (faults/index.ts) is one too. */
export type RevertRegistry = ReadonlyMap<string, FaultReverter>;

/** The revert half of every fault kind shipped with the agent. */
export function createRevertRegistry(): RevertRegistry {
  return new Map<string, FaultReverter>([
    ["cpu-burn", { revertRecord: revertCpuBurnRecord }],
    ["disk-fill", { revertRecord: revertDiskFillRecord }],
    ["memory-stress", { revertRecord: revertMemoryStressRecord }],
    ["io-stress", { revertRecord: revertIoStressRecord }],
    ["process-kill", { revertRecord: revertProcessKillRecord }],
    ["process-stop", { revertRecord: revertProcessStopRecord }],
    ["network-delay", { revertRecord: (revert, ctx) => revertNetworkDelayRecord(revert, ctx) }],
    ["network-loss", { revertRecord: (revert, ctx) => revertNftRecord(revert, ctx) }],
    ["network-blackhole", { revertRecord: (revert, ctx) => revertNftRecord(revert, ctx) }],
    ["network-bandwidth", { revertRecord: (revert, ctx) => revertNetworkBandwidthRecord(revert, ctx) }],
    ["network-reject", { revertRecord: (revert, ctx) => revertNftRecord(revert, ctx) }],
    ["dns-fault", { revertRecord: (revert, ctx) => revertDnsFaultRecord(revert, ctx) }],
    ["service-stop", { revertRecord: (revert, ctx) => revertServiceStopRecord(revert, ctx) }],
  ]);
}
