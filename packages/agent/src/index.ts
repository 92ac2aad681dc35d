/**
 * @firedrill/agent: the host agent. The binary is `firedrill-agent` (src/bin.ts).
 */
export { startAgent } from "./agent.js";
export type { Agent, AgentOptions } from "./agent.js";
export { AgentConfigError, parseLabels } from "./config.js";
export { createDefaultFaultRegistry, createFaultRegistry } from "./faults/index.js";
export type { FaultContext, FaultKindDefinition, FaultRegistry, HostInfo, RunningFault } from "./faults/index.js";
export { Journal } from "./journal.js";
export type { JournalRecord } from "./journal.js";
export { Lease } from "./lease.js";
export { backoffDelay } from "./link.js";
export { RecoveryError, recoverJournal } from "./recover.js";
export { busyPercent, readCpuSnapshot, readProcessCpuTicks, readProcessStartTime, CLOCK_TICKS_PER_SECOND } from "./proc.js";
export type { CpuSnapshot, CpuTimes } from "./proc.js";
export { readEc2Identity } from "./imds.js";
export { AGENT_VERSION } from "./version.js";
