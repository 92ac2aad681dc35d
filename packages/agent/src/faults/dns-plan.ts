/**
 * The nftables ruleset of dns-fault, built as text from validated values only (addresses the
 * protocol's parser canonicalized, ports the kernel gave the responder), loaded in one atomic
 * `nft -f -` transaction.
 *
 * Shape (resolver 10.0.0.2, responder on 127.0.0.1:41000/udp and :41001/tcp):
 *
 *   create table inet firedrill_dns
 *   add chain inet firedrill_dns steer { type nat hook output priority -100; policy accept; }
 *   add rule inet firedrill_dns steer udp sport { 45123 } udp dport 53 accept comment "excluded: the agent's own forwards (udp)"
 *   add rule inet firedrill_dns steer tcp sport 61000-61015 tcp dport 53 accept comment "excluded: the agent's own forwards (tcp)"
 *   add rule inet firedrill_dns steer ip daddr 10.0.0.2 udp dport 53 counter redirect to :41000 comment "firedrill dns-fault: resolver 10.0.0.2"
 *   add rule inet firedrill_dns steer ip daddr 10.0.0.2 tcp dport 53 counter redirect to :41001 comment "firedrill dns-fault: resolver 10.0.0.2"
 *
 * Only queries this host sends (the `output` hook) to its resolvers are steered; NAT rules see the
 * first packet of a flow only, so a query's answer comes back through the same translation. The
 * responder's forwards to the resolvers leave from ports excluded first. `create table` fails when
 * the table exists: a stale table is never merged into.
 */
import { DNS_NFT_TABLE } from "./dns-fault-revert.js";
import type { DnsResponderPorts } from "./dns-responder.js";

/** The resolvers' port. */
export const DNS_PORT = 53;
/** dstnat priority: before filter chains, as NAT on the output hook must be. */
export const DNS_NFT_PRIORITY = -100;
/** The chain's name. */
export const DNS_NFT_CHAIN = "steer";

/** `{ a, b }` or a lone value; `a-b` for a run of consecutive ports. */
function portSet(ports: readonly number[]): string {
  const sorted = [...new Set(ports)].sort((a, b) => a - b);
  const consecutive = sorted.length > 1 && sorted.every((p, i) => i === 0 || p === sorted[i - 1]! + 1);
  if (consecutive) return `${sorted[0]}-${sorted[sorted.length - 1]}`;
  return sorted.length === 1 ? String(sorted[0]) : `{ ${sorted.join(", ")} }`;
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${port} is not a port`);
  return port;
}

/** Builds the ruleset text. Pure: runs nothing. */
export function buildDnsNftPlan(ports: DnsResponderPorts): string {
  const { family, name } = DNS_NFT_TABLE;
  const rule = (text: string) => `add rule ${family} ${name} ${DNS_NFT_CHAIN} ${text}`;
  const lines = [
    `create table ${family} ${name}`,
    `add chain ${family} ${name} ${DNS_NFT_CHAIN} { type nat hook output priority ${DNS_NFT_PRIORITY}; policy accept; }`,
  ];
  if (ports.udpForwardPorts.length > 0) {
    lines.push(rule(`udp sport ${portSet(ports.udpForwardPorts.map(checkPort))} udp dport ${DNS_PORT} accept comment "excluded: the agent's own forwards (udp)"`));
  }
  if (ports.tcpForwardPorts.length > 0) {
    lines.push(rule(`tcp sport ${portSet(ports.tcpForwardPorts.map(checkPort))} tcp dport ${DNS_PORT} accept comment "excluded: the agent's own forwards (tcp)"`));
  }
  for (const { resolver, udp, tcp } of ports.listeners) {
    const match = `${resolver.family === 4 ? "ip" : "ip6"} daddr ${resolver.address}`;
    const comment = `comment "firedrill dns-fault: resolver ${resolver.address}"`;
    lines.push(rule(`${match} udp dport ${DNS_PORT} counter redirect to :${checkPort(udp)} ${comment}`));
    lines.push(rule(`${match} tcp dport ${DNS_PORT} counter redirect to :${checkPort(tcp)} ${comment}`));
  }
  return `${lines.join("\n")}\n`;
}
