import type { JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { NET_TOOLS, NetnsLab, inNs, netnsSkipReason, qdiscConfig, qdiscs } from "../../../../test/support/netns.js";
import { runCommand } from "./net-common.js";
import type { CommandResult, CommandRunner, NetTool } from "./net-common.js";
import { BANDWIDTH_CLASS, BANDWIDTH_ROOT_HANDLE } from "./bandwidth-plan.js";
import { MISSING_HTB_MESSAGE, createNetworkBandwidth } from "./network-bandwidth.js";
import type { NetworkBandwidthOptions } from "./network-bandwidth.js";
import { parseClassCounters } from "./network-bandwidth-revert.js";
import type { InterfaceLookup } from "./network-delay.js";
import type { FaultContext, HostInfo, RunningFault } from "./types.js";

const log = pino({ level: "silent" });
const HOST: HostInfo = {
  cpuCount: 2,
  stateDir: "/tmp",
  protectedPids: () => [process.pid],
  networkExclusions: [
    { cidr: "10.213.0.1/32", port: 7443, reason: "the control plane (10.213.0.1:7443)" },
    { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
    { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
    { cidr: "::/0", port: 53, reason: "DNS" },
  ],
};

function makeCtx(host = HOST): FaultContext & { records: JsonObject[] } {
  const records: JsonObject[] = [];
  return { faultId: "bw-test", log, host, records, updateRevert: (r) => records.push(JSON.parse(JSON.stringify(r)) as JsonObject) };
}

/** A tiny tc: the qdiscs of one device as JSON, the class counters as text, failures on demand. */
class FakeTc {
  qdiscs: { kind: string; handle: string; root?: boolean; parent?: string }[] = [{ kind: "fq_codel", handle: "0:", root: true }];
  calls: string[] = [];
  failOn: { match: RegExp; stderr: string }[] = [];
  stubbornDel = false;
  classText = "";

  run: CommandRunner = async (program: NetTool, args: readonly string[]): Promise<CommandResult> => {
    const line = args.join(" ");
    this.calls.push(`${program} ${line}`);
    const fail = this.failOn.find((f) => f.match.test(line));
    if (fail) return { code: 2, stdout: "", stderr: fail.stderr };
    if (line.includes("qdisc show")) return { code: 0, stdout: JSON.stringify(this.qdiscs), stderr: "" };
    if (line.includes("class show")) return { code: 0, stdout: this.classText, stderr: "" };
    if (line.startsWith("qdisc add") && args.includes("root")) {
      this.qdiscs = [{ kind: "htb", handle: args[args.indexOf("handle") + 1]!, root: true }];
    } else if (line.startsWith("qdisc del") && !this.stubbornDel) {
      this.qdiscs = [{ kind: "fq_codel", handle: "0:", root: true }];
    }
    return { code: 0, stdout: "", stderr: "" };
  };
}

const fakeInterfaces: InterfaceLookup = { exists: (n) => n === "eth0", list: () => ["eth0", "lo"], defaultDevice: () => "eth0" };

function fakeKind(tc: FakeTc, opts: Partial<NetworkBandwidthOptions> = {}) {
  return createNetworkBandwidth({ run: tc.run, interfaces: fakeInterfaces, measureIntervalMs: 60_000, sshPorts: () => ({ ports: [], tookMs: 0 }), ...opts });
}

async function startWith(kind: ReturnType<typeof createNetworkBandwidth>, params: JsonObject, host = HOST) {
  const ctx = makeCtx(host);
  const plan = kind.validate(params, host);
  ctx.records.push(JSON.parse(JSON.stringify(kind.planRevert(plan, ctx))) as JsonObject);
  return { ctx, plan, started: kind.start(plan, ctx) };
}

const CLASS_TEXT = (bytes: number) =>
  `class htb 1f1b:10 root prio 0 rate 10Mbit ceil 10Mbit burst 12500b cburst 12500b \n Sent ${bytes} bytes 452 pkt (dropped 3, overlimits 24 requeues 0) \n backlog 12Kb 4p requeues 0\n lended: 0 borrowed: 0 giants: 0\n tokens: 1920000 ctokens: 1920000\n\n`;

describe("network-bandwidth start and revert (a fake tc)", () => {
  it("installs the plan in order after the journal says installed, and reverts by deleting our root only", async () => {
    const tc = new FakeTc();
    const { ctx, plan, started } = await startWith(fakeKind(tc), { rate: "10mbit", destinations: ["192.0.2.0/24"] });
    const running = await started;
    expect(ctx.records[0]).toEqual({ device: "eth0", handle: "1f1b:", installed: false });
    expect(ctx.records[1]).toEqual({ device: "eth0", handle: "1f1b:", previousRoot: { kind: "fq_codel", handle: "0:" }, installed: true });
    expect(tc.calls.filter((c) => / (add|del) /.test(c))).toEqual(plan.tc.install.map((a) => `tc ${a.join(" ")}`));
    await running.revert();
    await running.revert(); // idempotent
    expect(tc.calls.filter((c) => c.includes(" del "))).toEqual(["tc qdisc del dev eth0 root handle 1f1b:"]);
    expect(tc.qdiscs).toEqual([{ kind: "fq_codel", handle: "0:", root: true }]);
  });

  it("measures the class: bytes, packets, drops, overlimits, backlog, and the rate between two readings", async () => {
    const tc = new FakeTc();
    let clock = 0;
    const kind = fakeKind(tc, { measureIntervalMs: 20, now: () => clock });
    tc.classText = CLASS_TEXT(1_000_000);
    const { started } = await startWith(kind, { rate: "10mbit" });
    const running: RunningFault = await started;
    await vi.waitFor(() => expect(running.measure!()).toMatchObject({ sent_bytes: 1_000_000 }));
    clock = 2000;
    tc.classText = CLASS_TEXT(3_500_000); // 2.5 MB in 2 s: 10 Mbit/s
    await vi.waitFor(() => expect(running.measure!()).toEqual({
      rate_asked_mbit: 10,
      rate_achieved_mbit: 10,
      sent_bytes: 3_500_000,
      sent_packets: 452,
      dropped_packets: 3,
      overlimits: 24,
      backlog_bytes: 12 * 1024,
      installed: 1,
    }));
    await running.revert();
  });

  it("a foreign root qdisc is refused and left alone; so is a firedrill root already there (stale), with how to clean it", async () => {
    const tc = new FakeTc();
    tc.qdiscs = [{ kind: "tbf", handle: "5:", root: true }];
    await expect((await startWith(fakeKind(tc), { rate: "1mbit" })).started).rejects.toThrow(
      "eth0 has a root qdisc someone configured (tbf 5:); network-bandwidth replaces the root qdisc and could not restore it exactly afterwards, so it refuses",
    );
    tc.qdiscs = [{ kind: "mq", handle: "0:", root: true }, { kind: "fq", handle: "8001:", parent: ":1" }];
    await expect((await startWith(fakeKind(tc), { rate: "1mbit" })).started).rejects.toThrow("eth0 has a qdisc under :1 someone configured (fq 8001:)");
    for (const handle of ["1f1b:", "1f1d:"]) {
      tc.qdiscs = [{ kind: "htb", handle, root: true }];
      await expect((await startWith(fakeKind(tc), { rate: "1mbit" })).started).rejects.toThrow(
        `qdisc (root handle ${handle}) is already on eth0: another network fault is running, or one was left behind by an agent that could not clean up. If no firedrill network fault is running on this host, run \`firedrill-agent recover\`; if it is still there afterwards, remove it with \`tc qdisc del dev eth0 root handle ${handle}\``,
      );
    }
    expect(tc.calls.every((c) => c.includes("qdisc show"))).toBe(true);
  });

  it("no sch_htb: refused at the root add, which changed nothing, and the record says so", async () => {
    const tc = new FakeTc();
    tc.failOn.push({ match: /htb/, stderr: "Error: Specified qdisc kind is unknown." });
    const { ctx, started } = await startWith(fakeKind(tc), { rate: "1mbit" });
    await expect(started).rejects.toThrow(MISSING_HTB_MESSAGE);
    expect(ctx.records.at(-1)).toMatchObject({ installed: false });
  });

  it("a filter failing half-way: the partial root is removed", async () => {
    const tc = new FakeTc();
    tc.failOn.push({ match: /^filter add/, stderr: "RTNETLINK answers: Invalid argument" });
    const { ctx, started } = await startWith(fakeKind(tc), { rate: "1mbit" });
    await expect(started).rejects.toThrow("RTNETLINK answers: Invalid argument");
    expect(tc.calls).toContain("tc qdisc del dev eth0 root handle 1f1b:");
    expect(tc.qdiscs).toEqual([{ kind: "fq_codel", handle: "0:", root: true }]);
    expect(ctx.records.at(-1)).toMatchObject({ installed: true });
  });

  it("revertRecord: from the record alone; gone, device gone and not-installed are success; still there is an error; another handle is refused", async () => {
    const tc = new FakeTc();
    const kind = fakeKind(tc);
    const record = { device: "eth0", handle: "1f1b:", installed: true };
    tc.qdiscs = [{ kind: "htb", handle: "1f1b:", root: true }];
    await kind.revertRecord(record, { log, holderAlive: true });
    expect(tc.qdiscs[0]?.handle).toBe("0:");
    await kind.revertRecord(record, { log, holderAlive: false }); // gone already
    tc.failOn.push({ match: /show/, stderr: 'Cannot find device "eth0"' });
    await kind.revertRecord(record, { log, holderAlive: false }); // device gone
    tc.failOn = [];
    // Someone else's root where ours was: left alone.
    tc.qdiscs = [{ kind: "htb", handle: "5:", root: true }];
    await kind.revertRecord(record, { log, holderAlive: false });
    expect(tc.qdiscs).toEqual([{ kind: "htb", handle: "5:", root: true }]);
    const before = tc.calls.length;
    await kind.revertRecord({ ...record, installed: false }, { log, holderAlive: false });
    expect(tc.calls.length).toBe(before); // never installed: nothing to look at
    await expect(kind.revertRecord({ ...record, handle: "5:" }, { log, holderAlive: false })).rejects.toThrow(
      'the journal record names the root qdisc "5:" on eth0, which is not network-bandwidth\'s (1f1b:); refusing to delete it',
    );
    await expect(kind.revertRecord({ device: "-j eth0", handle: "1f1b:" }, { log, holderAlive: false })).rejects.toThrow("is incomplete");
    expect(tc.calls.length).toBe(before);
    tc.qdiscs = [{ kind: "htb", handle: "1f1b:", root: true }];
    tc.stubbornDel = true;
    await expect(kind.revertRecord(record, { log, holderAlive: false })).rejects.toThrow("the network-bandwidth qdisc (root handle 1f1b:) is still on eth0 after tc qdisc del");
  });

  it("validate: unknown interface, all-excluded targets; details name the rate, the burst and every exclusion, the same in preview", async () => {
    const kind = fakeKind(new FakeTc(), { sshPorts: () => ({ ports: [22], tookMs: 1 }) });
    expect(() => kind.validate({ rate: "1mbit", interface: "eth9" }, HOST)).toThrow('params.interface: "eth9": no such network interface on this host; use one of: eth0, lo');
    expect(() => kind.validate({ rate: "1mbit", destinations: ["169.254.169.254"] }, HOST)).toThrow(
      "params.destinations: 169.254.169.254/32 only covers excluded traffic (EC2 instance metadata (IMDS)); network faults never touch it",
    );
    expect(() => kind.validate({ rate: "1mbit", ports: [53] }, HOST)).toThrow("params.ports: 53 only covers excluded traffic (DNS); network faults never touch it");
    expect(() => kind.validate({ rate: "1mbit", destinations: ["127.0.0.1"] }, HOST)).toThrow("only covers excluded traffic (loopback)");
    const plan = kind.validate({ rate: "2mbps", destinations: ["192.0.2.0/24"], ports: [443] }, HOST);
    expect(plan.details).toEqual([
      "acts on: 192.0.2.0/24, remote port 443 (tcp, udp), going out on eth0: limited to 16 Mbit/s (2mbps), burst 20000 bytes",
      "excluded: the control plane (10.213.0.1:7443) — 10.213.0.1, remote port 7443 (tcp, udp)",
      "excluded: EC2 instance metadata (IMDS) — 169.254.169.254",
      "excluded: DNS — any address, remote port 53 (tcp, udp)",
      "excluded: SSH (port 22: always, and sshd listens on it) — local port 22 (tcp), any address, in and out",
      "excluded: loopback (lo)",
    ]);
    expect(kind.validate({ rate: "10mbit", burst: "64KiB" }, HOST).details[0]).toBe("acts on: every address, going out on eth0: limited to 10 Mbit/s, burst 65536 bytes");
    expect(await kind.preview!(plan, HOST)).toEqual({ details: plan.details });
  });

  it("reads class counters from tc's text (bytes, K and M backlogs; another class is not this one)", () => {
    const text = `class htb 1f1b:1 root prio 0 rate 1Mbit\n Sent 5 bytes 1 pkt (dropped 0, overlimits 0 requeues 0)\n backlog 0b 0p requeues 0\n${CLASS_TEXT(42)}`;
    expect(parseClassCounters(text, "1f1b:10")).toEqual({ bytes: 42, packets: 452, dropped: 3, overlimits: 24, backlogBytes: 12 * 1024 });
    expect(parseClassCounters(text, "1f1b:1")).toEqual({ bytes: 5, packets: 1, dropped: 0, overlimits: 0, backlogBytes: 0 });
    expect(parseClassCounters(text.replace("12Kb", "2Mb"), "1f1b:10")?.backlogBytes).toBe(2 * 1024 * 1024);
    expect(parseClassCounters(text, "1f1b:2")).toBeUndefined();
    expect(parseClassCounters("", "1f1b:10")).toBeUndefined();
  });
});

const skipReason = netnsSkipReason();
if (skipReason) console.log(`skipping the network-bandwidth namespace tests: ${skipReason}`);

describe.skipIf(!!skipReason)("network-bandwidth in a throwaway network namespace (real tc, real htb)", () => {
  const lab = new NetnsLab();
  let ns: string;
  let peer: string;
  const dev = `fdt${lab.id}a`;
  const nsRun: CommandRunner = (program, args, opts) => runCommand("ip", ["netns", "exec", ns, program, ...args], opts);
  const nsInterfaces: InterfaceLookup = {
    exists: (name) => inNs(ns, ["ip", "link", "show", "dev", name], { allowFail: true }).code === 0,
    list: () => [dev],
    defaultDevice: () => dev,
  };
  const host: HostInfo = { ...HOST, networkExclusions: [{ cidr: "10.213.253.2/32", port: 7443, reason: "the control plane" }, ...HOST.networkExclusions.slice(1)] };
  const kind = () => createNetworkBandwidth({ run: nsRun, interfaces: nsInterfaces, measureIntervalMs: 200, sshPorts: () => ({ ports: [], tookMs: 0 }) });
  let running: RunningFault | undefined;

  beforeAll(async () => {
    ns = lab.namespace("a");
    peer = lab.namespace("b");
    lab.link({ ns, name: dev, addr: "10.213.253.1/30" }, { ns: peer, name: `fdt${lab.id}b`, addr: "10.213.253.2/30" });
    const sink = lab.spawnNode(peer, NET_TOOLS, ["serve", "--sink", "5001"], { tsx: false });
    await vi.waitFor(() => expect(sink.output()).toContain("ready"), { timeout: 10_000, interval: 50 });
  });
  afterEach(async () => {
    await running?.revert();
    running = undefined;
    inNs(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFail: true });
  });
  afterAll(() => lab.cleanup());

  const roots = () => qdiscs(ns, dev).filter((q) => q.root).map((q) => `${q.kind} ${q.handle}`);
  const classText = () => inNs(ns, ["tc", "-s", "class", "show", "dev", dev]).stdout;
  const send = (port: number, count: number) =>
    inNs(ns, [process.execPath, NET_TOOLS, "udp-send", "--host", "10.213.253.2", "--port", String(port), "--count", String(count)]);
  const direct = () => (qdiscs(ns, dev)[0] as { options?: { direct_packets_stat?: number } }).options?.direct_packets_stat ?? -1;

  it("installs for real: htb 1f1b: with the configured rate; each packet goes where planned; revert restores the default root", async () => {
    const { started } = await startWith(kind(), { rate: "10mbit", destinations: ["10.213.253.2"], ports: [8080, 9090] }, host);
    running = await started;
    expect(roots()).toEqual([`htb ${BANDWIDTH_ROOT_HANDLE}`]);
    expect(qdiscs(ns, dev)[0]).toMatchObject({ options: { default: "0", direct_qlen: 1000 } });
    const text = classText();
    console.log(`tc class show: ${text.split("\n")[0]}`);
    expect(text).toMatch(/^class htb 1f1b:10 root prio 0 rate 10Mbit ceil 10Mbit burst 12500b cburst 12500b/m);
    const before = { limited: parseClassCounters(text, BANDWIDTH_CLASS)!.packets, direct: direct() };
    send(8080, 3); // a target → limited class
    send(9090, 4); // a target → limited class
    send(7443, 5); // the control plane → direct
    send(1234, 6); // not a target port → unclassified, default 0: direct
    const after = { limited: parseClassCounters(classText(), BANDWIDTH_CLASS)!.packets, direct: direct() };
    console.log(`limited class +${after.limited - before.limited} packets, direct queue +${after.direct - before.direct}`);
    expect(after.limited - before.limited).toBe(3 + 4);
    expect(after.direct - before.direct).toBeGreaterThanOrEqual(5 + 6);
    await running.revert();
    expect(roots()).toEqual(["noqueue 0:"]);
  });

  it("everything limited (default 10) but the exclusions; a TCP transfer through it makes the class send, hit its limit (overlimits) and be measured", async () => {
    const { plan, started } = await startWith(kind(), { rate: "2mbit" }, host);
    running = await started;
    expect(qdiscs(ns, dev)[0]).toMatchObject({ options: { default: "0x10" } });
    const packets = () => parseClassCounters(classText(), BANDWIDTH_CLASS)!.packets;
    const d0 = direct();
    const p0 = packets();
    send(7443, 5); // the control plane: never limited
    expect(direct() - d0).toBe(5);
    send(1234, 6); // everything else is (with whatever else the device sends: IPv6 router solicitations...)
    expect(packets() - p0).toBeGreaterThanOrEqual(6);
    const transfer = JSON.parse(
      inNs(ns, [process.execPath, NET_TOOLS, "tcp-transfer", "--host", "10.213.253.2", "--port", "5001", "--warmup", "500", "--measure", "1500"]).stdout,
    ) as { mbit: number };
    await new Promise((r) => setTimeout(r, 500)); // a measurement after the transfer
    const m = running.measure!();
    console.log(`2mbit limit: TCP transfer ${transfer.mbit} Mbit/s; measured ${JSON.stringify(m)}; ${plan.details[0]}`);
    expect(m.sent_bytes).toBeGreaterThan(100_000);
    expect(m.overlimits).toBeGreaterThan(0);
    expect(m.installed).toBe(1);
    await running.revert();
    expect(roots()).toEqual(["noqueue 0:"]);
  });

  it("a foreign root qdisc (tbf) is refused and stays exactly as it was", async () => {
    inNs(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", "5:", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms"]);
    const before = qdiscConfig(ns, dev);
    const { started } = await startWith(kind(), { rate: "1mbit" }, host);
    await expect(started).rejects.toThrow(`${dev} has a root qdisc someone configured (tbf 5:)`);
    expect(qdiscConfig(ns, dev)).toBe(before);
  });

  it("a stale firedrill root is refused, and revertRecord (recover, the guard) removes exactly it", async () => {
    inNs(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", BANDWIDTH_ROOT_HANDLE, "htb"]);
    const k = kind();
    await expect((await startWith(k, { rate: "1mbit" }, host)).started).rejects.toThrow("run `firedrill-agent recover`");
    expect(roots()).toEqual([`htb ${BANDWIDTH_ROOT_HANDLE}`]);
    await k.revertRecord({ device: dev, handle: BANDWIDTH_ROOT_HANDLE, installed: true }, { log, holderAlive: false });
    expect(roots()).toEqual(["noqueue 0:"]);
  });
});
