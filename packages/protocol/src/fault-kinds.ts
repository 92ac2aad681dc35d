/**
 * The parameter contract of every fault kind. The control plane validates with it before sending
 * a fault; the agent validates again (adding host-specific checks) before touching the host.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { InvalidFaultRequestError, ParamReader, validateDuration } from "./params.js";
import type { FieldIssue } from "./params.js";
import { parseCpuBurnParams } from "./faults/cpu-burn.js";
import type { CpuBurnParams } from "./faults/cpu-burn.js";
import { parseDiskFillParams, type DiskFillParams } from "./faults/disk-fill.js";
import { parseMemoryStressParams, type MemoryStressParams } from "./faults/memory-stress.js";
import { parseIoStressParams, type IoStressParams } from "./faults/io-stress.js";
import { parseProcessKillParams, parseProcessStopParams, type ProcessKillParams, type ProcessStopParams } from "./faults/process-kill.js";
import { parseNetworkDelayParams, type NetworkDelayParams } from "./faults/network-delay.js";
import { parseNetworkLossParams, type NetworkLossParams } from "./faults/network-loss.js";
import { parseNetworkBlackholeParams, type NetworkBlackholeParams } from "./faults/network-blackhole.js";
import { parseNetworkBandwidthParams, type NetworkBandwidthParams } from "./faults/network-bandwidth.js";
import { parseNetworkRejectParams, type NetworkRejectParams } from "./faults/network-reject.js";
import { parseDnsFaultParams, type DnsFaultParams } from "./faults/dns-fault.js";
import { parseServiceStopParams, type ServiceStopParams } from "./faults/service-stop.js";

export type { CpuBurnParams } from "./faults/cpu-burn.js";

/** A fault kind's parameter parser: reads through the reader, which collects issues. */
export type ParamParser<P> = (reader: ParamReader) => P;

/** Every fault kind the protocol knows, with its parameter parser. */
export const FAULT_KIND_PARAMS = {
  "cpu-burn": parseCpuBurnParams as ParamParser<CpuBurnParams>,
  "disk-fill": parseDiskFillParams as ParamParser<DiskFillParams>,
  "memory-stress": parseMemoryStressParams as ParamParser<MemoryStressParams>,
  "io-stress": parseIoStressParams as ParamParser<IoStressParams>,
  "process-kill": parseProcessKillParams as ParamParser<ProcessKillParams>,
  "process-stop": parseProcessStopParams as ParamParser<ProcessStopParams>,
  "network-delay": parseNetworkDelayParams as ParamParser<NetworkDelayParams>,
  "network-loss": parseNetworkLossParams as ParamParser<NetworkLossParams>,
  "network-blackhole": parseNetworkBlackholeParams as ParamParser<NetworkBlackholeParams>,
  "network-bandwidth": parseNetworkBandwidthParams as ParamParser<NetworkBandwidthParams>,
  "network-reject": parseNetworkRejectParams as ParamParser<NetworkRejectParams>,
  "dns-fault": parseDnsFaultParams as ParamParser<DnsFaultParams>,
  "service-stop": parseServiceStopParams as ParamParser<ServiceStopParams>,
} as const;

/** A fault kind name. */
export type FaultKind = keyof typeof FAULT_KIND_PARAMS;

/** Parameters by fault kind. */
export interface FaultParamsByKind {
  "cpu-burn": CpuBurnParams;
  "disk-fill": DiskFillParams;
  "memory-stress": MemoryStressParams;
  "io-stress": IoStressParams;
  "process-kill": ProcessKillParams;
  "process-stop": ProcessStopParams;
  "network-delay": NetworkDelayParams;
  "network-loss": NetworkLossParams;
  "network-blackhole": NetworkBlackholeParams;
  "network-bandwidth": NetworkBandwidthParams;
  "network-reject": NetworkRejectParams;
  "dns-fault": DnsFaultParams;
  "service-stop": ServiceStopParams;
}

/** The names of all fault kinds. */
export const FAULT_KINDS = Object.keys(FAULT_KIND_PARAMS) as FaultKind[];

/** Whether `kind` names a known fault kind. */
export function isFaultKind(kind: string): kind is FaultKind {
  return Object.hasOwn(FAULT_KIND_PARAMS, kind);
}

/**
 * Parses the parameters of a fault kind.
 * Thrown when a parameter is invalid: InvalidFaultRequestError naming each field.
 */
export function parseFaultParams<K extends FaultKind>(kind: K, params: JsonObject, prefix = "params"): FaultParamsByKind[K] {
  const reader = new ParamReader(params, prefix);
  const parsed = FAULT_KIND_PARAMS[kind](reader) as FaultParamsByKind[K];
  if (reader.issues.length > 0) throw new InvalidFaultRequestError(reader.issues);
  return parsed;
}

/** A validated request to start a fault. */
export interface ValidFaultRequest {
  kind: FaultKind;
  params: JsonObject;
  durationMs: number;
}

/**
 * Validates kind, params and duration of a fault request, reporting every problem at once.
 * Thrown when anything is invalid: InvalidFaultRequestError.
 */
export function validateFaultRequest(request: { kind: unknown; params?: unknown; duration: unknown }): ValidFaultRequest {
  const issues: FieldIssue[] = [];
  const { kind } = request;
  if (typeof kind !== "string" || kind === "") {
    issues.push({ field: "kind", message: `is required; use one of: ${FAULT_KINDS.join(", ")}` });
  } else if (!isFaultKind(kind)) {
    issues.push({ field: "kind", message: `unknown fault kind ${JSON.stringify(kind)}; use one of: ${FAULT_KINDS.join(", ")}` });
  }
  const params = request.params ?? {};
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    issues.push({ field: "params", message: "must be an object of name: value" });
  } else if (typeof kind === "string" && isFaultKind(kind)) {
    const reader = new ParamReader(params as JsonObject);
    FAULT_KIND_PARAMS[kind](reader);
    issues.push(...reader.issues);
  }
  const durationMs = validateDuration(request.duration, "duration", issues);
  if (issues.length > 0 || durationMs === undefined) throw new InvalidFaultRequestError(issues);
  return { kind: kind as FaultKind, params: params as JsonObject, durationMs };
}
