/**
 * The installed agent's footprint per host, idle: the release tarball (`pnpm release`) extracted as
 * the install script lays it out (`<root>/opt/firedrill/agent/<v>/`, `current` → `<v>`, and a
 * `usr/local/bin/firedrill-agent` symlink, all under a temp dir), run as root through that symlink
 * with a temp state dir and a minimal environment, against a real control plane (from source, TLS,
 * enrolled with its join token). Its guard is the one it starts itself (lib/guard.mjs).
 *
 * Measured, after a first start (enrollment) and a restart (already enrolled, as a restarted unit):
 * - start: exec → connected (the agent's "connected to the control plane" log line; pino's time);
 * - over an idle window (default 60 s, after 5 s to settle): CPU (% of one core, from the scheduler's
 *   /proc/<pid>/task/<tid>/schedstat: exact, where clock ticks are sampled), traffic on the agent's TCP connection to the control plane (bytes_sent and
 *   bytes_received from `ss -tin`, per minute), and at its end VmRSS (/proc/<pid>/status) and PSS
 *   (/proc/<pid>/smaps_rollup: pages shared by the agent and its guard — the same node binary —
 *   counted once between them);
 * - the same for the floor: a bare grpc-js client holding one Connect stream as the same agent
 *   (bench/bare-client.ts, bundled like the agent, on the same Node runtime).
 *
 * Goal (issue 13): agent + guard < 100 MiB and < 0.2 % CPU together.
 *
 *   pnpm bench footprint [--idle 60s] [--rebuild] [--node-options "<flags>"]
 *
 * `--rebuild` runs `pnpm release` even when dist/release holds a tarball newer than the sources;
 * `--node-options` adds Node options to the agent (NODE_OPTIONS: its guard inherits them), to try
 * some out.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { parseDuration } from "@firedrill/protocol";
import { captureProcess, killAll, sleep, startServer, tempDir, waitFor } from "../test/support/processes.js";
import type { ServerHandle, TestProcess } from "../test/support/processes.js";
import { REQUIRE_BANNER, ROOT, agentTarballName, bundle, releaseVersion } from "../scripts/release.js";
import { printTable } from "./table.js";

const GOAL = { rssMiB: 100, cpuPercent: 0.2 };
/** Time given to a fresh process to settle before the idle window. */
const SETTLE_MS = 5000;
/** The environment of the installed agent: what a systemd unit gives it (no NODE_OPTIONS, no NODE_PATH). */
const AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** One process's idle measurements. */
interface Sample {
  rssMiB: number;
  pssMiB: number;
  cpuPercent: number;
  sentPerMin?: number;
  receivedPerMin?: number;
}

/** The newest modification time under `dir` (files whose path matches `keep`). */
function newestMtime(dir: string, keep: (path: string) => boolean): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "node_modules" && entry.name !== "dist") newest = Math.max(newest, newestMtime(path, keep));
    } else if (keep(path)) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** dist/release's agent tarball, built first when missing, older than the sources, or asked. */
function releaseTarball(rebuild: boolean): string {
  const tarball = join(ROOT, "dist", "release", agentTarballName(releaseVersion(), process.arch as "x64" | "arm64"));
  const sources = Math.max(
    newestMtime(join(ROOT, "packages"), (p) => /\/src\//.test(p)),
    statSync(join(ROOT, "scripts", "release.ts")).mtimeMs,
    statSync(join(ROOT, "pnpm-lock.yaml")).mtimeMs,
  );
  if (!rebuild && existsSync(tarball) && statSync(tarball).mtimeMs > sources) {
    console.log(`reusing ${tarball} (newer than the sources; --rebuild to build it again)`);
    return tarball;
  }
  console.log("building the release (pnpm release)...");
  execFileSync(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", join(ROOT, "scripts", "release.ts")], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
  return tarball;
}

/** VmRSS and PSS of a process, in MiB. */
function memory(pid: number): { rssMiB: number; pssMiB: number } {
  const kb = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return {
    rssMiB: kb(readFileSync(`/proc/${pid}/status`, "utf8"), "VmRSS") / 1024,
    pssMiB: kb(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss") / 1024,
  };
}

/** Bytes sent and received so far on the TCP connections of `pid` to `port` (`ss -tinp`). */
function traffic(pid: number, port: number): { sent: number; received: number } {
  const out = execFileSync("ss", ["-tinpH", "state", "established", `( dport = :${port} )`], { encoding: "utf8" });
  const lines = out.split("\n");
  let sent = 0;
  let received = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.includes(`pid=${pid},`)) continue;
    const info = lines[i + 1] ?? "";
    sent += Number(/bytes_sent:(\d+)/.exec(info)?.[1] ?? 0);
    received += Number(/bytes_received:(\d+)/.exec(info)?.[1] ?? 0);
  }
  return { sent, received };
}

/**
 * CPU time used so far by every thread of a process, in ns: the scheduler's own account
 * (/proc/<pid>/task/<tid>/schedstat), exact where utime + stime in clock ticks are sampled (a
 * process waking briefly a few times a second is charged whole ticks, or none).
 */
function cpuNs(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return total;
}

/** Measures `pids` over an idle window; traffic for the first (the one holding the stream). */
async function idleWindow(pids: number[], port: number, windowMs: number): Promise<Sample[]> {
  const cpu0 = pids.map(cpuNs);
  const net0 = traffic(pids[0]!, port);
  const t0 = performance.now();
  await sleep(windowMs);
  const seconds = (performance.now() - t0) / 1000;
  const net1 = traffic(pids[0]!, port);
  return pids.map((pid, i) => ({
    ...memory(pid),
    cpuPercent: ((cpuNs(pid) - cpu0[i]!) / 1e9 / seconds) * 100,
    ...(i === 0 ? { sentPerMin: ((net1.sent - net0.sent) / seconds) * 60, receivedPerMin: ((net1.received - net0.received) / seconds) * 60 } : {}),
  }));
}

/** Waits for the agent's "connected" log line; the time from `startedAt` (epoch ms) to it. */
async function connectedAfter(proc: TestProcess, startedAt: number, what: string): Promise<number> {
  const line = await waitFor(
    `${what} to connect (output: ${proc.output().slice(-1500)})`,
    () => {
      if (proc.child.exitCode !== null) throw new Error(`${what} exited: ${proc.output().slice(-1500)}`);
      return proc.output().split("\n").find((l) => l.includes('"msg":"connected to the control plane"'));
    },
    30_000,
    20,
  );
  return (JSON.parse(line) as { time: number }).time - startedAt;
}

async function stop(proc: TestProcess): Promise<void> {
  proc.kill("SIGTERM");
  await Promise.race([proc.exited, sleep(10_000)]);
}

export async function benchFootprint(argv: string[] = []): Promise<void> {
  const flag = (name: string) => {
    const i = argv.indexOf(name);
    return i === -1 ? undefined : argv[i + 1];
  };
  const windowMs = parseDuration(flag("--idle") ?? "60s");
  if (windowMs === undefined) throw new Error(`--idle ${flag("--idle")}: not a duration (e.g. 60s, 2m)`);
  const nodeOptions = flag("--node-options") ?? "";
  const tarball = releaseTarball(argv.includes("--rebuild"));
  const version = releaseVersion();

  const root = tempDir("bench-footprint");
  const cp = tempDir("bench-footprint-cp");
  const stateDir = join(root.path, "var", "lib", "firedrill-agent");
  let server: ServerHandle | undefined;
  const started: TestProcess[] = [];
  try {
    // The install script's layout.
    const versions = join(root.path, "opt", "firedrill", "agent");
    mkdirSync(versions, { recursive: true });
    execFileSync("tar", ["-xzf", tarball, "-C", versions]);
    execFileSync("mv", [join(versions, tarball.split("/").pop()!.replace(/\.tar\.gz$/, "")), join(versions, version)]);
    symlinkSync(version, join(versions, "current"));
    mkdirSync(join(root.path, "usr", "local", "bin"), { recursive: true });
    const bin = join(root.path, "usr", "local", "bin", "firedrill-agent");
    symlinkSync(join(versions, "current", "bin", "firedrill-agent"), bin);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const node = join(versions, version, "node", "bin", "node");

    server = await startServer({ dataDir: cp.path, env: { FIREDRILL_LOG_LEVEL: "warn" } });
    const port = Number(server.grpcAddr.split(":").pop());
    const env = { PATH: AGENT_PATH, HOME: "/root", LANG: "C.UTF-8", ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) };
    const runAgent = () => {
      const args = ["run", "--server", server!.grpcAddr, "--token-file", join(cp.path, "join-token"), "--state-dir", stateDir, "--labels", "app=bench,firedrill:opt-in=true", "--imds", "off"];
      const startedAt = Date.now();
      const proc = captureProcess(spawn(bin, args, { cwd: root.path, env, stdio: ["ignore", "pipe", "pipe"] }));
      started.push(proc);
      return { proc, startedAt };
    };

    // First start: enrollment (key, CSR, Enroll), then connect.
    const first = runAgent();
    const firstStartMs = await connectedAfter(first.proc, first.startedAt, "the agent (first start)");
    await stop(first.proc);

    // A restart, enrolled: measured idle.
    const agent = runAgent();
    const restartMs = await connectedAfter(agent.proc, agent.startedAt, "the agent (restart)");
    const guardPid = await waitFor("the guard", () => {
      try {
        return (JSON.parse(readFileSync(join(stateDir, "guard.json"), "utf8")) as { pid: number }).pid;
      } catch {
        return undefined;
      }
    });
    const guardCmd = readFileSync(`/proc/${guardPid}/cmdline`, "utf8").split("\0").join(" ").trim();
    await sleep(SETTLE_MS);
    console.log(`idle for ${windowMs / 1000} s: agent pid ${agent.proc.pid}, guard pid ${guardPid} (${guardCmd})`);
    const [agentSample, guardSample] = await idleWindow([agent.proc.pid, guardPid], port, windowMs);
    await stop(agent.proc);

    // The floor: one bare grpc-js stream as the same agent.
    const floorDir = join(root.path, "floor");
    await bundle({ "bare-client": join(ROOT, "bench", "bare-client.ts") }, floorDir, {
      banner: REQUIRE_BANNER,
      nodePaths: [join(ROOT, "packages", "protocol", "node_modules")],
    });
    const floorStartedAt = Date.now();
    const floor = captureProcess(
      spawn(node, [join(floorDir, "bare-client.mjs"), "--server", server.grpcAddr, "--state-dir", stateDir], { cwd: root.path, env, stdio: ["ignore", "pipe", "pipe"] }),
    );
    started.push(floor);
    const connectedLine = await waitFor(`the bare client to connect (output: ${floor.output()})`, () => {
      if (floor.child.exitCode !== null) throw new Error(`the bare client exited: ${floor.output()}`);
      return /^connected (\d+)$/m.exec(floor.output());
    }, 30_000, 20);
    const floorStartMs = Number(connectedLine[1]) - floorStartedAt;
    await sleep(SETTLE_MS);
    const [floorSample] = await idleWindow([floor.pid], port, windowMs);
    floor.kill("SIGTERM");

    const mib = (n: number) => n.toFixed(1);
    const pct = (n: number) => n.toFixed(3);
    const kib = (n: number | undefined) => (n === undefined ? "" : (n / 1024).toFixed(1));
    const both = {
      rssMiB: agentSample!.rssMiB + guardSample!.rssMiB,
      pssMiB: agentSample!.pssMiB + guardSample!.pssMiB,
      cpuPercent: agentSample!.cpuPercent + guardSample!.cpuPercent,
    };
    const verdict = both.rssMiB < GOAL.rssMiB && both.cpuPercent < GOAL.cpuPercent ? "met" : "missed";
    printTable(
      `Installed agent, idle ${windowMs / 1000} s (firedrill-agent ${version}, ${tarball.split("/").pop()}${nodeOptions ? `, NODE_OPTIONS=${nodeOptions}` : ""}); goal: agent + guard < ${GOAL.rssMiB} MiB and < ${GOAL.cpuPercent} % CPU — ${verdict}`,
      ["process", "RSS MiB", "PSS MiB", "CPU %", "sent KiB/min", "received KiB/min", "start → connected ms"],
      [
        ["agent", mib(agentSample!.rssMiB), mib(agentSample!.pssMiB), pct(agentSample!.cpuPercent), kib(agentSample!.sentPerMin), kib(agentSample!.receivedPerMin), `${restartMs} (first start, enrolling: ${firstStartMs})`],
        ["guard", mib(guardSample!.rssMiB), mib(guardSample!.pssMiB), pct(guardSample!.cpuPercent), "", "", ""],
        ["agent + guard", mib(both.rssMiB), mib(both.pssMiB), pct(both.cpuPercent), "", "", ""],
        ["bare grpc-js client (floor)", mib(floorSample!.rssMiB), mib(floorSample!.pssMiB), pct(floorSample!.cpuPercent), kib(floorSample!.sentPerMin), kib(floorSample!.receivedPerMin), String(floorStartMs)],
      ],
    );
    console.log("RSS counts the pages of the node binary the agent and its guard share in each; PSS splits them between the two.");
  } finally {
    for (const proc of started) proc.kill("SIGKILL");
    // The guard of an agent that did not stop cleanly (it runs from this bench's temp dir).
    try {
      const { pid } = JSON.parse(readFileSync(join(stateDir, "guard.json"), "utf8")) as { pid: number };
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(root.path)) process.kill(pid, "SIGKILL");
    } catch {
      // no guard left
    }
    await Promise.race([Promise.all(started.map((p) => p.exited)), sleep(5000)]);
    await killAll();
    server?.proc.kill("SIGKILL");
    root.cleanup();
    cp.cleanup();
  }
}
