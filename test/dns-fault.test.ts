/**
 * dns-fault end to end, on namespace hosts (test/support/netns.ts): a real resolver (Debian's
 * dnsmasq) in `tgt` serving api.payments.internal, web.example.internal and the control plane's
 * name; a real control plane in `cp`; a real agent in `host`, whose /etc/resolv.conf (bind-mounted
 * by `ip netns exec` from /etc/netns/<host>/resolv.conf) points at the resolver and which reaches
 * the control plane by that name. Lookups run in `host` with dig and getent, as an application's
 * would. Nothing here touches the root namespace's nftables or resolv.conf.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import type { ApiTarget } from "./support/api.js";
import { faultApi } from "./support/fault-api.js";
import { NetnsLab, ROOT, buildHosts, inNs, netnsSkipReason, nftTables } from "./support/netns.js";
import type { NsProcess, TestHosts } from "./support/netns.js";
import { OPT_IN_LABELS, captureProcess, sleep, waitFor } from "./support/processes.js";

const CLI_BIN = join(ROOT, "packages/cli/src/bin.ts");
const AGENT_BIN = join(ROOT, "packages/agent/src/bin.ts");
const DNS_PROBE = join(ROOT, "test/support/dns-probe.mjs");
const GRPC_PORT = 7443;
const HTTP_PORT = 8080;
const CP_NAME = "cp.firedrill.test";
const API = { name: "api.payments.internal", address: "10.9.0.1" };
const WEB = { name: "web.example.internal", address: "10.9.0.2" };

function missingTool(): string | undefined {
  for (const tool of ["dnsmasq", "dig", "getent", "nft"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed (scripts/setup.sh installs it)`;
  }
  return undefined;
}
const skipReason = netnsSkipReason() ?? missingTool();
if (skipReason) console.log(`skipping the dns-fault tests: ${skipReason}`);

/** What a lookup got. */
interface Lookup {
  status: string;
  addresses: string[];
  ms: number;
}

describe.skipIf(!!skipReason)("dns-fault on namespace hosts with a real resolver", () => {
  const lab = new NetnsLab();
  const dirs: string[] = [];
  let hosts: TestHosts;
  let control: ApiTarget;
  let agent: NsProcess;
  let agentId: string;
  let agentStateDir: string;
  let token: string;
  let netnsEtc: string;
  const server = () => `${CP_NAME}:${GRPC_PORT}`;

  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), `firedrill-${prefix}-`));
    dirs.push(dir);
    return dir;
  };

  function startAgent(extra: string[] = [], stateDir = agentStateDir): NsProcess {
    lab.trackAgentStateDir(stateDir);
    return lab.spawnNode(hosts.host, AGENT_BIN, [
      "--server", server(), "--token", token, "--state-dir", stateDir, "--imds", "off",
      "--reconnect-max", "1s", "--progress-interval", "1s", "--log-level", "debug", "--labels", OPT_IN_LABELS, ...extra,
    ]);
  }
  async function agentJson() {
    return (await api(control, "GET", `/api/v1/agents/${agentId}`)).body.agent;
  }
  async function waitConnected(proc: NsProcess) {
    await waitFor("the agent to connect", async () => {
      if (proc.child.exitCode !== null) throw new Error(`agent exited: ${proc.output()}`);
      return proc.output().includes("connected to the control plane") && (await agentJson()).connected;
    }, 30_000);
  }

  /** `dig` from the host (its resolv.conf): the status (NOERROR, NXDOMAIN, SERVFAIL, "timeout", "refused") and the A records. */
  function dig(name: string, opts: { tcp?: boolean } = {}): Lookup {
    const t0 = Date.now();
    const res = inNs(hosts.host, ["dig", "+time=1", "+tries=1", ...(opts.tcp ? ["+tcp"] : []), name, "A"], { allowFail: true });
    const ms = Date.now() - t0;
    const status = /status: (\w+)/.exec(res.stdout)?.[1] ?? (/timed out/.test(res.stdout) ? "timeout" : /refused/.test(res.stdout) ? "refused" : `dig exit ${res.code}: ${res.stdout.trim()}`);
    const addresses = [...res.stdout.matchAll(new RegExp(`^${name.replace(/\./g, "\\.")}\\.\\s+\\d+\\s+IN\\s+A\\s+(\\S+)$`, "gm"))].map((m) => m[1]!);
    return { status, addresses, ms };
  }
  /** `getent ahostsv4` from the host: the addresses, or the exit code when the name does not resolve. */
  function getent(name: string): string[] | number {
    const res = inNs(hosts.host, ["getent", "ahostsv4", name], { allowFail: true });
    if (res.code !== 0) return res.code;
    return [...new Set(res.stdout.trim().split("\n").map((l) => l.split(/\s+/)[0]!))];
  }
  const answers = (l: Lookup, address: string) => {
    expect(l.status).toBe("NOERROR");
    expect(l.addresses).toEqual([address]);
  };
  const resolvesNormally = () => {
    answers(dig(API.name), API.address);
    answers(dig(API.name, { tcp: true }), API.address);
    answers(dig(WEB.name), WEB.address);
    expect(getent(API.name)).toEqual([API.address]);
  };
  const dnsTable = () => nftTables(hosts.host).filter((t) => t === "inet firedrill_dns");

  const { startFault, getFault, startRunning, waitReverted } = faultApi(() => control, () => agentId);
  async function stopFault(faultId: string) {
    const res = await api(control, "DELETE", `/api/v1/agents/${agentId}/faults/${faultId}`);
    expect(res.status).toBe(200);
    return waitReverted(faultId);
  }

  /** The resolver's IPv6 address (tgt), routed through cp like its IPv4 one. */
  let tgt6: string;

  /** IPv6 on the host ↔ cp ↔ tgt path (no DAD: the addresses work at once). */
  function addIpv6() {
    const n = hosts.addr.tgt.split(".")[2];
    const v = (suffix: string) => `fdt${lab.id}${suffix}`;
    inNs(hosts.cp, ["ip", "-6", "addr", "add", `fd00:213:${n}:1::1/64`, "dev", v("ch"), "nodad"]);
    inNs(hosts.host, ["ip", "-6", "addr", "add", `fd00:213:${n}:1::2/64`, "dev", v("hc"), "nodad"]);
    inNs(hosts.cp, ["ip", "-6", "addr", "add", `fd00:213:${n}:2::1/64`, "dev", v("ct"), "nodad"]);
    inNs(hosts.tgt, ["ip", "-6", "addr", "add", `fd00:213:${n}:2::2/64`, "dev", v("tc"), "nodad"]);
    inNs(hosts.cp, ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
    inNs(hosts.host, ["ip", "-6", "route", "add", "default", "via", `fd00:213:${n}:1::1`]);
    inNs(hosts.tgt, ["ip", "-6", "route", "add", "default", "via", `fd00:213:${n}:2::1`]);
    tgt6 = `fd00:213:${n}:2::2`;
  }
  /** Rewrites the host's resolv.conf in place (the agent's bind mount shows the same file). */
  function setResolvers(...nameservers: string[]) {
    writeFileSync(join(netnsEtc, "resolv.conf"), `${nameservers.map((ns) => `nameserver ${ns}\n`).join("")}options timeout:1 attempts:1\n`);
  }

  beforeAll(async () => {
    hosts = buildHosts(lab);
    addIpv6();
    // The host's resolv.conf, as `ip netns exec` mounts it: the resolver in tgt, one try of 1 s.
    netnsEtc = join("/etc/netns", hosts.host);
    mkdirSync(netnsEtc, { recursive: true });
    setResolvers(hosts.addr.tgt);
    const dnsmasq = captureProcess(
      spawn("ip", [
        "netns", "exec", hosts.tgt, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--bind-interfaces", `--listen-address=${hosts.addr.tgt},${tgt6}`, "--port=53", "--user=root", "--group=root", "--pid-file",
        "--local=/internal/", "--local=/test/", `--host-record=${API.name},${API.address}`, `--host-record=${WEB.name},${WEB.address}`,
        `--host-record=${CP_NAME},${hosts.addr.cpGrpc}`, "--log-facility=-",
      ], { stdio: ["ignore", "pipe", "pipe"] }),
    );
    await waitFor("dnsmasq in tgt", () => {
      if (dnsmasq.child.exitCode !== null) throw new Error(`dnsmasq exited: ${dnsmasq.output()}`);
      return dig(CP_NAME).status === "NOERROR";
    }, 10_000, 100);

    const httpUrl = `http://${hosts.addr.cpHttp}:${HTTP_PORT}`;
    const dataDir = tempDir("dns-cp");
    const cp = lab.spawnNode(hosts.cp, CLI_BIN, [
      "server", "--data-dir", dataDir, "--grpc-addr", `${hosts.addr.cpGrpc}:${GRPC_PORT}`, "--http-addr", `${hosts.addr.cpHttp}:${HTTP_PORT}`,
      "--advertise", CP_NAME, "--lease-ttl", "3s", "--insecure-http",
    ]);
    await waitFor(`the control plane at ${httpUrl}`, async () => {
      if (cp.child.exitCode !== null) throw new Error(`server exited: ${cp.output()}`);
      return (await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(2000) })).ok;
    }, 30_000);
    token = readFileSync(join(dataDir, "join-token"), "utf8").trim();
    control = { httpUrl, adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim() };
    agentStateDir = tempDir("dns-agent");
    agent = startAgent();
    agentId = await waitFor(`the agent in ${hosts.host} to connect to ${server()}`, async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output()}`);
      const { agents } = (await api(control, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
      return agents.find((a) => a.connected)?.id;
    }, 30_000);
  }, 90_000);

  afterAll(async () => {
    try {
      await lab.cleanup();
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      if (netnsEtc) rmSync(netnsEtc, { recursive: true, force: true });
    }
  });

  it("before any fault, the host's lookups get the resolver's answers; the agent offers dns-fault", async () => {
    resolvesNormally();
    answers(dig(WEB.name, { tcp: true }), WEB.address);
    expect((await agentJson()).capabilities.faultKinds).toContain("dns-fault");
    expect(dnsTable()).toEqual([]);
  });

  it("NXDOMAIN for *.payments.internal: those names fail (udp, tcp, getent), web.example.internal still resolves; after the stop the table is gone and they resolve again", async () => {
    const t0 = Date.now();
    const faultId = await startRunning("dns-fault", { domains: ["*.payments.internal"] });
    const startMs = Date.now() - t0;
    expect(dnsTable()).toEqual(["inet firedrill_dns"]);
    const during = {
      api: dig(API.name),
      apiTcp: dig(API.name, { tcp: true }),
      other: dig("db.payments.internal"),
      web: dig(WEB.name),
      webTcp: dig(WEB.name, { tcp: true }),
      cp: dig(CP_NAME),
      getentApi: getent(API.name),
      getentWeb: getent(WEB.name),
    };
    console.log(`NXDOMAIN *.payments.internal (running ${startMs} ms after the POST): ${JSON.stringify(during)}`);
    expect(during.api.status).toBe("NXDOMAIN");
    expect(during.apiTcp.status).toBe("NXDOMAIN");
    expect(during.other.status).toBe("NXDOMAIN");
    answers(during.web, WEB.address);
    answers(during.webTcp, WEB.address);
    answers(during.cp, hosts.addr.cpGrpc);
    expect(during.getentApi).toBe(2); // "not found", as an application sees it
    expect(during.getentWeb).toEqual([WEB.address]);

    const running = await getFault(faultId);
    expect(running.details).toEqual(expect.arrayContaining([
      `acts on: *.payments.internal: NXDOMAIN, for the queries this host sends to its resolver ${hosts.addr.tgt} (udp, tcp; from /etc/resolv.conf)`,
      `excluded: the control plane's name ${CP_NAME} (${hosts.addr.cpGrpc}, resolved before the fault started) — always forwarded`,
    ]));
    await sleep(1500); // a progress report
    const t1 = Date.now();
    const fault = await stopFault(faultId);
    const stopMs = Date.now() - t1;
    console.log(`measurements at the stop: ${JSON.stringify(fault.measurements)}; reverted ${stopMs} ms after the stop`);
    expect(fault.measurements.queries_faulted).toBeGreaterThanOrEqual(4); // dig ×3, getent ≥1
    expect(fault.measurements.queries_forwarded).toBeGreaterThanOrEqual(4); // dig web ×2, cp, getent web
    expect(fault.measurements.forward_errors).toBe(0);
    expect(dnsTable()).toEqual([]);
    resolvesNormally();
  });

  it("SERVFAIL for every name: every lookup fails but the control plane's name, and the agent keeps its link", async () => {
    const before = await agentJson();
    const faultId = await startRunning("dns-fault", { mode: "SERVFAIL" });
    const during = { api: dig(API.name), web: dig(WEB.name), webTcp: dig(WEB.name, { tcp: true }), cp: dig(CP_NAME), cpTcp: dig(CP_NAME, { tcp: true }), getentWeb: getent(WEB.name) };
    console.log(`SERVFAIL for every name: ${JSON.stringify(during)}`);
    expect(during.api.status).toBe("SERVFAIL");
    expect(during.web.status).toBe("SERVFAIL");
    expect(during.webTcp.status).toBe("SERVFAIL");
    answers(during.cp, hosts.addr.cpGrpc);
    answers(during.cpTcp, hosts.addr.cpGrpc);
    expect(during.getentWeb).toBe(2);
    await sleep(3500); // past a lease TTL
    const mid = await agentJson();
    expect(mid.connected).toBe(true);
    expect(mid.connectedAt).toBe(before.connectedAt);
    const fault = await stopFault(faultId);
    expect(fault.reason).toBe("stopped");
    expect(dnsTable()).toEqual([]);
    resolvesNormally();
  });

  it("timeout for *.payments.internal: dig +time=1 +tries=1 gets no answer (udp, tcp), web.example.internal still resolves", async () => {
    const faultId = await startRunning("dns-fault", { domains: ["*.payments.internal"], mode: "timeout" });
    const during = { api: dig(API.name), apiTcp: dig(API.name, { tcp: true }), web: dig(WEB.name), getentApi: getent(API.name) };
    console.log(`timeout *.payments.internal: ${JSON.stringify(during)}`);
    expect(during.api.status).toBe("timeout");
    expect(during.apiTcp.status).toBe("timeout");
    answers(during.web, WEB.address);
    expect(during.getentApi).toBe(2);
    await sleep(1200);
    const fault = await stopFault(faultId);
    expect(fault.measurements.queries_faulted).toBeGreaterThanOrEqual(3);
    expect(dnsTable()).toEqual([]);
    resolvesNormally();
  });

  it("a client keeping one UDP socket open across the start and the stop gets the fault from its next query, and the real answers right after the stop", async () => {
    const probe = lab.spawnNode(hosts.host, DNS_PROBE, ["--server", hosts.addr.tgt, "--name", API.name, "--ms", "7000"], { tsx: false });
    await sleep(1000);
    const faultId = await startRunning("dns-fault", { domains: ["*.payments.internal"] });
    await sleep(1500);
    await stopFault(faultId);
    expect(await probe.exited).toBe(0);
    const answers = probe.output().trim().split("\n").at(-1)!;
    console.log(`one socket, a query every 200 ms (0 NOERROR, 3 NXDOMAIN, - no answer): ${answers}`);
    // Before: answers; during: NXDOMAIN (the flow the kernel already tracked is steered too);
    // after: answers again (no translation left behind), at most a query or two lost at each switch.
    expect(answers).toMatch(/^0{3,}[-E]{0,2}3{4,}[-E]{0,2}0{5,}$/);
    expect(dnsTable()).toEqual([]);
  });

  it("a local stub resolver (127.0.0.53, as systemd-resolved): the host's queries to it are steered, its own upstream queries are not", async () => {
    // The stub: dnsmasq on the host's loopback, forwarding to the resolver in tgt.
    const stub = captureProcess(
      spawn("ip", [
        "netns", "exec", hosts.host, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--bind-interfaces", "--listen-address=127.0.0.53", "--port=53", "--user=root", "--group=root", "--pid-file",
        `--server=${hosts.addr.tgt}`, "--cache-size=0", "--log-facility=-",
      ], { stdio: ["ignore", "pipe", "pipe"] }),
    );
    setResolvers("127.0.0.53");
    try {
      await waitFor("the stub resolver", () => dig(WEB.name).status === "NOERROR", 10_000, 100);
      const faultId = await startRunning("dns-fault", { domains: ["*.payments.internal"] });
      const during = { api: dig(API.name), apiTcp: dig(API.name, { tcp: true }), web: dig(WEB.name), webTcp: dig(WEB.name, { tcp: true }), getentWeb: getent(WEB.name) };
      console.log(`NXDOMAIN *.payments.internal behind a stub at 127.0.0.53: ${JSON.stringify(during)}`);
      expect(during.api.status).toBe("NXDOMAIN");
      expect(during.apiTcp.status).toBe("NXDOMAIN");
      answers(during.web, WEB.address); // host → stub (forwarded by the responder) → tgt (not steered)
      answers(during.webTcp, WEB.address);
      expect(during.getentWeb).toEqual([WEB.address]);
      const fault = await stopFault(faultId);
      expect(dnsTable()).toEqual([]);
      answers(dig(API.name), API.address);
      expect(fault.state).toBe("reverted");
    } finally {
      setResolvers(hosts.addr.tgt);
      stub.kill("SIGKILL");
      await stub.exited;
    }
  });

  it("an IPv6 resolver: its queries are steered to the responder on ::1 and forwarded over IPv6", async () => {
    setResolvers(tgt6);
    try {
      answers(dig(API.name), API.address);
      const faultId = await startRunning("dns-fault", { domains: ["*.payments.internal"] });
      const during = { api: dig(API.name), apiTcp: dig(API.name, { tcp: true }), web: dig(WEB.name), webTcp: dig(WEB.name, { tcp: true }), getentApi: getent(API.name) };
      console.log(`NXDOMAIN *.payments.internal, resolver ${tgt6}: ${JSON.stringify(during)}`);
      expect(during.api.status).toBe("NXDOMAIN");
      expect(during.apiTcp.status).toBe("NXDOMAIN");
      answers(during.web, WEB.address);
      answers(during.webTcp, WEB.address);
      expect(during.getentApi).toBe(2);
      const listed = inNs(hosts.host, ["nft", "list", "table", "inet", "firedrill_dns"]).stdout;
      expect(listed).toContain(`ip6 daddr ${tgt6} udp dport 53`);
      expect((await getFault(faultId)).details[0]).toContain(`its resolver ${tgt6} (udp, tcp`);
      await stopFault(faultId);
      expect(dnsTable()).toEqual([]);
      answers(dig(API.name), API.address);
    } finally {
      setResolvers(hosts.addr.tgt);
    }
  });

  it("refusals: bad params before sending (400), the control plane's own name by the agent", async () => {
    const bad = await startFault("dns-fault", { domains: ["api..example.com"], mode: "refused" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('params.domains: "api..example.com" has an empty label');
    expect(bad.body.error.message).toContain('params.mode: "refused" is not allowed; use one of: NXDOMAIN, SERVFAIL, timeout');
    // Only the agent knows its control plane's name: the control plane asks it (a dry run) first.
    const cp = await startFault("dns-fault", { domains: [CP_NAME, "*.payments.internal"] });
    console.log(`the control plane's name: HTTP ${cp.status} ${JSON.stringify(cp.body.error)}`);
    expect(cp.status).toBe(422);
    expect(cp.body.error.message).toContain(
      `params.domains: ${CP_NAME} is the control plane's name: dns-fault always forwards its queries so that the agent keeps its link; leave it out`,
    );
    expect(dnsTable()).toEqual([]);
  });

  it("agent SIGKILLed mid-fault: the guard deletes the table (the responder died with the agent) and the names resolve again", async () => {
    await startRunning("dns-fault", { domains: ["*.payments.internal"] });
    expect(dig(API.name).status).toBe("NXDOMAIN");
    agent.kill("SIGKILL");
    const killedAt = Date.now();
    await waitFor("the guard to delete the table", () => dnsTable().length === 0, 10_000, 50);
    const revertMs = Date.now() - killedAt;
    console.log(`guard deleted inet firedrill_dns ${revertMs} ms after the agent was SIGKILLed`);
    expect(revertMs).toBeLessThan(5000);
    resolvesNormally();
    await waitFor("the guard to empty the journal", () => readdirSync(join(agentStateDir, "journal")).length === 0, 5000, 50);
    agent = startAgent();
    await waitConnected(agent);
  }, 60_000);

  it("restart: without a guard, a SIGKILLed agent leaves the table (lookups to the dead responder fail); the next start replays the journal and deletes it", async () => {
    agent.kill("SIGTERM");
    await agent.exited;
    agent = startAgent(["--no-guard"]);
    await waitConnected(agent);
    const faultId = await startRunning("dns-fault", { domains: ["*.payments.internal"] });
    agent.kill("SIGKILL");
    await agent.exited;
    await sleep(500);
    // Kill -9 and no guard: the table stays, pointing at a responder that died with the agent.
    expect(dnsTable()).toEqual(["inet firedrill_dns"]);
    expect(readdirSync(join(agentStateDir, "journal"))).toEqual([`${faultId}.json`]);
    const broken = dig(WEB.name);
    console.log(`with the table left and no responder: ${JSON.stringify(broken)}`);
    expect(broken.status).not.toBe("NOERROR");

    const t0 = Date.now();
    agent = startAgent();
    await waitFor("the journal replay to delete the table", () => dnsTable().length === 0, 30_000, 50);
    console.log(`restarted agent deleted the table ${Date.now() - t0} ms after it was started (node + tsx start included)`);
    resolvesNormally();
    await waitConnected(agent);
    const fault = await waitReverted(faultId, 15_000);
    expect(fault.reason).toBe("recovery");
    expect(agent.output()).toContain("reverted faults left in the journal");
  }, 90_000);
});
