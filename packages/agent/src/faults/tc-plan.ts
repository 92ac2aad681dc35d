/**
 * The tc plan of network-delay, built as data: every command as an argument array for `tc`, so it
 * can be read, tested and logged before anything runs.
 *
 * Shape (device eth0, handle 1f1d:):
 *
 *   root 1f1d: prio bands 4 ─┬─ 1f1d:1  band 1  normal (exclusions are sent here)
 *                            ├─ 1f1d:2  band 2  normal
 *                            ├─ 1f1d:3  band 3  normal
 *                            └─ 1f1d:4  band 4  ── 1f1e: netem delay …   (the delayed traffic)
 *
 * u32 filters on 1f1d:, first match wins, lowest pref first:
 *   pref 1 (IPv4) / 2 (IPv6)  exclusions + loopback        → 1f1d:1
 *                             (a local-port exclusion — SSH, --management ports — matches the
 *                             source port: the replies of a server on this host)
 *   pref 3 (IPv4) / 4 (IPv6)  destinations × ports         → 1f1d:4
 * With neither destinations nor ports the priomap sends every packet to band 4 and only the
 * exclusions bypass it; otherwise the priomap is the usual one (bands 1-3) and only the target
 * filters reach band 4.
 *
 * Port matches read the TCP/UDP header right after a 20-byte IPv4 header (or a 40-byte IPv6 header
 * with no extension headers), as `tc ... match ip dport` does; non-first IPv4 fragments never match.
 */
import type { CidrBlock } from "./net-common.js";

/** The root handle network-delay reserves on a device. */
export const DELAY_ROOT_HANDLE = "1f1d:";
/** The handle of its netem qdisc (under band 4). */
export const DELAY_NETEM_HANDLE = "1f1e:";
/** Packets netem may hold at once; beyond that it drops (about 10k packets/s at a 1 s delay). */
export const NETEM_LIMIT = 10_000;

const NORMAL_CLASS = "1f1d:1";
const DELAY_CLASS = "1f1d:4";
/** The Linux default priomap of a 3-band prio, kept so that only filters reach band 4. */
const DEFAULT_PRIOMAP = ["1", "2", "2", "2", "1", "2", "0", "0", "1", "1", "1", "1", "1", "1", "1", "1"];
const ALL_TO_DELAY_PRIOMAP = Array<string>(16).fill("3");

const PREF = { exclusion: { 4: "1", 6: "2" }, target: { 4: "3", 6: "4" } } as const;

/** A block of remote addresses, on one port or all. */
export interface TcMatch {
  block: CidrBlock;
  /** The remote side's port (destination port: tc shapes outgoing packets). */
  port?: number;
  /** A port on this host (source port of outgoing packets), e.g. sshd's. Not with `port`. */
  localPort?: number;
  /** Only this transport; TCP and UDP when absent. */
  protocol?: "tcp" | "udp";
}

/** What the plan is built from: validated parameters, the device, and what must never be delayed. */
export interface TcPlanInput {
  device: string;
  delayMs: number;
  jitterMs: number;
  correlation: number;
  destinations?: readonly CidrBlock[];
  ports?: readonly number[];
  /** Exclusions from the host (control plane, IMDS, DNS, SSH, --management); loopback is added by the plan. */
  exclusions: readonly TcMatch[];
}

/** The commands of a network-delay: `install` in order, `remove` undoes all of it. */
export interface TcPlan {
  device: string;
  handle: string;
  netemHandle: string;
  /** Every packet goes to the netem band unless excluded (no destinations, no ports). */
  delaysEverything: boolean;
  install: string[][];
  remove: string[];
}

function u32Filter(
  device: string,
  parent: string,
  block: CidrBlock,
  pref: string,
  flowid: string,
  port?: { field: "dport" | "sport"; value: number; proto: 6 | 17 },
): string[] {
  const v4 = block.family === 4;
  const args = ["filter", "add", "dev", device, "parent", parent, "protocol", v4 ? "ip" : "ipv6", "pref", pref, "u32"];
  args.push("match", v4 ? "ip" : "ip6", "dst", block.text);
  if (port) {
    args.push("match", v4 ? "ip" : "ip6", "protocol", String(port.proto), "0xff");
    // Fragment offset 0: a non-first fragment carries no port.
    if (v4) args.push("match", "u16", "0", "0x1fff", "at", "6");
    args.push("match", v4 ? "ip" : "ip6", port.field, String(port.value), "0xffff");
  }
  args.push("flowid", flowid);
  return args;
}

const PROTO_NUMBERS = { tcp: [6], udp: [17] } as const;

/**
 * The u32 filters (one, or one per protocol with a port) sending `match` to `flowid` under the
 * qdisc `parent` of `device`, at `pref`. A remote port matches the destination port, a local one
 * the source port (outgoing packets). Shared with network-bandwidth (bandwidth-plan.ts).
 */
export function u32Filters(device: string, parent: string, match: TcMatch, pref: string, flowid: string): string[][] {
  const field = match.port !== undefined ? "dport" : match.localPort !== undefined ? "sport" : undefined;
  const value = match.port ?? match.localPort;
  if (field === undefined || value === undefined) return [u32Filter(device, parent, match.block, pref, flowid)];
  const protos: readonly (6 | 17)[] = match.protocol ? PROTO_NUMBERS[match.protocol] : [6, 17];
  return protos.map((proto) => u32Filter(device, parent, match.block, pref, flowid, { field, value, proto }));
}

function filtersFor(device: string, match: TcMatch, kind: "exclusion" | "target"): string[][] {
  return u32Filters(device, DELAY_ROOT_HANDLE, match, PREF[kind][match.block.family], kind === "exclusion" ? NORMAL_CLASS : DELAY_CLASS);
}

/** The blocks "every destination" stands for. */
export const EVERYWHERE: CidrBlock[] = [
  { family: 4, prefix: 0, first: 0n, last: (1n << 32n) - 1n, text: "0.0.0.0/0" },
  { family: 6, prefix: 0, first: 0n, last: (1n << 128n) - 1n, text: "::/0" },
];

/** Loopback, never shaped (it does not leave by a real device anyway). */
export const LOOPBACK: TcMatch[] = [
  { block: { family: 4, prefix: 8, first: 0x7f000000n, last: 0x7fffffffn, text: "127.0.0.0/8" } },
  { block: { family: 6, prefix: 128, first: 1n, last: 1n, text: "::1/128" } },
];

/** Formats milliseconds for tc (`150ms`). */
function ms(n: number): string {
  return `${n}ms`;
}

/** Builds the whole tc plan of a network-delay. Pure: runs nothing. */
export function buildTcPlan(input: TcPlanInput): TcPlan {
  const { device } = input;
  const delaysEverything = input.destinations === undefined && input.ports === undefined;
  const install: string[][] = [];
  install.push([
    "qdisc", "add", "dev", device, "root", "handle", DELAY_ROOT_HANDLE,
    "prio", "bands", "4", "priomap", ...(delaysEverything ? ALL_TO_DELAY_PRIOMAP : DEFAULT_PRIOMAP),
  ]);
  const netem = ["qdisc", "add", "dev", device, "parent", DELAY_CLASS, "handle", DELAY_NETEM_HANDLE, "netem", "limit", String(NETEM_LIMIT), "delay", ms(input.delayMs)];
  if (input.jitterMs > 0) {
    netem.push(ms(input.jitterMs));
    if (input.correlation > 0) netem.push(`${input.correlation}%`);
  }
  install.push(netem);

  // Exclusions first (lowest prefs): they win over any target filter.
  const exclusions = [...input.exclusions, ...LOOPBACK];
  for (const family of [4, 6] as const) {
    for (const e of exclusions.filter((x) => x.block.family === family)) install.push(...filtersFor(device, e, "exclusion"));
  }
  if (!delaysEverything) {
    const blocks = input.destinations ?? EVERYWHERE;
    for (const family of [4, 6] as const) {
      for (const block of blocks.filter((b) => b.family === family)) {
        const ports = input.ports ?? [undefined];
        for (const port of ports) install.push(...filtersFor(device, port === undefined ? { block } : { block, port }, "target"));
      }
    }
  }
  return {
    device,
    handle: DELAY_ROOT_HANDLE,
    netemHandle: DELAY_NETEM_HANDLE,
    delaysEverything,
    install,
    remove: ["qdisc", "del", "dev", device, "root", "handle", DELAY_ROOT_HANDLE],
  };
}
