/**
 * What the network fault kinds share: running tc/nft/ip (argument arrays, time-bounded), the
 * traffic they must never touch (exclusions, SSH among them) and how they describe it, the default
 * route's device, and clear errors.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidFaultRequestError, parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind } from "@firedrill/protocol";
import { findExecutable } from "../executables.js";
import { SSH_PORT, findSshListenPorts } from "./ssh-listeners.js";
import type { SshListenerScan } from "./ssh-listeners.js";
import type { HostInfo, NetworkExclusion } from "./types.js";

export { COMMAND_TIMEOUT_MS, NetCommandError, permissionHint, runChecked, runCommand } from "./net-command.js";
export type { CommandResult, CommandRunner, NetTool } from "./net-command.js";

/** A parsed CIDR block, as the protocol's parameter contract produces it. */
export type CidrBlock = NonNullable<FaultParamsByKind["network-blackhole"]["destinations"]>[number];

/** An exclusion with its block parsed. */
export interface ParsedExclusion {
  /** The remote side's addresses. */
  block: CidrBlock;
  /** The remote side's port; every port when absent. */
  port?: number;
  /** A port on this host: packets to it coming in, from it going out. */
  localPort?: number;
  /** Only this transport; TCP and UDP when absent. */
  protocol?: "tcp" | "udp";
  reason: string;
}

/** Loopback: never delayed (the plan sends it to a normal band). */
export const LOOPBACK_EXCLUSIONS: NetworkExclusion[] = [
  { cidr: "127.0.0.0/8", reason: "loopback" },
  { cidr: "::1/128", reason: "loopback" },
];

/**
 * Parses a CIDR with the protocol's own parser (through the destinations contract), so the agent
 * and the control plane read addresses alike.
 * Thrown when the text is not a CIDR.
 */
export function parseBlock(cidr: string): CidrBlock {
  const block = parseFaultParams("network-blackhole", { destinations: [cidr] }).destinations?.[0];
  if (!block) throw new Error(`${JSON.stringify(cidr)} is not a CIDR`);
  return block;
}

/** Parses the host's exclusions. An unparsable one is a bug in the agent: thrown. */
export function parseExclusions(exclusions: readonly NetworkExclusion[]): ParsedExclusion[] {
  return exclusions.map((e) => ({
    block: parseBlock(e.cidr),
    ...(e.port !== undefined ? { port: e.port } : {}),
    ...(e.localPort !== undefined ? { localPort: e.localPort } : {}),
    ...(e.protocol !== undefined ? { protocol: e.protocol } : {}),
    reason: e.reason,
  }));
}

/**
 * SSH, always excluded: port 22 and every port sshd listens on (from a scan), TCP, any address,
 * both ways (to the local port coming in, from it going out), so that the host's SSH sessions and
 * new SSH connections to it survive any network fault.
 */
export function sshExclusions(listening: readonly number[]): NetworkExclusion[] {
  const ports = [...new Set([SSH_PORT, ...listening])].sort((a, b) => a - b);
  return ports.flatMap((port) => {
    const listens = listening.includes(port);
    const reason = port === SSH_PORT ? `SSH (port 22: always${listens ? ", and sshd listens on it" : ""})` : `SSH (sshd listens on port ${port})`;
    return ["0.0.0.0/0", "::/0"].map((cidr) => ({ cidr, localPort: port, protocol: "tcp" as const, reason }));
  });
}

/** Every exclusion of a network fault on this host, read now: the host's, then SSH's. */
export interface FaultExclusions {
  exclusions: ParsedExclusion[];
  ssh: SshListenerScan;
}

/** Finds sshd's ports (seam for tests: a fixed answer). */
export type SshPortScanner = () => SshListenerScan;

/**
 * The host's exclusions (control plane, IMDS, DNS, --management) plus SSH's (port 22 and the ports
 * sshd listens on now).
 */
export function faultExclusions(host: HostInfo, scan: SshPortScanner = findSshListenPorts): FaultExclusions {
  const ssh = scan();
  return { exclusions: parseExclusions([...host.networkExclusions, ...sshExclusions(ssh.ports)]), ssh };
}

/**
 * One line per reason, for a fault's details and preview, e.g.
 * `excluded: DNS — any address, remote port 53 (tcp, udp)`,
 * `excluded: SSH (port 22, always) — local port 22 (tcp), any address, in and out`.
 */
export function describeExclusions(exclusions: readonly ParsedExclusion[], opts: { loopback?: boolean; ssh?: SshListenerScan } = {}): string[] {
  const groups = new Map<string, ParsedExclusion[]>();
  for (const e of exclusions) groups.set(e.reason, [...(groups.get(e.reason) ?? []), e]);
  const lines: string[] = [];
  const list = (xs: number[], word: string) => `${word}${xs.length === 1 ? "" : "s"} ${xs.join(", ")}`;
  for (const [reason, es] of groups) {
    const addrs = es.every((e) => e.block.prefix === 0) ? "any address" : [...new Set(es.filter((e) => e.block.prefix > 0).map((e) => blockText(e.block)))].join(", ");
    const remote = [...new Set(es.flatMap((e) => (e.port !== undefined ? [e.port] : [])))].sort((a, b) => a - b);
    const local = [...new Set(es.flatMap((e) => (e.localPort !== undefined ? [e.localPort] : [])))].sort((a, b) => a - b);
    const protocols = es.some((e) => e.protocol === undefined) ? "tcp, udp" : [...new Set(es.map((e) => e.protocol))].join(", ");
    const what =
      local.length > 0
        ? `${list(local, "local port")} (${protocols}), ${addrs}, in and out`
        : `${addrs}${remote.length > 0 ? `, ${list(remote, "remote port")} (${protocols})` : ""}`;
    lines.push(`excluded: ${reason} — ${what}`);
  }
  if (opts.loopback) lines.push("excluded: loopback (lo)");
  if (opts.ssh?.incomplete) {
    lines.push(`SSH: the search for sshd's ports ${opts.ssh.incomplete}; port 22 and the ports found are excluded`);
  }
  return lines;
}

/** Exclusions that leave whole remote blocks (on a remote port or all) alone, whatever the local side. */
function remoteOnly(exclusions: readonly ParsedExclusion[]): ParsedExclusion[] {
  return exclusions.filter((e) => e.localPort === undefined && e.protocol === undefined);
}

/** Whether `block` lies entirely inside the union of `covers` (all of the same family or not). */
export function coveredByUnion(block: CidrBlock, covers: CidrBlock[]): boolean {
  const ranges = covers
    .filter((c) => c.family === block.family)
    .map((c) => [c.first, c.last] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let reach = block.first; // everything below `reach` inside the block is covered
  for (const [first, last] of ranges) {
    if (first > reach) break;
    if (last >= reach) {
      if (last >= block.last) return true;
      reach = last + 1n;
    }
  }
  return false;
}

function overlaps(a: CidrBlock, b: CidrBlock): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

/**
 * Whether all traffic to `block` on `ports` (every port when undefined) is excluded, and by what.
 * Such a target would do nothing: the fault refuses it.
 */
export function excludedTarget(
  block: CidrBlock,
  ports: readonly number[] | undefined,
  exclusions: readonly ParsedExclusion[],
): { excluded: boolean; reasons: string[] } {
  // A local-port exclusion (SSH) or a one-protocol one never covers all of a target's traffic.
  exclusions = remoteOnly(exclusions);
  const relevant = (port: number | undefined) =>
    exclusions.filter((e) => e.block.family === block.family && (e.port === undefined || e.port === port));
  const checks = ports === undefined ? [undefined] : [...ports];
  const excluded = checks.every((port) =>
    coveredByUnion(
      block,
      // With every port asked for, only whole-address exclusions can cover it.
      (port === undefined ? exclusions.filter((e) => e.block.family === block.family && e.port === undefined) : relevant(port)).map((e) => e.block),
    ),
  );
  // Name what covers it: exclusions that contain it on their own, else every one overlapping it.
  const candidates = exclusions.filter((e) => (ports === undefined ? e.port === undefined : e.port === undefined || ports.includes(e.port)));
  const containing = candidates.filter((e) => e.block.family === block.family && e.block.first <= block.first && block.last <= e.block.last);
  const reasons = excluded ? [...new Set((containing.length > 0 ? containing : candidates.filter((e) => overlaps(e.block, block))).map((e) => e.reason))] : [];
  return { excluded, reasons };
}

/** Formats a block for messages and rules: a bare address for /32 and /128. */
export function blockText(block: CidrBlock): string {
  const full = block.family === 4 ? 32 : 128;
  return block.prefix === full ? block.text.slice(0, block.text.indexOf("/")) : block.text;
}

/**
 * Refuses destinations (or, without destinations, ports) that only cover excluded traffic: the
 * fault would do nothing there, and an operator asking for it expects something else.
 * Thrown: InvalidFaultRequestError naming the field and the exclusion.
 */
export function refuseExcludedTargets(
  destinations: readonly CidrBlock[] | undefined,
  ports: readonly number[] | undefined,
  exclusions: readonly ParsedExclusion[],
): void {
  const issues: { field: string; message: string }[] = [];
  const onPorts = ports ? ` on ${ports.length === 1 ? "port" : "ports"} ${ports.join(", ")}` : "";
  if (destinations) {
    for (const block of destinations) {
      const { excluded, reasons } = excludedTarget(block, ports, exclusions);
      if (excluded) {
        issues.push({
          field: "params.destinations",
          message: `${block.text}${onPorts} only covers excluded traffic (${reasons.join("; ")}); network faults never touch it`,
        });
      }
    }
  } else if (ports) {
    const everywhere = [parseBlock("0.0.0.0/0"), parseBlock("::/0")].map((b) => excludedTarget(b, ports, exclusions));
    if (everywhere.every((r) => r.excluded)) {
      const reasons = [...new Set(everywhere.flatMap((r) => r.reasons))];
      issues.push({
        field: "params.ports",
        message: `${ports.join(", ")} only ${ports.length === 1 ? "covers" : "cover"} excluded traffic (${reasons.join("; ")}); network faults never touch it`,
      });
    }
  }
  if (issues.length > 0) throw new InvalidFaultRequestError(issues);
}

/** The running kernel's release (`uname -r`). */
export function kernelRelease(): string {
  try {
    return readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    return "unknown";
  }
}

/** The network interfaces of this host (network namespace). */
export function listInterfaces(): string[] {
  try {
    return readdirSync("/sys/class/net").sort();
  } catch {
    return [];
  }
}

/** Whether a network interface exists. */
export function interfaceExists(name: string): boolean {
  return existsSync(join("/sys/class/net", name));
}

/**
 * The device of the default route (`ip -j route show default`, IPv4 first, then IPv6), or
 * undefined when there is none.
 */
export function defaultRouteDevice(): string | undefined {
  const ip = findExecutable("ip");
  if (!ip) return undefined;
  for (const family of ["-4", "-6"]) {
    try {
      const out = execFileSync(ip, ["-j", family, "route", "show", "default"], { timeout: 5000, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      const routes = JSON.parse(out || "[]") as { dev?: string }[];
      const dev = routes.find((r) => r.dev)?.dev;
      if (dev) return dev;
    } catch {
      // no route of this family, or no JSON support
    }
  }
  return undefined;
}

/** Keeps what the text says but only characters safe in an nft comment or a message. */
export function safeComment(text: string): string {
  return text.replace(/[^A-Za-z0-9 .,:()/_+=@%[\]-]/g, "_").slice(0, 120);
}
