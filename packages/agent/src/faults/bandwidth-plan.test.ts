import { describe, expect, it } from "vitest";
import { parseBlock, parseExclusions, sshExclusions } from "./net-common.js";
import { buildBandwidthPlan, defaultBurst, quantumFor } from "./bandwidth-plan.js";

const EXCLUSIONS = parseExclusions([
  { cidr: "10.0.0.5/32", port: 7443, reason: "the control plane" },
  { cidr: "169.254.169.254/32", reason: "IMDS" },
  ...sshExclusions([]),
]).map((e) => ({
  block: e.block,
  ...(e.port !== undefined ? { port: e.port } : {}),
  ...(e.localPort !== undefined ? { localPort: e.localPort } : {}),
  ...(e.protocol !== undefined ? { protocol: e.protocol } : {}),
}));

const lines = (install: string[][]) => install.map((a) => a.join(" "));

describe("the tc plan of network-bandwidth", () => {
  it("destinations and ports: default 0 (unfiltered traffic unshaped), exclusions to the direct queue first, then one filter per destination × port", () => {
    const plan = buildBandwidthPlan({
      device: "eth0",
      rateBitsPerSecond: 10_000_000,
      destinations: [parseBlock("10.1.0.0/16"), parseBlock("2001:db8::/32")],
      ports: [443],
      exclusions: EXCLUSIONS,
    });
    expect(plan).toMatchObject({ handle: "1f1b:", classId: "1f1b:10", limitsEverything: false, burstBytes: 12_500, remove: ["qdisc", "del", "dev", "eth0", "root", "handle", "1f1b:"] });
    expect(lines(plan.install)).toEqual([
      "qdisc add dev eth0 root handle 1f1b: htb default 0 direct_qlen 1000",
      "class add dev eth0 parent 1f1b: classid 1f1b:10 htb rate 10000000bit ceil 10000000bit burst 12500 cburst 12500 quantum 125000",
      // exclusions and loopback: IPv4 at pref 1, IPv6 at pref 2, to 1f1b:0 (HTB's direct queue)
      "filter add dev eth0 parent 1f1b: protocol ip pref 1 u32 match ip dst 10.0.0.5/32 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 7443 0xffff flowid 1f1b:0",
      "filter add dev eth0 parent 1f1b: protocol ip pref 1 u32 match ip dst 10.0.0.5/32 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 7443 0xffff flowid 1f1b:0",
      "filter add dev eth0 parent 1f1b: protocol ip pref 1 u32 match ip dst 169.254.169.254/32 flowid 1f1b:0",
      "filter add dev eth0 parent 1f1b: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip sport 22 0xffff flowid 1f1b:0",
      "filter add dev eth0 parent 1f1b: protocol ip pref 1 u32 match ip dst 127.0.0.0/8 flowid 1f1b:0",
      "filter add dev eth0 parent 1f1b: protocol ipv6 pref 2 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 sport 22 0xffff flowid 1f1b:0",
      "filter add dev eth0 parent 1f1b: protocol ipv6 pref 2 u32 match ip6 dst ::1/128 flowid 1f1b:0",
      // targets
      "filter add dev eth0 parent 1f1b: protocol ip pref 3 u32 match ip dst 10.1.0.0/16 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 443 0xffff flowid 1f1b:10",
      "filter add dev eth0 parent 1f1b: protocol ip pref 3 u32 match ip dst 10.1.0.0/16 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 443 0xffff flowid 1f1b:10",
      "filter add dev eth0 parent 1f1b: protocol ipv6 pref 4 u32 match ip6 dst 2001:db8::/32 match ip6 protocol 6 0xff match ip6 dport 443 0xffff flowid 1f1b:10",
      "filter add dev eth0 parent 1f1b: protocol ipv6 pref 4 u32 match ip6 dst 2001:db8::/32 match ip6 protocol 17 0xff match ip6 dport 443 0xffff flowid 1f1b:10",
    ]);
  });

  it("everything: default 10 sends every unfiltered packet to the limit, only the exclusions bypass it; no target filters", () => {
    const plan = buildBandwidthPlan({ device: "ens5", rateBitsPerSecond: 1_000_000, burstBytes: 65_536, exclusions: EXCLUSIONS.slice(0, 1) });
    expect(plan.limitsEverything).toBe(true);
    expect(lines(plan.install)).toEqual([
      "qdisc add dev ens5 root handle 1f1b: htb default 10 direct_qlen 1000",
      "class add dev ens5 parent 1f1b: classid 1f1b:10 htb rate 1000000bit ceil 1000000bit burst 65536 cburst 65536 quantum 12500",
      "filter add dev ens5 parent 1f1b: protocol ip pref 1 u32 match ip dst 10.0.0.5/32 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 7443 0xffff flowid 1f1b:0",
      "filter add dev ens5 parent 1f1b: protocol ip pref 1 u32 match ip dst 10.0.0.5/32 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 7443 0xffff flowid 1f1b:0",
      "filter add dev ens5 parent 1f1b: protocol ip pref 1 u32 match ip dst 127.0.0.0/8 flowid 1f1b:0",
      "filter add dev ens5 parent 1f1b: protocol ipv6 pref 2 u32 match ip6 dst ::1/128 flowid 1f1b:0",
    ]);
  });

  it("ports only: every address on those ports, both families", () => {
    const plan = buildBandwidthPlan({ device: "eth0", rateBitsPerSecond: 1_000_000, ports: [80], exclusions: [] });
    expect(lines(plan.install).filter((l) => l.includes("flowid 1f1b:10"))).toEqual([
      "filter add dev eth0 parent 1f1b: protocol ip pref 3 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 80 0xffff flowid 1f1b:10",
      "filter add dev eth0 parent 1f1b: protocol ip pref 3 u32 match ip dst 0.0.0.0/0 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 80 0xffff flowid 1f1b:10",
      "filter add dev eth0 parent 1f1b: protocol ipv6 pref 4 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 dport 80 0xffff flowid 1f1b:10",
      "filter add dev eth0 parent 1f1b: protocol ipv6 pref 4 u32 match ip6 dst ::/0 match ip6 protocol 17 0xff match ip6 dport 80 0xffff flowid 1f1b:10",
    ]);
  });

  it("burst defaults to 10 ms at the rate (at least two frames); quantum within HTB's bounds", () => {
    expect(defaultBurst(8_000)).toBe(3200);
    expect(defaultBurst(1_000_000)).toBe(3200);
    expect(defaultBurst(50_000_000)).toBe(62_500);
    expect(defaultBurst(10_000_000_000)).toBe(12_500_000);
    expect(quantumFor(8_000)).toBe(1600);
    expect(quantumFor(1_000_000)).toBe(12_500);
    expect(quantumFor(10_000_000)).toBe(125_000);
    expect(quantumFor(1_000_000_000)).toBe(200_000);
  });
});
