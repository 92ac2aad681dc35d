/**
 * The revert half of network-loss, network-blackhole and network-reject: deletes firedrill's nftables table from
 * the journal record alone (restart, `recover`, the guard), and how the running fault's revert
 * does the same. Only nft through net-command.ts: the guard loads this without the rest of the
 * agent. See nft-fault.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { runChecked, runCommand } from "./net-command.js";
import type { CommandRunner } from "./net-command.js";

/** The nftables table every firedrill network fault owns. */
export const NFT_TABLE = { family: "inet", name: "firedrill" } as const;

/** The journal record: everything revert needs, in any process. */
export interface NftRevertRecord {
  family: string;
  table: string;
  /** The kernel's handle of the table we created, once known. */
  handle?: number;
  /** True from just before `nft -f -` runs. */
  created: boolean;
}

/** A table as `nft -j list tables` lists it. */
export interface NftTableInfo {
  family: string;
  name: string;
  handle: number;
}

/** The firedrill table, if present (matching `handle` when given). */
export async function findTable(run: CommandRunner, record: Pick<NftRevertRecord, "family" | "table">): Promise<NftTableInfo | undefined> {
  const out = await runChecked(run, "nft", ["-j", "list", "tables"]);
  const parsed = JSON.parse(out.trim() || "{}") as { nftables?: { table?: NftTableInfo }[] };
  return (parsed.nftables ?? []).map((e) => e.table).find((t) => t && t.family === record.family && t.name === record.table);
}

/** Deletes our table if it is there and checks that it is gone. Gone already counts as reverted. */
export async function removeTable(run: CommandRunner, record: NftRevertRecord, log: Logger): Promise<void> {
  if (!record.created) return;
  const table = await findTable(run, record);
  if (!table) {
    log.info({ table: `${record.family} ${record.table}` }, "nftables table already gone");
    return;
  }
  if (record.handle !== undefined && table.handle !== record.handle) {
    log.warn({ table: `${record.family} ${record.table}`, ours: record.handle, found: table.handle }, "a table of that name exists but is not the one this fault created; ours is gone");
    return;
  }
  const del = await run("nft", ["delete", "table", record.family, ...(record.handle !== undefined ? ["handle", String(record.handle)] : [record.table])]);
  if (del.code !== 0) log.warn({ stderr: del.stderr.trim() }, "nft delete table failed; checking whether the table is gone anyway");
  const after = await findTable(run, record);
  if (after && (record.handle === undefined || after.handle === record.handle)) {
    throw new Error(`the nftables table ${record.family} ${record.table} is still there after nft delete table: ${del.stderr.trim() || "no error given"}; remove it with \`nft delete table ${record.family} ${record.table}\``);
  }
  log.info({ table: `${record.family} ${record.table}` }, "nftables table deleted");
}

/** The record out of the journal; thrown when it names a table that is not firedrill's. */
export function nftRecordFromJson(revert: JsonObject): NftRevertRecord {
  const family = typeof revert.family === "string" ? revert.family : NFT_TABLE.family;
  const table = typeof revert.table === "string" ? revert.table : NFT_TABLE.name;
  // Only ever the firedrill table: a damaged record must not make revert delete anything else.
  if (family !== NFT_TABLE.family || table !== NFT_TABLE.name) {
    throw new Error(`the journal record names the nftables table ${family} ${table}, which is not firedrill's (${NFT_TABLE.family} ${NFT_TABLE.name}); refusing to delete it`);
  }
  return { family, table, created: revert.created !== false, ...(typeof revert.handle === "number" ? { handle: revert.handle } : {}) };
}

/**
 * Reverts a network-loss, network-blackhole or network-reject from its journal record alone: deletes our table if
 * it is still there (the very one, by handle) and checks that it is gone. Idempotent.
 */
export async function revertNftRecord(revert: JsonObject, { log }: { log: Logger }, run: CommandRunner = runCommand): Promise<void> {
  // The table belongs to the kernel, not to the agent process: any process can delete it.
  await removeTable(run, nftRecordFromJson(revert), log);
}
