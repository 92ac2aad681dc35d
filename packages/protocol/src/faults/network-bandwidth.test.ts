import { describe, expect, it } from "vitest";
import { parseFaultParams, validateFaultRequest } from "../fault-kinds.js";
import { InvalidFaultRequestError } from "../params.js";
import { formatRate, parseRate } from "./network-bandwidth.js";

function issues(kind: "network-bandwidth" | "network-reject", params: Record<string, unknown>): string[] {
  try {
    parseFaultParams(kind, params as never);
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.issues.map((i) => `${i.field}: ${i.message}`);
    throw err;
  }
  return [];
}

describe("network-bandwidth rates", () => {
  it.each([
    ["1mbit", 1_000_000],
    ["500kbit", 500_000],
    ["1.5Mbit", 1_500_000],
    ["10 mbit", 10_000_000],
    ["1gbit", 1_000_000_000],
    ["8000bit", 8000],
    // bps units are BYTES per second, as tc reads them
    ["10mbps", 80_000_000],
    ["100kbps", 800_000],
    ["1GBPS", 8_000_000_000],
  ])("%s is %i bit/s", (text, bits) => expect(parseRate(text)).toBe(bits));

  it.each(["10", 10, "10m", "10mb", "10 Mbit/s", "mbit", "-1mbit", "1e6bit", "10kibit", "", " "])("%j is not a rate", (value) => {
    expect(parseRate(value as never)).toBeUndefined();
  });

  it("formats rates for people", () => {
    expect(formatRate(10_000_000)).toBe("10 Mbit/s");
    expect(formatRate(80_000_000)).toBe("80 Mbit/s");
    expect(formatRate(500_000)).toBe("500 kbit/s");
    expect(formatRate(1_500_000_000)).toBe("1.5 Gbit/s");
    expect(formatRate(800)).toBe("800 bit/s");
  });
});

describe("network-bandwidth parameters", () => {
  it("reads rate, burst, interface, destinations and ports", () => {
    expect(parseFaultParams("network-bandwidth", { rate: "10mbit", burst: "64KiB", interface: "eth0", destinations: ["10.0.0.0/8", "10.1.0.0/16"], ports: "443,80" })).toEqual({
      interface: "eth0",
      rateBitsPerSecond: 10_000_000,
      rateText: "10mbit",
      burstBytes: 65536,
      destinations: [expect.objectContaining({ text: "10.0.0.0/8" })],
      ports: [80, 443],
    });
    expect(parseFaultParams("network-bandwidth", { rate: "2mbps" })).toEqual({ rateBitsPerSecond: 16_000_000, rateText: "2mbps" });
  });

  it.each([
    [{}, ["params.rate: is required; use a rate such as 10mbit, 500kbit or 1gbit (bits per second), or 2mbps (BYTES per second, as tc reads it); k, m and g are powers of 1000"]],
    [{ rate: 10 }, ['params.rate: 10 is not a rate; use a rate such as 10mbit, 500kbit or 1gbit (bits per second), or 2mbps (BYTES per second, as tc reads it); k, m and g are powers of 1000']],
    [{ rate: "10 Mbit/s" }, ['params.rate: "10 Mbit/s" is not a rate; use a rate such as 10mbit, 500kbit or 1gbit (bits per second), or 2mbps (BYTES per second, as tc reads it); k, m and g are powers of 1000']],
    [{ rate: "4kbit" }, ['params.rate: "4kbit" (4 kbit/s) is out of range; use 8 kbit/s to 100 Gbit/s']],
    [{ rate: "200gbit" }, ['params.rate: "200gbit" (200 Gbit/s) is out of range; use 8 kbit/s to 100 Gbit/s']],
    [{ rate: "1mbit", burst: "1KiB" }, ['params.burst: "1KiB" (1024 bytes) is out of range; use 1600 bytes (one full frame) to 64MiB']],
    [{ rate: "1mbit", burst: "lots" }, ['params.burst: "lots" is not a size; use a number of bytes or a size such as 32KiB, 1MiB (KiB, MiB are powers of 1024; KB, MB of 1000)']],
    [{ rate: "1mbit", interface: "eth0 up" }, ['params.interface: "eth0 up" is not valid; expected a network interface name such as eth0 or ens5']],
    [{ rate: "1mbit", direction: "ingress" }, ["params.direction: unknown parameter for network-bandwidth; allowed: rate, burst, interface, destinations, ports"]],
    [{ rate: "1mbit", ports: [0] }, ["params.ports: 0 is not a port; use whole numbers 1-65535"]],
  ])("%j is refused: %j", (params, expected) => expect(issues("network-bandwidth", params)).toEqual(expected));

  it("refuses more destination × port pairs than tc filters it allows", () => {
    const destinations = Array.from({ length: 9 }, (_, i) => `10.0.${i}.0/24`);
    expect(issues("network-bandwidth", { rate: "1mbit", destinations, ports: [1, 2, 3, 4, 5, 6, 7, 8] })).toEqual([
      "params.ports: 9 destinations × 8 ports make 72 filters; at most 64 destination × port pairs are allowed (use wider CIDRs or fewer ports)",
    ]);
  });

  it("is a known fault kind for whole requests", () => {
    expect(validateFaultRequest({ kind: "network-bandwidth", params: { rate: "1mbit" }, duration: "1m" }).kind).toBe("network-bandwidth");
  });
});

describe("network-reject parameters", () => {
  it("reads destinations, ports, direction and with (default port-unreachable, egress)", () => {
    expect(parseFaultParams("network-reject", { destinations: "10.1.2.3", ports: [5432] })).toEqual({
      destinations: [expect.objectContaining({ text: "10.1.2.3/32" })],
      ports: [5432],
      direction: "egress",
      with: "port-unreachable",
    });
    expect(parseFaultParams("network-reject", { direction: "both", with: "admin-prohibited" })).toEqual({ direction: "both", with: "admin-prohibited" });
  });

  it.each([
    [{ with: "tcp-reset" }, ['params.with: "tcp-reset" is not allowed; use one of: port-unreachable, admin-prohibited, host-unreachable, no-route']],
    [{ direction: "out" }, ['params.direction: "out" is not allowed; use one of: egress, ingress, both']],
    [{ percent: 5 }, ["params.percent: unknown parameter for network-reject; allowed: destinations, ports, direction, with"]],
    [{ destinations: [] }, ["params.destinations: is empty; leave it out to act on every destination, or list CIDRs such as 10.0.0.0/8"]],
  ])("%j is refused: %j", (params, expected) => expect(issues("network-reject", params)).toEqual(expected));
});
