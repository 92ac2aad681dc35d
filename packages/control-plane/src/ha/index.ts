/** Coordination of control-plane replicas on one PostgreSQL store (docs/ha.md). */
export { DB_NOW_MS, HA_MIGRATION } from "./schema.js";
export { newReplicaId, registerReplica } from "./replica.js";
export type { Replica, ReplicaInfo, ReplicaOptions } from "./replica.js";
export { assertFenced, createLeaderElection, FencedError, leaderFenceSql, readLeaderLease } from "./leader.js";
export type { LeaderElection, LeaderElectionOptions, LeaderEvents, LeaderLease } from "./leader.js";
export { createNotifyListener, MAX_NOTIFY_PAYLOAD_BYTES, notify } from "./notify.js";
export type { NotificationHandler, NotifyListener, NotifyListenerOptions } from "./notify.js";
export { commandChannel, createCommandBus } from "./commands.js";
export type { AgentCommand, CommandBus, CommandBusOptions, CommandBusStats, SendOutcome } from "./commands.js";
export { createRunOwners, runOwnerFenceSql } from "./run-owners.js";
export type { OrphanRun, RunOwners, RunOwnersOptions, TakenOverRun } from "./run-owners.js";
