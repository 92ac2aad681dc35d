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
export type { CpuBurnParams, FaultKind, FaultParamsByKind, ParamParser, ValidFaultRequest } from "./fault-kinds.js";
export { MAX_PROCESSES } from "./faults/process-kill.js";
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
