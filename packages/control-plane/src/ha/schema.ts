/**
 * Tables that let several control-plane replicas share one PostgreSQL store (docs/ha.md):
 * which replicas are alive, who leads, who owns each run, which replica holds each agent's stream,
 * and the commands on their way from one replica to another. PostgreSQL only: a SQLite store is
 * used by one process (its data-dir lock), which is always the leader and holds every stream.
 *
 * Every timestamp is epoch milliseconds on the DATABASE clock ({@link DB_NOW_MS}), so replicas
 * whose clocks disagree still agree on who is alive and when a lease ends.
 */

/**
 * The database's clock in epoch ms, for SQL (never the replica's clock: skew must not matter).
 * `statement_timestamp()`: when the server received the statement — current, and one value
 * however often a statement uses it.
 */
export const DB_NOW_MS = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

export { HA_MIGRATION } from "../store/postgres/ha-tables.js";
