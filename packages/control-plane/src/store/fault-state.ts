/** How a fault event moves a fault's state. Pure: the store applies the result. */
import type { FaultEventInput, FaultRecord } from "./types.js";
import { LEASE_ASSUMED_REASON, isActiveFaultState } from "./types.js";

/** The fields an event changes, or undefined when it changes nothing. */
export type FaultChange = Partial<
  Pick<FaultRecord, "state" | "reason" | "error" | "startedAt" | "endedAt" | "measurements" | "details">
>;

/**
 * Whether a fault's end is provisional: the control plane assumed the revert (its agent's lease
 * must have ended it), closed it with reason `unknown` when the reconnected agent neither held nor
 * had reported it yet (its final report may still be on the way: a resumed agent flushes it late
 * on a busy host), or the agent gave the revert up. A later final report from the agent (a revert
 * by lease, by `recover`, a failure) is then recorded and replaces it.
 */
export function isProvisionalEnd(fault: Pick<FaultRecord, "state" | "reason">): boolean {
  return fault.state === "revert_failed" || (fault.state === "reverted" && (fault.reason === LEASE_ASSUMED_REASON || fault.reason === "unknown"));
}

/** Whether an event may still change a fault: it is active, or its end is provisional and the event final. */
export function acceptsEvent(fault: Pick<FaultRecord, "state" | "reason">, event: Pick<FaultEventInput, "type">): boolean {
  if (isActiveFaultState(fault.state)) return true;
  if (!isProvisionalEnd(fault)) return false;
  // A revert given up stays so until the agent reports it reverted after all.
  if (fault.state === "revert_failed") return event.type === "reverted";
  return event.type === "reverted" || event.type === "failed" || event.type === "revert_failed";
}

/**
 * The change an event makes to a fault. Events for a fault that has already ended change nothing
 * (so terminal events re-sent after a reconnect are harmless) unless its end was provisional
 * ({@link isProvisionalEnd}); states never move backwards.
 */
export function faultChangeFor(fault: FaultRecord, event: FaultEventInput): FaultChange | undefined {
  if (!acceptsEvent(fault, event)) return undefined;
  const measurements = event.measurements && Object.keys(event.measurements).length > 0 ? event.measurements : undefined;
  const details = event.details && event.details.length > 0 ? { details: event.details } : {};
  switch (event.type) {
    case "accepted":
      return fault.state === "pending" ? { state: "accepted", ...details } : Object.keys(details).length ? details : undefined;
    case "started":
      return {
        state: "running",
        startedAt: fault.startedAt ?? event.time,
        ...(measurements ? { measurements } : {}),
        ...details,
      };
    case "progress":
      return {
        ...(fault.state === "running" ? {} : { state: "running" as const, startedAt: fault.startedAt ?? event.time }),
        ...(measurements ? { measurements } : {}),
      };
    case "reverted":
      return {
        state: "reverted",
        reason: event.reason ?? "unknown",
        endedAt: event.time,
        // A revert confirmed after a provisional end clears what that end said.
        error: event.error ?? (isActiveFaultState(fault.state) ? fault.error : null),
        ...(measurements ? { measurements } : {}),
      };
    case "failed":
      return { state: "failed", error: event.error ?? "the agent reported a failure without details", endedAt: event.time };
    case "revert_failed":
      return {
        state: "revert_failed",
        ...(event.reason !== null ? { reason: event.reason } : {}),
        error: event.error ?? "the agent gave up reverting this fault without saying why",
        endedAt: event.time,
        ...(measurements ? { measurements } : {}),
      };
  }
}
