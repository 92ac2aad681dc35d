/** The JSON shapes of the HTTP API (`/api/v1`). Times are ISO-8601 strings or null. */
import type { JsonObject } from "@firedrill/protocol";
import type { AgentRecord, FaultEventRecord, FaultRecord, FaultState, StopReason } from "./store/types.js";

/** An agent, as `GET /api/v1/agents` returns it. */
export interface AgentJson {
  id: string;
  hostname: string;
  version: string;
  labels: Record<string, string>;
  connected: boolean;
  firstSeenAt: string;
  lastSeenAt: string;
  /** When the current (or, if disconnected, the last) link was established. */
  connectedAt: string | null;
  instanceId: string | null;
  availabilityZone: string | null;
  facts: AgentRecord["facts"];
  capabilities: AgentRecord["capabilities"];
  /** How many of its faults are pending, accepted or running. */
  activeFaults: number;
  /** Enrolled with a join token: it authenticates with its own client certificate. */
  enrolled: boolean;
  /** When its client certificate expires (renewed over the link well before). */
  certificateNotAfter: string | null;
  /** When an admin revoked it; it can never connect again. */
  revokedAt: string | null;
  /** Unseen for longer than the server's --agent-stale-after: never targeted. */
  stale: boolean;
}

/**
 * An agent in the compact view of `GET /api/v1/agents` (the default): everything but its host
 * facts (filesystems, interfaces, OS…), which `?view=full` and `GET /api/v1/agents/:id` add.
 */
export type AgentSummaryJson = Omit<AgentJson, "facts">;

/** `GET /api/v1/agents`: one page, and the counts of the whole fleet. */
export interface AgentListJson<A extends AgentSummaryJson = AgentSummaryJson> {
  agents: A[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
  /** Agents not removed (whatever the filters). */
  total: number;
  /** How many of them are connected. */
  connected: number;
}

/** `GET /api/v1/faults` and `/api/v1/agents/:id/faults`: one page, newest first. */
export interface FaultListJson {
  faults: FaultJson[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** Default time after which an unseen agent is stale. */
export const DEFAULT_AGENT_STALE_AFTER_MS = 24 * 3_600_000;

/** A fault, as the fault routes return it. */
export interface FaultJson {
  id: string;
  agentId: string;
  runId: string | null;
  kind: string;
  params: JsonObject;
  durationMs: number;
  /**
   * `pending`, `accepted`, `running`; ended: `reverted`, `failed` (refused or failed to start:
   * `error` says why), `revert_failed` (the agent gave the revert up: the effect may still be on
   * the host; `error` says why).
   */
  state: FaultState;
  /**
   * Why it was reverted (`duration`, `stopped`, `aborted`, `halt`, `lease`, `recovery`,
   * `shutdown`, `unknown`, or `lease-assumed`: never confirmed by the agent, closed by the control
   * plane once the agent's lease must have ended it).
   */
  reason: string | null;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** The last measurements the agent reported, e.g. `{ cpu_percent: 79.5 }`. */
  measurements: Record<string, number> | null;
  /** Who started it (the authenticated principal, or the run's actor). */
  actor: string | null;
  /** Why an admin overrode the server policy for this ad-hoc fault. */
  policyOverride: string | null;
  /** What the agent said about the fault (e.g. what it leaves alone): at most 50 lines of 300 characters. */
  details: string[];
  /**
   * When the control plane first wanted it ended (an operator stop, its run's end, a halt): until
   * the fault has ended, the stop is sent again whenever its agent reconnects.
   */
  stopRequestedAt: string | null;
  stopReason: StopReason | null;
  /** Who or what wanted it ended. */
  stopRequestedBy: string | null;
}

/** One step on a fault's timeline. */
export interface FaultEventJson {
  id: number;
  faultId: string;
  agentId: string;
  type: FaultEventRecord["type"];
  time: string;
  reason: string | null;
  error: string | null;
  message: string | null;
  measurements: Record<string, number> | null;
}

/** The body of every error response. */
export interface ErrorJson {
  error: {
    code: string;
    message: string;
    issues?: { field: string; message: string }[];
    [key: string]: unknown;
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

/** Renders an agent record as API JSON. */
export function toAgentJson(agent: AgentRecord, staleAfterMs: number = DEFAULT_AGENT_STALE_AFTER_MS, now: number = Date.now()): AgentJson {
  return {
    id: agent.id,
    hostname: agent.hostname,
    version: agent.version,
    labels: agent.labels,
    connected: agent.connected,
    firstSeenAt: iso(agent.firstSeen),
    lastSeenAt: iso(agent.lastSeen),
    connectedAt: isoOrNull(agent.connectedAt),
    instanceId: agent.instanceId,
    availabilityZone: agent.availabilityZone,
    facts: agent.facts,
    capabilities: agent.capabilities,
    activeFaults: agent.activeFaults,
    enrolled: agent.enrolled,
    certificateNotAfter: isoOrNull(agent.certificateNotAfter),
    revokedAt: isoOrNull(agent.revokedAt),
    stale: !agent.connected && now - agent.lastSeen > staleAfterMs,
  };
}

/** Renders an agent without its host facts as API JSON (the compact view). */
export function toAgentSummaryJson(agent: Omit<AgentRecord, "facts">, staleAfterMs: number = DEFAULT_AGENT_STALE_AFTER_MS, now: number = Date.now()): AgentSummaryJson {
  const { facts: _facts, ...summary } = toAgentJson({ ...agent, facts: null as unknown as AgentRecord["facts"] }, staleAfterMs, now);
  return summary;
}

/** Renders a fault record as API JSON. */
export function toFaultJson(fault: FaultRecord): FaultJson {
  return {
    id: fault.id,
    agentId: fault.agentId,
    runId: fault.runId,
    kind: fault.kind,
    params: fault.params,
    durationMs: fault.durationMs,
    state: fault.state,
    reason: fault.reason,
    error: fault.error,
    createdAt: iso(fault.createdAt),
    startedAt: isoOrNull(fault.startedAt),
    endedAt: isoOrNull(fault.endedAt),
    measurements: fault.measurements,
    actor: fault.actor,
    policyOverride: fault.policyOverride,
    details: fault.details,
    stopRequestedAt: isoOrNull(fault.stopRequestedAt),
    stopReason: fault.stopReason,
    stopRequestedBy: fault.stopRequestedBy,
  };
}

/** Renders a fault event record as API JSON. */
export function toFaultEventJson(event: FaultEventRecord): FaultEventJson {
  return {
    id: event.id,
    faultId: event.faultId,
    agentId: event.agentId,
    type: event.type,
    time: iso(event.time),
    reason: event.reason,
    error: event.error,
    message: event.message,
    measurements: event.measurements,
  };
}
