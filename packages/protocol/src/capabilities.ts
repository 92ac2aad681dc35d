/**
 * What each fault kind needs from a host, checked against the capabilities an agent reports in its
 * Hello, so the control plane can refuse a fault before sending it.
 */

/** A host capability, as reported in `Capabilities`. */
export type HostCapability = "root" | "netem" | "nftables" | "tc" | "systemd";

/** Why each capability matters, and how to get it. */
export const CAPABILITY_HINTS: Record<HostCapability, string> = {
  root: "the agent must run as root",
  netem: "the kernel lacks sch_netem or sch_prio (install the distribution's extra kernel modules, e.g. linux-modules-extra-$(uname -r), and run modprobe -a sch_netem sch_prio)",
  nftables: "the nft binary is missing (install nftables)",
  tc: "the tc binary is missing (install iproute2)",
  systemd: "the host does not run systemd (service-stop stops systemd units; it cannot run on a host with another init)",
};

/** Capabilities each fault kind needs; kinds not listed need none. */
export const FAULT_KIND_REQUIREMENTS: Readonly<Record<string, readonly HostCapability[]>> = {
  "network-delay": ["root", "tc", "netem"],
  "network-loss": ["root", "nftables"],
  "network-blackhole": ["root", "nftables"],
  "network-bandwidth": ["root", "tc"],
  "network-reject": ["root", "nftables"],
  "dns-fault": ["root", "nftables"],
  "service-stop": ["root", "systemd"],
};

/** The capabilities `kind` needs that a host lacks, given what it reported. */
export function missingCapabilities(kind: string, reported: Partial<Record<HostCapability, boolean>>): HostCapability[] {
  return (FAULT_KIND_REQUIREMENTS[kind] ?? []).filter((cap) => reported[cap] !== true);
}
