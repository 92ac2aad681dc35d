import { describe, expect, it } from "vitest";
import { AgentConfigError, parseAgentConfig, parseLabels, parseManagement, parseServerList } from "./config.js";
import { computeNetworkExclusions } from "./network-exclusions.js";

describe("agent config", () => {
  it("parses labels, including the opt-in label", () => {
    expect(parseLabels("app=web, firedrill:opt-in=true,zone=")).toEqual({ app: "web", "firedrill:opt-in": "true", zone: "" });
    expect(parseLabels(undefined)).toEqual({});
  });

  it("says which label is wrong and how to write it", () => {
    expect(() => parseLabels("app")).toThrow('--labels: "app" is not key=value (e.g. --labels app=web,firedrill:opt-in=true)');
    expect(() => parseLabels("a b=c")).toThrow(/key "a b" is invalid/);
    expect(() => parseLabels("app=we b")).toThrow(/value "we b" of app is invalid/);
  });

  it("--management: CIDRs, addresses and ports on this host, excluded after the control plane, IMDS and DNS", async () => {
    const targets = parseManagement(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,tcp:2222,UDP:161,8443,");
    expect(targets).toEqual([
      { cidr: "10.0.0.0/8" },
      { cidr: "192.0.2.7/32" },
      { cidr: "2001:db8::/32" },
      { localPort: 2222, protocol: "tcp" },
      { localPort: 161, protocol: "udp" },
      { localPort: 8443 },
    ]);
    expect(parseManagement(undefined)).toEqual([]);
    const exclusions = await computeNetworkExclusions("127.0.0.1:7070", targets);
    expect(exclusions.slice(0, 1)).toEqual([{ cidr: "127.0.0.1/32", port: 7070, reason: "the control plane (127.0.0.1:7070)" }]);
    expect(exclusions.slice(5)).toEqual([
      { cidr: "10.0.0.0/8", reason: "management (--management 10.0.0.0/8)" },
      { cidr: "192.0.2.7/32", reason: "management (--management 192.0.2.7/32)" },
      { cidr: "2001:db8::/32", reason: "management (--management 2001:db8::/32)" },
      { cidr: "0.0.0.0/0", localPort: 2222, protocol: "tcp", reason: "management (--management tcp:2222)" },
      { cidr: "::/0", localPort: 2222, protocol: "tcp", reason: "management (--management tcp:2222)" },
      { cidr: "0.0.0.0/0", localPort: 161, protocol: "udp", reason: "management (--management udp:161)" },
      { cidr: "::/0", localPort: 161, protocol: "udp", reason: "management (--management udp:161)" },
      { cidr: "0.0.0.0/0", localPort: 8443, reason: "management (--management 8443)" },
      { cidr: "::/0", localPort: 8443, reason: "management (--management 8443)" },
    ]);
  });

  it.each([
    ["10.1.2.3/8", '--management: "10.1.2.3/8" has host bits set; use the network 10.0.0.0/8, or 10.1.2.3/32 for the one address; give CIDRs, addresses or ports on this host (e.g. --management 10.0.0.0/8,192.0.2.7,tcp:2222)'],
    ["bastion", '--management: "bastion" is not an IPv4/IPv6 address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32); give CIDRs, addresses or ports on this host (e.g. --management 10.0.0.0/8,192.0.2.7,tcp:2222)'],
    ["tcp:70000", "--management: tcp:70000: 70000 is not a port; use 1-65535 (e.g. --management 10.0.0.0/8,192.0.2.7,tcp:2222)"],
    ["0.0.0.0/0", "--management: 0.0.0.0/0 is every address: no network fault could act on this host; list the networks you manage the host from (e.g. --management 10.0.0.0/8,192.0.2.7,tcp:2222), or keep network faults off this host with its labels"],
    [Array.from({ length: 65 }, (_, i) => `tcp:${i + 1}`).join(","), "--management: 65 entries; at most 64 (use wider CIDRs)"],
  ])("--management %s is refused, saying how to write it", (text, message) => {
    expect(() => parseManagement(text)).toThrow(AgentConfigError);
    expect(() => parseManagement(text)).toThrow(message);
  });

  it("names the flag of every invalid setting", () => {
    const attempt = () =>
      parseAgentConfig({
        server: "localhost",
        token: "",
        stateDir: "/tmp/x",
        labels: {},
        logLevel: "info",
        imds: "off",
        insecure: false,
        maxLeaseTtlMs: 100,
        reconnectMaxMs: 1000,
        progressIntervalMs: 1000,
      });
    expect(attempt).toThrow(AgentConfigError);
    expect(attempt).toThrow(/--server: must be host:port/);
    expect(attempt).toThrow(/--max-lease-ttl: must be at least 1s/);
  });

  const base = {
    token: "",
    stateDir: "/tmp/x",
    labels: {},
    logLevel: "info",
    imds: "off",
    insecure: false,
    maxLeaseTtlMs: 60_000,
    reconnectMaxMs: 1000,
    progressIntervalMs: 1000,
  };

  it("--server: one address, or several replicas in order (spaces and a trailing comma tolerated)", () => {
    expect(parseAgentConfig({ ...base, server: "cp.example.internal:7070" }).server).toEqual(["cp.example.internal:7070"]);
    expect(parseAgentConfig({ ...base, server: " cp-a:7070, 10.0.0.2:7071,[2001:db8::1]:7070," }).server).toEqual(["cp-a:7070", "10.0.0.2:7071", "[2001:db8::1]:7070"]);
    expect(parseServerList("a:1,b:2")).toEqual(["a:1", "b:2"]);
    const sixteen = Array.from({ length: 16 }, (_, i) => `cp-${i}:7070`).join(",");
    expect(parseServerList(sixteen)).toHaveLength(16);
  });

  it.each([
    ["", "--server: must be host:port, the control plane's gRPC address (e.g. --server cp.example.internal:7070, or several replicas: --server cp-a:7070,cp-b:7070)"],
    ["cp-a:7070,cp-b", '--server: must be host:port: entry "cp-b" is not (e.g. --server cp.example.internal:7070, or several replicas: --server cp-a:7070,cp-b:7070; IPv6 as [2001:db8::1]:7070)'],
    ["cp-a:7070,cp-b:70000", '--server: entry "cp-b:70000": 70000 is not a port; use 1-65535'],
    ["cp-a:7070,cp-b:0", '--server: entry "cp-b:0": 0 is not a port'],
    ["cp-a:7070;cp-b:7070", '--server: must be host:port: "cp-a:7070;cp-b:7070" is not'],
    ["cp-a:7070,CP-A:7070", '--server: entry "CP-A:7070" is listed twice; give each replica once'],
    ["2001:db8::1:7070", '--server: must be host:port: "2001:db8::1:7070" is not'],
    [Array.from({ length: 17 }, (_, i) => `cp-${i}:7070`).join(","), "--server: 17 addresses; at most 16 (put the replicas behind a load balancer or a DNS name with several addresses)"],
  ])("--server %j is refused, naming the bad entry", (text, message) => {
    expect(() => parseServerList(text)).toThrow(AgentConfigError);
    expect(() => parseServerList(text)).toThrow(message);
    expect(() => parseAgentConfig({ ...base, server: text })).toThrow(message);
  });

  it("--insecure refuses every non-loopback entry, each by name", () => {
    expect(parseAgentConfig({ ...base, insecure: true, server: "127.0.0.1:7070,localhost:7071,[::1]:7072" }).server).toHaveLength(3);
    const attempt = () => parseAgentConfig({ ...base, insecure: true, server: "127.0.0.1:7070,10.0.0.5:7070,cp.example.com:7070" });
    expect(attempt).toThrow(AgentConfigError);
    expect(attempt).toThrow(/--insecure: 10\.0\.0\.5:7070 is not a loopback address/);
    expect(attempt).toThrow(/--insecure: cp\.example\.com:7070 is not a loopback address/);
    expect(attempt).not.toThrow(/127\.0\.0\.1:7070 is not/);
  });

  it("network faults exclude every replica's address on its port, once each", async () => {
    const exclusions = await computeNetworkExclusions(["127.0.0.1:7070", "127.0.0.2:7071", "127.0.0.1:7070"]);
    expect(exclusions.filter((e) => e.reason.startsWith("the control plane"))).toEqual([
      { cidr: "127.0.0.1/32", port: 7070, reason: "the control plane (127.0.0.1:7070)" },
      { cidr: "127.0.0.2/32", port: 7071, reason: "the control plane (127.0.0.2:7071)" },
    ]);
  });
});
