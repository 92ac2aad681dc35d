/**
 * The revert half of network-delay: removes firedrill's root qdisc from the journal record alone
 * (restart, `recover`, the guard), and the qdisc reading the running fault shares. Only tc through
 * net-command.ts: the guard loads this without the rest of the agent. See network-delay.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { NetCommandError, runCommand } from "./net-command.js";
import type { CommandRunner } from "./net-command.js";
import { DELAY_NETEM_HANDLE } from "./tc-plan.js";

/** The journal record of a network-delay. Everything revert needs, in any process. */
export interface DelayRevertRecord {
  device: string;
  handle: string;
  netemHandle: string;
  /** What the root qdisc was before (kind and handle), once read. */
  previousRoot?: { kind: string; handle: string };
  /** True from just before the first tc command that changes the device. */
  installed: boolean;
}

/** One qdisc as `tc -j qdisc show` lists it. */
export interface QdiscInfo {
  kind: string;
  handle: string;
  root?: boolean;
  parent?: string;
  packets?: number;
  drops?: number;
  qlen?: number;
}

/** Reads the qdiscs of a device; undefined when the device does not exist (any more). */
export async function readQdiscs(run: CommandRunner, device: string, stats = false): Promise<QdiscInfo[] | undefined> {
  const result = await run("tc", [...(stats ? ["-s"] : []), "-j", "qdisc", "show", "dev", device]);
  if (result.code !== 0) {
    if (/Cannot find device/i.test(result.stderr)) return undefined;
    throw new NetCommandError(`tc qdisc show dev ${device} failed: ${result.stderr.trim() || `exit code ${result.code}`}`, ["tc", "qdisc", "show", "dev", device], result.code, result.stderr);
  }
  return JSON.parse(result.stdout.trim() || "[]") as QdiscInfo[];
}

/**
 * Deletes our root qdisc (the record's handle) from the device if it is there, then checks that it
 * is gone. A device that no longer exists, or a root that is not ours, counts as reverted: nothing
 * else is touched. `kind` names the fault in logs and errors. Shared with network-bandwidth.
 */
export async function removeRootQdisc(run: CommandRunner, record: { device: string; handle: string; installed: boolean }, log: Logger, kind: string): Promise<void> {
  if (!record.installed) return;
  const before = await readQdiscs(run, record.device);
  if (!before) {
    log.info({ device: record.device }, "the device is gone; nothing to revert");
    return;
  }
  if (before.find((q) => q.root)?.handle === record.handle) {
    const del = await run("tc", ["qdisc", "del", "dev", record.device, "root", "handle", record.handle]);
    if (del.code !== 0) log.warn({ device: record.device, stderr: del.stderr.trim() }, "tc qdisc del failed; checking whether the qdisc is gone anyway");
  } else {
    log.info({ device: record.device, handle: record.handle }, `the ${kind} qdisc is not on the device (any more)`);
  }
  const after = await readQdiscs(run, record.device);
  if (after?.find((q) => q.root)?.handle === record.handle) {
    throw new Error(`the ${kind} qdisc (root handle ${record.handle}) is still on ${record.device} after tc qdisc del; remove it with \`tc qdisc del dev ${record.device} root handle ${record.handle}\``);
  }
  log.info({ device: record.device, handle: record.handle, restored: after?.find((q) => q.root)?.kind ?? "default" }, `${kind} qdisc removed`);
}

/** Deletes network-delay's root qdisc from the device if it is there, then checks that it is gone. */
export async function removeDelay(run: CommandRunner, record: DelayRevertRecord, log: Logger): Promise<void> {
  await removeRootQdisc(run, record, log, "network-delay");
}

/** The record out of the journal; thrown when it lacks the device or the handle. */
export function delayRecordFromJson(revert: JsonObject): DelayRevertRecord {
  const device = revert.device;
  const handle = revert.handle;
  if (typeof device !== "string" || typeof handle !== "string") {
    throw new Error(`the journal record of this network-delay is incomplete (device ${JSON.stringify(device)}, handle ${JSON.stringify(handle)})`);
  }
  return {
    device,
    handle,
    netemHandle: typeof revert.netemHandle === "string" ? revert.netemHandle : DELAY_NETEM_HANDLE,
    // Records without the flag predate it: assume installed, removal is idempotent.
    installed: revert.installed !== false,
  };
}

/**
 * Reverts a network-delay from its journal record alone: deletes our root qdisc if it is still on
 * the device and checks that it is gone. Idempotent; a device that is gone counts as reverted.
 */
export async function revertNetworkDelayRecord(revert: JsonObject, { log }: { log: Logger }, run: CommandRunner = runCommand): Promise<void> {
  // The qdisc belongs to the kernel, not to the agent process: any process can remove it.
  await removeDelay(run, delayRecordFromJson(revert), log);
}
