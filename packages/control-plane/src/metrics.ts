/** Prometheus metrics of the control plane, in a registry of its own. */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Store } from "./store/store.js";

/** The control plane's metrics. */
export interface Metrics {
  readonly registry: Registry;
  /** Counts fault events received from agents, by type. */
  readonly faultEvents: Counter<"type">;
  /** Counts agent connections that completed Hello/Welcome. */
  readonly agentConnections: Counter;
}

/** Creates the registry; gauges read the store when scraped. */
export function createMetrics(store: Store): Metrics {
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
  return { registry, faultEvents, agentConnections };
}
