/**
 * The nftables ruleset of network-loss, network-blackhole and network-reject, built as text from validated
 * parameters only, and loaded in one atomic transaction with `nft -f -`.
 *
 * Shape (loss 30% to 10.1.0.0/16 port 443, egress):
 *
 *   create table inet firedrill
 *   add chain inet firedrill egress { type filter hook output priority -10; policy accept; }
 *   add rule inet firedrill egress ip daddr 10.0.0.5 meta l4proto { tcp, udp } th dport 7443 accept comment "excluded: the control plane …"
 *   add rule inet firedrill egress ip daddr 169.254.169.254 accept comment "excluded: EC2 instance metadata (IMDS)"
 *   add rule inet firedrill egress meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 accept comment "excluded: DNS"
 *   add rule inet firedrill egress meta nfproto ipv4 tcp sport 22 accept comment "excluded: SSH (port 22, always)"
 *   …
 *   add rule inet firedrill egress ip daddr { 10.1.0.0/16 } meta l4proto { tcp, udp } th dport { 443 } counter numgen random mod 100 < 30 counter drop comment "firedrill network-loss 30%"
 *
 * `create table` fails when the table exists, so a second fault (or a stale table) can never be
 * merged into: the whole transaction is refused and nothing changes. Chains hook output (egress)
 * and input (ingress) at priority -10, before the usual filter chains, with policy accept: only the
 * drop rules act. Exclusions come first, as accept. Ports are the remote side's: `th dport` on
 * egress, `th sport` on ingress — except local-port exclusions (SSH, --management ports), a server
 * on this host: `sport` on egress (its replies), `dport` on ingress (connections to it), so that
 * both established sessions and new connections to it keep working.
 */
import type { FaultParamsByKind } from "@firedrill/protocol";
import { blockText, safeComment } from "./net-common.js";
import type { CidrBlock, ParsedExclusion } from "./net-common.js";
import { NFT_TABLE } from "./nft-revert.js";

export { NFT_TABLE };

type NetworkDirection = FaultParamsByKind["network-loss"]["direction"];

/** Hook priority of the chains: before the usual filter chains (priority 0). */
export const NFT_PRIORITY = -10;

/** The ICMP answer of a reject (nftables `icmpx` type). */
export type NftRejectWith = FaultParamsByKind["network-reject"]["with"];

/**
 * What the fault's rules do: drop a share of the packets, or all of them, or reject TCP and UDP
 * (a TCP reset; an ICMP error of type `with` for UDP; other protocols pass).
 */
export type NftAction = { kind: "loss"; percent: number } | { kind: "blackhole" } | { kind: "reject"; with: NftRejectWith };

/** What the ruleset is built from. */
export interface NftPlanInput {
  action: NftAction;
  destinations?: readonly CidrBlock[];
  ports?: readonly number[];
  direction: NetworkDirection;
  exclusions: readonly ParsedExclusion[];
}

/** The ruleset to load, and the chains it creates. */
export interface NftPlan {
  ruleset: string;
  chains: ("egress" | "ingress")[];
}

const CHAINS = {
  egress: { hook: "output", addr: "daddr", port: "dport", lo: "oifname" },
  ingress: { hook: "input", addr: "saddr", port: "sport", lo: "iifname" },
} as const;

function addressMatch(blocks: readonly CidrBlock[], field: "daddr" | "saddr"): string {
  const family = blocks[0]!.family;
  const proto = family === 4 ? "ip" : "ip6";
  if (blocks.length === 1 && blocks[0]!.prefix === 0) return `meta nfproto ${family === 4 ? "ipv4" : "ipv6"}`;
  if (blocks.length === 1) return `${proto} ${field} ${blockText(blocks[0]!)}`;
  return `${proto} ${field} { ${blocks.map(blockText).join(", ")} }`;
}

function portMatch(ports: readonly number[], field: "dport" | "sport", protocol?: "tcp" | "udp"): string {
  const set = ports.length === 1 ? String(ports[0]) : `{ ${ports.join(", ")} }`;
  return protocol ? `${protocol} ${field} ${set}` : `meta l4proto { tcp, udp } th ${field} ${set}`;
}

const OTHER_SIDE = { dport: "sport", sport: "dport" } as const;

function exclusionMatch(e: ParsedExclusion, chain: (typeof CHAINS)[keyof typeof CHAINS]): string {
  const match = [addressMatch([e.block], chain.addr)];
  if (e.port !== undefined) match.push(portMatch([e.port], chain.port, e.protocol));
  else if (e.localPort !== undefined) match.push(portMatch([e.localPort], OTHER_SIDE[chain.port], e.protocol));
  else if (e.protocol) match.push(`meta l4proto ${e.protocol}`);
  return match.join(" ");
}

function describe(action: NftAction): string {
  if (action.kind === "loss") return `firedrill network-loss ${action.percent}%`;
  return action.kind === "reject" ? "firedrill network-reject" : "firedrill network-blackhole";
}

/** The comments of network-reject's two rules (its counters are read by them). */
export const REJECT_COMMENTS = { tcp: "firedrill network-reject tcp reset", udp: "firedrill network-reject udp icmpx" } as const;

/**
 * The verdicts of an action, each with its comment: one rule for loss and blackhole; two for
 * reject, TCP first (a reset: the connect fails at once with ECONNREFUSED), then UDP (an ICMP error).
 */
function verdicts(action: NftAction): string[] {
  switch (action.kind) {
    case "loss":
      return [`counter numgen random mod 100 < ${action.percent} counter drop comment "${safeComment(describe(action))}"`];
    case "blackhole":
      return [`counter drop comment "${safeComment(describe(action))}"`];
    case "reject":
      return [
        `meta l4proto tcp counter reject with tcp reset comment "${REJECT_COMMENTS.tcp}"`,
        `meta l4proto udp counter reject with icmpx type ${action.with} comment "${REJECT_COMMENTS.udp}"`,
      ];
  }
}

/** Builds the ruleset text. Pure: runs nothing. Every value in it comes from validated input. */
export function buildNftPlan(input: NftPlanInput): NftPlan {
  const { family, name } = NFT_TABLE;
  const chains = input.direction === "both" ? (["egress", "ingress"] as const) : ([input.direction] as const);
  const lines = [`create table ${family} ${name}`];
  for (const chain of chains) {
    const c = CHAINS[chain];
    const rule = (text: string) => lines.push(`add rule ${family} ${name} ${chain} ${text}`);
    lines.push(`add chain ${family} ${name} ${chain} { type filter hook ${c.hook} priority ${NFT_PRIORITY}; policy accept; }`);
    for (const e of input.exclusions) rule(`${exclusionMatch(e, c)} accept comment "${safeComment(`excluded: ${e.reason}`)}"`);
    // Cutting off the whole host leaves loopback alone, as a real network failure would.
    if (!input.destinations) rule(`${c.lo} "lo" accept comment "excluded: loopback"`);
    const ports = input.ports ? [portMatch(input.ports, c.port)] : [];
    for (const verdict of verdicts(input.action)) {
      if (!input.destinations) rule([...ports, verdict].join(" "));
      else {
        for (const fam of [4, 6] as const) {
          const blocks = input.destinations.filter((b) => b.family === fam);
          if (blocks.length > 0) rule([addressMatch(blocks, c.addr), ...ports, verdict].join(" "));
        }
      }
    }
  }
  return { ruleset: `${lines.join("\n")}\n`, chains: [...chains] };
}
