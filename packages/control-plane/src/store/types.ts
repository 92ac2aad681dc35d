/** Records kept in the store. Times are epoch milliseconds. */
import type { JsonObject } from "@firedrill/protocol";

/**
 * Where a fault is in its life, as the control plane sees it. `revert_failed`: the agent gave up
 * reverting it — it has ended as far as the agent is concerned, but its effect may still be on the
 * host (never "reverted", never "running") until a later revert (e.g. `firedrill-agent recover`)
 * is reported.
 */
export type FaultState = "pending" | "accepted" | "running" | "reverted" | "failed" | "revert_failed";

/** States in which a fault is in the agent's hands (its agent still runs or reverts it). */
export const ACTIVE_FAULT_STATES: readonly FaultState[] = ["pending", "accepted", "running"];

/** Whether a fault in this state is still in its agent's hands (not ended). */
export function isActiveFaultState(state: FaultState): boolean {
  return ACTIVE_FAULT_STATES.includes(state);
}

/** Why the control plane wants a fault ended: an operator's stop, its run ending, a halt. */
export type StopReason = "stopped" | "aborted" | "halt";

/**
 * The reason of a fault the control plane closed itself because its agent never confirmed the
 * revert, but the agent's lease must have ended it (no word from the control plane for the lease
 * TTL). Not a confirmation: a later report from the agent replaces it.
 */
export const LEASE_ASSUMED_REASON = "lease-assumed";

/** Bounds on a fault's details (what the agent says about it, e.g. what it leaves alone). */
export const FAULT_DETAILS_BOUNDS = { lines: 50, lineLength: 300 } as const;

/** The type of a fault event, lower-case. */
export type FaultEventType = "accepted" | "started" | "progress" | "reverted" | "failed" | "revert_failed";

/** Host facts as stored and served (plain JSON numbers). */
export interface HostFactsJson {
  hostname: string;
  osPlatform: string;
  osDistro: string;
  osRelease: string;
  kernel: string;
  arch: string;
  cpuCount: number;
  cpuModel: string;
  memoryBytes: number;
  filesystems: { device: string; type: string; mount: string; sizeBytes: number; usedBytes: number }[];
  interfaces: { name: string; mac: string; addresses: string[]; internal: boolean; defaultRoute: boolean }[];
  instanceId: string;
  availabilityZone: string;
  region: string;
}

/** What an agent says it can do. */
export interface CapabilitiesJson {
  faultKinds: string[];
  root: boolean;
  netem: boolean;
  nftables: boolean;
  tc: boolean;
  /** systemd is the init and systemctl is present (false for agents from before it was reported). */
  systemd: boolean;
}

/** An agent as the store knows it. */
export interface AgentRecord {
  id: string;
  hostname: string;
  version: string;
  facts: HostFactsJson;
  labels: Record<string, string>;
  capabilities: CapabilitiesJson;
  instanceId: string | null;
  availabilityZone: string | null;
  connected: boolean;
  firstSeen: number;
  lastSeen: number;
  connectedAt: number | null;
  /** Faults in an active state (pending, accepted, running). */
  activeFaults: number;
  /** Enrolled with a join token (mTLS identity); false for agents of the insecure-agents mode. */
  enrolled: boolean;
  /** When its current client certificate expires (epoch ms). */
  certificateNotAfter: number | null;
  /** When an admin revoked it (epoch ms). */
  revokedAt: number | null;
}

/** What an agent tells about itself in Hello. */
export interface AgentHello {
  id: string;
  hostname: string;
  version: string;
  facts: HostFactsJson;
  labels: Record<string, string>;
  capabilities: CapabilitiesJson;
  instanceId: string | null;
  availabilityZone: string | null;
}

/** A fault as the store knows it. */
export interface FaultRecord {
  id: string;
  agentId: string;
  runId: string | null;
  kind: string;
  params: JsonObject;
  durationMs: number;
  state: FaultState;
  reason: string | null;
  error: string | null;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  /** The last measurements the agent reported. */
  measurements: Record<string, number> | null;
  updatedAt: number;
  /** Who started it: the authenticated principal (ad-hoc faults), or the run's actor; null for faults from before authentication. */
  actor: string | null;
  /** Why an admin overrode the server policy for this ad-hoc fault; null when the policy was applied. */
  policyOverride: string | null;
  /**
   * What the agent reported about the fault with ACCEPTED/STARTED (e.g. "Leaves alone: tcp port
   * 22 (ssh)"), at most {@link FAULT_DETAILS_BOUNDS}; empty when it said nothing.
   */
  details: string[];
  /**
   * When the control plane first wanted the fault ended (an operator stop, its run ending, a halt);
   * null when it never did. Kept until the fault has ended: the stop is re-sent on every reconnect
   * of its agent and retried on the live link.
   */
  stopRequestedAt: number | null;
  stopReason: StopReason | null;
  /** Who or what wanted it ended, e.g. "run run_… aborted: …", "halt by alice: …". */
  stopRequestedBy: string | null;
}

/** A new fault, before it is sent. */
export interface NewFault {
  id: string;
  agentId: string;
  runId: string | null;
  kind: string;
  params: JsonObject;
  durationMs: number;
  createdAt: number;
  /** Who started it (the authenticated principal). @default null */
  actor?: string | null;
  /** Why an admin overrode the server policy. @default null */
  policyOverride?: string | null;
}

/** One step in a fault's life, as reported by its agent (or decided by the control plane). */
export interface FaultEventInput {
  faultId: string;
  agentId: string;
  type: FaultEventType;
  time: number;
  reason: string | null;
  error: string | null;
  message: string | null;
  measurements: Record<string, number> | null;
  /** Details the agent reported about the fault (ACCEPTED/STARTED), already bounded; absent: none. */
  details?: string[] | null;
  /**
   * For a PROGRESS: false applies its measurements to the fault without adding a row to the
   * fault's event history (kept at most every few seconds per fault on a large fleet). @default true
   */
  history?: boolean;
}

/** A stored fault event. */
export interface FaultEventRecord extends FaultEventInput {
  id: number;
  receivedAt: number;
}
