/**
 * network-bandwidth and network-reject end to end, on hosts made of network namespaces
 * (test/support/netns.ts): a real control plane in `cp`, a real agent in `host`, echo servers and a
 * TCP sink in `tgt`. Probes run inside `host`. What is asserted is what the code controls (tc's
 * configured rate and its counters, connection refused vs timeout, the qdisc / table gone);
 * throughputs are measured and printed only (bench/bandwidth.ts holds accuracy against the goal).
 * Each revert path is broken for real: stop via the API, SIGKILL of the agent (its guard reverts),
 * SIGKILL without a guard and a restart (the journal replays).
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import type { ApiTarget } from "./support/api.js";
import { faultApi } from "./support/fault-api.js";
import { NET_TOOLS, NetnsLab, ROOT, buildHosts, inNs, netnsSkipReason, nftTables, qdiscs } from "./support/netns.js";
import type { NsProcess, TestHosts } from "./support/netns.js";
import { OPT_IN_LABELS, guardPid, sleep, waitFor } from "./support/processes.js";

const CLI_BIN = join(ROOT, "packages/cli/src/bin.ts");
const AGENT_BIN = join(ROOT, "packages/agent/src/bin.ts");
const GRPC_PORT = 7443;
const HTTP_PORT = 8080;
const LEASE_TTL_MS = 3000;
const SINK_PORT = 5001;
const HANDLE = "1f1b:";

const skipReason = netnsSkipReason();
if (skipReason) console.log(`skipping the network-bandwidth / network-reject tests: ${skipReason}`);

describe.skipIf(!!skipReason)("network-bandwidth and network-reject on namespace hosts", () => {
  const lab = new NetnsLab();
  const dirs: string[] = [];
  let hosts: TestHosts;
  let control: ApiTarget;
  let cpGrpc: string;
  let token: string;
  let agent: NsProcess;
  let agentId: string;
  let agentStateDir: string;

  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), `firedrill-${prefix}-`));
    dirs.push(dir);
    return dir;
  };

  /** Starts the agent in `host` (the same state dir after the first start). */
  async function startAgent(extra: string[] = []): Promise<void> {
    agentStateDir ??= tempDir("bw-agent");
    lab.trackAgentStateDir(agentStateDir);
    agent = lab.spawnNode(hosts.host, AGENT_BIN, [
      "--server", cpGrpc, "--token", token, "--state-dir", agentStateDir, "--imds", "off",
      "--reconnect-max", "1s", "--progress-interval", "1s", "--log-level", "debug", "--labels", OPT_IN_LABELS, ...extra,
    ]);
    agentId = await waitFor(`the agent in ${hosts.host} to connect`, async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output()}`);
      if (!agent.output().includes("connected to the control plane")) return undefined;
      const { agents } = (await api(control, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
      return agents.find((a) => a.connected)?.id;
    }, 30_000);
  }

  const { startFault, getFault, startRunning, waitReverted } = faultApi(() => control, () => agentId);
  async function stopFault(faultId: string) {
    const res = await api(control, "DELETE", `/api/v1/agents/${agentId}/faults/${faultId}`);
    expect(res.status).toBe(200);
    return waitReverted(faultId);
  }
  const agentJson = async () => (await api(control, "GET", `/api/v1/agents/${agentId}`)).body.agent;

  /** Runs a probe inside a namespace (the host by default) and returns its JSON line. */
  function probe(command: string, args: Record<string, string | number>, ns = hosts.host): any {
    const argv = [process.execPath, NET_TOOLS, command, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
    return JSON.parse(inNs(ns, argv).stdout.trim().split("\n").at(-1)!);
  }
  const tcp = (port: number, count = 3, timeout = 2000) => probe("tcp-connect", { host: hosts.addr.tgt, port, count, timeout });
  const transfer = (measure = 2000): { bytes: number; ms: number; mbit: number } =>
    probe("tcp-transfer", { host: hosts.addr.tgt, port: SINK_PORT, warmup: 500, measure });

  const ourRoot = () => qdiscs(hosts.host, hosts.hostIf).find((q) => q.root && q.handle === HANDLE);
  /** Packets HTB sent through its direct queue (unshaped: the exclusions), from `tc -j qdisc show`. */
  const directPackets = () => (ourRoot() as unknown as { options: { direct_packets_stat: number } }).options.direct_packets_stat;
  const classText = () => inNs(hosts.host, ["tc", "-s", "class", "show", "dev", hosts.hostIf]).stdout;
  const nothingLeft = () => {
    expect(ourRoot()).toBeUndefined();
    expect(nftTables(hosts.host)).toEqual([]);
  };

  beforeAll(async () => {
    hosts = buildHosts(lab);
    const httpUrl = `http://${hosts.addr.cpHttp}:${HTTP_PORT}`;
    cpGrpc = `${hosts.addr.cpGrpc}:${GRPC_PORT}`;
    const dataDir = tempDir("bw-cp");
    const server = lab.spawnNode(hosts.cp, CLI_BIN, [
      "server", "--data-dir", dataDir, "--grpc-addr", cpGrpc, "--http-addr", `${hosts.addr.cpHttp}:${HTTP_PORT}`,
      "--lease-ttl", `${LEASE_TTL_MS / 1000}s`, "--insecure-http",
    ]);
    await waitFor(`the control plane at ${httpUrl}`, async () => {
      if (server.child.exitCode !== null) throw new Error(`server exited: ${server.output()}`);
      return (await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(2000) })).ok;
    }, 30_000);
    const echo = lab.spawnNode(hosts.tgt, NET_TOOLS, ["serve", "--tcp", "8080,9090", "--udp", "7000", "--sink", String(SINK_PORT)], { tsx: false });
    await waitFor("the echo servers in tgt", () => echo.output().includes("ready"), 10_000);
    token = readFileSync(join(dataDir, "join-token"), "utf8").trim();
    control = { httpUrl, adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim() };
    await startAgent();
  }, 90_000);

  afterAll(async () => {
    try {
      await lab.cleanup();
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });

  it("the agent reports both kinds", async () => {
    expect((await agentJson()).capabilities.faultKinds).toEqual(expect.arrayContaining(["network-bandwidth", "network-reject"]));
  });

  it("bandwidth to tgt:sink: tc shows htb 1f1b: with the asked rate, the class sends and hits its limit; a TCP transfer before / during / after is printed; the stop removes the qdisc", { timeout: 60_000 }, async () => {
    const before = transfer();
    const faultId = await startRunning("network-bandwidth", { rate: "5mbit", destinations: [hosts.addr.tgt], ports: [SINK_PORT] });
    expect(ourRoot()).toMatchObject({ kind: "htb", handle: HANDLE, root: true, options: { default: "0" } });
    expect(classText()).toMatch(/^class htb 1f1b:10 root prio 0 rate 5Mbit ceil 5Mbit /m);
    const during = transfer(3000);
    const counters = /Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/.exec(classText())!;
    const echoOther = tcp(9090); // not the limited port: not classified, unshaped
    // A progress report with the class counters past the transfer (read every 2 s; a busy machine may take longer).
    await waitFor("the class counters in a progress report", async () => ((await getFault(faultId)).measurements?.sent_bytes ?? 0) > 500_000, 20_000, 200);
    const fault = await stopFault(faultId);
    nothingLeft();
    const after = transfer();
    console.log(
      `TCP host → tgt:${SINK_PORT}: before ${before.mbit} Mbit/s, limited to 5mbit ${during.mbit} Mbit/s, after revert ${after.mbit} Mbit/s\n` +
        `  tc class 1f1b:10 during: sent ${counters[1]} bytes ${counters[2]} pkt, dropped ${counters[3]}, overlimits ${counters[4]}\n` +
        `  the fault's last measurements: ${JSON.stringify(fault.measurements)}`,
    );
    expect(Number(counters[1])).toBeGreaterThan(500_000);
    expect(Number(counters[4])).toBeGreaterThan(0);
    expect(echoOther.ok).toBe(3);
    expect(fault.measurements).toMatchObject({ rate_asked_mbit: 5, sent_bytes: expect.any(Number), overlimits: expect.any(Number) });
    expect(fault.measurements.sent_bytes).toBeGreaterThan(500_000);
    expect(fault.measurements.overlimits).toBeGreaterThan(0);
  });

  it("bandwidth of everything at 1mbit, saturated: the control plane link goes through HTB's direct queue and the agent keeps its link past two lease TTLs", { timeout: 60_000 }, async () => {
    const first = await agentJson();
    const faultId = await startRunning("network-bandwidth", { rate: "1mbit" });
    expect(ourRoot()).toMatchObject({ options: { default: "0x10" } });
    const direct0 = directPackets();
    const during = transfer(2 * LEASE_TTL_MS); // the queue of the limited class stays full meanwhile
    const agentNow = await agentJson();
    const direct1 = directPackets();
    console.log(`everything at 1mbit: TCP to tgt ${during.mbit} Mbit/s; the direct queue (exclusions) sent ${direct1 - direct0} packets meanwhile`);
    expect(agentNow.connectedAt).toBe(first.connectedAt); // never lost the link
    expect(Date.now() - Date.parse(agentNow.lastSeenAt)).toBeLessThan(LEASE_TTL_MS);
    expect(direct1 - direct0).toBeGreaterThan(0); // the agent's link to the control plane, unshaped
    expect((await getFault(faultId)).state).toBe("running");
    await stopFault(faultId);
    nothingLeft();
  });

  it("reject tgt:8080: connects are refused at once (ECONNREFUSED, not a timeout), 9090 keeps working; after the stop 8080 works", { timeout: 45_000 }, async () => {
    expect(tcp(8080).ok).toBe(3);
    const faultId = await startRunning("network-reject", { destinations: [hosts.addr.tgt], ports: [8080] });
    expect(nftTables(hosts.host)).toEqual(["inet firedrill"]);
    const refused = tcp(8080);
    const open = tcp(9090);
    // A progress report with the rules' counters (the agent reads them every 2 s; a busy machine may take longer).
    await waitFor("the reject counters in a progress report", async () => ((await getFault(faultId)).measurements?.packets_rejected ?? 0) >= 3, 20_000, 200);
    const fault = await stopFault(faultId);
    console.log(`reject tgt:8080 → ${JSON.stringify(refused)}; 9090 ${open.ok}/3; measurements ${JSON.stringify(fault.measurements)}`);
    expect(refused).toMatchObject({ ok: 0, failed: 3, errors: ["ECONNREFUSED", "ECONNREFUSED", "ECONNREFUSED"] });
    // ECONNREFUSED is the reset answering the connect (a blackhole ends in the probe's 2 s timeout); how fast is printed, not asserted.
    expect(open).toMatchObject({ ok: 3, failed: 0 });
    expect(fault.measurements).toMatchObject({ tcp_packets_reset: 3, packets_rejected: 3 });
    nothingLeft();
    expect(tcp(8080).ok).toBe(3);
  });

  it("bad parameters are refused precisely by the control plane, nothing touched", async () => {
    for (const [kind, params, message] of [
      ["network-bandwidth", { rate: "10" }, 'params.rate: "10" is not a rate'],
      ["network-bandwidth", { rate: "1mbit", direction: "ingress" }, "params.direction: unknown parameter for network-bandwidth"],
      ["network-reject", { with: "tcp-reset" }, 'params.with: "tcp-reset" is not allowed; use one of: port-unreachable, admin-prohibited, host-unreachable, no-route'],
    ] as const) {
      const res = await startFault(kind, params);
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain(message);
    }
    const cp = await startFault("network-bandwidth", { rate: "1mbit", destinations: [hosts.addr.cpGrpc], ports: [GRPC_PORT] });
    expect(cp.status).toBe(422);
    expect(cp.body.error.message).toContain("only covers excluded traffic (the control plane");
    nothingLeft();
  });

  /** Starts `kind`, checks its effect and journal record, and SIGKILLs the agent; the fault's id. */
  async function killedMidFault(kind: string, params: Record<string, unknown>, present: () => boolean): Promise<{ faultId: string }> {
    const faultId = await startRunning(kind, params);
    expect(present()).toBe(true);
    expect(readdirSync(join(agentStateDir, "journal"))).toEqual([`${faultId}.json`]);
    agent.kill("SIGKILL");
    await agent.exited;
    return { faultId };
  }

  it("agent SIGKILLed mid-fault: the guard removes the qdisc, then the nft table, from the journal", { timeout: 90_000 }, async () => {
    const rows: string[] = [];
    const cases = [
      ["network-bandwidth", { rate: "2mbit", destinations: [hosts.addr.tgt] }, () => ourRoot() !== undefined],
      ["network-reject", { destinations: [hosts.addr.tgt], ports: [8080] }, () => nftTables(hosts.host).length > 0],
    ] as const;
    for (const [kind, params, present] of cases) {
      // The (re)started agent spawns its guard beside it; the guard writes guard.json once it runs.
      await waitFor("the agent's guard", () => guardPid(agentStateDir), 15_000, 50);
      const { faultId } = await killedMidFault(kind, params, present);
      const killedAt = Date.now();
      await waitFor(`the guard to revert ${kind}`, () => !present(), 10_000, 50);
      const revertMs = Date.now() - killedAt;
      rows.push(`${kind}: reverted by the guard ${revertMs} ms after the agent's SIGKILL`);
      expect(revertMs).toBeLessThan(5000);
      nothingLeft();
      await waitFor("the guard to empty the journal", () => readdirSync(join(agentStateDir, "journal")).length === 0, 5000, 50);
      await startAgent();
      await waitFor(`${faultId} reported reverted by recovery`, async () => {
        const f = await getFault(faultId);
        return f.state === "reverted" && f.reason === "recovery";
      }, 15_000);
    }
    expect(tcp(8080).ok).toBe(3);
    console.log(rows.join("\n"));
  });

  it("agent SIGKILLed with no guard: the qdisc / table stay; the restarted agent replays the journal and removes them before new work", { timeout: 90_000 }, async () => {
    const rows: string[] = [];
    const cases = [
      ["network-bandwidth", { rate: "2mbit", destinations: [hosts.addr.tgt] }, () => ourRoot() !== undefined],
      ["network-reject", { destinations: [hosts.addr.tgt], ports: [8080] }, () => nftTables(hosts.host).length > 0],
    ] as const;
    for (const [kind, params, present] of cases) {
      // The guard of the running agent watches it: restart without one first.
      agent.kill("SIGTERM");
      await agent.exited;
      await startAgent(["--no-guard"]);
      const { faultId } = await killedMidFault(kind, params, present);
      await sleep(1000);
      expect(present()).toBe(true); // nothing cleaned up: the kernel keeps it
      expect(existsSync(join(agentStateDir, "journal", `${faultId}.json`))).toBe(true);
      const restartAt = Date.now();
      await startAgent();
      await waitFor(`the journal replay to revert ${kind}`, () => !present(), 15_000, 50);
      rows.push(`${kind}: left in place by SIGKILL (no guard); removed by the restarted agent ${Date.now() - restartAt} ms after its start`);
      expect(agent.output()).toContain("reverted faults left in the journal");
      nothingLeft();
      const fault = await waitFor(`${faultId} reported reverted`, async () => {
        const f = await getFault(faultId);
        return f.state === "reverted" ? f : undefined;
      }, 15_000);
      expect(fault.reason).toBe("recovery");
    }
    console.log(rows.join("\n"));
  });
});
