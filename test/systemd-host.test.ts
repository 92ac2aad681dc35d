/**
 * The agent on a real systemd host: a Debian bookworm booted with systemd-nspawn in its own network
 * namespace (test/support/nspawn-host.ts), a real control plane on the machine's side of the veth
 * serving the release built by `pnpm release` and the install script over HTTPS. Everything the
 * host does is checked from inside it: the unit, the agent's processes, nft tables, qdiscs, files.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { faultApi } from "./support/fault-api.js";
import type { ApiTarget } from "./support/api.js";
import { nspawnAvailable, startHost } from "./support/nspawn-host.js";
import type { NspawnHost } from "./support/nspawn-host.js";
import { CLI_BIN, ROOT, captureProcess, sleep, spawnNode, waitFor } from "./support/processes.js";
import type { TestProcess } from "./support/processes.js";

const availability = nspawnAvailable();
if (!availability.ok) console.log(`skipping the systemd host tests: ${availability.why}`);

const GRPC_PORT = 7070;
const HTTP_PORT = 7080;
/** A port on the machine's side of the veth that the blackhole cuts off (nothing else uses it). */
const TARGET_PORT = 7999;
const AGENT_VERSION = JSON.parse(readFileSync(join(ROOT, "packages/agent/package.json"), "utf8")).version as string;
/** What `firedrill-agent --version` of the upgrade's build says. */
const NEXT_VERSION = `${AGENT_VERSION}-next`;

/** Builds the release into `out` with `pnpm release` (its script, run the same way). */
async function buildRelease(out: string, extra: string[] = []): Promise<void> {
  const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", join(ROOT, "scripts/release.ts"), "--out", out, ...extra], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = captureProcess(child);
  const code = await Promise.race([proc.exited, sleep(300_000).then(() => "timeout" as const)]);
  if (code !== 0) {
    proc.kill("SIGKILL");
    throw new Error(`pnpm release ${extra.join(" ")} failed (${code}):\n${proc.output().slice(-4000)}`);
  }
}

describe.skipIf(!availability.ok)("the agent installed on a real systemd host", () => {
  const dirs: string[] = [];
  let host: NspawnHost;
  let server: TestProcess | undefined;
  let control: ApiTarget;
  let joinToken: string;
  let baseUrl: string;
  let caPem: string;
  let agentId: string;
  let target: Server;
  let releases: string;
  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), `firedrill-${prefix}-`));
    dirs.push(dir);
    return dir;
  };

  /** A shell command in the host; its output is logged when it fails. */
  async function sh(script: string, timeoutMs = 60_000) {
    const res = await host.exec(["sh", "-c", script], { timeoutMs });
    return res;
  }
  async function shOk(script: string, timeoutMs = 60_000): Promise<string> {
    const res = await sh(script, timeoutMs);
    if (res.code !== 0) throw new Error(`in the host, \`${script}\` exited ${res.code}:\n${res.stdout}\n${res.stderr}`);
    return res.stdout;
  }
  const nftTables = async () => (await shOk("nft list tables")).trim().split("\n").filter(Boolean);
  const mainPid = async () => Number((await shOk("systemctl show -p MainPID --value firedrill-agent")).trim());
  /** The agent's burner threads, seen in the host's /proc. */
  const burners = async () => (await sh("grep -l '^fd-cpu-burn$' /proc/[0-9]*/task/*/comm 2>/dev/null")).stdout.trim().split("\n").filter(Boolean);
  /** Whether a TCP connect from the host to the machine's TARGET_PORT succeeds within 2 s. */
  const reachesTarget = async () => (await sh(`timeout 2 bash -c 'exec 3<>/dev/tcp/${host.hostAddress}/${TARGET_PORT}'`, 10_000)).code === 0;

  async function agentJson(id = agentId) {
    return (await api(control, "GET", `/api/v1/agents/${id}`)).body.agent;
  }
  const { startRunning: startFault, waitReverted: waitRevertedFor } = faultApi(() => control, () => agentId, { runTimeoutMs: 20_000 });
  const startRunning = (kind: string, params: Record<string, unknown>) => startFault(kind, params, "10m");
  const waitReverted = (faultId: string) => waitRevertedFor(faultId, 60_000);
  const connectedAgain = (previousPid?: number) =>
    waitFor("the agent connected again", async () => {
      const a = await agentJson();
      if (!a?.connected) return undefined;
      if (previousPid !== undefined && (await mainPid()) === previousPid) return undefined;
      return a;
    }, 90_000, 250);

  /** The install line an operator runs, with the CA given as a file. */
  const installLine = (args: string) => `curl -fsSL --cacert /root/ca.pem ${baseUrl}/install/agent.sh | sh -s -- ${args}`;

  beforeAll(async () => {
    host = await startHost({ name: "agent" });
    releases = tempDir("releases");
    await buildRelease(releases);
    const dataDir = tempDir("cp");
    const addr = host.hostAddress;
    baseUrl = `https://${addr}:${HTTP_PORT}`;
    server = spawnNode(CLI_BIN, [
      "server", "--data-dir", dataDir, "--grpc-addr", `${addr}:${GRPC_PORT}`, "--http-addr", `${addr}:${HTTP_PORT}`,
      "--advertise", addr, "--lease-ttl", "5s", "--agent-releases", releases,
    ], { FIREDRILL_LOG_LEVEL: "debug" });
    caPem = await waitFor("the control plane's CA", () => {
      if (server!.child.exitCode !== null) throw new Error(`server exited: ${server!.output()}`);
      try {
        return readFileSync(join(dataDir, "pki", "ca.crt"), "utf8");
      } catch {
        return undefined;
      }
    }, 30_000);
    control = { httpUrl: baseUrl, adminToken: "", ca: caPem };
    await waitFor(`the control plane at ${baseUrl}`, async () => {
      if (server!.child.exitCode !== null) throw new Error(`server exited: ${server!.output()}`);
      return (await api(control, "GET", "/healthz", undefined, null)).status === 200;
    }, 30_000);
    joinToken = readFileSync(join(dataDir, "join-token"), "utf8").trim();
    control.adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    target = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => target.listen(TARGET_PORT, addr, resolve));
    await host.exec(["sh", "-c", "cat > /root/ca.pem"], { input: caPem });
  }, 600_000);

  // A failed test must not leave its faults to refuse the next test's (one per kind per host).
  afterEach(async () => {
    if (!agentId) return;
    const res = await api(control, "GET", `/api/v1/agents/${agentId}/faults`).catch(() => undefined);
    for (const f of (res?.body?.faults ?? []) as { id: string; state: string }[]) {
      if (["pending", "accepted", "running"].includes(f.state)) await api(control, "DELETE", `/api/v1/agents/${agentId}/faults/${f.id}`).catch(() => undefined);
    }
  });

  afterAll(async () => {
    try {
      target?.close();
      server?.kill("SIGKILL");
      await host?.stop();
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 60_000);

  it("a wrong join token is refused clearly and leaves nothing enabled", async () => {
    const bad = joinToken.replace(/^(fdj_[^_]+_)[^_]+/, "$1wrongsecretwrongsecret");
    const res = await sh(installLine(`--join-token ${bad} --labels app=web,firedrill:opt-in=true`), 180_000);
    console.log(`install with a wrong token: exit ${res.code}\n${(res.stdout + res.stderr).trim().split("\n").slice(-6).join("\n")}`);
    expect(res.code).not.toBe(0);
    expect(res.stdout + res.stderr).toMatch(/join token/i);
    expect((await sh("systemctl is-enabled firedrill-agent")).stdout.trim()).not.toBe("enabled");
    expect((await sh("systemctl is-active firedrill-agent")).stdout.trim()).not.toBe("active");
  }, 240_000);

  it("installs with the served script: the unit is active, the agent connected, its id printed; again changes nothing", async () => {
    const t0 = Date.now();
    const res = await sh(installLine(`--join-token ${joinToken} --labels app=web,firedrill:opt-in=true`), 180_000);
    console.log(`install took ${Date.now() - t0} ms: exit ${res.code}\n${(res.stdout + res.stderr).trim()}`);
    expect(res.code).toBe(0);
    agentId = /\b(agt_[A-Za-z0-9]+)\b/.exec(res.stdout)?.[1] ?? "";
    expect(agentId).toMatch(/^agt_/);
    expect((await shOk("systemctl is-active firedrill-agent")).trim()).toBe("active");
    expect((await shOk("systemctl is-enabled firedrill-agent")).trim()).toBe("enabled");
    const a = await agentJson();
    expect(a.connected).toBe(true);
    expect(a.labels).toMatchObject({ app: "web", "firedrill:opt-in": "true" });
    // The files: env 0600 in a 0700 dir, no join token kept, the state dir 0700.
    expect((await shOk("stat -c '%a %U' /etc/firedrill /etc/firedrill/agent.env /var/lib/firedrill-agent")).trim().split("\n")).toEqual([
      "700 root", "600 root", "700 root",
    ]);
    expect((await sh(`grep -r '${joinToken}' /etc/firedrill /etc/systemd/system /var/lib/firedrill-agent /opt/firedrill`)).code).toBe(1);
    expect((await shOk("firedrill-agent --version")).trim()).toContain(AGENT_VERSION);
    // The unit as systemd itself reads it, and how exposed its sandbox leaves the host.
    const verify = await sh("systemd-analyze verify /etc/systemd/system/firedrill-agent.service");
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    console.log(`systemd-analyze security: ${(await shOk("systemd-analyze security firedrill-agent --no-pager | tail -n 1")).trim()}`);
    // The runtime came with the tarball: this host has no node of its own.
    expect((await sh("command -v node")).code).not.toBe(0);

    const pid = await mainPid();
    const again = await sh(installLine(`--join-token ${joinToken} --labels app=web,firedrill:opt-in=true`), 180_000);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain(agentId);
    expect(await mainPid()).toBe(pid);
  }, 400_000);

  it("a cpu-burn and a network-blackhole run on it, measured from inside the host, and are reverted on stop", async () => {
    expect(await reachesTarget()).toBe(true);
    const burn = await startRunning("cpu-burn", { load: 50, cores: 1 });
    const hole = await startRunning("network-blackhole", { destinations: [host.hostAddress], ports: [TARGET_PORT] });
    const threads = await waitFor("burner threads in the host", async () => ((await burners()).length > 0 ? await burners() : undefined), 10_000);
    // CPU time accumulates on the burner thread (seen from the host's /proc; no share asserted).
    const ticks = async () => Number((await shOk(`cat ${threads[0]!.replace(/comm$/, "stat")}`)).split(") ")[1]!.split(" ")[11]);
    const before = await ticks();
    await sleep(1500);
    const after = await ticks();
    console.log(`burner ${threads[0]}: ${after - before} ticks of user time in 1.5 s`);
    expect(after).toBeGreaterThan(before);
    expect(await nftTables()).toContain("table inet firedrill");
    expect(await reachesTarget()).toBe(false);
    for (const id of [burn, hole]) expect((await api(control, "DELETE", `/api/v1/agents/${agentId}/faults/${id}`)).status).toBe(200);
    await waitReverted(burn);
    await waitReverted(hole);
    expect(await burners()).toEqual([]);
    expect(await nftTables()).toEqual([]);
    expect(await reachesTarget()).toBe(true);
  }, 120_000);

  it("systemctl kill -s KILL mid-fault: reverted, the unit restarts, the agent reconnects with the same id", async () => {
    const burn = await startRunning("cpu-burn", { load: 50, cores: 1 });
    const hole = await startRunning("network-blackhole", { destinations: [host.hostAddress], ports: [TARGET_PORT] });
    expect(await reachesTarget()).toBe(false);
    const pid = await mainPid();
    await shOk("systemctl kill -s KILL firedrill-agent");
    await waitFor("the blackhole gone from the host", async () => (await nftTables()).length === 0, 30_000, 200);
    expect(await burners()).toEqual([]);
    expect(await reachesTarget()).toBe(true);
    const a = await connectedAgain(pid);
    expect(a.id).toBe(agentId);
    expect((await shOk("systemctl is-active firedrill-agent")).trim()).toBe("active");
    expect((await shOk("cat /var/lib/firedrill-agent/agent-id")).trim()).toBe(agentId);
    await waitReverted(burn);
    await waitReverted(hole);
  }, 180_000);

  it("the host loses power mid-fault: after boot nothing is left (journal replayed before new work), same id", async () => {
    const hole = await startRunning("network-blackhole", { destinations: [host.hostAddress], ports: [TARGET_PORT] });
    expect(await reachesTarget()).toBe(false);
    // SIGKILL to the container's init: no unit stop, no ExecStopPost. The network namespace (and the
    // nft table in it) outlives the boot, as a NIC's state would not: the journal must clean it.
    await host.kill();
    const boot = Date.now();
    await host.boot(120_000);
    const a = await connectedAgain();
    console.log(`power cut → agent connected again after ${Date.now() - boot} ms`);
    expect(a.id).toBe(agentId);
    expect(await nftTables()).toEqual([]);
    expect(await reachesTarget()).toBe(true);
    const f = await waitReverted(hole);
    console.log(`the blackhole after the power cut: ${f.state} (${f.reason ?? ""})`);
  }, 300_000);

  it("--upgrade while idle replaces the binary and keeps the id", async () => {
    await buildRelease(releases, ["--version", NEXT_VERSION, "--agent-only"]);
    const res = await sh(installLine(`--upgrade --version ${NEXT_VERSION}`), 180_000);
    console.log(`upgrade: exit ${res.code}\n${(res.stdout + res.stderr).trim()}`);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(agentId);
    expect((await shOk("firedrill-agent --version")).trim()).toContain(NEXT_VERSION);
    expect((await shOk("readlink /opt/firedrill/agent/current")).trim()).toContain(NEXT_VERSION);
    const a = await connectedAgain();
    expect(a.id).toBe(agentId);
    expect(a.version).toBe(NEXT_VERSION);
  }, 400_000);

  it("uninstall mid-fault reverts it and leaves no unit, file, nft table or qdisc", async () => {
    const hole = await startRunning("network-blackhole", { destinations: [host.hostAddress], ports: [TARGET_PORT] });
    expect(await nftTables()).toContain("table inet firedrill");
    const res = await sh("firedrill-agent uninstall", 120_000);
    console.log(`uninstall: exit ${res.code}\n${(res.stdout + res.stderr).trim()}`);
    expect(res.code).toBe(0);
    expect(await nftTables()).toEqual([]);
    expect((await shOk("tc qdisc show dev host0")).trim()).not.toMatch(/htb|tbf|netem|prio/);
    for (const path of ["/etc/systemd/system/firedrill-agent.service", "/opt/firedrill", "/etc/firedrill", "/var/lib/firedrill-agent", "/usr/local/bin/firedrill-agent"]) {
      expect((await sh(`test -e ${path} || test -L ${path}`)).code, `${path} is still there`).not.toBe(0);
    }
    expect((await sh("systemctl cat firedrill-agent")).code, "systemctl still knows the unit").not.toBe(0);
    // ([f] so that the pattern does not match this shell's own command line)
    const left = await sh("pgrep -af '[f]iredrill'");
    expect(left.code, `processes left: ${left.stdout}`).not.toBe(0);
    await waitReverted(hole);
  }, 180_000);
});
