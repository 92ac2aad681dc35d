import { describe, expect, it } from "vitest";
import { parseFaultParams } from "../fault-kinds.js";
import { InvalidFaultRequestError } from "../params.js";
import { DNS_FAULT_LIMITS, matchDomainGlob } from "./dns-fault.js";

function issues(params: Record<string, unknown>): string[] {
  try {
    parseFaultParams("dns-fault", params as never);
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.issues.map((i) => `${i.field}: ${i.message}`);
    throw err;
  }
  return [];
}

describe("dns-fault parameters", () => {
  it("defaults to NXDOMAIN for every name", () => {
    expect(parseFaultParams("dns-fault", {})).toEqual({ mode: "NXDOMAIN" });
    expect(parseFaultParams("dns-fault", { domains: ["*"] })).toEqual({ mode: "NXDOMAIN" });
    expect(parseFaultParams("dns-fault", { domains: ["api.example.com", "*"] })).toEqual({ mode: "NXDOMAIN" });
  });

  it("reads globs lower-cased, without trailing dots, duplicates removed; a comma-separated string too", () => {
    expect(parseFaultParams("dns-fault", { domains: ["*.Payments.Internal.", "api.example.com", "*.payments.internal"], mode: "servfail" })).toEqual({
      domains: ["*.payments.internal", "api.example.com"],
      mode: "SERVFAIL",
    });
    expect(parseFaultParams("dns-fault", { domains: "a.example.com, b-*.example.com", mode: "TIMEOUT" })).toEqual({
      domains: ["a.example.com", "b-*.example.com"],
      mode: "timeout",
    });
  });

  it.each([
    [{ mode: "refused" }, 'params.mode: "refused" is not allowed; use one of: NXDOMAIN, SERVFAIL, timeout'],
    [{ domains: [] }, 'params.domains: is empty; leave it out (or use ["*"]) to act on every name, or list names such as *.payments.internal'],
    [{ domains: ["api..example.com"] }, 'params.domains: "api..example.com" has an empty label; use a domain name such as api.example.com, with * for any run of characters (*.payments.internal, api-*.example.com), or * for every name'],
    [{ domains: ["api.example.com/x"] }, 'params.domains: "api.example.com/x" is not a domain glob; use a domain name such as api.example.com'],
    [{ domains: [`${"a".repeat(64)}.com`] }, "is not a domain glob"],
    [{ domains: [`${"abcdefghi.".repeat(26)}com`] }, "is 263 characters long; a domain name has at most 253"],
    [{ domains: ["*.*.*.*.*.*.*.*.*.com"] }, "has 9 wildcards; at most 8 are allowed"],
    [{ domains: [42] }, "params.domains: 42 is not a domain name"],
    [{ domains: Array.from({ length: 65 }, (_, i) => `h${i}.example.com`) }, "params.domains: has 65 entries; at most 64 are allowed (use wildcards such as *.example.com)"],
    [{ domain: "x" }, "params.domain: unknown parameter for dns-fault; allowed: domains, mode"],
  ])("refuses %j precisely", (params, message) => {
    const found = issues(params);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(message);
  });

  it("has the documented bounds", () => {
    expect(DNS_FAULT_LIMITS).toEqual({ domains: 64, globLength: 253, wildcards: 8 });
  });
});

describe("domain globs", () => {
  it.each([
    ["*.payments.internal", "api.payments.internal", true],
    ["*.payments.internal", "a.b.payments.internal", true],
    ["*.payments.internal", "payments.internal", false],
    ["*.payments.internal", "xpayments.internal", false],
    ["*.payments.internal", "api.payments.internal.evil", false],
    ["api.example.com", "api.example.com", true],
    ["api.example.com", "www.api.example.com", false],
    ["api-*.example.com", "api-eu.example.com", true],
    ["api-*.example.com", "api.example.com", false],
    ["google.co*", "google.com", true],
    ["google.co*", "google.co.uk", true],
    ["*a*b*", "xxaxxbxx", true],
    ["*a*b*", "xxbxxaxx", false],
    ["a*a", "a", false],
    ["a*a", "aa", true],
    ["*", "", true],
  ])("%s ~ %s: %s", (glob, name, expected) => {
    expect(matchDomainGlob(glob, name)).toBe(expected);
  });

  it("answers the worst inputs the bounds allow (each piece found once, left to right: no backtracking)", () => {
    expect(matchDomainGlob(`${"*a".repeat(8)}*b`, "a".repeat(253))).toBe(false);
    expect(matchDomainGlob(`${"*a".repeat(8)}*b`, `${"a".repeat(252)}b`)).toBe(true);
  });
});
