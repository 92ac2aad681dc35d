/**
 * The registry of fault kinds this agent can run.
 */
import { cpuBurn } from "./cpu-burn.js";
import { diskFill } from "./disk-fill.js";
import { processKill } from "./process-kill.js";
import { processStop } from "./process-stop.js";
import { networkDelay } from "./network-delay.js";
import { networkLoss } from "./network-loss.js";
import { networkBlackhole } from "./network-blackhole.js";
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
  return createFaultRegistry([cpuBurn as FaultKindDefinition, diskFill as FaultKindDefinition, processKill as FaultKindDefinition, processStop as FaultKindDefinition, networkDelay as FaultKindDefinition, networkLoss as FaultKindDefinition, networkBlackhole as FaultKindDefinition]);
}
