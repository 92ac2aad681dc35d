import { FaultEventType, RevertReason } from "./gen/firedrill/v1/agent_pb.js";

/** Lower-case names of revert reasons, as shown to users and stored. */
export type RevertReasonName = "duration" | "stopped" | "lease" | "halt" | "recovery" | "aborted" | "shutdown" | "unknown";

const REASONS: Record<RevertReason, RevertReasonName> = {
  [RevertReason.UNSPECIFIED]: "unknown",
  [RevertReason.DURATION]: "duration",
  [RevertReason.STOPPED]: "stopped",
  [RevertReason.LEASE]: "lease",
  [RevertReason.HALT]: "halt",
  [RevertReason.RECOVERY]: "recovery",
  [RevertReason.ABORTED]: "aborted",
  [RevertReason.SHUTDOWN]: "shutdown",
};

/** The user-facing name of a revert reason. */
export function revertReasonName(reason: RevertReason): RevertReasonName {
  return REASONS[reason] ?? "unknown";
}

/** The revert reason with a user-facing name. */
export function revertReasonFromName(name: RevertReasonName): RevertReason {
  const entry = Object.entries(REASONS).find(([, n]) => n === name);
  return entry ? (Number(entry[0]) as RevertReason) : RevertReason.UNSPECIFIED;
}

/** Lower-case names of fault event types. */
export type FaultEventTypeName = "accepted" | "started" | "progress" | "reverted" | "failed" | "revert_failed" | "unknown";

const EVENT_TYPES: Record<FaultEventType, FaultEventTypeName> = {
  [FaultEventType.UNSPECIFIED]: "unknown",
  [FaultEventType.ACCEPTED]: "accepted",
  [FaultEventType.STARTED]: "started",
  [FaultEventType.PROGRESS]: "progress",
  [FaultEventType.REVERTED]: "reverted",
  [FaultEventType.FAILED]: "failed",
  [FaultEventType.REVERT_FAILED]: "revert_failed",
};

/** The user-facing name of a fault event type. */
export function faultEventTypeName(type: FaultEventType): FaultEventTypeName {
  return EVENT_TYPES[type] ?? "unknown";
}
