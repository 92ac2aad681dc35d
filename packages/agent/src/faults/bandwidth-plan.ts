/**
 * The tc plan of network-bandwidth, built as data: every command as an argument array for `tc`, so
 * it can be read, tested and logged before anything runs. HTB only (sch_htb is in every
 * distribution's base kernel modules; tbf cannot pick destinations, netem and prio are not needed).
 *
 * Shape (device eth0, rate 10mbit, handle 1f1b:):
 *
 *   root 1f1b: htb default 0 (or 10)  direct_qlen 1000
 *     ├─ direct queue (1f1b:0): not shaped — exclusions, loopback, and with default 0 every packet
 *     │                         no filter sends to the limited class
 *     └─ class 1f1b:10 htb rate 10000000bit ceil 10000000bit burst … cburst … quantum …
 *                        (the limited traffic; its leaf is the kernel's default pfifo)
 *
 * u32 filters on 1f1b:, first match wins, lowest pref first:
 *   pref 1 (IPv4) / 2 (IPv6)  exclusions + loopback    → 1f1b:0, HTB's direct queue, never limited
 *                             (a local-port exclusion — SSH, --management ports — matches the
 *                             source port: the replies of a server on this host)
 *   pref 3 (IPv4) / 4 (IPv6)  destinations × ports     → 1f1b:10
 * With neither destinations nor ports, `default 10` sends every unfiltered packet to the limited
 * class and only the exclusions bypass it; otherwise `default 0` lets unfiltered packets through
 * the direct queue, unshaped, and only the target filters reach the limit.
 *
 * The rate is the frame rate on the device (IP packets with their link-layer header); TCP's own
 * throughput through it is about 4 % lower at a 1500-byte MTU (headers). Port matches read the
 * TCP/UDP header as network-delay's do (tc-plan.ts).
 */
import type { CidrBlock } from "./net-common.js";
import { EVERYWHERE, LOOPBACK, u32Filters } from "./tc-plan.js";
import type { TcMatch } from "./tc-plan.js";
import { BANDWIDTH_ROOT_HANDLE } from "./network-bandwidth-revert.js";

export { BANDWIDTH_ROOT_HANDLE };

/** The class that carries the limited traffic. */
export const BANDWIDTH_CLASS = "1f1b:10";
/** HTB's direct queue: a filter sending here means "not shaped". */
export const DIRECT_FLOW = "1f1b:0";
/** Packets HTB's direct queue may hold (its default, the device's txqueuelen, can be 0: every direct packet would drop). */
export const DIRECT_QLEN = 1000;

const PREF = { exclusion: { 4: "1", 6: "2" }, target: { 4: "3", 6: "4" } } as const;

/** What the plan is built from: validated parameters, the device, and what must never be limited. */
export interface BandwidthPlanInput {
  device: string;
  /** Bits per second. */
  rateBitsPerSecond: number;
  /** Bytes; from the rate when absent (see defaultBurst). */
  burstBytes?: number;
  destinations?: readonly CidrBlock[];
  ports?: readonly number[];
  /** Exclusions from the host (control plane, IMDS, DNS, SSH, --management); loopback is added by the plan. */
  exclusions: readonly TcMatch[];
}

/** The commands of a network-bandwidth: `install` in order, `remove` undoes all of it. */
export interface BandwidthPlan {
  device: string;
  handle: string;
  classId: string;
  rateBitsPerSecond: number;
  burstBytes: number;
  /** Every packet is limited unless excluded (no destinations, no ports). */
  limitsEverything: boolean;
  install: string[][];
  remove: string[];
}

/**
 * The burst when none is asked for: 10 ms at the rate, at least two full frames. tc's own default
 * (1 ms and one frame) loses tokens whenever a busy host wakes HTB's timer late, and the limit
 * then undershoots.
 */
export function defaultBurst(rateBitsPerSecond: number): number {
  return Math.max(Math.ceil(rateBitsPerSecond / 8 / 100), 3200);
}

/**
 * HTB's quantum for the class, set so the kernel does not compute (and warn about) one from r2q:
 * a tenth of a second's bytes at the rate, within 1600 bytes and 200,000 (HTB's own bounds).
 */
export function quantumFor(rateBitsPerSecond: number): number {
  return Math.min(Math.max(Math.round(rateBitsPerSecond / 8 / 10), 1600), 200_000);
}

/** Builds the whole tc plan of a network-bandwidth. Pure: runs nothing. */
export function buildBandwidthPlan(input: BandwidthPlanInput): BandwidthPlan {
  const { device } = input;
  const limitsEverything = input.destinations === undefined && input.ports === undefined;
  const burst = input.burstBytes ?? defaultBurst(input.rateBitsPerSecond);
  const rate = `${input.rateBitsPerSecond}bit`;
  const defaultClass = limitsEverything ? BANDWIDTH_CLASS.slice(BANDWIDTH_CLASS.indexOf(":") + 1) : "0";
  const install: string[][] = [
    ["qdisc", "add", "dev", device, "root", "handle", BANDWIDTH_ROOT_HANDLE, "htb", "default", defaultClass, "direct_qlen", String(DIRECT_QLEN)],
    [
      "class", "add", "dev", device, "parent", BANDWIDTH_ROOT_HANDLE, "classid", BANDWIDTH_CLASS,
      "htb", "rate", rate, "ceil", rate, "burst", String(burst), "cburst", String(burst), "quantum", String(quantumFor(input.rateBitsPerSecond)),
    ],
  ];
  // Exclusions first (lowest prefs): they win over any target filter.
  const exclusions = [...input.exclusions, ...LOOPBACK];
  for (const family of [4, 6] as const) {
    for (const e of exclusions.filter((x) => x.block.family === family)) {
      install.push(...u32Filters(device, BANDWIDTH_ROOT_HANDLE, e, PREF.exclusion[family], DIRECT_FLOW));
    }
  }
  if (!limitsEverything) {
    const blocks = input.destinations ?? EVERYWHERE;
    for (const family of [4, 6] as const) {
      for (const block of blocks.filter((b) => b.family === family)) {
        for (const port of input.ports ?? [undefined]) {
          install.push(...u32Filters(device, BANDWIDTH_ROOT_HANDLE, port === undefined ? { block } : { block, port }, PREF.target[family], BANDWIDTH_CLASS));
        }
      }
    }
  }
  return {
    device,
    handle: BANDWIDTH_ROOT_HANDLE,
    classId: BANDWIDTH_CLASS,
    rateBitsPerSecond: input.rateBitsPerSecond,
    burstBytes: burst,
    limitsEverything,
    install,
    remove: ["qdisc", "del", "dev", device, "root", "handle", BANDWIDTH_ROOT_HANDLE],
  };
}
