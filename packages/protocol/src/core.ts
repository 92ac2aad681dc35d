/**
 * @firedrill/protocol/core: the protocol's messages and the helpers that need neither grpc-js nor
 * the fault parameter parsers (RE2). What a process that only reverts faults loads — the agent's
 * guard — so that it stays small. Everything here is also exported by `@firedrill/protocol`.
 */
export * from "./gen/firedrill/v1/agent_pb.js";
export type { JsonObject, JsonValue } from "@bufbuild/protobuf";
export { durationFromMs, durationToMs, timestampFromMs, timestampToMs } from "./time.js";
export { revertReasonName, revertReasonFromName, faultEventTypeName } from "./names.js";
export type { RevertReasonName, FaultEventTypeName } from "./names.js";
export { formatDuration, parseDuration } from "./params.js";
export { UnsafePathError, checkTrustedDir, octalMode, userName } from "./trusted-dir.js";
export type { TrustedDirOptions } from "./trusted-dir.js";
export { plural } from "./text.js";
export { protectedUnitReason, unitNameProblem } from "./faults/service-stop.js";
