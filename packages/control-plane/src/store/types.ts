/** Records kept in the store. Times are epoch milliseconds. */
import type { JsonObject } from "@firedrill/protocol";

/** Where a fault is in its life, as the control plane sees it. */
export type FaultState = "pending" | "accepted" | "running" | "reverted" | "failed";

/** States in which a fault may still be acting on its host. */
export const ACTIVE_FAULT_STATES: readonly FaultState[] = ["pending", "accepted", "running"];

/** Whether a fault in this state may still be acting on its host. */
export function isActiveFaultState(state: FaultState): boolean {
  return ACTIVE_FAULT_STATES.includes(state);
}

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
}

/** A stored fault event. */
export interface FaultEventRecord extends FaultEventInput {
  id: number;
  receivedAt: number;
}
