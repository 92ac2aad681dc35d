/** How a fault event moves a fault's state. Pure: the store applies the result. */
import type { FaultEventInput, FaultRecord } from "./types.js";
import { isActiveFaultState } from "./types.js";

/** The fields an event changes, or undefined when it changes nothing. */
export type FaultChange = Partial<
  Pick<FaultRecord, "state" | "reason" | "error" | "startedAt" | "endedAt" | "measurements">
>;

/**
 * The change an event makes to a fault. Events for a fault that has already ended change nothing,
 * so terminal events re-sent after a reconnect are harmless; states never move backwards.
 */
export function faultChangeFor(fault: FaultRecord, event: FaultEventInput): FaultChange | undefined {
  if (!isActiveFaultState(fault.state)) return undefined;
  const measurements = event.measurements && Object.keys(event.measurements).length > 0 ? event.measurements : undefined;
  switch (event.type) {
    case "accepted":
      return fault.state === "pending" ? { state: "accepted" } : undefined;
    case "started":
      return {
        state: "running",
        startedAt: fault.startedAt ?? event.time,
        ...(measurements ? { measurements } : {}),
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
        ...(event.error ? { error: event.error } : {}),
        ...(measurements ? { measurements } : {}),
      };
    case "failed":
      return { state: "failed", error: event.error ?? "the agent reported a failure without details", endedAt: event.time };
  }
}
