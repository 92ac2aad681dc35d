/**
 * A firedrill agent installed for real on a systemd host (test/support/nspawn-host.ts), the way an
 * operator installs it: a real control plane on the machine's side of the host's veth serves the
 * agent tarball built by `pnpm release --agent-only` and the install script over HTTPS, and the
 * host runs `curl … /install/agent.sh | sh` — the agent then runs as firedrill-agent.service with
 * the shipped unit (sandbox, ExecStopPost recover, Restart=always). The same setup as
 * test/systemd-host.test.ts, for the tests of faults that need a real systemd (service-stop).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api } from "./api.js";
import type { ApiTarget } from "./api.js";
import type { ExecResult, NspawnHost } from "./nspawn-host.js";
import { CLI_BIN, ROOT, captureProcess, sleep, spawnNode, waitFor } from "./processes.js";
import type { TestProcess } from "./processes.js";

/** Builds the release into `out` with `pnpm release` (its script, run the same way). */
export async function buildRelease(out: string, extra: string[] = []): Promise<void> {
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

/** An agent installed on a host, and the control plane it talks to. */
export interface InstalledAgent {
  control: ApiTarget;
  agentId: string;
  server: TestProcess;
  /** Runs `sh -c script` in the host. */
  sh(script: string, timeoutMs?: number): Promise<ExecResult>;
  /** Same, throwing with the output unless it exits 0; its stdout. */
  shOk(script: string, timeoutMs?: number): Promise<string>;
  /** The agent's MainPID, as systemd knows it. */
  mainPid(): Promise<number>;
  /** Waits until the agent is connected again (with another MainPID than `previousPid` when given). */
  connectedAgain(previousPid?: number): Promise<{ id: string; connected: boolean }>;
  /** Kills the control plane and removes its files (not the host). */
  stop(): Promise<void>;
}

/**
 * Starts a control plane for `host` (gRPC and HTTPS on the machine's side of its veth), builds the
 * agent release and installs the agent on the host with the served script. Resolves once the agent
 * is connected. `labels` default to `app=test,firedrill:opt-in=true`.
 */
export async function installAgent(host: NspawnHost, opts: { labels?: string; grpcPort?: number; httpPort?: number } = {}): Promise<InstalledAgent> {
  const dirs: string[] = [];
  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), `firedrill-${prefix}-`));
    dirs.push(dir);
    return dir;
  };
  const sh = (script: string, timeoutMs = 60_000) => host.exec(["sh", "-c", script], { timeoutMs });
  const shOk = async (script: string, timeoutMs = 60_000) => {
    const res = await sh(script, timeoutMs);
    if (res.code !== 0) throw new Error(`in the host, \`${script}\` exited ${res.code}:\n${res.stdout}\n${res.stderr}`);
    return res.stdout;
  };
  let server: TestProcess | undefined;
  try {
    const releases = tempDir("releases");
    const t = Date.now();
    await buildRelease(releases, ["--agent-only"]);
    console.log(`agent release built in ${Date.now() - t} ms`);
    const dataDir = tempDir("cp");
    const addr = host.hostAddress;
    const baseUrl = `https://${addr}:${opts.httpPort ?? 7080}`;
    const srv = spawnNode(CLI_BIN, [
      "server", "--data-dir", dataDir, "--grpc-addr", `${addr}:${opts.grpcPort ?? 7070}`, "--http-addr", `${addr}:${opts.httpPort ?? 7080}`,
      "--advertise", addr, "--lease-ttl", "5s", "--agent-releases", releases,
    ], { FIREDRILL_LOG_LEVEL: "debug" });
    server = srv;
    const caPem = await waitFor("the control plane's CA", () => {
      if (srv.child.exitCode !== null) throw new Error(`server exited: ${srv.output()}`);
      try {
        return readFileSync(join(dataDir, "pki", "ca.crt"), "utf8");
      } catch {
        return undefined;
      }
    }, 30_000);
    const control: ApiTarget = { httpUrl: baseUrl, adminToken: "", ca: caPem };
    await waitFor(`the control plane at ${baseUrl}`, async () => {
      if (srv.child.exitCode !== null) throw new Error(`server exited: ${srv.output()}`);
      return (await api(control, "GET", "/healthz", undefined, null)).status === 200;
    }, 30_000);
    const joinToken = readFileSync(join(dataDir, "join-token"), "utf8").trim();
    control.adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    await host.exec(["sh", "-c", "cat > /root/ca.pem"], { input: caPem });
    const t1 = Date.now();
    const res = await sh(`curl -fsSL --cacert /root/ca.pem ${baseUrl}/install/agent.sh | sh -s -- --join-token ${joinToken} --labels ${opts.labels ?? "app=test,firedrill:opt-in=true"}`, 180_000);
    if (res.code !== 0) throw new Error(`installing the agent failed (${res.code}):\n${res.stdout}\n${res.stderr}`);
    console.log(`agent installed in ${Date.now() - t1} ms`);
    const agentId = /\b(agt_[A-Za-z0-9]+)\b/.exec(res.stdout)?.[1];
    if (!agentId) throw new Error(`the install script printed no agent id:\n${res.stdout}`);
    const mainPid = async () => Number((await shOk("systemctl show -p MainPID --value firedrill-agent")).trim());
    const agentJson = async () => (await api(control, "GET", `/api/v1/agents/${agentId}`)).body.agent as { id: string; connected: boolean };
    await waitFor("the agent connected", async () => (await agentJson())?.connected === true, 60_000, 250);
    return {
      control,
      agentId,
      server: srv,
      sh,
      shOk,
      mainPid,
      connectedAgain: (previousPid?: number) =>
        waitFor("the agent connected again", async () => {
          const a = await agentJson();
          if (!a?.connected) return undefined;
          if (previousPid !== undefined && (await mainPid()) === previousPid) return undefined;
          return a;
        }, 120_000, 250),
      async stop() {
        srv.kill("SIGKILL");
        await srv.exited;
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      },
    };
  } catch (err) {
    server?.kill("SIGKILL");
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    throw err;
  }
}
