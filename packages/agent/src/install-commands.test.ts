/**
 * `firedrill-agent enroll | status | uninstall` as real processes (their exit codes and words),
 * against a real control plane and the agent tests' fake one; status.json as the running agent
 * writes it.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTestControlPlane } from "../../control-plane/src/test-support/test-agent.js";
import type { TestControlPlane } from "../../control-plane/src/test-support/test-agent.js";
import { startAgent } from "./agent.js";
import type { Agent } from "./agent.js";
import { createFaultRegistry } from "./faults/index.js";
import { STATUS_FILE, createStatusReporter, describeStatus, readStatusReading, waitForConnected } from "./status.js";
import { startFakeControlPlane } from "./testing/fake-control-plane.js";
import type { FakeControlPlane } from "./testing/fake-control-plane.js";
import { captureLog } from "./testing/log-capture.js";

const REPO = resolve(import.meta.dirname, "../../..");
const BIN = join(REPO, "packages/agent/src/bin.ts");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `firedrill-agent ...args` from source to completion. */
function agentCli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const key of ["FIREDRILL_TOKEN", "FIREDRILL_TOKEN_FILE", "FIREDRILL_SERVER_ADDR", "FIREDRILL_STATE_DIR"]) if (!(key in env)) delete childEnv[key];
  const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", BIN, ...args], { cwd: REPO, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe("firedrill-agent enroll", () => {
  let dir: string;
  let tcp: TestControlPlane;
  let fake: FakeControlPlane;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-enroll-cmd-"));
    tcp = await startTestControlPlane({ insecureAgents: false });
    fake = await startFakeControlPlane({ dataDir: join(dir, "other-cp") });
  });
  afterAll(async () => {
    await tcp?.cleanup();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("enrolls once with the join token and prints the id; again, it only prints the id (no token needed)", async () => {
    const stateDir = join(dir, "ok");
    const first = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir], { FIREDRILL_TOKEN: tcp.token() });
    expect(first.code, first.stderr).toBe(0);
    const agentId = first.stdout.trim();
    expect(agentId).toMatch(/^agt_[0-9a-f]{16}$/);
    expect(first.stderr).toContain(`enrolled with the control plane at ${tcp.cp.grpcAddress} as ${agentId}`);
    expect(readFileSync(join(stateDir, "agent-id"), "utf8").trim()).toBe(agentId);
    expect(statSync(join(stateDir, "agent.key")).mode & 0o777).toBe(0o600);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    // The token is not kept: only the identity is.
    for (const name of ["agent.key", "agent.crt", "ca.crt", "agent-id"]) expect(readFileSync(join(stateDir, name), "utf8")).not.toContain(tcp.token());

    const again = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir, "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ agentId, enrolled: false, stateDir });
    expect(readFileSync(join(stateDir, "ca.crt"), "utf8")).toBe(readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8"));
  });

  it("exit 2 with the control plane's reason and the fix when the join token is refused; nothing stored", async () => {
    const stateDir = join(dir, "refused");
    const caSha256 = tcp.token().split("_").pop()!;
    const wrong = `fdj_0123456789ab_${"A".repeat(43)}_${caSha256}`;
    const res = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir], { FIREDRILL_TOKEN: wrong });
    expect(res.code).toBe(2);
    expect(res.stdout).toBe("");
    expect(res.stderr).toContain(`firedrill-agent: the control plane at ${tcp.cp.grpcAddress} refused the join token: the join token is not one of this control plane's`);
    expect(res.stderr).toContain("create a new one on the control plane with `firedrill join-token create`");
    expect(existsSync(join(stateDir, "agent.key"))).toBe(false);

    const revoked = await tcp.api<{ joinToken: { id: string }; token: string }>("POST", "/api/v1/join-tokens", { uses: 1 });
    await tcp.api("DELETE", `/api/v1/join-tokens/${revoked.body.joinToken.id}`);
    const res2 = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir], { FIREDRILL_TOKEN: revoked.body.token });
    expect(res2.code).toBe(2);
    expect(res2.stderr).toMatch(/refused the join token: .*revoked/);
  });

  it("exit 2 without a token or with one that is not a join token", async () => {
    const stateDir = join(dir, "none");
    const none = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("this agent is not enrolled (there is no certificate in");
    expect(none.stderr).toContain("no join token was given");
    const missing = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir, "--token-file", join(dir, "no-such-file")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--token-file ${join(dir, "no-such-file")} is missing or empty`);
    const bad = await agentCli(["enroll", "--server", tcp.cp.grpcAddress, "--state-dir", stateDir], { FIREDRILL_TOKEN: "fdj_not_a_token" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("the join token is not one");
    const noServer = await agentCli(["enroll", "--state-dir", stateDir], { FIREDRILL_TOKEN: tcp.token() });
    expect(noServer.code).toBe(2);
    expect(noServer.stderr).toContain("--server is required");
  });

  it("exit 1 with what, where and how when the control plane is unreachable or is not the one the token pins", async () => {
    const stateDir = join(dir, "unreachable");
    const down = await agentCli(["enroll", "--server", "127.0.0.1:1", "--state-dir", stateDir, "--timeout", "3s"], { FIREDRILL_TOKEN: tcp.token() });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("cannot connect to the control plane at 127.0.0.1:1: connection refused");
    expect(down.stderr).toContain("nothing was enrolled");

    // Another control plane (another CA) at the address: the token is never sent to it.
    const rogue = await agentCli(["enroll", "--server", fake.address, "--state-dir", stateDir], { FIREDRILL_TOKEN: tcp.token() });
    expect(rogue.code).toBe(1);
    expect(rogue.stderr).toContain(`the server at ${fake.address} presented no certificate with the fingerprint the join token pins`);
    expect(rogue.stderr).toContain("check that --server is the gRPC address of the control plane that created the join token");
    expect(fake.calls).toEqual([]);
  });

  it("several addresses: the first that can be reached enrolls (a dead one and a rogue one are passed over, the token never sent to the rogue)", async () => {
    const stateDir = join(dir, "several");
    const res = await agentCli(["enroll", "--server", `127.0.0.1:1,${fake.address},${tcp.cp.grpcAddress}`, "--state-dir", stateDir, "--timeout", "3s", "--json"], { FIREDRILL_TOKEN: tcp.token() });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ enrolled: true, server: tcp.cp.grpcAddress, agentId: expect.stringMatching(/^agt_/) });
    expect(fake.calls).toEqual([]);

    const none = await agentCli(["enroll", "--server", "127.0.0.1:1,127.0.0.1:2", "--state-dir", join(dir, "none"), "--timeout", "3s"], { FIREDRILL_TOKEN: tcp.token() });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("none of the 2 addresses in --server enrolled this agent");
    expect(none.stderr).toContain("cannot connect to the control plane at 127.0.0.1:1: connection refused");
    expect(none.stderr).toContain("cannot connect to the control plane at 127.0.0.1:2: connection refused");

    const bad = await agentCli(["enroll", "--server", `${tcp.cp.grpcAddress},cp-b`, "--state-dir", join(dir, "bad")], { FIREDRILL_TOKEN: tcp.token() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--server: must be host:port: entry "cp-b" is not');
  });
});

describe("status.json and firedrill-agent status", () => {
  let dir: string;
  let agents: Agent[];
  let fake: FakeControlPlane | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-status-"));
  });
  afterEach(async () => {
    for (const a of agents ?? []) await a.stop();
    agents = [];
    await fake?.close();
    fake = undefined;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the reporter writes each change atomically; since moves only when connected changes", () => {
    const stateDir = join(dir, "reporter");
    mkdirSync(stateDir);
    let now = Date.parse("2030-01-01T00:00:00Z");
    const status = createStatusReporter({ stateDir, server: "cp:7070", log: pino({ level: "silent" }), now: () => now });
    const read = () => JSON.parse(readFileSync(join(stateDir, STATUS_FILE), "utf8"));
    expect(read()).toMatchObject({ agentId: null, connected: false, since: "2030-01-01T00:00:00.000Z", server: "cp:7070", pid: process.pid, version: expect.any(String) });
    now += 1000;
    status.update({ agentId: "agt_1", connected: false, lastError: "refused" });
    expect(read()).toMatchObject({ agentId: "agt_1", since: "2030-01-01T00:00:00.000Z", lastError: "refused" });
    now += 1000;
    status.update({ connected: true, lastError: undefined });
    expect(read()).toMatchObject({ connected: true, since: "2030-01-01T00:00:02.000Z" });
    expect(read().lastError).toBeUndefined();
    expect(describeStatus(readStatusReading(stateDir), stateDir)).toEqual({ text: expect.stringMatching(/^agt_1 connected to cp:7070 since 2030-01-01T00:00:02.000Z \(pid \d+, version /), exitCode: 0 });

    // Written by a process that is gone: not running, whatever the file says.
    writeFileSync(join(stateDir, STATUS_FILE), JSON.stringify({ ...read(), pid: 999_999_999, startTime: 1 }));
    const gone = describeStatus(readStatusReading(stateDir), stateDir);
    expect(gone.exitCode).toBe(1);
    expect(gone.text).toContain("agt_1 is not running (pid 999999999 is gone");
    expect(describeStatus(readStatusReading(join(dir, "nothing")), join(dir, "nothing")).text).toMatch(/^no agent status in .*status\.json/);

    // Several addresses: the one in use, and the ones it fails over to.
    const several = join(dir, "several");
    mkdirSync(several);
    const replicas = createStatusReporter({ stateDir: several, server: "cp-a:7070", servers: ["cp-a:7070", "cp-b:7070"], log: pino({ level: "silent" }), now: () => now });
    expect(JSON.parse(readFileSync(join(several, STATUS_FILE), "utf8"))).toMatchObject({ server: "cp-a:7070", servers: ["cp-a:7070", "cp-b:7070"] });
    replicas.update({ agentId: "agt_2", connected: true, server: "cp-b:7070" });
    expect(describeStatus(readStatusReading(several), several).text).toMatch(/^agt_2 connected to cp-b:7070 since .* \(pid \d+, version .*; fails over to cp-a:7070\)$/);
    replicas.update({ connected: false, server: "cp-a:7070", lastError: "cannot connect to the control plane at cp-a:7070: connection refused" });
    expect(describeStatus(readStatusReading(several), several).text).toMatch(/^agt_2 not connected \(last tried cp-a:7070\) since .*; fails over to cp-b:7070\)\nlast error: cannot connect/);
  });

  it("the running agent says connected, then why not when the control plane goes away; status --wait exits 0 or 1", async () => {
    fake = await startFakeControlPlane({ dataDir: join(dir, "cp") });
    const stateDir = join(dir, "agent");
    const agent = await startAgent({
      server: fake.address,
      token: fake.token,
      stateDir,
      labels: {},
      log: captureLog().log,
      imdsEndpoint: "off",
      registry: createFaultRegistry([]),
      backoffInitialMs: 100,
      backoffMaxMs: 300,
    });
    agents = [agent];
    const connected = await waitForConnected(stateDir, 15_000, 50);
    expect(connected.connected).toBe(true);
    expect(connected.status).toMatchObject({ agentId: agent.agentId, connected: true, server: fake.address, pid: process.pid });

    const ok = await agentCli(["status", "--state-dir", stateDir, "--wait", "5s"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^${agent.agentId} connected to ${fake.address} since `));

    await fake.close();
    fake = undefined;
    const lost = await waitForConnected(stateDir, 0);
    const deadline = Date.now() + 15_000;
    let reading = lost;
    while (Date.now() < deadline && (reading.connected || !reading.status?.lastError?.includes("cannot connect"))) {
      await new Promise((r) => setTimeout(r, 100));
      reading = readStatusReading(stateDir);
    }
    expect(reading.connected).toBe(false);
    expect(reading.status?.lastError).toContain(`cannot connect to the control plane at ${reading.status?.server}: connection refused`);

    const down = await agentCli(["status", "--state-dir", stateDir, "--wait", "1s"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`${agent.agentId} not connected to `);
    expect(down.stderr).toContain("last error: cannot connect to the control plane");
    expect(down.stderr).toContain("(waited 1 s)");
    const json = await agentCli(["status", "--state-dir", stateDir, "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ agentId: agent.agentId, connected: false, running: true });

    await agent.stop();
    agents = [];
    expect(readStatusReading(stateDir).status).toMatchObject({ connected: false, lastError: "the agent stopped" });
  });
});

describe("firedrill-agent uninstall", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "firedrill-uninstall-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("runs /opt/firedrill/agent/agent.sh --uninstall and exits with its code; says what to do when it is not there", async () => {
    const missing = await agentCli(["uninstall"], { FIREDRILL_INSTALL_ROOT: root });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${root}/opt/firedrill/agent/agent.sh is missing: this agent was not installed by the install script`);

    mkdirSync(join(root, "opt/firedrill/agent"), { recursive: true });
    writeFileSync(join(root, "opt/firedrill/agent/agent.sh"), 'echo "agent.sh $*"\nexit 7\n', { mode: 0o755 });
    const res = await agentCli(["uninstall"], { FIREDRILL_INSTALL_ROOT: root });
    expect(res.code).toBe(7);
    expect(res.stdout).toBe("agent.sh --uninstall\n");
  });
});
