/**
 * @firedrill/protocol: the agent protocol (generated protobuf-es code) and its grpc-js binding.
 */
export * from "./gen/firedrill/v1/agent_pb.js";
export {
  addService,
  createClientConstructor,
  createServiceDefinition,
} from "./grpc.js";
export type { ClientOf, ServiceClient, ServiceClientConstructor, ServiceHandlers } from "./grpc.js";
export {
  AGENT_TOKEN_METADATA_KEY,
  JOIN_TOKEN_PREFIX,
  REFUSALS,
  REFUSAL_METADATA_KEY,
  bearer,
  formatJoinToken,
  parseBearer,
  parseJoinToken,
  parseRefusal,
} from "./auth.js";
export type { JoinTokenParts, Refusal } from "./auth.js";
export { durationFromMs, durationToMs, timestampFromMs, timestampToMs } from "./time.js";
export { revertReasonName, revertReasonFromName, faultEventTypeName } from "./names.js";
export type { RevertReasonName, FaultEventTypeName } from "./names.js";
export type { JsonObject, JsonValue } from "@bufbuild/protobuf";
export {
  InvalidFaultRequestError,
  ParamReader,
  MAX_FAULT_DURATION_MS,
  MIN_FAULT_DURATION_MS,
  formatDuration,
  parseDuration,
  validateDuration,
} from "./params.js";
export type { FieldIssue } from "./params.js";
export { FAULT_KINDS, FAULT_KIND_PARAMS, isFaultKind, parseFaultParams, validateFaultRequest } from "./fault-kinds.js";
export { describeFaultParams } from "./fault-summary.js";
export type { CpuBurnParams, FaultKind, FaultParamsByKind, ParamParser, ValidFaultRequest } from "./fault-kinds.js";
export { MAX_PROCESSES } from "./faults/process-kill.js";
export { DNS_FAULT_LIMITS, DNS_FAULT_MODES, matchDomainGlob } from "./faults/dns-fault.js";
export type { DnsFaultMode, DnsFaultParams } from "./faults/dns-fault.js";
export { MEMORY_STRESS_MAX_PERCENT, MEMORY_STRESS_MIN_RESERVE, MEMORY_STRESS_MIN_RESERVE_PERCENT, memoryReserveBytes } from "./faults/memory-stress.js";
export type { MemoryStressParams } from "./faults/memory-stress.js";
export { IO_STRESS_MAX_BLOCK, IO_STRESS_MIN_BLOCK } from "./faults/io-stress.js";
export type { IoStressParams } from "./faults/io-stress.js";
export { PROTECTED_UNITS, STOPPABLE_UNIT_TYPES, UNIT_NAME_MAX, protectedUnitReason, unitNameProblem } from "./faults/service-stop.js";
export type { ServiceStopMode, ServiceStopParams } from "./faults/service-stop.js";
export { NETWORK_BANDWIDTH_LIMITS, formatRate, parseRate } from "./faults/network-bandwidth.js";
export type { NetworkBandwidthParams } from "./faults/network-bandwidth.js";
export { REJECT_WITH } from "./faults/network-reject.js";
export type { NetworkRejectParams, RejectWith } from "./faults/network-reject.js";
export {
  CMDLINE_MATCH_BYTES,
  PATTERN_MAX_LENGTH,
  PATTERN_MAX_PROGRAM_SIZE,
  ProcessPatternError,
  compileProcessPattern,
} from "./faults/process-pattern.js";
export type { ProcessPattern } from "./faults/process-pattern.js";
export { CAPABILITY_HINTS, FAULT_KIND_REQUIREMENTS, missingCapabilities } from "./capabilities.js";
export type { HostCapability } from "./capabilities.js";
export { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN } from "./labels.js";
export { UnsafePathError, checkTrustedDir, octalMode, userName } from "./trusted-dir.js";
export type { TrustedDirOptions } from "./trusted-dir.js";
export { callerDirectory, resolveCallerPath } from "./caller-path.js";
export type { CallerContext } from "./caller-path.js";
export { plural } from "./text.js";
