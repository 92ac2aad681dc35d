import type { JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { NET_TOOLS, NetnsLab, inNs, netnsSkipReason, qdiscConfig, qdiscs, waitIpv6Ready } from "../../../../test/support/netns.js";
import { kernelQdiscSupport } from "../facts.js";
import { runCommand } from "./net-common.js";
import type { CommandResult, CommandRunner, NetTool } from "./net-common.js";
import { createNetworkDelay, missingQdiscMessage } from "./network-delay.js";
import type { InterfaceLookup, NetworkDelayOptions } from "./network-delay.js";
import { DELAY_ROOT_HANDLE } from "./tc-plan.js";
import type { FaultContext, HostInfo } from "./types.js";

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

function makeCtx(): FaultContext & { records: JsonObject[] } {
  const records: JsonObject[] = [];
  return { faultId: "nd-test", log, host: HOST, records, updateRevert: (r) => records.push(JSON.parse(JSON.stringify(r)) as JsonObject) };
}

/**
 * A tiny tc: keeps the qdiscs of one device, answers `qdisc show` as JSON, and fails the commands
 * the test says should fail with the kernel's words.
 */
class FakeTc {
  qdiscs: { kind: string; handle: string; root?: boolean; parent?: string }[] = [{ kind: "fq_codel", handle: "0:", root: true }];
  calls: string[] = [];
  failOn: { match: RegExp; stderr: string }[] = [];
  /** When set, `qdisc del` "succeeds" but leaves the qdisc in place. */
  stubbornDel = false;

  run: CommandRunner = async (program: NetTool, args: readonly string[]): Promise<CommandResult> => {
    const line = args.join(" ");
    this.calls.push(`${program} ${line}`);
    const fail = this.failOn.find((f) => f.match.test(line));
    if (fail) return { code: 2, stdout: "", stderr: fail.stderr };
    if (line.includes("qdisc show")) return { code: 0, stdout: JSON.stringify(this.qdiscs), stderr: "" };
    if (line.startsWith("qdisc add") && args.includes("root")) {
      const handle = args[args.indexOf("handle") + 1]!;
      this.qdiscs = [{ kind: args[args.indexOf("handle") + 2]!, handle, root: true }];
    } else if (line.startsWith("qdisc add")) {
      this.qdiscs.push({ kind: "netem", handle: args[args.indexOf("handle") + 1]!, parent: args[args.indexOf("parent") + 1]! });
    } else if (line.startsWith("qdisc del") && !this.stubbornDel) {
      this.qdiscs = [{ kind: "fq_codel", handle: "0:", root: true }];
    }
    return { code: 0, stdout: "", stderr: "" };
  };
}

const fakeInterfaces: InterfaceLookup = { exists: (n) => n === "eth0", list: () => ["eth0", "lo"], defaultDevice: () => "eth0" };

function fakeKind(tc: FakeTc, opts: Partial<NetworkDelayOptions> = {}) {
  return createNetworkDelay({ run: tc.run, missingQdiscs: () => [], interfaces: fakeInterfaces, measureIntervalMs: 60_000, ...opts });
}

async function startWith(kind: ReturnType<typeof createNetworkDelay>, params: JsonObject) {
  const ctx = makeCtx();
  const plan = kind.validate(params, HOST);
  ctx.records.push(JSON.parse(JSON.stringify(kind.planRevert(plan, ctx))) as JsonObject);
  return { ctx, plan, started: kind.start(plan, ctx) };
}

const UNKNOWN = "Error: Specified qdisc kind is unknown.";

describe("network-delay start and revert (a fake tc)", () => {
  it("installs the plan in order after the journal says installed, and reverts by deleting our root", async () => {
    const tc = new FakeTc();
    const { ctx, plan, started } = await startWith(fakeKind(tc), { delayMs: 100 });
    const running = await started;
    expect(ctx.records[0]).toEqual({ device: "eth0", handle: "1f1d:", netemHandle: "1f1e:", installed: false });
    expect(ctx.records[1]).toEqual({ device: "eth0", handle: "1f1d:", netemHandle: "1f1e:", previousRoot: { kind: "fq_codel", handle: "0:" }, installed: true });
    expect(tc.calls.filter((c) => / (add|del) /.test(c))).toEqual(plan.tc.install.map((a) => `tc ${a.join(" ")}`));
    await running.revert();
    await running.revert(); // idempotent
    expect(tc.calls.filter((c) => c.includes("qdisc del"))).toEqual(["tc qdisc del dev eth0 root handle 1f1d:"]);
    expect(tc.qdiscs).toEqual([{ kind: "fq_codel", handle: "0:", root: true }]);
  });

  it("netem missing half-way: the same plain message, and the partial prio qdisc is removed", async () => {
    const tc = new FakeTc();
    tc.failOn.push({ match: /netem/, stderr: UNKNOWN });
    const { ctx, started } = await startWith(fakeKind(tc), { delayMs: 100 });
    await expect(started).rejects.toThrow(missingQdiscMessage(["netem"]));
    expect(tc.calls).toContain("tc qdisc del dev eth0 root handle 1f1d:");
    expect(tc.qdiscs).toEqual([{ kind: "fq_codel", handle: "0:", root: true }]);
    // The record still says installed: the runtime's revertRecord checks again, finds nothing, succeeds.
    expect(ctx.records.at(-1)).toMatchObject({ installed: true });
  });

  it("prio missing: refused at the root add, which changed nothing, and the record says so", async () => {
    const tc = new FakeTc();
    tc.failOn.push({ match: /prio/, stderr: UNKNOWN });
    const { ctx, started } = await startWith(fakeKind(tc), { delayMs: 100 });
    await expect(started).rejects.toThrow(/^network-delay needs the sch_prio kernel module, which this kernel \(.+\) does not have/);
    expect(ctx.records.at(-1)).toMatchObject({ installed: false });
    expect(tc.calls.some((c) => c.includes("qdisc del"))).toBe(false);
  });

  it("preflight: a kernel known to lack netem is refused before any tc command changes anything", async () => {
    const tc = new FakeTc();
    const { ctx, started } = await startWith(fakeKind(tc, { missingQdiscs: () => ["netem"] }), { delayMs: 100 });
    await expect(started).rejects.toThrow(missingQdiscMessage(["netem"]));
    expect(tc.calls.every((c) => c.includes("qdisc show"))).toBe(true);
    expect(ctx.records).toHaveLength(1); // only the planned record: installed false
  });

  it("a foreign root qdisc is refused and left alone", async () => {
    const tc = new FakeTc();
    tc.qdiscs = [{ kind: "htb", handle: "5:", root: true }];
    const { started } = await startWith(fakeKind(tc), { delayMs: 100 });
    await expect(started).rejects.toThrow(
      "eth0 has a root qdisc someone configured (htb 5:); network-delay replaces the root qdisc and could not restore it exactly afterwards, so it refuses",
    );
    expect(tc.calls.every((c) => c.includes("qdisc show"))).toBe(true);
    expect(tc.qdiscs).toEqual([{ kind: "htb", handle: "5:", root: true }]);
  });

  it("a configured child under a default root is foreign too; an ingress qdisc is not", async () => {
    const tc = new FakeTc();
    tc.qdiscs = [{ kind: "mq", handle: "0:", root: true }, { kind: "fq", handle: "8001:", parent: ":1" }];
    await expect((await startWith(fakeKind(tc), { delayMs: 100 })).started).rejects.toThrow("eth0 has a qdisc under :1 someone configured (fq 8001:)");
    tc.qdiscs = [{ kind: "noqueue", handle: "0:", root: true }, { kind: "ingress", handle: "ffff:", parent: "ffff:fff1" }];
    const running = await (await startWith(fakeKind(tc), { delayMs: 100 })).started;
    await running.revert();
  });

  it("our handle already there (stale) is refused with how to clean it", async () => {
    const tc = new FakeTc();
    tc.qdiscs = [{ kind: "prio", handle: "1f1d:", root: true }];
    const { started } = await startWith(fakeKind(tc), { delayMs: 100 });
    await expect(started).rejects.toThrow(
      "a firedrill network-delay qdisc (root handle 1f1d:) is already on eth0: another network-delay is running, or one was left behind by an agent that could not clean up. If no firedrill network fault is running on this host, run `firedrill-agent recover`; if it is still there afterwards, remove it with `tc qdisc del dev eth0 root handle 1f1d:`",
    );
  });

  it("revertRecord: from the record alone; gone, device gone and not-installed are success; still there is an error", async () => {
    const tc = new FakeTc();
    const kind = fakeKind(tc);
    const record = { device: "eth0", handle: "1f1d:", netemHandle: "1f1e:", installed: true };
    tc.qdiscs = [{ kind: "prio", handle: "1f1d:", root: true }];
    await kind.revertRecord(record, { log, holderAlive: true });
    expect(tc.qdiscs[0]?.handle).toBe("0:");
    await kind.revertRecord(record, { log, holderAlive: false }); // gone already
    tc.failOn.push({ match: /show/, stderr: 'Cannot find device "eth0"' });
    await kind.revertRecord(record, { log, holderAlive: false }); // device gone
    tc.failOn = [];
    tc.qdiscs = [{ kind: "prio", handle: "1f1d:", root: true }];
    const before = tc.calls.length;
    await kind.revertRecord({ ...record, installed: false }, { log, holderAlive: false });
    expect(tc.calls.length).toBe(before); // never installed: nothing to look at
    tc.stubbornDel = true;
    await expect(kind.revertRecord(record, { log, holderAlive: false })).rejects.toThrow(
      "the network-delay qdisc (root handle 1f1d:) is still on eth0 after tc qdisc del",
    );
  });

  it("validate: an unknown interface, no default route, and destinations that are all excluded", () => {
    const kind = fakeKind(new FakeTc());
    expect(() => kind.validate({ delayMs: 10, interface: "eth9" }, HOST)).toThrow('params.interface: "eth9": no such network interface on this host; use one of: eth0, lo');
    const noRoute = fakeKind(new FakeTc(), { interfaces: { ...fakeInterfaces, defaultDevice: () => undefined } });
    expect(() => noRoute.validate({ delayMs: 10 }, HOST)).toThrow("params.interface: is required on this host: it has no default route to take the device from; name one of: eth0, lo");
    expect(() => kind.validate({ delayMs: 10, destinations: ["169.254.169.254"] }, HOST)).toThrow(
      "params.destinations: 169.254.169.254/32 only covers excluded traffic (EC2 instance metadata (IMDS)); network faults never touch it",
    );
    expect(() => kind.validate({ delayMs: 10, destinations: ["127.0.0.1"] }, HOST)).toThrow("params.destinations: 127.0.0.1/32 only covers excluded traffic (loopback)");
    expect(() => kind.validate({ delayMs: 10, ports: [53] }, HOST)).toThrow("params.ports: 53 only covers excluded traffic (DNS); network faults never touch it");
    expect(kind.validate({ delayMs: 10, destinations: ["10.213.0.1"] }, HOST).tc.install.length).toBeGreaterThan(2); // other ports are fair game
  });

  it("details: what it delays and every exclusion (SSH read at validation), the same in preview and in the running fault", async () => {
    const tc = new FakeTc();
    const kind = fakeKind(tc, { sshPorts: () => ({ ports: [22, 2222], tookMs: 1 }) });
    const plan = kind.validate({ delayMs: 100, jitterMs: 10, destinations: ["192.0.2.0/24"] }, HOST);
    expect(plan.details).toEqual([
      "acts on: 192.0.2.0/24, going out on eth0: delayed 100 ms ± 10 ms",
      "excluded: the control plane (10.213.0.1:7443) — 10.213.0.1, remote port 7443 (tcp, udp)",
      "excluded: EC2 instance metadata (IMDS) — 169.254.169.254",
      "excluded: DNS — any address, remote port 53 (tcp, udp)",
      "excluded: SSH (port 22: always, and sshd listens on it) — local port 22 (tcp), any address, in and out",
      "excluded: SSH (sshd listens on port 2222) — local port 2222 (tcp), any address, in and out",
      "excluded: loopback (lo)",
    ]);
    expect(await kind.preview!(plan, HOST)).toEqual({ details: plan.details });
    // SSH's replies leave by their source port, to the normal band.
    expect(plan.tc.install.map((a) => a.join(" ")).filter((l) => / sport (22|2222) /.test(l))).toEqual([
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip sport 22 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ip pref 1 u32 match ip dst 0.0.0.0/0 match ip protocol 6 0xff match u16 0 0x1fff at 6 match ip sport 2222 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 sport 22 0xffff flowid 1f1d:1",
      "filter add dev eth0 parent 1f1d: protocol ipv6 pref 2 u32 match ip6 dst ::/0 match ip6 protocol 6 0xff match ip6 sport 2222 0xffff flowid 1f1d:1",
    ]);
    const running = await kind.start(plan, makeCtx());
    expect(running.details).toEqual(plan.details);
    await running.revert();
  });
});

const skipReason = netnsSkipReason();
if (skipReason) console.log(`skipping the network-delay namespace tests: ${skipReason}`);
const netemHere = !skipReason && kernelQdiscSupport("netem").available && kernelQdiscSupport("prio").available;

describe.skipIf(!!skipReason)("network-delay in a throwaway network namespace (real tc)", () => {
  const lab = new NetnsLab();
  let ns: string;
  let peer: string;
  const dev = `fdt${lab.id}a`;
  /** tc/nft/ip inside the namespace. */
  const nsRun: CommandRunner = (program, args, opts) => runCommand("ip", ["netns", "exec", ns, program, ...args], opts);
  const nsInterfaces: InterfaceLookup = {
    exists: (name) => inNs(ns, ["ip", "link", "show", "dev", name], { allowFail: true }).code === 0,
    list: () => [dev],
    defaultDevice: () => dev,
  };

  beforeAll(async () => {
    ns = lab.namespace("a");
    peer = lab.namespace("b");
    // For IPv6 the veth's link-local addresses are enough; skip duplicate address detection.
    for (const n of [ns, peer]) inNs(n, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
    lab.link({ ns, name: dev, addr: "10.213.255.1/30" }, { ns: peer, name: `fdt${lab.id}b`, addr: "10.213.255.2/30" });
    // A link-local address still in detection cannot send: wait until both ends are ready.
    await waitIpv6Ready(ns, dev);
    await waitIpv6Ready(peer, `fdt${lab.id}b`);
  });
  afterAll(() => lab.cleanup());

  const roots = () => qdiscs(ns, dev).filter((q) => q.root).map((q) => `${q.kind} ${q.handle}`);

  it.skipIf(netemHere)("on this kernel (no sch_netem): FAILED with the plain message, and nothing is left on the device", async () => {
    const kind = createNetworkDelay({ run: nsRun, interfaces: nsInterfaces });
    const before = roots();
    const { started } = await startWith(kind, { delayMs: 100 });
    const err = await started.then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/^network-delay needs the sch_netem (and sch_prio )?kernel modules?, which this kernel \(.+\) does not have: install your distribution's extra kernel modules/);
    console.log(`missing-netem message: ${err?.message}`);
    expect(roots()).toEqual(before);
    expect(qdiscs(ns, dev).some((q) => q.handle === DELAY_ROOT_HANDLE)).toBe(false);
  });

  it.skipIf(netemHere)("netem failing half-way for real (prio swapped for htb, which this kernel has): the partial root is removed", async () => {
    // The one way to get past the root on a kernel without sch_prio: install htb in its place.
    const swapPrio: CommandRunner = async (program, args, opts) => {
      const i = args.indexOf("prio");
      if (i < 0 || args[0] !== "qdisc") return nsRun(program, args, opts);
      const result = await nsRun(program, [...args.slice(0, i), "htb"], opts);
      // prio has its four bands built in; htb needs them as classes.
      for (const c of [1, 2, 3, 4]) await nsRun("tc", ["class", "add", "dev", dev, "parent", DELAY_ROOT_HANDLE, "classid", `1f1d:${c}`, "htb", "rate", "1gbit"]);
      return result;
    };
    const kind = createNetworkDelay({ run: swapPrio, interfaces: nsInterfaces, missingQdiscs: () => [] });
    const { ctx, started } = await startWith(kind, { delayMs: 100 });
    await expect(started).rejects.toThrow(missingQdiscMessage(["netem"]));
    expect(ctx.records.at(-1)).toMatchObject({ installed: true });
    expect(qdiscs(ns, dev).some((q) => q.handle === DELAY_ROOT_HANDLE)).toBe(false);
    expect(roots()).toEqual(["noqueue 0:"]);
  });

  it("a foreign root qdisc (htb 5:) is refused and stays exactly as it was", async () => {
    inNs(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", "5:", "htb", "default", "1"]);
    try {
      const before = qdiscConfig(ns, dev);
      const kind = createNetworkDelay({ run: nsRun, interfaces: nsInterfaces });
      const { started } = await startWith(kind, { delayMs: 100 });
      await expect(started).rejects.toThrow(`${dev} has a root qdisc someone configured (htb 5:)`);
      expect(qdiscConfig(ns, dev)).toBe(before);
    } finally {
      inNs(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFail: true });
    }
  });

  it("a stale firedrill root is refused with how to clean it, and revertRecord (recover) removes it", async () => {
    inNs(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", DELAY_ROOT_HANDLE, "htb"]);
    try {
      const kind = createNetworkDelay({ run: nsRun, interfaces: nsInterfaces });
      const { started } = await startWith(kind, { delayMs: 100 });
      await expect(started).rejects.toThrow("run `firedrill-agent recover`");
      expect(roots()).toEqual([`htb ${DELAY_ROOT_HANDLE}`]);
      await kind.revertRecord({ device: dev, handle: DELAY_ROOT_HANDLE, netemHandle: "1f1e:", installed: true }, { log, holderAlive: false });
      expect(roots()).toEqual(["noqueue 0:"]);
    } finally {
      inNs(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFail: true });
    }
  });

  it("the plan's u32 filters send each packet where planned (htb stand-in for prio; per-class packet counts)", async () => {
    const kind = createNetworkDelay({ run: nsRun, interfaces: nsInterfaces });
    const host: HostInfo = { ...HOST, networkExclusions: [{ cidr: "10.213.255.2/32", port: 7443, reason: "cp" }, ...HOST.networkExclusions.slice(1)] };
    const peerLinkLocal = JSON.parse(inNs(peer, ["ip", "-j", "-6", "addr", "show", "dev", `fdt${lab.id}b`, "scope", "link"]).stdout)[0].addr_info[0].local as string;
    const plan = kind.validate({ delayMs: 100, destinations: ["10.213.255.2", "fe80::/10"], ports: [8080, 9090] }, host);
    inNs(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", DELAY_ROOT_HANDLE, "htb"]);
    try {
      for (const c of [1, 2, 3, 4]) inNs(ns, ["tc", "class", "add", "dev", dev, "parent", DELAY_ROOT_HANDLE, "classid", `1f1d:${c}`, "htb", "rate", "1gbit"]);
      for (const args of plan.tc.install.slice(2)) inNs(ns, ["tc", ...args]);
      const send = (host: string, port: number, count: number) =>
        inNs(ns, [process.execPath, NET_TOOLS, "udp-send", "--host", host, "--port", String(port), "--count", String(count)]);
      send("10.213.255.2", 8080, 3); // target → band 4
      send("10.213.255.2", 9090, 4); // target → band 4
      send("10.213.255.2", 7443, 5); // the control plane → band 1
      send("10.213.255.2", 53, 6); // DNS → band 1
      send("10.213.255.2", 1234, 7); // not a target port → unclassified
      send(`${peerLinkLocal}%${dev}`, 8080, 8); // IPv6 target → band 4
      send(`${peerLinkLocal}%${dev}`, 53, 9); // IPv6 DNS → band 1
      // `tc -s class show` (no JSON for classes in this iproute2): "class htb 1f1d:4 ... \n Sent 420 bytes 15 pkt ..."
      const text = inNs(ns, ["tc", "-s", "class", "show", "dev", dev]).stdout;
      const classes = [...text.matchAll(/^class htb (\S+) [^\n]*\n\s*Sent \d+ bytes (\d+) pkt/gm)].map((m) => ({ handle: m[1]!, packets: Number(m[2]) }));
      const count = (h: string) => classes.find((c) => c.handle === h)?.packets ?? -1;
      console.log(`packets per class: ${classes.map((c) => `${c.handle}=${c.packets}`).join(" ")}`);
      expect(count("1f1d:4")).toBe(3 + 4 + 8);
      expect(count("1f1d:1")).toBe(5 + 6 + 9);
      expect(count("1f1d:2") + count("1f1d:3")).toBe(0);
    } finally {
      inNs(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFail: true });
    }
  });

  it("SSH for real: the replies of a TCP server on port 22 of this host go to the normal band, another server's do not (htb stand-in)", async () => {
    const kind = createNetworkDelay({ run: nsRun, interfaces: nsInterfaces, sshPorts: () => ({ ports: [], tookMs: 0 }) });
    const plan = kind.validate({ delayMs: 100 }, HOST); // everything delayed but the exclusions
    const server = lab.spawnNode(ns, NET_TOOLS, ["serve", "--tcp", "22,2323"], { tsx: false });
    inNs(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", DELAY_ROOT_HANDLE, "htb"]);
    try {
      await vi.waitFor(() => expect(server.output()).toContain("ready"), { timeout: 10_000, interval: 50 });
      for (const c of [1, 2, 3, 4]) inNs(ns, ["tc", "class", "add", "dev", dev, "parent", DELAY_ROOT_HANDLE, "classid", `1f1d:${c}`, "htb", "rate", "1gbit"]);
      for (const args of plan.tc.install.slice(2)) inNs(ns, ["tc", ...args]);
      const normalBand = () => {
        const text = inNs(ns, ["tc", "-s", "class", "show", "dev", dev, "classid", "1f1d:1"]).stdout;
        return Number(/Sent \d+ bytes (\d+) pkt/.exec(text)?.[1] ?? -1);
      };
      const connect = (port: number) =>
        JSON.parse(inNs(peer, [process.execPath, NET_TOOLS, "tcp-connect", "--host", "10.213.255.1", "--port", String(port), "--count", "3"]).stdout) as { ok: number };
      expect(normalBand()).toBe(0);
      expect(connect(22).ok).toBe(3);
      const afterSsh = normalBand();
      expect(connect(2323).ok).toBe(3);
      const afterOther = normalBand();
      console.log(`packets to the normal band: ${afterSsh} from 3 connects to :22, ${afterOther - afterSsh} more from 3 connects to :2323`);
      expect(afterSsh).toBeGreaterThanOrEqual(3 * 2); // at least SYN-ACK and the echo, per connect
      expect(afterOther).toBe(afterSsh);
    } finally {
      server.kill("SIGKILL");
      inNs(ns, ["tc", "qdisc", "del", "dev", dev, "root"], { allowFail: true });
    }
  });

  it.skipIf(!netemHere)("with netem: the whole plan installs for real and revert restores the default root", async () => {
    const kind = createNetworkDelay({ run: nsRun, interfaces: nsInterfaces });
    const { started } = await startWith(kind, { delayMs: 50, destinations: ["10.213.255.2"] });
    const running = await started;
    expect(roots()).toEqual([`prio ${DELAY_ROOT_HANDLE}`]);
    await running.revert();
    expect(roots()).toEqual(["noqueue 0:"]);
  });
});
