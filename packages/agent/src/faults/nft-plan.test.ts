import { describe, expect, it } from "vitest";
import { parseBlock, parseExclusions, sshExclusions } from "./net-common.js";
import { buildNftPlan } from "./nft-plan.js";

const EXCLUSIONS = parseExclusions([
  { cidr: "10.0.0.5/32", port: 7443, reason: "the control plane (cp.example.com:7443)" },
  { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
  { cidr: "fd00:ec2::254/128", reason: "EC2 instance metadata (IMDS)" },
  { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
  { cidr: "::/0", port: 53, reason: "DNS" },
]);

describe("the nftables ruleset of network-loss and network-blackhole", () => {
  it("loss, egress, destinations and ports: exclusions accepted first, then one counted numgen drop per family", () => {
    const { ruleset, chains } = buildNftPlan({
      action: { kind: "loss", percent: 30 },
      destinations: [parseBlock("10.1.0.0/16"), parseBlock("192.0.2.7"), parseBlock("2001:db8::/32")],
      ports: [443, 8443],
      direction: "egress",
      exclusions: EXCLUSIONS,
    });
    expect(chains).toEqual(["egress"]);
    expect(ruleset.split("\n")).toEqual([
      "create table inet firedrill",
      "add chain inet firedrill egress { type filter hook output priority -10; policy accept; }",
      'add rule inet firedrill egress ip daddr 10.0.0.5 meta l4proto { tcp, udp } th dport 7443 accept comment "excluded: the control plane (cp.example.com:7443)"',
      'add rule inet firedrill egress ip daddr 169.254.169.254 accept comment "excluded: EC2 instance metadata (IMDS)"',
      'add rule inet firedrill egress ip6 daddr fd00:ec2::254 accept comment "excluded: EC2 instance metadata (IMDS)"',
      'add rule inet firedrill egress meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 accept comment "excluded: DNS"',
      'add rule inet firedrill egress meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 accept comment "excluded: DNS"',
      'add rule inet firedrill egress ip daddr { 10.1.0.0/16, 192.0.2.7 } meta l4proto { tcp, udp } th dport { 443, 8443 } counter numgen random mod 100 < 30 counter drop comment "firedrill network-loss 30%"',
      'add rule inet firedrill egress ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp } th dport { 443, 8443 } counter numgen random mod 100 < 30 counter drop comment "firedrill network-loss 30%"',
      "",
    ]);
  });

  it("reject, egress, destinations and ports: TCP gets a reset, then UDP the ICMP error asked for; other protocols pass", () => {
    const { ruleset, chains } = buildNftPlan({
      action: { kind: "reject", with: "admin-prohibited" },
      destinations: [parseBlock("10.1.0.0/16"), parseBlock("2001:db8::/32")],
      ports: [5432],
      direction: "egress",
      exclusions: EXCLUSIONS.slice(0, 1),
    });
    expect(chains).toEqual(["egress"]);
    expect(ruleset.split("\n")).toEqual([
      "create table inet firedrill",
      "add chain inet firedrill egress { type filter hook output priority -10; policy accept; }",
      'add rule inet firedrill egress ip daddr 10.0.0.5 meta l4proto { tcp, udp } th dport 7443 accept comment "excluded: the control plane (cp.example.com:7443)"',
      'add rule inet firedrill egress ip daddr 10.1.0.0/16 meta l4proto { tcp, udp } th dport 5432 meta l4proto tcp counter reject with tcp reset comment "firedrill network-reject tcp reset"',
      'add rule inet firedrill egress ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp } th dport 5432 meta l4proto tcp counter reject with tcp reset comment "firedrill network-reject tcp reset"',
      'add rule inet firedrill egress ip daddr 10.1.0.0/16 meta l4proto { tcp, udp } th dport 5432 meta l4proto udp counter reject with icmpx type admin-prohibited comment "firedrill network-reject udp icmpx"',
      'add rule inet firedrill egress ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp } th dport 5432 meta l4proto udp counter reject with icmpx type admin-prohibited comment "firedrill network-reject udp icmpx"',
      "",
    ]);
  });

  it("reject of everything, both ways: loopback and the exclusions accepted first, in each chain", () => {
    const { ruleset } = buildNftPlan({ action: { kind: "reject", with: "port-unreachable" }, direction: "both", exclusions: EXCLUSIONS.slice(3, 4) });
    expect(ruleset.split("\n").filter((l) => l.startsWith("add rule"))).toEqual([
      'add rule inet firedrill egress meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 accept comment "excluded: DNS"',
      'add rule inet firedrill egress oifname "lo" accept comment "excluded: loopback"',
      'add rule inet firedrill egress meta l4proto tcp counter reject with tcp reset comment "firedrill network-reject tcp reset"',
      'add rule inet firedrill egress meta l4proto udp counter reject with icmpx type port-unreachable comment "firedrill network-reject udp icmpx"',
      'add rule inet firedrill ingress meta nfproto ipv4 meta l4proto { tcp, udp } th sport 53 accept comment "excluded: DNS"',
      'add rule inet firedrill ingress iifname "lo" accept comment "excluded: loopback"',
      'add rule inet firedrill ingress meta l4proto tcp counter reject with tcp reset comment "firedrill network-reject tcp reset"',
      'add rule inet firedrill ingress meta l4proto udp counter reject with icmpx type port-unreachable comment "firedrill network-reject udp icmpx"',
    ]);
  });

  it("blackhole, both directions, everything: ingress matches the remote side (saddr, sport); loopback is left alone", () => {
    const { ruleset, chains } = buildNftPlan({ action: { kind: "blackhole" }, direction: "both", exclusions: EXCLUSIONS.slice(0, 1) });
    expect(chains).toEqual(["egress", "ingress"]);
    expect(ruleset.split("\n")).toEqual([
      "create table inet firedrill",
      "add chain inet firedrill egress { type filter hook output priority -10; policy accept; }",
      'add rule inet firedrill egress ip daddr 10.0.0.5 meta l4proto { tcp, udp } th dport 7443 accept comment "excluded: the control plane (cp.example.com:7443)"',
      'add rule inet firedrill egress oifname "lo" accept comment "excluded: loopback"',
      'add rule inet firedrill egress counter drop comment "firedrill network-blackhole"',
      "add chain inet firedrill ingress { type filter hook input priority -10; policy accept; }",
      'add rule inet firedrill ingress ip saddr 10.0.0.5 meta l4proto { tcp, udp } th sport 7443 accept comment "excluded: the control plane (cp.example.com:7443)"',
      'add rule inet firedrill ingress iifname "lo" accept comment "excluded: loopback"',
      'add rule inet firedrill ingress counter drop comment "firedrill network-blackhole"',
      "",
    ]);
  });

  it("SSH and management ports are a server on this host: egress accepts its source port, ingress its destination port", () => {
    const exclusions = parseExclusions([
      ...sshExclusions([2222]),
      { cidr: "0.0.0.0/0", localPort: 161, protocol: "udp", reason: "management (--management udp:161)" },
      { cidr: "10.0.0.0/8", reason: "management (--management 10.0.0.0/8)" },
    ]);
    const { ruleset } = buildNftPlan({ action: { kind: "blackhole" }, direction: "both", exclusions });
    expect(ruleset.split("\n").filter((l) => l.startsWith("add rule") && l.includes(" accept "))).toEqual([
      'add rule inet firedrill egress meta nfproto ipv4 tcp sport 22 accept comment "excluded: SSH (port 22: always)"',
      'add rule inet firedrill egress meta nfproto ipv6 tcp sport 22 accept comment "excluded: SSH (port 22: always)"',
      'add rule inet firedrill egress meta nfproto ipv4 tcp sport 2222 accept comment "excluded: SSH (sshd listens on port 2222)"',
      'add rule inet firedrill egress meta nfproto ipv6 tcp sport 2222 accept comment "excluded: SSH (sshd listens on port 2222)"',
      'add rule inet firedrill egress meta nfproto ipv4 udp sport 161 accept comment "excluded: management (--management udp:161)"',
      'add rule inet firedrill egress ip daddr 10.0.0.0/8 accept comment "excluded: management (--management 10.0.0.0/8)"',
      'add rule inet firedrill egress oifname "lo" accept comment "excluded: loopback"',
      'add rule inet firedrill ingress meta nfproto ipv4 tcp dport 22 accept comment "excluded: SSH (port 22: always)"',
      'add rule inet firedrill ingress meta nfproto ipv6 tcp dport 22 accept comment "excluded: SSH (port 22: always)"',
      'add rule inet firedrill ingress meta nfproto ipv4 tcp dport 2222 accept comment "excluded: SSH (sshd listens on port 2222)"',
      'add rule inet firedrill ingress meta nfproto ipv6 tcp dport 2222 accept comment "excluded: SSH (sshd listens on port 2222)"',
      'add rule inet firedrill ingress meta nfproto ipv4 udp dport 161 accept comment "excluded: management (--management udp:161)"',
      'add rule inet firedrill ingress ip saddr 10.0.0.0/8 accept comment "excluded: management (--management 10.0.0.0/8)"',
      'add rule inet firedrill ingress iifname "lo" accept comment "excluded: loopback"',
    ]);
    // Every accept comes before the chain's drop rule.
    const lines = ruleset.split("\n");
    for (const chain of ["egress", "ingress"]) {
      const ofChain = lines.filter((l) => l.startsWith(`add rule inet firedrill ${chain} `));
      expect(ofChain.findIndex((l) => l.includes(" drop "))).toBe(ofChain.length - 1);
    }
  });

  it("ports only, ingress: every address, remote source port", () => {
    const { ruleset } = buildNftPlan({ action: { kind: "blackhole" }, ports: [5432], direction: "ingress", exclusions: [] });
    expect(ruleset).toContain('add rule inet firedrill ingress meta l4proto { tcp, udp } th sport 5432 counter drop comment "firedrill network-blackhole"');
  });

  it("comments never carry quotes or other syntax from an exclusion's reason", () => {
    const { ruleset } = buildNftPlan({
      action: { kind: "blackhole" },
      direction: "egress",
      exclusions: parseExclusions([{ cidr: "10.0.0.5/32", reason: 'evil" ; flush ruleset ; "' }]),
    });
    expect(ruleset).toContain('comment "excluded: evil_ _ flush ruleset _ _"');
    expect(ruleset.split("\n").filter((l) => l.includes("flush"))).toHaveLength(1);
    expect((ruleset.match(/"/g) ?? []).length % 2).toBe(0);
  });
});
