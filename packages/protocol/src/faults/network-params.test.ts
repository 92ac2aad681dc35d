import { describe, expect, it } from "vitest";
import { parseFaultParams, validateFaultRequest } from "../fault-kinds.js";
import { InvalidFaultRequestError } from "../params.js";
import { formatIp, parseCidr, parseIp } from "./net-params.js";

function issues(kind: "network-delay" | "network-loss" | "network-blackhole", params: Record<string, unknown>): string[] {
  try {
    parseFaultParams(kind, params as never);
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.issues.map((i) => `${i.field}: ${i.message}`);
    throw err;
  }
  return [];
}

describe("addresses and CIDRs", () => {
  it.each([
    ["10.0.0.1", 4, "10.0.0.1"],
    ["0.0.0.0", 4, "0.0.0.0"],
    ["::", 6, "::"],
    ["::1", 6, "::1"],
    ["2001:DB8:0:0:0:0:0:1", 6, "2001:db8::1"],
    ["2001:db8:0:1:0:0:0:0", 6, "2001:db8:0:1::"],
    ["fd00:ec2::254", 6, "fd00:ec2::254"],
    ["::ffff:10.0.0.1", 6, "::ffff:a00:1"],
    ["1:0:0:1:0:0:0:1", 6, "1:0:0:1::1"],
  ])("%s is IPv%i, canonical %s", (text, family, canonical) => {
    const ip = parseIp(text);
    expect(ip?.family).toBe(family);
    expect(formatIp(ip!.family, ip!.value)).toBe(canonical);
  });

  it.each(["10.0.0", "10.0.0.256", "010.0.0.1", "1:2:3:4:5:6:7:8:9", "1::2::3", "fe80::1%eth0", "example.com", "", "::g"])(
    "%j is not an address",
    (text) => expect(parseIp(text)).toBeUndefined(),
  );

  it("parses blocks, bare addresses and refuses host bits with the fix", () => {
    expect(parseCidr("10.0.0.0/8")).toMatchObject({ family: 4, prefix: 8, text: "10.0.0.0/8", first: 0x0a000000n, last: 0x0affffffn });
    expect(parseCidr("192.0.2.7")).toMatchObject({ prefix: 32, text: "192.0.2.7/32" });
    expect(parseCidr("2001:db8::/32")).toMatchObject({ family: 6, prefix: 32, text: "2001:db8::/32" });
    expect(parseCidr("fd00:ec2::254")).toMatchObject({ prefix: 128, text: "fd00:ec2::254/128" });
    expect(parseCidr("10.1.2.3/8")).toEqual({
      error: '"10.1.2.3/8" has host bits set; use the network 10.0.0.0/8, or 10.1.2.3/32 for the one address',
    });
    expect(parseCidr("10.0.0.0/33")).toEqual({ error: '"10.0.0.0/33" has an invalid prefix length; use 0-32 for IPv4' });
  });
});

describe("network-delay parameters", () => {
  it("reads a full request; lists may be comma strings", () => {
    const p = parseFaultParams("network-delay", {
      interface: "eth0",
      delayMs: 200,
      jitterMs: "20",
      correlation: 25,
      destinations: "10.0.0.0/8, 10.1.0.0/16,2001:db8::/32,10.0.0.0/8",
      ports: "443,80,443",
    });
    expect(p).toMatchObject({ interface: "eth0", delayMs: 200, jitterMs: 20, correlation: 25, ports: [80, 443] });
    // 10.1.0.0/16 lies inside 10.0.0.0/8; duplicates go too.
    expect(p.destinations?.map((d) => d.text)).toEqual(["10.0.0.0/8", "2001:db8::/32"]);
  });

  it("defaults: no interface (the default route's), no jitter, every destination and port", () => {
    expect(parseFaultParams("network-delay", { delayMs: 100 })).toEqual({ delayMs: 100, jitterMs: 0, correlation: 0 });
  });

  it.each([
    [{}, "params.delayMs: is required (allowed: 1-60000 ms)"],
    [{ delayMs: 0 }, "params.delayMs: 0 is below the minimum 1 ms"],
    [{ delayMs: 60_001 }, "params.delayMs: 60001 is above the maximum 60000 ms"],
    [{ delayMs: "fast" }, 'params.delayMs: "fast" is not a number (allowed: 1-60000 ms)'],
    [{ delayMs: 100, jitterMs: 150 }, "params.jitterMs: 150 is more than delayMs 100; the delay varies by ± jitterMs, so keep jitterMs at most delayMs"],
    [{ delayMs: 100, correlation: 101, jitterMs: 10 }, "params.correlation: 101 is above the maximum 100%"],
    [{ delayMs: 100, correlation: 30 }, "params.correlation: 30% has no effect without jitter; set jitterMs too, or leave correlation out"],
    [{ delayMs: 100, interface: "eth0; rm -rf /" }, 'params.interface: "eth0; rm -rf /" is not valid; expected a network interface name such as eth0 or ens5'],
    [{ delayMs: 100, destinations: ["10.0.0.300"] }, 'params.destinations: "10.0.0.300" is not an IPv4/IPv6 address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)'],
    [{ delayMs: 100, destinations: [] }, "params.destinations: is empty; leave it out to act on every destination, or list CIDRs such as 10.0.0.0/8"],
    [{ delayMs: 100, ports: [0, 70000, "http"] }, 'params.ports: 0, 70000, "http" are not ports; use whole numbers 1-65535'],
    [{ delayMs: 100, lag: 5 }, "params.lag: unknown parameter for network-delay; allowed: interface, delayMs, jitterMs, correlation, destinations, ports"],
  ])("%j → %s", (params, message) => {
    expect(issues("network-delay", params)).toContain(message);
  });

  it("bounds the number of tc filters", () => {
    const destinations = Array.from({ length: 9 }, (_, i) => `10.0.${i}.0/24`);
    const ports = Array.from({ length: 8 }, (_, i) => 8000 + i);
    expect(issues("network-delay", { delayMs: 10, destinations, ports })).toEqual([
      "params.ports: 9 destinations × 8 ports make 72 filters; at most 64 destination × port pairs are allowed (use wider CIDRs or fewer ports)",
    ]);
  });
});

describe("network-loss and network-blackhole parameters", () => {
  it("reads loss with defaults", () => {
    expect(parseFaultParams("network-loss", { percent: "30" })).toEqual({ percent: 30, direction: "egress" });
    const p = parseFaultParams("network-loss", { percent: 5, destinations: ["192.0.2.0/24"], ports: [53, 5353], direction: "both" });
    expect(p.destinations?.[0]?.text).toBe("192.0.2.0/24");
    expect(p).toMatchObject({ ports: [53, 5353], direction: "both" });
  });

  it.each([
    [{}, "params.percent: is required (allowed: 1-100%)"],
    [{ percent: 0 }, "params.percent: 0 is below the minimum 1%"],
    [{ percent: 150 }, "params.percent: 150 is above the maximum 100%"],
    [{ percent: 12.5 }, "params.percent: 12.5 is not a whole number (allowed: 1-100%)"],
    [{ percent: 10, direction: "sideways" }, 'params.direction: "sideways" is not allowed; use one of: egress, ingress, both'],
    [{ percent: 10, destinations: ["10.1.2.3/8"] }, 'params.destinations: "10.1.2.3/8" has host bits set; use the network 10.0.0.0/8, or 10.1.2.3/32 for the one address'],
  ])("loss %j → %s", (params, message) => {
    expect(issues("network-loss", params)).toContain(message);
  });

  it.each([
    [{ ports: "80,x" }, 'params.ports: "x" is not a port; use whole numbers 1-65535'],
    [{ destinations: Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`) }, "params.destinations: has 65 entries; at most 64 are allowed (use wider CIDRs)"],
    [{ percent: 5 }, "params.percent: unknown parameter for network-blackhole; allowed: destinations, ports, direction"],
  ])("blackhole %j → %s", (params, message) => {
    expect(issues("network-blackhole", params)).toContain(message);
  });

  it("a blackhole with no parameters is every destination, egress", () => {
    expect(parseFaultParams("network-blackhole", {})).toEqual({ direction: "egress" });
  });

  it("the control plane's request validation reports every issue at once", () => {
    expect(() => validateFaultRequest({ kind: "network-loss", params: { percent: 0, ports: [0] }, duration: "30s" })).toThrow(
      "params.percent: 0 is below the minimum 1%; params.ports: 0 is not a port; use whole numbers 1-65535",
    );
  });
});
