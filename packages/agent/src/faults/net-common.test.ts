import { describe, expect, it } from "vitest";
import {
  coveredByUnion,
  describeExclusions,
  excludedTarget,
  faultExclusions,
  parseBlock,
  parseExclusions,
  refuseExcludedTargets,
  safeComment,
  sshExclusions,
} from "./net-common.js";

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

  it("SSH: port 22 always, plus the ports sshd listens on; TCP, any address, the local side", () => {
    expect(sshExclusions([])).toEqual([
      { cidr: "0.0.0.0/0", localPort: 22, protocol: "tcp", reason: "SSH (port 22: always)" },
      { cidr: "::/0", localPort: 22, protocol: "tcp", reason: "SSH (port 22: always)" },
    ]);
    expect(sshExclusions([2222, 22]).map((e) => `${e.cidr} ${e.localPort} ${e.reason}`)).toEqual([
      "0.0.0.0/0 22 SSH (port 22: always, and sshd listens on it)",
      "::/0 22 SSH (port 22: always, and sshd listens on it)",
      "0.0.0.0/0 2222 SSH (sshd listens on port 2222)",
      "::/0 2222 SSH (sshd listens on port 2222)",
    ]);
  });

  it("a local-port exclusion (SSH) never makes a remote target count as excluded: remote port 22 elsewhere is fair game", () => {
    const withSsh = [...EXCLUSIONS, ...parseExclusions(sshExclusions([2222]))];
    expect(excludedTarget(parseBlock("192.0.2.7"), [22], withSsh)).toEqual({ excluded: false, reasons: [] });
    expect(() => refuseExcludedTargets(undefined, [22, 2222], withSsh)).not.toThrow();
  });

  it("a management CIDR is excluded like the control plane: a destination inside it is refused", () => {
    const withMgmt = [...EXCLUSIONS, ...parseExclusions([{ cidr: "10.9.0.0/16", reason: "management (--management 10.9.0.0/16)" }])];
    expect(() => refuseExcludedTargets([parseBlock("10.9.3.0/24")], undefined, withMgmt)).toThrow(
      "params.destinations: 10.9.3.0/24 only covers excluded traffic (management (--management 10.9.0.0/16)); network faults never touch it",
    );
    expect(() => refuseExcludedTargets([parseBlock("10.8.0.0/15")], undefined, withMgmt)).not.toThrow(); // half of it is not
  });

  it("the details: one line per reason, then loopback, then a cut-short SSH search", () => {
    const { exclusions, ssh } = faultExclusions(
      {
        cpuCount: 1,
        stateDir: "/tmp",
        protectedPids: () => [],
        networkExclusions: [
          { cidr: "10.0.0.5/32", port: 7443, reason: "the control plane (10.0.0.5:7443)" },
          { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
          { cidr: "fd00:ec2::254/128", reason: "EC2 instance metadata (IMDS)" },
          { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
          { cidr: "::/0", port: 53, reason: "DNS" },
          { cidr: "10.9.0.0/16", reason: "management (--management 10.9.0.0/16)" },
          { cidr: "0.0.0.0/0", localPort: 9100, protocol: "tcp", reason: "management (--management tcp:9100)" },
          { cidr: "::/0", localPort: 9100, protocol: "tcp", reason: "management (--management tcp:9100)" },
        ],
      },
      () => ({ ports: [2222], incomplete: "stopped after 250 ms, 900 of 4000 processes looked at", tookMs: 251 }),
    );
    expect(ssh.ports).toEqual([2222]);
    expect(describeExclusions(exclusions, { loopback: true, ssh })).toEqual([
      "excluded: the control plane (10.0.0.5:7443) — 10.0.0.5, remote port 7443 (tcp, udp)",
      "excluded: EC2 instance metadata (IMDS) — 169.254.169.254, fd00:ec2::254",
      "excluded: DNS — any address, remote port 53 (tcp, udp)",
      "excluded: management (--management 10.9.0.0/16) — 10.9.0.0/16",
      "excluded: management (--management tcp:9100) — local port 9100 (tcp), any address, in and out",
      "excluded: SSH (port 22: always) — local port 22 (tcp), any address, in and out",
      "excluded: SSH (sshd listens on port 2222) — local port 2222 (tcp), any address, in and out",
      "excluded: loopback (lo)",
      "SSH: the search for sshd's ports stopped after 250 ms, 900 of 4000 processes looked at; port 22 and the ports found are excluded",
    ]);
  });

  it("comments keep only safe characters", () => {
    expect(safeComment('the control plane (cp.example.com:7443) "x";\n{y}')).toBe("the control plane (cp.example.com:7443) _x___{y}".replace("{y}", "_y_"));
  });
});
