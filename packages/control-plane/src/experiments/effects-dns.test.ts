import { describe, expect, it } from "vitest";
import { describeEffect } from "./effects.js";

const at = (m: Record<string, number>) => [{ at: 1, m: { queries_faulted: 0, queries_forwarded: 0, forward_errors: 0, queries_dropped: 0 } }, { at: 2, m }];

describe("describeEffect: dns-fault", () => {
  it("names the mode and the domains, then what the responder did", () => {
    const m = { queries_faulted: 12, queries_forwarded: 30, forward_errors: 0, queries_dropped: 0 };
    expect(describeEffect("dns-fault", at(m), { domains: ["*.payments.internal"] })).toBe("NXDOMAIN for *.payments.internal: 12 queries answered with the fault, 30 forwarded");
    expect(describeEffect("dns-fault", at(m), { mode: "servfail" })).toBe("SERVFAIL for every name: 12 queries answered with the fault, 30 forwarded");
    expect(describeEffect("dns-fault", at({ ...m, forward_errors: 2 }), { domains: "a.example.com,b.example.com", mode: "timeout" })).toBe(
      "no answer for a.example.com, b.example.com: 12 queries left unanswered, 30 forwarded (2 forwards failed)",
    );
    expect(describeEffect("dns-fault", at({ ...m, queries_faulted: 1 }), { domains: ["a.x", "b.x", "c.x", "d.x", "e.x"] })).toBe(
      "NXDOMAIN for a.x, b.x, c.x and 2 more: 1 query answered with the fault, 30 forwarded",
    );
  });

  it("without params, the counts alone", () => {
    expect(describeEffect("dns-fault", at({ queries_faulted: 3, queries_forwarded: 1, forward_errors: 0, queries_dropped: 0 }))).toBe("3 queries faulted, 1 forwarded");
  });
});
