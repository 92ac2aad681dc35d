import { describe, expect, it } from "vitest";
import { buildDnsNftPlan } from "./dns-plan.js";

describe("the dns-fault ruleset", () => {
  it("excludes the responder's forwards first, then redirects each resolver's UDP and TCP queries to its listener", () => {
    const ruleset = buildDnsNftPlan({
      listeners: [
        { resolver: { address: "10.0.0.2", family: 4 }, udp: 41000, tcp: 41001 },
        { resolver: { address: "fd00::53", family: 6 }, udp: 41002, tcp: 41003 },
      ],
      udpForwardPorts: [45123, 45200],
      tcpForwardPorts: Array.from({ length: 16 }, (_, i) => 61000 + i),
    });
    expect(ruleset.split("\n")).toEqual([
      "create table inet firedrill_dns",
      "add chain inet firedrill_dns steer { type nat hook output priority -100; policy accept; }",
      `add rule inet firedrill_dns steer udp sport { 45123, 45200 } udp dport 53 accept comment "excluded: the agent's own forwards (udp)"`,
      `add rule inet firedrill_dns steer tcp sport 61000-61015 tcp dport 53 accept comment "excluded: the agent's own forwards (tcp)"`,
      `add rule inet firedrill_dns steer ip daddr 10.0.0.2 udp dport 53 counter redirect to :41000 comment "firedrill dns-fault: resolver 10.0.0.2"`,
      `add rule inet firedrill_dns steer ip daddr 10.0.0.2 tcp dport 53 counter redirect to :41001 comment "firedrill dns-fault: resolver 10.0.0.2"`,
      `add rule inet firedrill_dns steer ip6 daddr fd00::53 udp dport 53 counter redirect to :41002 comment "firedrill dns-fault: resolver fd00::53"`,
      `add rule inet firedrill_dns steer ip6 daddr fd00::53 tcp dport 53 counter redirect to :41003 comment "firedrill dns-fault: resolver fd00::53"`,
      "",
    ]);
  });

  it("refuses a port that is not one (the ruleset is built from the kernel's answers only)", () => {
    expect(() => buildDnsNftPlan({ listeners: [{ resolver: { address: "10.0.0.2", family: 4 }, udp: 0, tcp: 1 }], udpForwardPorts: [], tcpForwardPorts: [] })).toThrow(
      "0 is not a port",
    );
  });
});
