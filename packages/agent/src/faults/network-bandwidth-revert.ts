/**
 * The revert half of network-bandwidth: removes firedrill's root qdisc (handle 1f1b:) from the
 * journal record alone (restart, `recover`, the guard), and the class counters the running fault
 * reads. Only tc through net-command.ts: the guard loads this without the rest of the agent. See
 * network-bandwidth.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { NetCommandError, runCommand } from "./net-command.js";
import type { CommandRunner } from "./net-command.js";
import { removeRootQdisc } from "./network-delay-revert.js";

/** The root handle network-bandwidth reserves on a device (network-delay's is 1f1d:). */
export const BANDWIDTH_ROOT_HANDLE = "1f1b:";

/** The journal record of a network-bandwidth. Everything revert needs, in any process. */
export interface BandwidthRevertRecord {
  device: string;
  /** Always BANDWIDTH_ROOT_HANDLE: revert deletes that root and nothing else. */
  handle: string;
  /** What the root qdisc was before (kind and handle), once read. */
  previousRoot?: { kind: string; handle: string };
  /** True from just before the first tc command that changes the device. */
  installed: boolean;
}

/** Linux interface names (as the protocol's contract): a damaged record must not reach tc as an option. */
const DEVICE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/;

/**
 * Deletes our root qdisc from the device if it is there, then checks that it is gone. A device
 * that no longer exists, or a root that is not ours, counts as reverted: nothing else is touched.
 */
export async function removeBandwidth(run: CommandRunner, record: BandwidthRevertRecord, log: Logger): Promise<void> {
  await removeRootQdisc(run, record, log, "network-bandwidth");
}

/** The record out of the journal; thrown when it lacks the device or names a handle that is not ours. */
export function bandwidthRecordFromJson(revert: JsonObject): BandwidthRevertRecord {
  const { device, handle } = revert;
  if (typeof device !== "string" || !DEVICE_NAME.test(device)) {
    throw new Error(`the journal record of this network-bandwidth is incomplete (device ${JSON.stringify(device)})`);
  }
  // Only ever our root: a damaged record must not make revert delete someone else's qdisc.
  if (handle !== undefined && handle !== BANDWIDTH_ROOT_HANDLE) {
    throw new Error(
      `the journal record names the root qdisc ${JSON.stringify(handle)} on ${device}, which is not network-bandwidth's (${BANDWIDTH_ROOT_HANDLE}); refusing to delete it`,
    );
  }
  const prev = revert.previousRoot as { kind?: unknown; handle?: unknown } | undefined;
  return {
    device,
    handle: BANDWIDTH_ROOT_HANDLE,
    ...(prev && typeof prev.kind === "string" && typeof prev.handle === "string" ? { previousRoot: { kind: prev.kind, handle: prev.handle } } : {}),
    // A record without the flag: assume installed, removal is idempotent.
    installed: revert.installed !== false,
  };
}

/**
 * Reverts a network-bandwidth from its journal record alone: deletes our root qdisc if it is still
 * on the device and checks that it is gone. Idempotent; a device that is gone counts as reverted.
 */
export async function revertNetworkBandwidthRecord(revert: JsonObject, { log }: { log: Logger }, run: CommandRunner = runCommand): Promise<void> {
  // The qdisc belongs to the kernel, not to the agent process: any process can remove it.
  await removeBandwidth(run, bandwidthRecordFromJson(revert), log);
}

/** Counters of one HTB class, from `tc -s class show`. */
export interface ClassCounters {
  bytes: number;
  packets: number;
  dropped: number;
  overlimits: number;
  backlogBytes: number;
}

/**
 * Reads the counters of one class. iproute2 prints no JSON for HTB classes in most versions in the
 * field, so the text is read: `class htb 1f1b:10 … \n Sent 677112 bytes 452 pkt (dropped 0,
 * overlimits 24 requeues 0) \n backlog 1364b 4p requeues 0`. Undefined when the class (or the
 * device) is not there.
 */
export async function readClassCounters(run: CommandRunner, device: string, classId: string): Promise<ClassCounters | undefined> {
  const result = await run("tc", ["-s", "class", "show", "dev", device, "classid", classId]);
  if (result.code !== 0) {
    if (/Cannot find device/i.test(result.stderr)) return undefined;
    throw new NetCommandError(`tc -s class show dev ${device} failed: ${result.stderr.trim() || `exit code ${result.code}`}`, ["tc", "-s", "class", "show"], result.code, result.stderr);
  }
  return parseClassCounters(result.stdout, classId);
}

/** The counters of `classId` in `tc -s class show` text; undefined when it is not listed. */
export function parseClassCounters(text: string, classId: string): ClassCounters | undefined {
  const start = text.search(new RegExp(`^class \\S+ ${classId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} `, "m"));
  if (start < 0) return undefined;
  const next = text.slice(start + 1).search(/^class /m);
  const block = next < 0 ? text.slice(start) : text.slice(start, start + 1 + next);
  const sent = /Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/.exec(block);
  if (!sent) return undefined;
  // tc prints the backlog as 1364b, or 12Kb / 3Mb when it is a near multiple of those.
  const backlog = /backlog (\d+)([KM]?)b/.exec(block);
  const scale = backlog?.[2] === "M" ? 1024 * 1024 : backlog?.[2] === "K" ? 1024 : 1;
  return {
    bytes: Number(sent[1]),
    packets: Number(sent[2]),
    dropped: Number(sent[3]),
    overlimits: Number(sent[4]),
    backlogBytes: backlog ? Number(backlog[1]) * scale : 0,
  };
}
