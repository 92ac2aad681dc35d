import type { JsonObject } from "@firedrill/protocol";
import { REJECT_WITH } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { NET_TOOLS, NetnsLab, inNs, netnsSkipReason, nftTables } from "../../../../test/support/netns.js";
import { parseBlock, runCommand } from "./net-common.js";
import type { CommandRunner } from "./net-common.js";
import { createNetworkReject } from "./network-reject.js";
import { buildNftPlan } from "./nft-plan.js";
import type { FaultContext, HostInfo, RunningFault } from "./types.js";

const log = pino({ level: "silent" });

const skipReason = netnsSkipReason();
if (skipReason) console.log(`skipping the network-reject namespace tests: ${skipReason}`);

describe.skipIf(!!skipReason)("network-reject in a throwaway network namespace (real nft)", () => {
  const lab = new NetnsLab();
  let ns: string;
  let peer: string;
  const nsRun: CommandRunner = (program, args, opts) => runCommand("ip", ["netns", "exec", ns, program, ...args], opts);
  const host: HostInfo = {
    cpuCount: 2,
    stateDir: "/tmp",
    protectedPids: () => [process.pid],
    networkExclusions: [
      { cidr: "10.213.252.2/32", port: 7443, reason: "the control plane (10.213.252.2:7443)" },
      { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
      { cidr: "::/0", port: 53, reason: "DNS" },
    ],
  };
  const kind = () => createNetworkReject({ run: nsRun, measureIntervalMs: 100, sshPorts: () => ({ ports: [], tookMs: 0 }) });
  let running: RunningFault | undefined;

  beforeAll(async () => {
    ns = lab.namespace("a");
    peer = lab.namespace("b");
    lab.link({ ns, name: `fdt${lab.id}a`, addr: "10.213.252.1/30" }, { ns: peer, name: `fdt${lab.id}b`, addr: "10.213.252.2/30" });
    const servers = [
      lab.spawnNode(peer, NET_TOOLS, ["serve", "--tcp", "7443,8080,9090", "--udp", "7000,7001"], { tsx: false }),
      lab.spawnNode(ns, NET_TOOLS, ["serve", "--tcp", "2323"], { tsx: false }),
    ];
    await vi.waitFor(() => expect(servers.every((s) => s.output().includes("ready"))).toBe(true), { timeout: 10_000, interval: 50 });
  });
  afterEach(async () => {
    await running?.revert();
    running = undefined;
    inNs(ns, ["nft", "delete", "table", "inet", "firedrill"], { allowFail: true });
  });
  afterAll(() => lab.cleanup());

  function makeCtx(): FaultContext & { records: JsonObject[] } {
    const records: JsonObject[] = [];
    return { faultId: "reject-test", log, host, records, updateRevert: (r) => records.push(JSON.parse(JSON.stringify(r)) as JsonObject) };
  }
  async function start(params: JsonObject) {
    const k = kind();
    const ctx = makeCtx();
    const plan = k.validate(params, host);
    ctx.records.push(JSON.parse(JSON.stringify(k.planRevert(plan, ctx))) as JsonObject);
    running = await k.start(plan, ctx);
    return { ctx, plan, running };
  }
  type Connects = { ok: number; failed: number; errors: string[]; failMs: number[] };
  const tcp = (from: string, to: string, port: number, count = 3): Connects =>
    JSON.parse(inNs(from, [process.execPath, NET_TOOLS, "tcp-connect", "--host", to, "--port", String(port), "--count", String(count), "--timeout", "2000"]).stdout);
  const udp = (port: number) =>
    JSON.parse(inNs(ns, [process.execPath, NET_TOOLS, "udp-echo", "--host", "10.213.252.2", "--port", String(port), "--count", "20", "--interval", "5", "--wait", "300"]).stdout) as {
      received: number;
    };

  it("egress, tgt:8080 and udp 7000: connects are refused at once (ECONNREFUSED, not a timeout), UDP gets nothing back; other ports and the control plane work; revert deletes the table", async () => {
    const { ctx, plan } = await start({ destinations: ["10.213.252.2"], ports: [8080, 7000, 7443] });
    expect(plan.details[0]).toBe("acts on: 10.213.252.2, remote ports 7000, 7443, 8080 (tcp, udp), going out: TCP refused (reset), UDP answered with ICMP port-unreachable; other protocols pass");
    expect(nftTables(ns)).toEqual(["inet firedrill"]);
    expect(ctx.records.at(-1)).toMatchObject({ family: "inet", table: "firedrill", created: true, handle: expect.any(Number) });
    const refused = tcp(ns, "10.213.252.2", 8080);
    const other = tcp(ns, "10.213.252.2", 9090);
    const cp = tcp(ns, "10.213.252.2", 7443);
    const udpRejected = udp(7000);
    const udpOther = udp(7001);
    console.log(`reject tgt:8080 → ${JSON.stringify(refused)}; 9090 ${other.ok}/3; control plane 7443 ${cp.ok}/3; udp 7000 ${udpRejected.received}/20 echoed, 7001 ${udpOther.received}/20`);
    expect(refused).toMatchObject({ ok: 0, failed: 3, errors: ["ECONNREFUSED", "ECONNREFUSED", "ECONNREFUSED"] });
    for (const ms of refused.failMs) expect(ms).toBeLessThan(1000); // refused, not timed out (2 s)
    expect(other).toMatchObject({ ok: 3, failed: 0 });
    expect(cp).toMatchObject({ ok: 3, failed: 0 });
    expect(udpRejected.received).toBe(0);
    expect(udpOther.received).toBe(20);
    await vi.waitFor(() => expect(running!.measure!()).toMatchObject({ tcp_packets_reset: 3, udp_packets_rejected: 20, packets_rejected: 23 }), { timeout: 2000 });
    await running!.revert();
    expect(nftTables(ns)).toEqual([]);
    expect(tcp(ns, "10.213.252.2", 8080)).toMatchObject({ ok: 3, failed: 0 });
  });

  it("ingress, everything: a connect from the peer to a server on this host is refused; this host's own loopback is left alone", async () => {
    await start({ direction: "ingress", with: "admin-prohibited" });
    const fromPeer = tcp(peer, "10.213.252.1", 2323, 2);
    const local = tcp(ns, "127.0.0.1", 2323, 2);
    console.log(`ingress reject of everything: from the peer ${JSON.stringify(fromPeer)}; over loopback ${local.ok}/2`);
    expect(fromPeer).toMatchObject({ ok: 0, failed: 2, errors: ["ECONNREFUSED", "ECONNREFUSED"] });
    expect(local).toMatchObject({ ok: 2, failed: 0 });
    await running!.revert();
    expect(tcp(peer, "10.213.252.1", 2323, 2)).toMatchObject({ ok: 2 });
  });

  it("revertRecord from the journal record alone deletes the table (the guard, restart)", async () => {
    const { ctx } = await start({ destinations: ["10.213.252.2"] });
    running = undefined;
    await kind().revertRecord(ctx.records.at(-1)!, { log, holderAlive: false });
    expect(nftTables(ns)).toEqual([]);
    expect(tcp(ns, "10.213.252.2", 8080, 1).ok).toBe(1);
  });

  it("every `with` is a type the real nft accepts, in each direction and family", () => {
    for (const answer of REJECT_WITH) {
      for (const direction of ["egress", "ingress", "both"] as const) {
        const { ruleset } = buildNftPlan({
          action: { kind: "reject", with: answer },
          direction,
          destinations: [parseBlock("10.0.0.0/8"), parseBlock("2001:db8::/32")],
          ports: [443],
          exclusions: [],
        });
        const res = inNs(ns, ["nft", "--check", "-f", "-"], { input: ruleset, allowFail: true });
        expect(res.stderr, ruleset).toBe("");
      }
    }
    expect(nftTables(ns)).toEqual([]);
  });

  it("a target that is all excluded is refused before anything runs", () => {
    expect(() => kind().validate({ destinations: ["10.213.252.2"], ports: [7443] }, host)).toThrow(
      "params.destinations: 10.213.252.2/32 on port 7443 only covers excluded traffic (the control plane (10.213.252.2:7443)); network faults never touch it",
    );
    expect(nftTables(ns)).toEqual([]);
  });
});
