/**
 * The registry of fault kinds this agent can run.
 */
import { cpuBurn } from "./cpu-burn.js";
import { diskFill } from "./disk-fill.js";
import { ioStress } from "./io-stress.js";
import { memoryStress } from "./memory-stress.js";
import { processKill } from "./process-kill.js";
import { processStop } from "./process-stop.js";
import { networkDelay } from "./network-delay.js";
import { networkLoss } from "./network-loss.js";
import { networkBlackhole } from "./network-blackhole.js";
import { networkBandwidth } from "./network-bandwidth.js";
import { networkReject } from "./network-reject.js";
import { dnsFault } from "./dns-fault.js";
import { serviceStop } from "./service-stop.js";
import type { FaultKindDefinition } from "./types.js";

export type {
  FaultContext,
  FaultKindDefinition,
  FaultPreviewResult,
  HostInfo,
  NetworkExclusion,
  PreviewedProcess,
  ProcessProtectionConfig,
  RunningFault,
} from "./types.js";

/** A set of fault kinds by name. */
export type FaultRegistry = ReadonlyMap<string, FaultKindDefinition>;

/** Builds a registry from fault kind definitions. */
export function createFaultRegistry(kinds: FaultKindDefinition[]): FaultRegistry {
  return new Map(kinds.map((k) => [k.kind, k]));
}

/** Every fault kind shipped with the agent. */
export function createDefaultFaultRegistry(): FaultRegistry {
  return createFaultRegistry([cpuBurn as FaultKindDefinition, diskFill as FaultKindDefinition, memoryStress as FaultKindDefinition, ioStress as FaultKindDefinition, processKill as FaultKindDefinition, processStop as FaultKindDefinition, networkDelay as FaultKindDefinition, networkLoss as FaultKindDefinition, networkBlackhole as FaultKindDefinition, networkBandwidth as FaultKindDefinition, networkReject as FaultKindDefinition, dnsFault as FaultKindDefinition, serviceStop as FaultKindDefinition]);
}
