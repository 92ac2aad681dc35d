/**
 * The revert half of dns-fault: deletes its nftables table (`table inet firedrill_dns`) from the
 * journal record alone (restart, `recover`, the guard). With the table gone the host's queries go
 * to its resolvers again, whether or not the agent's responder still runs (it dies with the agent).
 * Only nft through net-command.ts: the guard loads this without the rest of the agent. See
 * dns-fault.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { runCommand } from "./net-command.js";
import type { CommandRunner } from "./net-command.js";
import { removeTable } from "./nft-revert.js";
import type { NftRevertRecord } from "./nft-revert.js";

/** The nftables table dns-fault owns (its own: a network fault's `inet firedrill` may run beside it). */
export const DNS_NFT_TABLE = { family: "inet", name: "firedrill_dns" } as const;

/** The record out of the journal; thrown when it names a table that is not dns-fault's. */
export function dnsRecordFromJson(revert: JsonObject): NftRevertRecord {
  const family = typeof revert.family === "string" ? revert.family : DNS_NFT_TABLE.family;
  const table = typeof revert.table === "string" ? revert.table : DNS_NFT_TABLE.name;
  // Only ever dns-fault's table: a damaged record must not make revert delete anything else.
  if (family !== DNS_NFT_TABLE.family || table !== DNS_NFT_TABLE.name) {
    throw new Error(
      `the journal record names the nftables table ${family} ${table}, which is not dns-fault's (${DNS_NFT_TABLE.family} ${DNS_NFT_TABLE.name}); refusing to delete it`,
    );
  }
  return { family, table, created: revert.created !== false, ...(typeof revert.handle === "number" ? { handle: revert.handle } : {}) };
}

/**
 * Reverts a dns-fault from its journal record alone: deletes its table if it is still there (the
 * very one, by handle) and checks that it is gone. Idempotent. Safe while the agent that started
 * it lives: its responder then simply gets no more queries.
 */
export async function revertDnsFaultRecord(revert: JsonObject, { log }: { log: Logger }, run: CommandRunner = runCommand): Promise<void> {
  await removeTable(run, dnsRecordFromJson(revert), log);
}
