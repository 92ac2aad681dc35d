/**
 * @firedrill/protocol: the agent protocol (generated protobuf-es code) and its grpc-js binding.
 */
export * from "./gen/firedrill/v1/agent_pb.js";
export {
  createClientConstructor,
  createServiceDefinition,
} from "./grpc.js";
export type { ServiceClient, ServiceClientConstructor, ServiceHandlers } from "./grpc.js";
export { AGENT_TOKEN_METADATA_KEY, bearer, parseBearer } from "./auth.js";
export { durationFromMs, durationToMs, timestampFromMs, timestampToMs } from "./time.js";
export { revertReasonName, revertReasonFromName, faultEventTypeName } from "./names.js";
export type { RevertReasonName, FaultEventTypeName } from "./names.js";
