/** Prometheus metrics of the control plane, in a registry of its own. */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Store } from "./store/store.js";
import type { CloudJournal } from "./aws/cloud-journal.js";

/** The control plane's metrics. */
export interface Metrics {
  readonly registry: Registry;
  /** Counts fault events received from agents, by type. */
  readonly faultEvents: Counter<"type">;
  /** Counts agent connections that completed Hello/Welcome. */
  readonly agentConnections: Counter;
  /** Counts agent messages dropped, by reason (unknown fault, another agent's fault, rate, size). */
  readonly agentMessagesDropped: Counter<"reason">;
  /** Counts refused agent connections and enrollments, by refusal. */
  readonly agentRefusals: Counter<"refusal">;
  /** Counts reverts an agent gave up (the fault's effect may remain on its host), by fault kind. */
  readonly revertFailures: Counter<"kind">;
  /** Counts faults closed as reverted by their agent's lease without a confirmation, by fault kind. */
  readonly revertsAssumed: Counter<"kind">;
  /** Counts StopFault messages sent again (on a reconnect or a retry) for stops still unconfirmed. */
  readonly stopsResent: Counter<"when">;
  /** Fault events received and not recorded yet (the hub records them in short slices). */
  readonly faultEventQueue: Gauge;
  /** Counts PROGRESS events replaced, while still queued, by a newer PROGRESS of the same fault. */
  readonly progressCoalesced: Counter;
}

/** Creates the registry; gauges read the store (and the cloud-revert journal, when given) when scraped. */
export function createMetrics(store: Store, options: { cloud?: CloudJournal } = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: "firedrill_agents_connected",
    help: "Agents with a live link to this control plane.",
    registers: [registry],
    collect() {
      this.set(store.countConnectedAgents());
    },
  });
  new Gauge({
    name: "firedrill_faults_active",
    help: "Faults pending, accepted or running, by kind.",
    labelNames: ["kind"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, n] of store.countActiveFaultsByKind()) this.set({ kind }, n);
    },
  });
  const faultEvents = new Counter({
    name: "firedrill_fault_events_total",
    help: "Fault events received from agents, by type.",
    labelNames: ["type"] as const,
    registers: [registry],
  });
  const agentConnections = new Counter({
    name: "firedrill_agent_connections_total",
    help: "Agent connections accepted (Hello answered with Welcome).",
    registers: [registry],
  });
  const agentMessagesDropped = new Counter({
    name: "firedrill_agent_messages_dropped_total",
    help: "Messages from agents that were dropped, by reason (unknown-fault, foreign-fault, rate-limit, hello-bounds).",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const agentRefusals = new Counter({
    name: "firedrill_agent_refusals_total",
    help: "Agent connections refused, by reason (not-enrolled, identity-mismatch, revoked, join-token, limit).",
    labelNames: ["refusal"] as const,
    registers: [registry],
  });
  const revertFailures = new Counter({
    name: "firedrill_fault_revert_failures_total",
    help: "Reverts an agent gave up (state revert_failed: the fault's effect may still be on the host), by fault kind.",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const revertsAssumed = new Counter({
    name: "firedrill_fault_reverts_assumed_total",
    help: "Faults closed as reverted by their agent's lease, never confirmed by the agent (reason lease-assumed), by fault kind.",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const stopsResent = new Counter({
    name: "firedrill_fault_stops_resent_total",
    help: "StopFault messages sent again for stops not confirmed yet: when=reconnect (right after Welcome) or retry (on the live link).",
    labelNames: ["when"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "firedrill_fault_stops_pending",
    help: "Faults the control plane wants ended whose revert is not confirmed yet.",
    registers: [registry],
    collect() {
      this.set(store.countStopsWanted());
    },
  });
  const faultEventQueue = new Gauge({
    name: "firedrill_fault_event_queue",
    help: "Fault events received from agents and not recorded yet (recorded in slices of a few ms, one transaction each).",
    registers: [registry],
  });
  const progressCoalesced = new Counter({
    name: "firedrill_fault_progress_coalesced_total",
    help: "PROGRESS events replaced, while still waiting to be recorded, by a newer PROGRESS of the same fault.",
    registers: [registry],
  });
  const cloud = options.cloud;
  if (cloud) {
    new Gauge({
      name: "firedrill_unreverted_cloud_actions",
      help: "Cloud actions (e.g. an ec2-stop) whose revert is wanted and not confirmed by AWS: state=reverting (the reconciler retries it) or failed (it can never be reverted, e.g. the instance was terminated).",
      labelNames: ["state"] as const,
      registers: [registry],
      collect() {
        const counts = cloud.countUnconfirmed();
        this.set({ state: "reverting" }, counts.reverting);
        this.set({ state: "failed" }, counts.failed);
      },
    });
  }
  return { registry, faultEvents, agentConnections, agentMessagesDropped, agentRefusals, revertFailures, revertsAssumed, stopsResent, faultEventQueue, progressCoalesced };
}
