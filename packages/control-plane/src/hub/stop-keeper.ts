/**
 * The stop keeper: a stop is never lost. The store records every fault the control plane wants
 * ended (an operator stop, its run ending, a halt) until the fault has ended; the keeper sends the
 * stop when it is requested, again right after every Welcome of the fault's agent, and again every
 * `retryMs` on a live link while no REVERTED/FAILED/REVERT_FAILED has arrived. When the agent stays
 * away, its lease must end the fault: once `assumeAfterMs` have passed since the agent was last
 * heard, the fault is closed as reverted with reason `lease-assumed` (not confirmed; a later report
 * from the agent replaces it).
 *
 * Work per event is bounded by the stops of one agent (a reconnect) or one fault (a request, an
 * end); the retry tick reads only the stops still wanted (a partial index).
 */
import { RevertReason, formatDuration } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/store.js";
import { LEASE_ASSUMED_REASON } from "../store/types.js";
import type { AgentRecord, FaultRecord, StopReason } from "../store/types.js";

/** The protocol's revert reason for a stop reason. */
export function revertReasonForStop(reason: StopReason | null): RevertReason {
  return reason === "halt" ? RevertReason.HALT : reason === "aborted" ? RevertReason.ABORTED : RevertReason.STOPPED;
}

/** Options of {@link createStopKeeper}. */
export interface StopKeeperOptions {
  store: Store;
  metrics: Metrics;
  log: Logger;
  /** The lease TTL agents are given (for messages). */
  leaseTtlMs: number;
  /**
   * How long after its agent was last heard a fault is certainly ended by the agent's lease: the
   * lease TTL, plus how long the control plane may keep writing to a silent link, plus a margin.
   */
  assumeAfterMs: number;
  /** How often an unconfirmed stop is sent again on a live link (and the tick's period). */
  retryMs: number;
  /** Writes StopFault on the agent's live link; false when it has none. */
  send(agentId: string, faultId: string, reason: RevertReason): boolean;
  isConnected(agentId: string): boolean;
  /** Announces a fault the keeper closed itself (reason lease-assumed). */
  closed(fault: FaultRecord): void;
}

/** What {@link StopKeeper.request} did. */
export interface StopRequest {
  /** The fault as it is now; undefined when the store does not know it. */
  fault: FaultRecord | undefined;
  /** Whether StopFault went out on a live link just now. */
  sent: boolean;
}

/** The stop keeper. */
export interface StopKeeper {
  /** Records that the fault is wanted ended (durably) and sends the stop now if its agent is connected. */
  request(faultId: string, reason: StopReason, by: string): StopRequest;
  /** Sends the stop of a fault already marked wanted (e.g. by a batch) now; false when its agent is not connected. */
  send(fault: FaultRecord): boolean;
  /** Records a stop without sending it (the caller sends, e.g. {@link afterWelcome} right after). */
  mark(faultId: string, reason: StopReason, by: string): void;
  /** Sends every stop still wanted for the agent: call right after its Welcome. Returns how many. */
  afterWelcome(agentId: string): number;
  /** Forgets the retry state of a fault that has ended. */
  ended(faultId: string): void;
  /** Retries unconfirmed stops on live links; closes those the lease must have ended. */
  tick(now?: number): void;
  /** Stops the retry timer. */
  close(): void;
}

/** Creates the stop keeper and starts its retry timer. */
export function createStopKeeper(options: StopKeeperOptions): StopKeeper {
  const { store, metrics, log, retryMs, assumeAfterMs } = options;
  /** When each unconfirmed stop was last written to a live link (lost on restart: then sent at once). */
  const lastSent = new Map<string, number>();
  let closed = false;
  // After a restart of the control plane, agents get the time to reconnect and report how their
  // faults really ended before anything is assumed.
  const startedAt = Date.now();

  function send(fault: FaultRecord, when: "request" | "reconnect" | "retry", now: number): boolean {
    const sent = options.send(fault.agentId, fault.id, revertReasonForStop(fault.stopReason));
    if (!sent) return false;
    lastSent.set(fault.id, now);
    if (when !== "request") metrics.stopsResent.inc({ when });
    return true;
  }

  function request(faultId: string, reason: StopReason, by: string): StopRequest {
    const now = Date.now();
    const fault = store.requestStop(faultId, reason, by, now);
    if (!fault || fault.endedAt !== null) return { fault, sent: false };
    const sent = send(fault, "request", now);
    log.info({ faultId, agentId: fault.agentId, reason: fault.stopReason, by: fault.stopRequestedBy, sent }, sent ? "stop sent" : "stop recorded: the agent is not connected; sent when it reconnects");
    return { fault, sent };
  }

  function afterWelcome(agentId: string): number {
    const now = Date.now();
    let n = 0;
    for (const fault of store.listStopsWanted(agentId)) {
      if (send(fault, "reconnect", now)) n += 1;
    }
    if (n > 0) log.info({ agentId, stops: n }, "stop sent again right after Welcome: the control plane still wants these faults ended");
    return n;
  }

  function closeAssumed(fault: FaultRecord, agent: AgentRecord | undefined, now: number): void {
    const heard = agent?.lastSeen;
    const result = store.recordFaultEvent(
      {
        faultId: fault.id,
        agentId: fault.agentId,
        type: "reverted",
        time: now,
        reason: LEASE_ASSUMED_REASON,
        error: null,
        message:
          `not confirmed by the agent: the stop (${fault.stopReason ?? "stopped"}) could not be delivered and ${fault.agentId} has not been heard since ` +
          `${heard !== undefined ? new Date(heard).toISOString() : "it was last connected"}; its lease (TTL ${formatDuration(options.leaseTtlMs)}) must have reverted it. ` +
          "If the agent reports otherwise when it reconnects, its report replaces this",
        measurements: null,
      },
      now,
    );
    lastSent.delete(fault.id);
    if (!result.changed || !result.fault) return;
    metrics.revertsAssumed.inc({ kind: fault.kind });
    log.warn({ faultId: fault.id, agentId: fault.agentId, kind: fault.kind, lastHeard: heard }, "revert not confirmed; closed as reverted by the agent's lease (lease-assumed)");
    options.closed(result.fault);
  }

  function tick(now = Date.now()): void {
    if (closed || !store.db.open) return;
    const agents = new Map<string, AgentRecord | undefined>();
    for (const fault of store.listStopsWanted()) {
      if (options.isConnected(fault.agentId)) {
        if (now - (lastSent.get(fault.id) ?? 0) >= retryMs) send(fault, "retry", now);
        continue;
      }
      if (!agents.has(fault.agentId)) agents.set(fault.agentId, store.getAgent(fault.agentId));
      const agent = agents.get(fault.agentId);
      if (now >= Math.max(agent?.lastSeen ?? 0, startedAt) + assumeAfterMs) closeAssumed(fault, agent, now);
    }
  }

  const timer = setInterval(() => {
    try {
      tick();
    } catch (err) {
      log.error({ err }, "the stop keeper's retry failed; trying again next tick");
    }
  }, retryMs);
  timer.unref();

  return {
    request,
    mark(faultId, reason, by) {
      store.requestStop(faultId, reason, by, Date.now());
    },
    send: (fault) => send(fault, "request", Date.now()),
    afterWelcome,
    ended: (faultId) => void lastSent.delete(faultId),
    tick,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
