/**
 * The contract every fault kind implements. One file per kind under faults/.
 */
import type { JsonObject } from "@firedrill/protocol";
import type { Logger } from "pino";

/**
 * Traffic no network fault may ever touch: the agent's link to the control plane (so the lease keeps
 * flowing), EC2 instance metadata, DNS, management networks and ports (--management); SSH is added
 * by the network faults themselves at fault start.
 */
export interface NetworkExclusion {
  /** The remote side's CIDR, e.g. "10.0.0.5/32", "0.0.0.0/0". */
  cidr: string;
  /** The remote side's port (destination going out, source coming in); all ports when absent. */
  port?: number;
  /**
   * A port on this host, e.g. a server's listening port (sshd's 22): packets to it coming in and
   * from it going out. Not with `port`.
   */
  localPort?: number;
  /** Only this transport; TCP and UDP when absent. */
  protocol?: "tcp" | "udp";
  /** Why it is excluded, for error messages: "the control plane", "EC2 instance metadata (IMDS)", "DNS". */
  reason: string;
}

/** Local process protections of an agent (see docs/security.md). */
export interface ProcessProtectionConfig {
  /**
   * --protect-process rules: a process name (exact; a trailing `*` matches a prefix), `/regex/`
   * (RE2, on the command line), or `unit:NAME` (a systemd unit, from the process's cgroup).
   */
  rules: readonly string[];
  /** The control plane's gRPC port when it runs on this host: whatever listens on it is never signalled. */
  controlPlanePort?: number;
}

/** What a fault kind may know about the host when validating and running. */
export interface HostInfo {
  cpuCount: number;
  /** The agent's state dir: faults keep their files under it. */
  stateDir: string;
  /** Processes that must never be signalled: the agent, its guard, its parent. Read at use. */
  protectedPids: () => number[];
  /**
   * What else process faults never signal, from this agent's own configuration (the control plane
   * cannot change it); the built-in protections (sshd, systemd, container runtimes...) always apply.
   */
  processProtection?: ProcessProtectionConfig;
  /** Traffic every network fault excludes. */
  networkExclusions: NetworkExclusion[];
  /**
   * The host part of the control plane's address (--server), a name or an address: dns-fault never
   * faults lookups of that name.
   */
  controlPlaneHost?: string;
  /**
   * The host part of every control plane address (--server with several replicas), names or
   * addresses: dns-fault never faults lookups of any of them. Includes {@link controlPlaneHost}.
   */
  controlPlaneHosts?: readonly string[];
}

/** Handed to a fault while it runs. */
export interface FaultContext {
  faultId: string;
  log: Logger;
  host: HostInfo;
  /**
   * Replaces the fault's revert record in the journal, durably, *before* the caller touches the
   * host further (e.g. after learning the pids it is about to stop).
   */
  updateRevert(revert: JsonObject): void;
}

/** One process a process fault would signal, for a preview. */
export interface PreviewedProcess {
  pid: number;
  name: string;
  /** The start of its command line (at most 200 characters). */
  cmdline: string;
}

/** What a fault would do on this host, found without touching anything (PreviewFault). */
export interface FaultPreviewResult {
  /** One human-readable line each: what it acts on, what it leaves alone (exclusions, protections). */
  details: string[];
  /** Process faults: the processes it would signal now (at most 50). */
  processes?: PreviewedProcess[];
  /** Process faults: how many processes match in all. */
  matched?: number;
}

/** A fault acting on the host. */
export interface RunningFault {
  /**
   * What the fault acts on and leaves alone, one line each (e.g. the traffic it excludes), sent
   * with the STARTED event and shown by `firedrill fault show`.
   */
  details?: string[];
  /** Measurements since the last call (e.g. cpu_percent), reported as progress events. */
  measure?(): Record<string, number>;
  /** Undoes the fault. Idempotent: calling it again, or after the effect is gone, succeeds. */
  revert(): Promise<void>;
}

/** A kind of fault the agent can inject. */
export interface FaultKindDefinition<P = unknown> {
  kind: string;
  /**
   * Faults sharing a group never run at the same time on one host (e.g. "network": one network
   * fault at a time). A second one is refused.
   */
  exclusiveGroup?: string;
  /**
   * Validates parameters against the protocol's contract and this host.
   * Thrown when invalid: InvalidFaultRequestError naming each field. Nothing is touched.
   */
  validate(params: JsonObject, host: HostInfo): P;
  /** The revert record written to the journal before start() touches anything. */
  planRevert(params: P, ctx: FaultContext): JsonObject;
  /**
   * A dry run on this host: what start() would act on and leave alone, from the validated
   * parameters. Touches nothing. Thrown InvalidFaultRequestError: the fault would be refused here
   * (e.g. a pattern matching more processes than maxProcesses). Absent: nothing beyond validation.
   */
  preview?(params: P, host: HostInfo): FaultPreviewResult | Promise<FaultPreviewResult>;
  /** Starts the fault. On throw, the runtime calls revertRecord() with the journal record. */
  start(params: P, ctx: FaultContext): Promise<RunningFault>;
  /**
   * Reverts from the journal record alone, in a process that did not start the fault (restart,
   * `recover`, the guard). Idempotent; "already gone" is success.
   */
  revertRecord(revert: JsonObject, ctx: { log: Logger; holderAlive: boolean }): Promise<void>;
}
