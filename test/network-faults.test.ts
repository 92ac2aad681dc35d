/**
 * Network faults end to end, on hosts made of network namespaces (test/support/netns.ts): a real
 * control plane in `cp`, a real agent in `host`, echo servers in `tgt`. Probes run inside `host`.
 * Nothing here touches the root namespace's qdiscs or nftables.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { faultApi } from "./support/fault-api.js";
import type { ApiTarget } from "./support/api.js";
import { NET_TOOLS, NetnsLab, ROOT, buildHosts, inNs, netnsSkipReason, nftTables, qdiscConfig, qdiscs } from "./support/netns.js";
import type { NsProcess, TestHosts } from "./support/netns.js";
import { OPT_IN_LABELS, captureProcess, sleep, waitFor } from "./support/processes.js";

const CLI_BIN = join(ROOT, "packages/cli/src/bin.ts");
const AGENT_BIN = join(ROOT, "packages/agent/src/bin.ts");
const DRIVER = join(ROOT, "test/support/fault-driver.ts");
const GRPC_PORT = 7443;
const HTTP_PORT = 8080;
const LEASE_TTL_MS = 3000;
/** A port on the host that the agent's --management spares (a plain listener there, not sshd). */
const MGMT_PORT = 2200;
/** A port a listener whose argv[0] is sshd holds on the host (found by the agent's scan). */
const SSHD_PORT = 2222;

/** The state letter of a process (R, S, T, Z...) from /proc. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

const skipReason = netnsSkipReason();
if (skipReason) console.log(`skipping the network fault tests: ${skipReason}`);

/** Why no real delay can be measured on this kernel (probed in throwaway namespaces), if so. */
function noRealDelayReason(): string | undefined {
  if (skipReason) return skipReason;
  for (const [kind, args] of [["netem", ["delay", "1ms"]], ["prio", ["bands", "4"]]] as const) {
    const res = spawnSync("unshare", ["--net", "tc", "qdisc", "add", "dev", "lo", "root", kind, ...args], { encoding: "utf8", timeout: 10_000 });
    if (res.status !== 0) return `this kernel has no sch_${kind} (${(res.stderr ?? "").trim()}), so no real delay can be measured here`;
  }
  return undefined;
}
const noRealDelay = noRealDelayReason();
if (noRealDelay && !skipReason) console.log(`skipping the real-delay test: ${noRealDelay}`);

describe.skipIf(!!skipReason)("network faults on namespace hosts", () => {
  const lab = new NetnsLab();
  const dirs: string[] = [];
  let hosts: TestHosts;
  let httpUrl: string;
  /** The control plane's API with the bootstrap admin token. */
  let control: ApiTarget;
  let cpGrpc: string;
  let agent: NsProcess;
  let agentId: string;
  let agentStateDir: string;
  let token: string;
  let netem = false;
  /** An extra address of cp (on its lo) that the agent's --management spares. */
  let mgmtAddr: string;
  const managementFlag = () => ["--management", `${mgmtAddr}/32,tcp:${MGMT_PORT}`];

  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), `firedrill-${prefix}-`));
    dirs.push(dir);
    return dir;
  };

  function startAgent(token: string): NsProcess {
    agentStateDir = tempDir("net-agent");
    lab.trackAgentStateDir(agentStateDir);
    return lab.spawnNode(hosts.host, AGENT_BIN, [
      "--server", cpGrpc, "--token", token, "--state-dir", agentStateDir, "--imds", "off",
      "--reconnect-max", "1s", "--progress-interval", "1s", "--log-level", "debug", "--labels", OPT_IN_LABELS, ...managementFlag(),
    ]);
  }

  /** Runs a probe inside a namespace (the host by default) and returns its JSON line. */
  function probe(command: string, args: Record<string, string | number>, ns = hosts.host): any {
    const argv = [process.execPath, NET_TOOLS, command, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
    return JSON.parse(inNs(ns, argv).stdout.trim().split("\n").at(-1)!);
  }
  const tcp = (port: number, count = 3, timeout = 1000) => probe("tcp-connect", { host: hosts.addr.tgt, port, count, timeout });
  const udpLoss = (count: number) => probe("udp-echo", { host: hosts.addr.tgt, port: 7000, count, interval: 2, wait: 800 });

  const { startFault, getFault, startRunning, waitReverted } = faultApi(() => control, () => agentId);
  async function stopFault(faultId: string) {
    const res = await api(control, "DELETE", `/api/v1/agents/${agentId}/faults/${faultId}`);
    expect(res.status).toBe(200);
    return waitReverted(faultId);
  }
  async function agentJson() {
    return (await api(control, "GET", `/api/v1/agents/${agentId}`)).body.agent;
  }
  const nothingLeft = () => {
    expect(nftTables(hosts.host)).toEqual([]);
    expect(qdiscs(hosts.host, hosts.hostIf).some((q) => q.handle === "1f1d:")).toBe(false);
  };

  beforeAll(async () => {
    hosts = buildHosts(lab);
    mgmtAddr = hosts.addr.cpGrpc.replace(/\.\d+$/, ".77");
    inNs(hosts.cp, ["ip", "addr", "add", `${mgmtAddr}/32`, "dev", "lo"]);
    httpUrl = `http://${hosts.addr.cpHttp}:${HTTP_PORT}`;
    cpGrpc = `${hosts.addr.cpGrpc}:${GRPC_PORT}`;
    const dataDir = tempDir("net-cp");
    // Plain HTTP on the namespace address (tokens cross a veth the test owns; HTTPS is not under test here).
    const server = lab.spawnNode(hosts.cp, CLI_BIN, [
      "server", "--data-dir", dataDir, "--grpc-addr", cpGrpc, "--http-addr", `${hosts.addr.cpHttp}:${HTTP_PORT}`,
      "--lease-ttl", `${LEASE_TTL_MS / 1000}s`, "--insecure-http",
    ]);
    await waitFor(`the control plane at ${httpUrl}`, async () => {
      if (server.child.exitCode !== null) throw new Error(`server exited: ${server.output()}`);
      return (await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(2000) })).ok;
    }, 30_000);
    const echo = lab.spawnNode(hosts.tgt, NET_TOOLS, ["serve", "--tcp", "8080,9090", "--udp", "7000"], { tsx: false });
    await waitFor("the echo servers in tgt", () => echo.output().includes("ready"), 10_000);
    token = readFileSync(join(dataDir, "join-token"), "utf8").trim();
    control = { httpUrl, adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim() };
    agent = startAgent(token);
    agentId = await waitFor(`the agent in ${hosts.host} to connect`, async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output()}`);
      const { agents } = (await api(control, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
      return agents.find((a) => a.connected)?.id;
    }, 30_000);
    netem = (await agentJson()).capabilities.netem === true;
  }, 90_000);

  afterAll(async () => {
    try {
      await lab.cleanup();
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });

  it("the agent reports the network kinds and what this kernel can do", async () => {
    const { capabilities } = await agentJson();
    expect(capabilities.faultKinds).toEqual(expect.arrayContaining(["network-delay", "network-loss", "network-blackhole"]));
    expect(capabilities.nftables).toBe(true);
    expect(capabilities.tc).toBe(true);
    // The definitive probe: can a netem qdisc be added in a throwaway namespace?
    const probeNetem = inNs(hosts.host, ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], { allowFail: true });
    expect(capabilities.netem).toBe(probeNetem.code === 0);
    console.log(`this kernel: netem ${capabilities.netem ? "available" : `missing (${probeNetem.stderr.trim()})`}`);
  });

  it("blackhole tgt:8080: those connects fail, tgt:9090 keeps flowing; after the stop the table is gone and 8080 flows", async () => {
    expect(tcp(8080).ok).toBe(3);
    const faultId = await startRunning("network-blackhole", { destinations: [hosts.addr.tgt], ports: [8080] });
    expect(nftTables(hosts.host)).toEqual(["inet firedrill"]);
    const blocked = tcp(8080, 3, 700);
    const open = tcp(9090, 3);
    console.log(`blackhole tgt:8080 → 8080 ${JSON.stringify(blocked)}, 9090 ${JSON.stringify(open)}`);
    expect(blocked).toMatchObject({ ok: 0, failed: 3 });
    expect(open).toMatchObject({ ok: 3, failed: 0 });
    await sleep(1200); // a progress report with the drop rule's counter
    const fault = await stopFault(faultId);
    expect(fault.measurements.packets_dropped).toBeGreaterThanOrEqual(3);
    nothingLeft();
    expect(tcp(8080).ok).toBe(3);
  });

  it("blackhole of everything, both ways: the agent's link and lease keep flowing past several lease TTLs", async () => {
    const before = await agentJson();
    const faultId = await startRunning("network-blackhole", { direction: "both" });
    expect(tcp(9090, 2, 700)).toMatchObject({ ok: 0, failed: 2 });
    const holdMs = 3 * LEASE_TTL_MS + 1500;
    const started = Date.now();
    while (Date.now() - started < holdMs) {
      await sleep(1000);
      expect((await getFault(faultId)).state).toBe("running");
    }
    const during = await agentJson();
    expect(during.connected).toBe(true);
    expect(during.connectedAt).toBe(before.connectedAt); // never lost the link
    expect(Date.now() - Date.parse(during.lastSeenAt)).toBeLessThan(LEASE_TTL_MS);
    expect(nftTables(hosts.host)).toEqual(["inet firedrill"]);
    const fault = await stopFault(faultId);
    expect(fault.reason).toBe("stopped"); // not "lease": the lease never expired
    nothingLeft();
    expect(tcp(9090).ok).toBe(3);
  }, 40_000);

  it("loss: measured loss over UDP echo probes is near the percent asked; revert restores 0%", async () => {
    const rows: string[] = [];
    for (const percent of [10, 30, 60]) {
      const faultId = await startRunning("network-loss", { percent, destinations: [hosts.addr.tgt], ports: [7000] });
      const m = udpLoss(400);
      await sleep(1200); // one progress report with the rule's counters
      const fault = await stopFault(faultId);
      rows.push(`asked ${String(percent).padStart(3)}%  measured ${String(m.lossPercent).padStart(5)}% (${m.sent - m.received}/${m.sent} UDP echoes lost)  nft counters ${fault.measurements?.loss_percent_measured ?? "?"}%`);
      expect(Math.abs(m.lossPercent - percent)).toBeLessThanOrEqual(10);
    }
    const after = udpLoss(200);
    rows.push(`after revert    measured ${after.lossPercent}% (${after.sent - after.received}/${after.sent})`);
    console.log(`network-loss, egress, host → tgt:7000/udp:\n  ${rows.join("\n  ")}`);
    expect(after.lossPercent).toBe(0);
    nothingLeft();
  }, 60_000);

  it("network-delay on this kernel: refused plainly, nothing left on the device", async () => {
    const before = qdiscConfig(hosts.host, hosts.hostIf);
    if (netem) {
      console.log("this kernel has sch_netem: the missing-netem refusal cannot happen here");
      return;
    }
    // The control plane already knows from the agent's capabilities and does not send it.
    const res = await startFault("network-delay", { delayMs: 100 });
    expect(res.status).toBe(422);
    expect(res.body.error.message).toContain("cannot run network-delay: the kernel lacks sch_netem");
    // The agent's own check, on the real host: the fault runtime in the host namespace.
    const out = driver("network-delay", { delayMs: 100 });
    const failed = out.find((e) => e.type === "failed");
    console.log(`agent-side refusal: ${failed?.error}`);
    expect(failed?.error).toMatch(/^could not start: network-delay needs the sch_netem (and sch_prio )?kernel modules?, which this kernel \(.+\) does not have: install your distribution's extra kernel modules \(Ubuntu: linux-modules-extra-.+\) and run `modprobe/);
    expect(qdiscConfig(hosts.host, hosts.hostIf)).toBe(before);
    nothingLeft();
  });

  /** Runs one fault through the agent's runtime inside the host namespace; returns its events. */
  function driver(kind: string, params: Record<string, unknown>): { type: string; error: string; message: string }[] {
    const stateDir = tempDir("net-driver");
    const res = inNs(hosts.host, [
      process.execPath, "--conditions=@firedrill/source", "--import", "tsx", DRIVER,
      "--state-dir", stateDir, "--server", cpGrpc, "--kind", kind, "--params", JSON.stringify(params),
    ]);
    return res.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  }

  it("a foreign root qdisc (htb 5:) is refused and left untouched", async () => {
    inNs(hosts.host, ["tc", "qdisc", "add", "dev", hosts.hostIf, "root", "handle", "5:", "htb", "default", "1"]);
    try {
      // The configuration, not its live counters (the agent's link keeps sending through it).
      const config = () =>
        qdiscs(hosts.host, hosts.hostIf).map(({ options, ...q }: any) => ({ ...q, options: { ...options, direct_packets_stat: undefined } }));
      const before = config();
      const failed = driver("network-delay", { delayMs: 100 }).find((e) => e.type === "failed");
      expect(failed?.error).toContain(`${hosts.hostIf} has a root qdisc someone configured (htb 5:); network-delay replaces the root qdisc and could not restore it exactly afterwards, so it refuses`);
      expect(config()).toEqual(before);
      expect(before).toMatchObject([{ kind: "htb", handle: "5:", root: true }]);
    } finally {
      inNs(hosts.host, ["tc", "qdisc", "del", "dev", hosts.hostIf, "root"], { allowFail: true });
    }
  });

  it.skipIf(!!noRealDelay)("real delay: RTT to tgt rises by about delayMs, and revert restores it (only where netem exists)", { timeout: 40_000 }, async () => {
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const rtt = () => median(probe("udp-rtt", { host: hosts.addr.tgt, port: 7000, count: 10, timeout: 3000 }).rttsMs);
    const before = await agentJson();
    const base = rtt();
    // No interface given: the default route's device, which also carries the agent's link.
    const faultId = await startRunning("network-delay", { delayMs: 200, destinations: [hosts.addr.tgt] });
    expect(qdiscs(hosts.host, hosts.hostIf).find((q) => q.root)?.handle).toBe("1f1d:");
    const delayed = rtt();
    await sleep(2 * LEASE_TTL_MS);
    expect((await agentJson()).connectedAt).toBe(before.connectedAt); // the control plane link is excluded
    await stopFault(faultId);
    const after = rtt();
    console.log(`UDP echo RTT to tgt (median of 10): before ${base} ms, with delayMs=200 ${delayed} ms, after revert ${after} ms`);
    // One round trip: the request waits delayMs once on the way out.
    expect(delayed - base).toBeGreaterThan(180);
    expect(delayed - base).toBeLessThan(280);
    expect(after - base).toBeLessThan(20);
    nothingLeft();
  });

  it("destinations that only cover excluded traffic are refused, naming it", async () => {
    const imds = await startFault("network-blackhole", { destinations: ["169.254.169.254/32"] });
    expect(imds.status).toBe(422);
    expect(imds.body.error.message).toBe(
      "params.destinations: 169.254.169.254/32 only covers excluded traffic (EC2 instance metadata (IMDS)); network faults never touch it",
    );
    const cp = await startFault("network-loss", { percent: 50, destinations: [hosts.addr.cpGrpc], ports: [GRPC_PORT] });
    expect(cp.status).toBe(422);
    expect(cp.body.error.message).toBe(
      `params.destinations: ${hosts.addr.cpGrpc}/32 on port ${GRPC_PORT} only covers excluded traffic (the control plane (${cpGrpc})); network faults never touch it`,
    );
    const dns = await startFault("network-loss", { percent: 50, ports: [53] });
    expect(dns.body.error.message).toBe("params.ports: 53 only covers excluded traffic (DNS); network faults never touch it");
    nothingLeft();
  });

  it("a second network fault is refused while one runs", async () => {
    const first = await startRunning("network-blackhole", { destinations: [hosts.addr.tgt], ports: [8080] });
    try {
      const second = await startFault("network-loss", { percent: 20 });
      // The server policy refuses it before anything is sent to the agent.
      expect(second.status).toBe(422);
      expect(second.body.error.code).toBe("policy_refused");
      expect(second.body.error.issues).toEqual([{ field: "one-network-fault-per-host", message: expect.stringContaining(`network-blackhole (${first}, ad-hoc)`) }]);
      expect(nftTables(hosts.host)).toEqual(["inet firedrill"]);
    } finally {
      await stopFault(first);
    }
    nothingLeft();
  });

  it.each([
    ["network-delay", { delayMs: 0 }, "params.delayMs: 0 is below the minimum 1 ms"],
    ["network-delay", { delayMs: 100, jitterMs: 500 }, "params.jitterMs: 500 is more than delayMs 100; the delay varies by ± jitterMs, so keep jitterMs at most delayMs"],
    ["network-delay", { delayMs: 100, interface: "eth0 up" }, 'params.interface: "eth0 up" is not valid; expected a network interface name such as eth0 or ens5'],
    ["network-loss", { percent: 150 }, "params.percent: 150 is above the maximum 100%"],
    ["network-loss", { percent: 10, destinations: ["10.0.0.300/8"] }, 'params.destinations: "10.0.0.300/8" is not an IPv4/IPv6 address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)'],
    ["network-blackhole", { ports: [0] }, "params.ports: 0 is not a port; use whole numbers 1-65535"],
    ["network-blackhole", { direction: "inbound" }, 'params.direction: "inbound" is not allowed; use one of: egress, ingress, both'],
  ] as const)("bad params for %s are refused precisely, nothing touched: %j", async (kind, params, message) => {
    const res = await startFault(kind, params);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain(message);
    nothingLeft();
  });

  it("an interface the host does not have is refused by the agent", async () => {
    if (!netem) {
      const failed = driver("network-delay", { delayMs: 100, interface: "eth9" }).find((e) => e.type === "failed");
      expect(failed?.error).toMatch(/^params\.interface: "eth9": no such network interface on this host; use one of: /);
    } else {
      const res = await startFault("network-delay", { delayMs: 100, interface: "eth9" });
      expect(res.status).toBe(422);
      expect(res.body.error.message).toMatch(/^params\.interface: "eth9": no such network interface on this host/);
    }
    nothingLeft();
  });

  it("management access survives a blackhole of everything, each direction: port 22, sshd's own port, --management CIDR and port stay reachable and an SSH session keeps talking; other ports are cut", async () => {
    const hostAddr = hosts.addr.host;
    // SSH-like listeners on the host: plain ones on 22, the management port and an ordinary port,
    // and one started as `exec -a sshd` on a port of its own (its comm stays "node": argv[0] names it).
    const servers = lab.spawnNode(hosts.host, NET_TOOLS, ["serve", "--tcp", `22,${MGMT_PORT},2323`], { tsx: false });
    const sshd = captureProcess(
      spawn("ip", ["netns", "exec", hosts.host, "bash", "-c", 'exec -a sshd "$0" "$@"', process.execPath, NET_TOOLS, "serve", "--tcp", String(SSHD_PORT)], {
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    const fromCp = (port: number, extra: Record<string, string | number> = {}) => probe("tcp-connect", { host: hostAddr, port, count: 3, timeout: 1000, ...extra }, hosts.cp);
    const echoes = (p: NsProcess) => (p.output().match(/^echo /gm) ?? []).length;
    const session = (port: number) =>
      lab.spawnNode(hosts.cp, NET_TOOLS, ["tcp-session", "--host", hostAddr, "--port", String(port), "--interval", "100", "--duration", "30000"], { tsx: false });
    const rows: string[] = [];
    try {
      await waitFor("the listeners on the host", () => servers.output().includes("ready") && sshd.output().includes("ready"), 10_000, 50);
      expect(readFileSync(`/proc/${sshd.pid}/cmdline`, "utf8").split("\0")[0]).toBe("sshd");
      expect(readFileSync(`/proc/${sshd.pid}/comm`, "utf8").trim()).toBe("node");
      for (const direction of ["both", "egress", "ingress"] as const) {
        const ssh = session(22);
        const other = session(2323);
        try {
          await waitFor("both sessions to exchange data", () => echoes(ssh) >= 2 && echoes(other) >= 2, 10_000, 20);
          const t0 = Date.now();
          const faultId = await startRunning("network-blackhole", { direction });
          const startMs = Date.now() - t0;
          await sleep(300); // let anything in flight when the rules went in land
          const before = { ssh: echoes(ssh), other: echoes(other) };
          const t1 = Date.now();
          const r = {
            ssh22: fromCp(22),
            sshd: fromCp(SSHD_PORT),
            mgmtPort: fromCp(MGMT_PORT),
            mgmtCidr: fromCp(2323, { local: mgmtAddr }),
            other: fromCp(2323, { count: 2, timeout: 700 }),
            outbound: tcp(9090, 2, 700),
          };
          const probesMs = Date.now() - t1;
          // The probes ran synchronously: the sessions' output is read from here on.
          await waitFor("the SSH session to keep exchanging data during the fault", () => echoes(ssh) - before.ssh >= 5, 5000, 20).catch(() => undefined);
          const during = { ssh: echoes(ssh) - before.ssh, other: echoes(other) - before.other };
          expect((await getFault(faultId)).state).toBe("running");
          const t2 = Date.now();
          await stopFault(faultId);
          const stopMs = Date.now() - t2;
          rows.push(
            `${direction.padEnd(7)} running ${startMs} ms after the POST | from cp: :22 ${r.ssh22.ok}/3, sshd :${SSHD_PORT} ${r.sshd.ok}/3, ` +
              `--management tcp:${MGMT_PORT} ${r.mgmtPort.ok}/3, from --management ${mgmtAddr} to :2323 ${r.mgmtCidr.ok}/3, ` +
              `:2323 ${r.other.ok}/2 | host → tgt:9090 ${r.outbound.ok}/2 | established :22 +${during.ssh} echoes, :2323 +${during.other} ` +
              `(over ${Date.now() - t1 - stopMs} ms) | probes ${probesMs} ms | reverted ${stopMs} ms after the stop`,
          );
          expect(r.ssh22).toMatchObject({ ok: 3, failed: 0 });
          expect(r.sshd).toMatchObject({ ok: 3, failed: 0 });
          expect(r.mgmtPort).toMatchObject({ ok: 3, failed: 0 });
          expect(r.mgmtCidr).toMatchObject({ ok: 3, failed: 0 });
          expect(r.other).toMatchObject({ ok: 0, failed: 2 });
          expect(r.outbound).toMatchObject({ ok: 0, failed: 2 });
          expect(during.ssh).toBeGreaterThanOrEqual(5); // the SSH session kept exchanging data
          expect(during.other).toBe(0); // while an ordinary one was cut
          nothingLeft();
        } finally {
          ssh.kill("SIGKILL");
          other.kill("SIGKILL");
        }
      }
      console.log(`network-blackhole of everything, SSH and management spared:\n  ${rows.join("\n  ")}`);
      // What the agent found and left alone, as it logged the running fault's details.
      const running = agent.output().split("\n").filter((l) => l.includes('"network-blackhole running"')).at(-1) ?? "";
      const details = (JSON.parse(running) as { details: string[] }).details;
      expect(details).toEqual(expect.arrayContaining([
        "acts on: every address, coming in: every packet dropped",
        "excluded: SSH (port 22: always) — local port 22 (tcp), any address, in and out",
        `excluded: SSH (sshd listens on port ${SSHD_PORT}) — local port ${SSHD_PORT} (tcp), any address, in and out`,
        `excluded: management (--management ${mgmtAddr}/32) — ${mgmtAddr}`,
        `excluded: management (--management tcp:${MGMT_PORT}) — local port ${MGMT_PORT} (tcp), any address, in and out`,
      ]));
      console.log(`the fault's details:\n  ${details.join("\n  ")}`);
    } finally {
      sshd.kill("SIGKILL");
      servers.kill("SIGKILL");
      await Promise.all([sshd.exited, servers.exited]);
    }
  }, 90_000);

  it("agent SIGKILLed mid-fault (fill + blackhole + stopped process): the guard reverts all of it within 5 s; a restarted agent finds nothing left", async () => {
    // A tmpfs to fill (never the real disk) and a process of our own to stop.
    const mnt = tempDir("guard-fill");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]);
    const sleeper = spawn("sleep", ["600"], { stdio: "ignore" });
    // `ip netns exec` gives the agent its own mount namespace, copied at its start (/ is private
    // here): restart the agent so that its view includes the tmpfs.
    const restartAgent = async () => {
      agent = lab.spawnNode(hosts.host, AGENT_BIN, [
        "--server", cpGrpc, "--token", token, "--state-dir", agentStateDir, "--imds", "off", "--reconnect-max", "1s", "--log-level", "debug",
        "--labels", OPT_IN_LABELS, ...managementFlag(),
      ]);
      await waitFor("the agent to connect", async () => agent.output().includes("connected to the control plane") && (await agentJson()).connected, 30_000);
    };
    agent.kill("SIGTERM");
    await agent.exited;
    await restartAgent();
    try {
      const fill = await startRunning("disk-fill", { path: mnt, targetPercent: 60, keepFreeBytes: "8MiB" });
      const fillFile = join(mnt, ".firedrill-fill", `${fill}.fill`);
      expect(existsSync(fillFile)).toBe(true);
      await startRunning("network-blackhole", { destinations: [hosts.addr.tgt] });
      expect(tcp(9090, 1, 700).ok).toBe(0);
      await startRunning("process-stop", { pid: sleeper.pid! });
      expect(processState(sleeper.pid!)).toBe("T");
      expect(readdirSync(join(agentStateDir, "journal"))).toHaveLength(3);

      agent.kill("SIGKILL");
      const killedAt = Date.now();
      await waitFor("the guard to revert everything", () =>
        !existsSync(fillFile) && nftTables(hosts.host).length === 0 && processState(sleeper.pid!) !== "T", 10_000, 50);
      const revertMs = Date.now() - killedAt;
      console.log(`guard reverted fill + blackhole + stopped process ${revertMs} ms after the agent was SIGKILLed`);
      expect(revertMs).toBeLessThan(5000);
      expect(tcp(9090).ok).toBe(3);
      await waitFor("the guard to empty the journal", () => readdirSync(join(agentStateDir, "journal")).length === 0, 5000, 50);

      // A restarted agent (same state dir) finds nothing left to revert, and reports the guard's work.
      await restartAgent();
      expect(agent.output()).not.toContain("reverted faults left in the journal");
      const faults = (await api(control, "GET", `/api/v1/agents/${agentId}/faults?state=all`)).body.faults as any[];
      await waitFor("the recovery reports", async () => {
        const all = (await api(control, "GET", `/api/v1/agents/${agentId}/faults?state=all`)).body.faults as any[];
        return all.filter((f) => ["disk-fill", "network-blackhole", "process-stop"].includes(f.kind) && f.reason === "recovery").length === 3;
      });
      expect(faults.length).toBeGreaterThan(0);
    } finally {
      sleeper.kill("SIGKILL");
      try {
        execFileSync("umount", [mnt]);
      } catch {
        execFileSync("umount", ["-l", mnt]);
      }
    }
  }, 60_000);
});
