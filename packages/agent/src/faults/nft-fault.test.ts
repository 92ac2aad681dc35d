import type { JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { NET_TOOLS, NetnsLab, inNs, netnsSkipReason, nftTables } from "../../../../test/support/netns.js";
import { parseBlock, parseExclusions, runCommand, sshExclusions } from "./net-common.js";
import type { CommandRunner } from "./net-common.js";
import { createNetworkBlackhole } from "./network-blackhole.js";
import { createNetworkLoss } from "./network-loss.js";
import { buildNftPlan } from "./nft-plan.js";
import type { FaultContext, FaultKindDefinition, HostInfo, RunningFault } from "./types.js";

const log = pino({ level: "silent" });

const skipReason = netnsSkipReason();
if (skipReason) console.log(`skipping the nftables namespace tests: ${skipReason}`);

describe.skipIf(!!skipReason)("network-loss and network-blackhole in a throwaway network namespace (real nft)", () => {
  const lab = new NetnsLab();
  let ns: string;
  let peer: string;
  const nsRun: CommandRunner = (program, args, opts) => runCommand("ip", ["netns", "exec", ns, program, ...args], opts);
  const host: HostInfo = {
    cpuCount: 2,
    stateDir: "/tmp",
    protectedPids: () => [process.pid],
    networkExclusions: [
      { cidr: "10.213.254.2/32", port: 7443, reason: "the control plane (10.213.254.2:7443)" },
      { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
      { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
      { cidr: "::/0", port: 53, reason: "DNS" },
    ],
  };
  let running: RunningFault | undefined;

  beforeAll(() => {
    ns = lab.namespace("a");
    peer = lab.namespace("b");
    lab.link({ ns, name: `fdt${lab.id}a`, addr: "10.213.254.1/30" }, { ns: peer, name: `fdt${lab.id}b`, addr: "10.213.254.2/30" });
  });
  afterEach(async () => {
    await running?.revert();
    running = undefined;
    inNs(ns, ["nft", "delete", "table", "inet", "firedrill"], { allowFail: true });
  });
  afterAll(() => lab.cleanup());

  function makeCtx(): FaultContext & { records: JsonObject[] } {
    const records: JsonObject[] = [];
    return { faultId: "nft-test", log, host, records, updateRevert: (r) => records.push(JSON.parse(JSON.stringify(r)) as JsonObject) };
  }

  async function start<P>(kind: FaultKindDefinition<P>, params: JsonObject) {
    const ctx = makeCtx();
    const plan = kind.validate(params, host);
    ctx.records.push(JSON.parse(JSON.stringify(kind.planRevert(plan, ctx))) as JsonObject);
    return { ctx, started: kind.start(plan, ctx) };
  }

  const send = (port: number, count: number) =>
    inNs(ns, [process.execPath, NET_TOOLS, "udp-send", "--host", "10.213.254.2", "--port", String(port), "--count", String(count)]);

  it("blackhole: creates the table, drops only the target (counted), and revert deletes it", async () => {
    const kind = createNetworkBlackhole({ run: nsRun, measureIntervalMs: 100 });
    const { ctx, started } = await start(kind, { destinations: ["10.213.254.0/30"], ports: [8080, 7443] });
    running = await started;
    expect(nftTables(ns)).toEqual(["inet firedrill"]);
    expect(ctx.records[0]).toEqual({ family: "inet", table: "firedrill", created: false });
    expect(ctx.records.at(-1)).toMatchObject({ family: "inet", table: "firedrill", created: true, handle: expect.any(Number) });
    const listed = inNs(ns, ["nft", "list", "table", "inet", "firedrill"]).stdout;
    expect(listed).toContain("hook output priority filter - 10; policy accept;");
    send(8080, 5); // dropped
    send(7443, 4); // the control plane: accepted before the drop rule
    send(9090, 3); // not a target port
    await new Promise((r) => setTimeout(r, 300));
    expect(running.measure!()).toEqual({ packets_dropped: 5 });
    await running.revert();
    expect(nftTables(ns)).toEqual([]);
    await running.revert(); // idempotent
  });

  it("loss: the numgen rule drops about the share asked for, counted", async () => {
    const kind = createNetworkLoss({ run: nsRun, measureIntervalMs: 100 });
    const { started } = await start(kind, { percent: 40, destinations: ["10.213.254.2"], ports: [8080] });
    running = await started;
    send(8080, 1000);
    await new Promise((r) => setTimeout(r, 300));
    const m = running.measure!();
    console.log(`nft counters after 1000 packets at 40%: ${JSON.stringify(m)}`);
    expect(m.packets_matched).toBe(1000);
    expect(m.loss_percent_measured).toBeGreaterThan(33);
    expect(m.loss_percent_measured).toBeLessThan(47);
  });

  it("a table already there (stale, or another fault) is refused with how to clean it, and left alone", async () => {
    inNs(ns, ["nft", "add", "table", "inet", "firedrill"]);
    const kind = createNetworkLoss({ run: nsRun });
    const { ctx, started } = await start(kind, { percent: 10 });
    await expect(started).rejects.toThrow(
      "the nftables table inet firedrill already exists: another firedrill network fault holds it, or one was left behind by an agent that could not clean up. If no firedrill network fault is running on this host, run `firedrill-agent recover`; if the table is still there afterwards, remove it with `nft delete table inet firedrill`",
    );
    expect(ctx.records.at(-1)).toMatchObject({ created: false });
    // The runtime would now call revertRecord with that record: it must not delete the other table.
    await kind.revertRecord(ctx.records.at(-1)!, { log, holderAlive: false });
    expect(nftTables(ns)).toEqual(["inet firedrill"]);
  });

  it("revertRecord from the journal record alone (another process): deletes our table by handle; gone is success", async () => {
    const kind = createNetworkBlackhole({ run: nsRun });
    const { ctx, started } = await start(kind, { destinations: ["10.213.254.2"] });
    await started;
    const record = ctx.records.at(-1)!;
    await kind.revertRecord(record, { log, holderAlive: false });
    expect(nftTables(ns)).toEqual([]);
    await kind.revertRecord(record, { log, holderAlive: false });
    // A table of the same name created since is not ours: left alone.
    inNs(ns, ["nft", "add", "table", "inet", "firedrill"]);
    await kind.revertRecord(record, { log, holderAlive: false });
    expect(nftTables(ns)).toEqual(["inet firedrill"]);
    // A record naming any other table is refused outright.
    await expect(kind.revertRecord({ family: "ip", table: "filter", created: true }, { log, holderAlive: false })).rejects.toThrow("which is not firedrill's");
  });

  it("validate: destinations or ports that only cover excluded traffic are refused, naming it", () => {
    const kind = createNetworkBlackhole({ run: nsRun });
    expect(() => kind.validate({ destinations: ["169.254.169.254/32"] }, host)).toThrow(
      "params.destinations: 169.254.169.254/32 only covers excluded traffic (EC2 instance metadata (IMDS)); network faults never touch it",
    );
    expect(() => kind.validate({ destinations: ["10.213.254.2"], ports: [7443] }, host)).toThrow(
      "params.destinations: 10.213.254.2/32 on port 7443 only covers excluded traffic (the control plane (10.213.254.2:7443)); network faults never touch it",
    );
    expect(() => kind.validate({ ports: "53" }, host)).toThrow("params.ports: 53 only covers excluded traffic (DNS); network faults never touch it");
    // Partly excluded is fine: the rest is acted on.
    expect(kind.validate({ destinations: ["10.213.254.2"] }, host).nft.ruleset).toContain("ip daddr 10.213.254.2 counter drop");
  });

  it("every shape of ruleset is accepted by the real nft (nft --check: loss/blackhole/reject × direction × IPv4/IPv6 × ports)", () => {
    const exclusions = parseExclusions([
      ...host.networkExclusions,
      ...sshExclusions([2222]),
      { cidr: "10.9.0.0/16", reason: "management (--management 10.9.0.0/16)" },
      { cidr: "0.0.0.0/0", localPort: 161, protocol: "udp", reason: "management (--management udp:161)" },
      { cidr: "::/0", localPort: 8443, reason: "management (--management 8443)" },
    ]);
    const destinationSets = [undefined, [parseBlock("10.0.0.0/8"), parseBlock("192.0.2.7")], [parseBlock("2001:db8::/32"), parseBlock("10.1.0.0/16")]];
    let checked = 0;
    for (const action of [{ kind: "loss", percent: 25 }, { kind: "blackhole" }, { kind: "reject", with: "admin-prohibited" }] as const) {
      for (const direction of ["egress", "ingress", "both"] as const) {
        for (const destinations of destinationSets) {
          for (const ports of [undefined, [443], [80, 443]]) {
            const { ruleset } = buildNftPlan({ action, direction, exclusions, ...(destinations ? { destinations } : {}), ...(ports ? { ports } : {}) });
            const res = inNs(ns, ["nft", "--check", "-f", "-"], { input: ruleset, allowFail: true });
            expect(res.stderr, ruleset).toBe("");
            expect(res.code).toBe(0);
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(81);
    expect(nftTables(ns)).toEqual([]);
  });

  it("details: what it acts on and every exclusion (SSH read at validation), the same in preview and in the running fault", async () => {
    let scans = 0;
    const kind = createNetworkBlackhole({ run: nsRun, sshPorts: () => (scans++, { ports: [2222], tookMs: 1 }) });
    const plan = kind.validate({ direction: "both" }, host);
    expect(scans).toBe(1);
    expect(plan.details).toEqual([
      "acts on: every address, both ways: every packet dropped",
      "excluded: the control plane (10.213.254.2:7443) — 10.213.254.2, remote port 7443 (tcp, udp)",
      "excluded: EC2 instance metadata (IMDS) — 169.254.169.254",
      "excluded: DNS — any address, remote port 53 (tcp, udp)",
      "excluded: SSH (port 22: always) — local port 22 (tcp), any address, in and out",
      "excluded: SSH (sshd listens on port 2222) — local port 2222 (tcp), any address, in and out",
      "excluded: loopback (lo)",
    ]);
    expect(await kind.preview!(plan, host)).toEqual({ details: plan.details });
    const loss = createNetworkLoss({ run: nsRun, sshPorts: () => ({ ports: [], tookMs: 1 }) });
    expect(loss.validate({ percent: 30, destinations: ["10.1.0.0/16", "2001:db8::/32"], ports: [443, 8443] }, host).details.slice(0, 1)).toEqual([
      "acts on: 10.1.0.0/16, 2001:db8::/32, remote ports 443, 8443 (tcp, udp), going out: 30% of packets dropped",
    ]);
    const ctx = makeCtx();
    running = await kind.start(plan, ctx);
    expect(running.details).toEqual(plan.details);
    // Loaded for real: the server on this host keeps its ports both ways.
    const listed = inNs(ns, ["nft", "list", "table", "inet", "firedrill"]).stdout;
    for (const rule of ["tcp sport 22 accept", "tcp dport 22 accept", "tcp sport 2222 accept", "tcp dport 2222 accept"]) expect(listed).toContain(rule);
  });

  it("bad parameters are refused before anything runs: no table", async () => {
    const kind = createNetworkLoss({ run: nsRun });
    expect(() => kind.validate({ percent: 0 }, host)).toThrow("params.percent: 0 is below the minimum 1%");
    expect(() => kind.validate({ percent: 10, direction: "up" }, host)).toThrow('params.direction: "up" is not allowed; use one of: egress, ingress, both');
    expect(nftTables(ns)).toEqual([]);
    expect(peer).toBeTruthy();
  });
});
