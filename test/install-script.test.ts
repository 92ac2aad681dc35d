/**
 * The install script (packages/control-plane/src/install/agent.sh) run for real with dash against
 * a real control plane process serving HTTPS and a release directory, installing into a temporary
 * root (FIREDRILL_INSTALL_ROOT). Only systemd is a stand-in here (a `systemctl` that runs the unit's
 * ExecStart and ExecStopPost): test/systemd-host.test.ts installs on a real systemd host. The agent
 * in the tarball is the real one (run from source), enrolling and connecting over TLS.
 */
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseJoinToken } from "@firedrill/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import type { ApiTarget } from "./support/api.js";
import { CLI_BIN, ROOT, freePort, killAll, runCli, spawnNode, tempDir, waitFor } from "./support/processes.js";

const SCRIPT = join(ROOT, "packages/control-plane/src/install/agent.sh");
const UNIT = join(ROOT, "infra/systemd/firedrill-agent.service");
const VERSION = JSON.parse(readFileSync(join(ROOT, "packages/agent/package.json"), "utf8")).version as string;
const OLD_VERSION = "0.0.9";
const ARCH = process.arch;
const DASH = spawnSync("sh", ["-c", "command -v dash"], { encoding: "utf8" }).stdout.trim() || "/bin/dash";
const TSX_LOADER = pathToFileURL(join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;

/**
 * `systemctl` for the script's tests: records every call in $FIREDRILL_INSTALL_ROOT/systemctl.log
 * and does what the unit says: start runs ExecStart (in the background, with agent.env), stop sends
 * SIGTERM, waits, then runs ExecStopPost (recover).
 */
const FAKE_SYSTEMCTL = `#!/bin/sh
root=\${FIREDRILL_INSTALL_ROOT:?}
echo "$*" >>"$root/systemctl.log"
pidfile="$root/agent.pid"
agent="$root/opt/firedrill/agent/current/bin/firedrill-agent"
export FIREDRILL_STATE_DIR="$root/var/lib/firedrill-agent"
running() {
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/stat" ] || return 1
  ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat"
}
start() {
  running && return 0
  (
    exec 9>&- # the install script's lock: the unit's process does not hold it
    set -a
    . "$root/etc/firedrill/agent.env"
    set +a
    exec "$agent" run --imds off --no-guard --reconnect-max 1s
  ) >>"$root/agent.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}
stop() {
  running || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  i=0
  while running && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
  "$agent" recover >>"$root/agent.log" 2>&1
}
verb=
for arg; do
  case $arg in
    -*) ;;
    *) if [ -z "$verb" ]; then verb=$arg; fi ;;
  esac
done
case $verb in
  is-active) running ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  enable | disable | daemon-reload | reset-failed) ;;
  *) echo "fake systemctl: $verb is not faked" >&2; exit 1 ;;
esac
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (at most `timeoutMs`). */
function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<Run> {
  const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd ?? ROOT, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.on("error", () => {});
  child.stdin.end(options.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
  return new Promise((resolve, reject) => {
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** GET over HTTPS trusting only `ca`. */
function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false, timeout: 10_000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const mode = (path: string) => statSync(path).mode & 0o777;

/** Every file under `dir` (not following links). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

describe("the install script, run with dash", () => {
  const work = tempDir("install-script");
  let releases: string;
  let fakeBin: string;
  let dataDir: string;
  let server: ApiTarget;
  let baseUrl: string;
  let grpcAddr: string;
  let caPem: string;
  let joinToken: string;
  let served: string;
  const roots: string[] = [];

  /** A fresh install root with systemd "running" in it. */
  const newRoot = (name: string, systemd = true): string => {
    const root = join(work.path, name);
    mkdirSync(root);
    if (systemd) mkdirSync(join(root, "run/systemd/system"), { recursive: true });
    roots.push(root);
    return root;
  };
  const envFor = (root: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${fakeBin}:${process.env.PATH ?? "/usr/bin:/bin"}`, FIREDRILL_INSTALL_ROOT: root, ...extra };
    delete env.FIREDRILL_TOKEN;
    delete env.FIREDRILL_TOKEN_FILE;
    return env;
  };
  const script = (file: string, args: string[], root: string, extra: Record<string, string> = {}) => run(DASH, [file, ...args], { env: envFor(root, extra) });
  const systemctlLog = (root: string) => (existsSync(join(root, "systemctl.log")) ? readFileSync(join(root, "systemctl.log"), "utf8") : "");

  /** The agent tarball of `version`: the real agent from source behind the release's layout. */
  function buildTarball(version: string): void {
    const name = `firedrill-agent-${version}-linux-${ARCH}`;
    const top = join(work.path, `build-${version}`, name);
    mkdirSync(join(top, "bin"), { recursive: true });
    mkdirSync(join(top, "share"));
    writeFileSync(
      join(top, "bin/firedrill-agent"),
      `#!/bin/sh\nexec "${process.execPath}" --conditions=@firedrill/source --import "${TSX_LOADER}" "${join(ROOT, "packages/agent/src/bin.ts")}" "$@"\n`,
      { mode: 0o755 },
    );
    copyFileSync(UNIT, join(top, "share/firedrill-agent.service"));
    copyFileSync(SCRIPT, join(top, "share/agent.sh"));
    writeFileSync(join(top, "VERSION"), `${version}\n`);
    const tar = spawnSync("tar", ["-czf", join(releases, `${name}.tar.gz`), "-C", join(work.path, `build-${version}`), name]);
    expect(tar.status, tar.stderr.toString()).toBe(0);
    const sum = spawnSync("sha256sum", [`${name}.tar.gz`], { cwd: releases, encoding: "utf8" });
    writeFileSync(join(releases, `${name}.tar.gz.sha256`), sum.stdout);
  }

  beforeAll(async () => {
    releases = join(work.path, "releases");
    mkdirSync(releases);
    buildTarball(VERSION);
    buildTarball(OLD_VERSION);
    fakeBin = join(work.path, "bin");
    mkdirSync(fakeBin);
    writeFileSync(join(fakeBin, "systemctl"), FAKE_SYSTEMCTL, { mode: 0o755 });
    // `… | sudo sh -s -- …` as root: sudo runs the command.
    writeFileSync(join(fakeBin, "sudo"), '#!/bin/sh\nexec "$@"\n', { mode: 0o755 });

    dataDir = join(work.path, "cp");
    const grpcPort = await freePort();
    const httpPort = await freePort();
    grpcAddr = `127.0.0.1:${grpcPort}`;
    // A non-loopback --http-addr: the API serves HTTPS with a certificate of the server's own CA.
    const proc = spawnNode(CLI_BIN, ["server", "--data-dir", dataDir, "--grpc-addr", grpcAddr, "--http-addr", `0.0.0.0:${httpPort}`, "--agent-releases", releases], {
      FIREDRILL_LOG_LEVEL: "warn",
    });
    baseUrl = `https://127.0.0.1:${httpPort}`;
    await waitFor(
      `the control plane (output: ${proc.output().slice(-2000)})`,
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`server exited: ${proc.output()}`);
        if (!existsSync(join(dataDir, "pki/ca.crt"))) return false;
        caPem = readFileSync(join(dataDir, "pki/ca.crt"), "utf8");
        return (await httpsGet(`${baseUrl}/healthz`, caPem)).status === 200;
      },
      30_000,
    );
    const adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    server = { httpUrl: baseUrl, adminToken, ca: caPem };
    joinToken = readFileSync(join(dataDir, "join-token"), "utf8").trim();
    const answer = await httpsGet(`${baseUrl}/install/agent.sh`, caPem);
    expect(answer.status).toBe(200);
    // Readable by everyone (the not-root test runs it as nobody).
    const shared = join(work.path, "shared");
    mkdirSync(shared);
    chmodSync(work.path, 0o755);
    chmodSync(shared, 0o755);
    served = join(shared, "agent.sh");
    writeFileSync(served, answer.body, { mode: 0o644 });
  }, 120_000);

  afterAll(async () => {
    for (const root of roots) {
      try {
        const pid = Number(readFileSync(join(root, "agent.pid"), "utf8"));
        process.kill(pid, "SIGKILL");
      } catch {
        // not started, or gone
      }
    }
    await killAll();
    work.cleanup();
  });

  it("refuses bad arguments with the usage (exit 2), and prints it for --help", async () => {
    const root = newRoot("args");
    for (const args of [["--bogus"], ["--join-token"], ["--upgrade", "--uninstall"], ["--wait", "soon"], ["--join-token", "fdj_nope"], ["--server", "cp.example"], ["--server", "cp-a:7070, cp-b:7070"], ["--server", "cp-a:7070,cp-b"], ["--version", "1.0;x"]]) {
      const res = await script(served, args, root);
      expect(res.code, args.join(" ")).toBe(2);
      expect(res.stderr, args.join(" ")).toMatch(/usage: agent\.sh|is not/);
    }
    expect((await script(served, ["--bogus"], root)).stderr).toContain("unknown argument: --bogus");
    const help = await script(served, ["--help"], root);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: agent.sh [--join-token TOKEN | --token-file FILE]");
    expect(readdirSync(root)).toEqual(["run"]);
  });

  const shellcheck = spawnSync("sh", ["-c", "command -v shellcheck"], { encoding: "utf8" }).stdout.trim();
  it.skipIf(!shellcheck)("is shellcheck-clean as POSIX sh (skipped without shellcheck: apt-get install shellcheck)", () => {
    const res = spawnSync(shellcheck, ["-s", "sh", SCRIPT], { encoding: "utf8" });
    expect(res.status, res.stdout).toBe(0);
  });

  it("a copy not served by a control plane says where to get the script (only --uninstall works from it)", async () => {
    const res = await script(SCRIPT, ["--join-token", joinToken], newRoot("raw"));
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("was not served by a control plane");
  });

  it("refuses to run as another user than root (exit 3)", async () => {
    const res = await run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", DASH, served, "--join-token", joinToken], { env: envFor(newRoot("nobody")) });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("must run as root");
  });

  it("refuses a host without systemd, saying how to run the agent instead (exit 3)", async () => {
    const root = newRoot("no-systemd", false);
    const res = await script(served, ["--join-token", joinToken], root);
    expect(res.code).toBe(3);
    expect(res.stderr).toContain(`this host does not run systemd: ${root}/run/systemd/system is missing`);
    expect(res.stderr).toContain("Run the agent under your supervisor with `firedrill-agent run");
    expect(readdirSync(root)).toEqual([]);
  });

  it("refuses a host without nft or tc, naming the packages to install (exit 3)", async () => {
    // A PATH with the usual tools but neither nft nor tc.
    const bin = join(work.path, "bin-no-nft");
    mkdirSync(bin);
    for (const tool of ["id", "grep", "uname", "tr", "cat", "sed", "awk", "head", "cut", "tar", "gzip", "sha256sum", "base64", "mktemp", "curl"]) {
      const path = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
      if (path) symlinkSync(path, join(bin, tool));
    }
    symlinkSync(join(fakeBin, "systemctl"), join(bin, "systemctl"));
    const root = newRoot("no-nft");
    const res = await run(DASH, [served, "--join-token", joinToken], { env: { ...envFor(root), PATH: bin } });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("missing: nft tc");
    expect(res.stderr).toContain("apt-get install -y nftables iproute2");
    expect(res.stderr).toContain("dnf install -y nftables iproute-tc");
  });

  it("refuses a control plane whose CA is not the one the join token pins (exit 4), installing nothing", async () => {
    const parts = parseJoinToken(joinToken)!;
    const otherPin = `${joinToken.slice(0, -64)}${"0".repeat(64)}`;
    expect(parts.caSha256).not.toBe("0".repeat(64));
    const root = newRoot("pin");
    const res = await script(served, ["--join-token", otherPin], root);
    expect(res.code).toBe(4);
    expect(res.stderr).toContain(`the CA served at ${baseUrl}/install/ca.pem has SHA-256 ${parts.caSha256}, but the join token pins ${"0".repeat(64)}`);
    expect(existsSync(join(root, "opt"))).toBe(false);
  });

  it("a wrong join token fails the install with the control plane's reason (exit 4): nothing enabled, no token on disk", async () => {
    const parts = parseJoinToken(joinToken)!;
    const wrong = `fdj_0123456789ab_${"A".repeat(43)}_${parts.caSha256}`;
    const root = newRoot("wrong-token");
    const res = await script(served, ["--join-token", wrong, "--labels", "app=web"], root);
    expect(res.code, res.stderr).toBe(4);
    expect(res.stderr).toContain(`the control plane at ${grpcAddr} refused the join token: the join token is not one of this control plane's`);
    expect(res.stderr).toContain("nothing was enabled");
    expect(systemctlLog(root)).toBe("");
    expect(existsSync(join(root, "etc/systemd/system/firedrill-agent.service"))).toBe(false);
    for (const file of filesUnder(root)) expect(readFileSync(file, "latin1"), file).not.toContain("A".repeat(43));
  });

  let agentId: string;
  const installRoot = () => join(work.path, "host");

  it("installs with the one-line install `firedrill join-token create` prints (no ca.pem: checked against the token's pin)", async () => {
    const root = newRoot("host");
    const cliConfig = join(work.path, "cli-config.json");
    const cliEnvironment = { FIREDRILL_CONFIG: cliConfig };
    const fingerprint = `sha256:${new X509Certificate(caPem).fingerprint256.replace(/:/g, "").toLowerCase()}`;
    const login = await runCli(["login", "--server", baseUrl, "--token-file", join(dataDir, "admin-token"), "--ca-fingerprint", fingerprint], cliEnvironment);
    expect(login.code, login.stderr).toBe(0);
    const created = await runCli(["join-token", "create", "--uses", "5", "--labels", "env=test"], cliEnvironment);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    const line = created.stderr
      .split("\n")
      .find((l) => l.includes("/install/ca.pem"))!
      .trim()
      .replace(/TOKEN$/, `${token} --labels app=web,firedrill:opt-in=true`);
    expect(line).toContain(`curl -fsSLk -o ca.pem ${baseUrl}/install/ca.pem && `);

    const cwd = join(work.path, "cwd");
    mkdirSync(cwd);
    const res = await run("sh", ["-c", line], { env: envFor(root), cwd });
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    const match = /firedrill agent (agt_[0-9a-f]{16}) connected to (\S+)\n$/.exec(res.stdout);
    expect(match, res.stdout).not.toBeNull();
    agentId = match![1]!;
    expect(match![2]).toBe(grpcAddr);

    // The layout of docs/install.md.
    expect(readlinkSync(join(root, "opt/firedrill/agent/current"))).toBe(VERSION);
    expect(existsSync(join(root, `opt/firedrill/agent/${VERSION}/bin/firedrill-agent`))).toBe(true);
    expect(readFileSync(join(root, "opt/firedrill/agent/agent.sh"), "utf8")).toBe(readFileSync(SCRIPT, "utf8"));
    expect(readlinkSync(join(root, "usr/local/bin/firedrill-agent"))).toBe(join(root, "opt/firedrill/agent/current/bin/firedrill-agent"));
    expect(mode(join(root, "etc/firedrill"))).toBe(0o700);
    expect(mode(join(root, "etc/firedrill/agent.env"))).toBe(0o600);
    expect(readFileSync(join(root, "etc/firedrill/agent.env"), "utf8")).toContain(
      `FIREDRILL_SERVER_ADDR='${grpcAddr}'\nFIREDRILL_LABELS='app=web,firedrill:opt-in=true'\n`,
    );
    expect(readFileSync(join(root, "etc/systemd/system/firedrill-agent.service"), "utf8")).toBe(readFileSync(UNIT, "utf8"));
    expect(mode(join(root, "var/lib/firedrill-agent"))).toBe(0o700);
    expect(readFileSync(join(root, "var/lib/firedrill-agent/agent-id"), "utf8").trim()).toBe(agentId);
    // Enrolled before the unit was enabled; enabled and started once.
    expect(systemctlLog(root).trim().split("\n")).toEqual(["daemon-reload", "enable --quiet firedrill-agent.service", "is-active --quiet firedrill-agent.service", "start firedrill-agent.service"]);
    // The token is kept nowhere on the host.
    const secret = parseJoinToken(token)!.secret;
    for (const file of filesUnder(root)) expect(readFileSync(file, "latin1"), file).not.toContain(secret);
    const agent = (await api(server, "GET", `/api/v1/agents/${agentId}`, undefined, server.adminToken)).body.agent;
    expect(agent).toMatchObject({ connected: true, labels: { app: "web", "firedrill:opt-in": "true", env: "test" } });
  });

  it("running it again changes nothing and prints the same id", async () => {
    const root = installRoot();
    const before = systemctlLog(root);
    const res = await script(served, ["--labels", "app=web,firedrill:opt-in=true"], root);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain("is already in");
    expect(res.stdout).toContain("nothing changed");
    expect(res.stdout).toMatch(new RegExp(`firedrill agent ${agentId} connected to ${grpcAddr}\\n$`));
    const calls = systemctlLog(root).slice(before.length);
    expect(calls).not.toMatch(/restart|start firedrill|stop/);
  });

  it("new labels are written and the agent restarted with them, keeping its id", async () => {
    const root = installRoot();
    const before = systemctlLog(root);
    const res = await script(served, ["--labels", "app=db,firedrill:opt-in=true"], root);
    expect(res.code, res.stderr).toBe(0);
    expect(systemctlLog(root).slice(before.length)).toContain("restart firedrill-agent.service");
    expect(readFileSync(join(root, "etc/firedrill/agent.env"), "utf8")).toContain("FIREDRILL_LABELS='app=db,firedrill:opt-in=true'");
    expect(res.stdout).toMatch(new RegExp(`firedrill agent ${agentId} connected`));
    await waitFor("the new labels on the control plane", async () => {
      const agent = (await api(server, "GET", `/api/v1/agents/${agentId}`, undefined, server.adminToken)).body.agent;
      return agent.connected && agent.labels.app === "db";
    });
  });

  it("firedrill-agent status says connected; firedrill-agent uninstall removes everything and names the id to revoke", async () => {
    const root = installRoot();
    const bin = join(root, "usr/local/bin/firedrill-agent");
    const status = await run(bin, ["status", "--state-dir", join(root, "var/lib/firedrill-agent")], { env: envFor(root) });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^${agentId} connected to ${grpcAddr} since `));
    const pid = Number(readFileSync(join(root, "agent.pid"), "utf8"));

    const res = await run(bin, ["uninstall"], { env: envFor(root) });
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    expect(res.stdout).toContain(`firedrill: removed ${root}/etc/systemd/system/firedrill-agent.service`);
    expect(res.stdout).toContain(`firedrill: removed ${root}/var/lib/firedrill-agent`);
    expect(res.stdout).toContain(`firedrill agents revoke ${agentId}`);
    expect(existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))).toBe(false);
    for (const path of ["opt/firedrill", "etc/firedrill", "etc/systemd/system/firedrill-agent.service", "var/lib/firedrill-agent"]) {
      expect(existsSync(join(root, path)), path).toBe(false);
    }
    expect(() => lstatSync(bin)).toThrow();
    expect(systemctlLog(root)).toMatch(/stop firedrill-agent\.service\ndisable --quiet firedrill-agent\.service\ndaemon-reload\nreset-failed firedrill-agent\.service\n$/);
    const again = await script(SCRIPT, ["--uninstall"], root);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("nothing to remove");
  });

  it("--upgrade stops the old version (a clean stop), starts the new one with the same identity, and keeps the previous version only", async () => {
    const root = newRoot("upgrade");
    // The old version first (--version picks another release of the control plane's).
    const first = await script(served, ["--join-token", joinToken, "--labels", "app=web", "--version", OLD_VERSION], root);
    expect(first.code, first.stderr).toBe(0);
    const id = /firedrill agent (agt_[0-9a-f]{16}) connected/.exec(first.stdout)![1]!;
    expect(readlinkSync(join(root, "opt/firedrill/agent/current"))).toBe(OLD_VERSION);
    mkdirSync(join(root, "opt/firedrill/agent/0.0.1"));

    // Without --upgrade a different version is refused.
    const refused = await script(served, [], root);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`firedrill-agent ${OLD_VERSION} is installed, and this control plane serves ${VERSION}: run this again with --upgrade`);

    const before = systemctlLog(root);
    const res = await script(served, ["--upgrade"], root);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`firedrill agent ${id} connected to ${grpcAddr}\\n$`));
    expect(res.stdout).toContain(`upgraded firedrill-agent ${OLD_VERSION} -> ${VERSION}`);
    expect(systemctlLog(root).slice(before.length)).toMatch(/stop firedrill-agent\.service\n(.*\n)*start firedrill-agent\.service\n/);
    expect(readlinkSync(join(root, "opt/firedrill/agent/current"))).toBe(VERSION);
    expect(readdirSync(join(root, "opt/firedrill/agent")).filter((n) => !n.startsWith(".")).sort()).toEqual([OLD_VERSION, VERSION, "agent.sh", "current"].sort());
    // The labels of the first install were kept.
    expect(readFileSync(join(root, "etc/firedrill/agent.env"), "utf8")).toContain("FIREDRILL_LABELS='app=web'");
    expect(readFileSync(join(root, "agent.log"), "utf8")).toContain("shutting down: reverting every fault");
  });
});
