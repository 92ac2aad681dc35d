/**
 * The traffic every network fault leaves alone: the agent's link to the control plane (so the lease
 * keeps flowing while the fault runs), EC2 instance metadata, DNS, and the management networks and
 * ports of the agent's local config (--management). SSH (port 22 and the ports sshd listens on) is
 * added by the network faults themselves when each one starts (faults/net-common.ts).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { NetworkExclusion } from "./faults/index.js";

/** EC2 instance metadata addresses (IPv4 and the Nitro IPv6 endpoint). */
export const IMDS_EXCLUSIONS: NetworkExclusion[] = [
  { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
  { cidr: "fd00:ec2::254/128", reason: "EC2 instance metadata (IMDS)" },
];

/** DNS: port 53 to any address. */
export const DNS_EXCLUSIONS: NetworkExclusion[] = [
  { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
  { cidr: "::/0", port: 53, reason: "DNS" },
];

/**
 * One --management entry: remote addresses (every packet to or from them), or a port on this host
 * (packets to it coming in, from it going out, with any address).
 */
export type ManagementTarget = { cidr: string } | { localPort: number; protocol?: "tcp" | "udp" | undefined };

/** Formats a management entry as it is written in --management. */
export function managementText(target: ManagementTarget): string {
  return "cidr" in target ? target.cidr : `${target.protocol ? `${target.protocol}:` : ""}${target.localPort}`;
}

/**
 * The exclusions of the --management entries. They come from the agent's local config only:
 * nothing the control plane sends can shrink them.
 */
export function managementExclusions(targets: readonly ManagementTarget[]): NetworkExclusion[] {
  return targets.flatMap((t): NetworkExclusion[] => {
    const reason = `management (--management ${managementText(t)})`;
    if ("cidr" in t) return [{ cidr: t.cidr, reason }];
    return ["0.0.0.0/0", "::/0"].map((cidr) => ({ cidr, localPort: t.localPort, ...(t.protocol ? { protocol: t.protocol } : {}), reason }));
  });
}

/** Splits `host:port` / `[v6]:port`. */
export function splitHostPort(address: string): { host: string; port: number } {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!match) throw new Error(`"${address}" is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

/**
 * Every exclusion for an agent whose control plane is at `server` (host:port; or several: every
 * replica's), with the management networks and ports of its local config. Each host name is
 * resolved to all its addresses, each excluded on that address's port.
 */
export async function computeNetworkExclusions(server: string | readonly string[], management: readonly ManagementTarget[] = []): Promise<NetworkExclusion[]> {
  const controlPlane: NetworkExclusion[] = [];
  const seen = new Set<string>();
  for (const one of typeof server === "string" ? [server] : server) {
    const { host, port } = splitHostPort(one);
    const addresses = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
    for (const address of addresses) {
      const cidr = `${address}/${isIP(address) === 6 ? 128 : 32}`;
      if (seen.has(`${cidr} ${port}`)) continue;
      seen.add(`${cidr} ${port}`);
      controlPlane.push({ cidr, port, reason: `the control plane (${one})` });
    }
  }
  return [...controlPlane, ...IMDS_EXCLUSIONS, ...DNS_EXCLUSIONS, ...managementExclusions(management)];
}
