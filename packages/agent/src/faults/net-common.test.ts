import { describe, expect, it } from "vitest";
import { coveredByUnion, excludedTarget, parseBlock, parseExclusions, refuseExcludedTargets, safeComment } from "./net-common.js";

const EXCLUSIONS = parseExclusions([
  { cidr: "10.0.0.5/32", port: 7443, reason: "the control plane (10.0.0.5:7443)" },
  { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
  { cidr: "fd00:ec2::254/128", reason: "EC2 instance metadata (IMDS)" },
  { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
  { cidr: "::/0", port: 53, reason: "DNS" },
]);

describe("exclusions", () => {
  it("a block is covered by a union of blocks, not just by one", () => {
    const halves = [parseBlock("10.0.0.0/25"), parseBlock("10.0.0.128/25")];
    expect(coveredByUnion(parseBlock("10.0.0.0/24"), halves)).toBe(true);
    expect(coveredByUnion(parseBlock("10.0.0.0/23"), halves)).toBe(false);
    expect(coveredByUnion(parseBlock("10.0.0.0/24"), [halves[0]!])).toBe(false);
    expect(coveredByUnion(parseBlock("10.0.0.7"), [parseBlock("0.0.0.0/0")])).toBe(true);
    expect(coveredByUnion(parseBlock("::1"), [parseBlock("0.0.0.0/0")])).toBe(false);
  });

  it.each([
    ["169.254.169.254/32", undefined, true, ["EC2 instance metadata (IMDS)"]],
    ["fd00:ec2::254/128", [80], true, ["EC2 instance metadata (IMDS)"]],
    ["169.254.0.0/16", undefined, false, []],
    ["10.0.0.5/32", undefined, false, []],
    ["10.0.0.5/32", [7443], true, ["the control plane (10.0.0.5:7443)"]],
    ["10.0.0.5/32", [7443, 53], true, ["the control plane (10.0.0.5:7443)", "DNS"]],
    ["10.0.0.5/32", [7443, 8080], false, []],
    ["8.8.8.8/32", [53], true, ["DNS"]],
  ] as const)("%s on %j: excluded %s", (cidr, ports, excluded, reasons) => {
    const result = excludedTarget(parseBlock(cidr), ports, EXCLUSIONS);
    expect(result.excluded).toBe(excluded);
    expect(result.reasons).toEqual(reasons);
  });

  it("refuses each fully excluded destination, and ports that are excluded everywhere", () => {
    expect(() => refuseExcludedTargets([parseBlock("169.254.169.254"), parseBlock("192.0.2.0/24")], undefined, EXCLUSIONS)).toThrow(
      "params.destinations: 169.254.169.254/32 only covers excluded traffic (EC2 instance metadata (IMDS)); network faults never touch it",
    );
    expect(() => refuseExcludedTargets(undefined, [53], EXCLUSIONS)).toThrow("params.ports: 53 only covers excluded traffic (DNS); network faults never touch it");
    expect(() => refuseExcludedTargets(undefined, [53, 443], EXCLUSIONS)).not.toThrow();
    expect(() => refuseExcludedTargets(undefined, undefined, EXCLUSIONS)).not.toThrow();
  });

  it("comments keep only safe characters", () => {
    expect(safeComment('the control plane (cp.example.com:7443) "x";\n{y}')).toBe("the control plane (cp.example.com:7443) _x___{y}".replace("{y}", "_y_"));
  });
});
