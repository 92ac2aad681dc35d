import { describe, expect, it } from "vitest";
import { parseBlock } from "./net-common.js";
import { buildTcPlan } from "./tc-plan.js";
import type { TcPlanInput } from "./tc-plan.js";

const EXCLUSIONS = [
  { block: parseBlock("10.0.0.5/32"), port: 7443 }, // the control plane
  { block: parseBlock("169.254.169.254/32") }, // IMDS
  { block: parseBlock("fd00:ec2::254/128") },
  { block: parseBlock("0.0.0.0/0"), port: 53 }, // DNS
  { block: parseBlock("::/0"), port: 53 },
];

function plan(over: Partial<TcPlanInput> = {}) {
  return buildTcPlan({ device: "eth0", delayMs: 100, jitterMs: 0, correlation: 0, exclusions: EXCLUSIONS, ...over });
}

const lines = (p: ReturnType<typeof plan>) => p.install.map((a) => a.join(" "));

describe("the tc plan of network-delay", () => {
  it("SSH and management ports on this host: their outgoing packets (source port) go to the normal band, before any target", () => {
    const p = plan({
      destinations: [parseBlock("0.0.0.0/0")],
      exclusions: [
        { block: parseBlock("0.0.0.0/0"), localPort: 22, protocol: "tcp" },
        { block: parseBlock("::/0"), localPort: 22, protocol: "tcp" },
        { block: parseBlock("0.0.0.0/0"), localPort: 161 }, // --management 161: TCP and UDP
        { block: parseBlock("10.0.0.0/8") }, // --management 10.0.0.0/8
      ],
    });
    expect(lines(p).filter((l) => l.endsWith("flowid 1f1d:1"))).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip sport 22 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip sport 161 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip sport 161 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 10.0.0.0/8 flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 127.0.0.0/8 flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 sport 22 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::1/128 flowid 1f1d:1",
    ]);
    expect(lines(p).filter((l) => l.endsWith("flowid 1f1d:4"))).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 0.0.0.0/0 flowid 1f1d:4",
    ]);
  });

  it("no destinations: a 4-band prio whose priomap sends everything to netem; only exclusions bypass it", () => {
    const p = plan();
    expect(p.delaysEverything).toBe(true);
    expect(lines(p)).toEqual([
      "qdisc add dev eth0 root handle 1f1d: prio bands 4 priomap 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3",
      "qdisc add dev eth0 parent 1f1d:4 handle 1f1e: netem limit 10000 delay 100ms",
      // IPv4 exclusions at pref 1, to the normal band 1f1d:1 (port ones once per TCP and UDP).
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 10.0.0.5/32 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 7443 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 10.0.0.5/32 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 7443 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 169.254.169.254/32 flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 53 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 53 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 127.0.0.0/8 flowid 1f1d:1",
      // IPv6 exclusions at pref 2.
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst fd00:ec2::254/128 flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 dport 53 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::/0 match ip6 protocol 17 0xff match ip6 dport 53 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::1/128 flowid 1f1d:1",
    ]);
    expect(p.remove).toEqual(["qdisc", "del", "dev", "eth0", "root", "handle", "1f1d:"]);
  });

  it("jitter and correlation go on the netem line", () => {
    expect(plan({ jitterMs: 20, correlation: 25 }).install[1]).toEqual(
      ["qdisc", "add", "dev", "eth0", "parent", "1f1d:4", "handle", "1f1e:", "netem", "limit", "10000", "delay", "100ms", "20ms", "25%"],
    );
    // correlation alone means nothing to netem and is left out
    expect(plan({ jitterMs: 0, correlation: 25 }).install[1]?.slice(-2)).toEqual(["delay", "100ms"]);
  });

  it("destinations: the default priomap (bands 1-3) and target filters to band 4, after the exclusions", () => {
    const p = plan({ destinations: [parseBlock("192.0.2.0/24"), parseBlock("2001:db8::/32")] });
    expect(p.delaysEverything).toBe(false);
    expect(lines(p)[0]).toBe("qdisc add dev eth0 root handle 1f1d: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1");
    const targets = lines(p).filter((l) => l.endsWith("flowid 1f1d:4"));
    expect(targets).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 192.0.2.0/24 flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 4 u32 match ip6 dst 2001:db8::/32 flowid 1f1d:4",
    ]);
    // every exclusion filter comes before (and at a lower pref than) every target filter
    const prefs = p.install.slice(2).map((a) => Number(a[a.indexOf("pref") + 1]));
    expect(prefs).toEqual([...prefs].sort((a, b) => a - b));
    expect(Math.max(...prefs.filter((_, i) => p.install[i + 2]!.at(-1) === "1f1d:1"))).toBeLessThan(3);
  });

  it("destinations × ports: one filter per block, port and protocol (TCP, UDP)", () => {
    const p = plan({ destinations: [parseBlock("192.0.2.0/24")], ports: [80, 443] });
    expect(lines(p).filter((l) => l.endsWith("flowid 1f1d:4"))).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 192.0.2.0/24 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 80 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 192.0.2.0/24 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 80 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 192.0.2.0/24 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 443 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 192.0.2.0/24 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 443 0xffff flowid 1f1d:4",
    ]);
  });

  it("ports without destinations: those ports to any IPv4 or IPv6 address, not everything", () => {
    const p = plan({ ports: [5432] });
    expect(p.delaysEverything).toBe(false);
    expect(lines(p).filter((l) => l.endsWith("flowid 1f1d:4"))).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip dport 5432 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ip pref 3 u32 match ip dst 0.0.0.0/0 match ip protocol 17 0xff match u16 0 0x1fff at 6 match ip dport 5432 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 4 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 dport 5432 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 4 u32 match ip6 dst ::/0 match ip6 protocol 17 0xff match ip6 dport 5432 0xffff flowid 1f1d:4",
    ]);
  });

  it("IPv6-only destinations with a port", () => {
    const p = plan({ destinations: [parseBlock("2001:db8:1::/48")], ports: [443], exclusions: [] });
    expect(lines(p).slice(2)).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 127.0.0.0/8 flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::1/128 flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 4 u32 match ip6 dst 2001:db8:1::/48 match ip6 protocol 6 0xff match ip6 dport 443 0xffff flowid 1f1d:4",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 4 u32 match ip6 dst 2001:db8:1::/48 match ip6 protocol 17 0xff match ip6 dport 443 0xffff flowid 1f1d:4",
    ]);
  });

  it("every argument is a separate array element (no shell, no spaces inside one)", () => {
    const p = plan({ destinations: [parseBlock("192.0.2.0/24")], ports: [80], jitterMs: 5, correlation: 10 });
    for (const args of [...p.install, p.remove]) for (const a of args) expect(a).toMatch(/^\S+$/);
  });
});
