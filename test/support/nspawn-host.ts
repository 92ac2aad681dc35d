/**
 * Real Debian hosts that boot with systemd, for the tests that install and run the agent as a
 * systemd service: `systemd-nspawn --boot` of a minimal bookworm root (scripts/nspawn-root.sh builds
 * it once into /var/cache/firedrill-test).
 *
 * Each host gets:
 * - its own writable root: an overlayfs over the cached root (upper and work dirs in its temp dir
 *   `/tmp/fdn-<pid>-<name>-XXXXXX`), so no test changes the cache and hosts share one lower dir;
 * - its own network namespace `fdn-<pid>-<name>` with a veth pair to the machine's root namespace:
 *   `fdn-<pid>-<i>` there with 10.213.N.1/24 (`hostAddress`, where the test's control plane
 *   listens) and `host0` in the container with 10.213.N.2/24 (`containerAddress`) and a default
 *   route via .1. N is claimed in /run/firedrill-test/subnets so parallel test files never share
 *   one. Nothing else in the root namespace changes (not ip_forward, not nftables), so the
 *   container reaches the machine's 10.213.N.1 and nothing beyond it;
 * - `systemd-nspawn --boot` as a child of the test process, its console in `<temp dir>/console.log`.
 *
 * Commands run in the container with `nsenter` into all the namespaces of its init (and its root):
 * they see the container's files and talk to its systemd. A reboot from inside comes back by itself
 * (systemd-nspawn exits 133, the host starts it again on the same root and namespace), as a VM
 * would. `stop()` tears everything down and is also run from a process exit handler;
 * `cleanupStale()` removes what a test process that died (SIGKILL) left behind.
 *
 * The machine has no system bus (its PID 1 is not systemd), hence `--register=no --keep-unit`.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomInt, randomUUID } from "node:crypto";
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dirname, "../..");
const ROOT_SCRIPT = join(REPO, "scripts/nspawn-root.sh");
/** Prefix of everything a host creates: `fdn-<pid of the test process>-…`. */
const PREFIX = "fdn";
const CLAIMS_DIR = "/run/firedrill-test/subnets";
/** The PATH of commands run in the container (Debian's root PATH). */
const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TOOL_TIMEOUT_MS = 15_000;
const TOOLS = ["systemd-nspawn", "debootstrap", "nsenter", "ip", "flock", "mount", "umount", "tar"] as const;

/** Whether systemd-nspawn hosts can run here, or why not. */
export type NspawnAvailability = { ok: true } | { ok: false; why: string };

/** What a command run in a container printed, and its exit code. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of `NspawnHost.exec`. */
export interface ExecOptions {
  /** Written to the command's stdin (then closed). */
  input?: string | Buffer;
  /** The command is killed (with everything it started in its process group) after this. @default 30000 */
  timeoutMs?: number;
  /** Added to the command's environment (PATH, HOME=/root, LANG=C.UTF-8, TERM=dumb by default). */
  env?: Record<string, string>;
}

/** Options of `startHost`. */
export interface StartHostOptions {
  /** Short name, `[a-z0-9-]`, at most 20 characters; the machine is `fdn-<pid>-<name>`. */
  name: string;
  /** The third octet N of the host's 10.213.N.0/24, instead of a free one picked at random. */
  subnet?: number;
  /** How long the first boot may take to reach running (or degraded). @default 120000 */
  bootTimeoutMs?: number;
  /** The root to boot (the overlay's lower dir). @default the cached root of `ensureRoot()` */
  root?: string;
}

/** What `cleanupStale` and the exit handler need to undo a host; written to `<temp dir>/state.json`. */
interface HostState {
  machine: string;
  netns: string;
  hostIf: string;
  subnet: number;
  tempDir: string;
  rootDir: string;
}

function which(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? CONTAINER_PATH).split(":").concat(CONTAINER_PATH.split(":"))) {
    const path = join(dir, bin);
    try {
      if (statSync(path).isFile()) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Runs a machine-side tool (argument array), bounded; never throws. */
function tool(argv: string[], timeoutMs = TOOL_TIMEOUT_MS): { code: number; stdout: string; stderr: string } {
  const res = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL" });
  return { code: res.status ?? 1, stdout: res.stdout ?? "", stderr: (res.stderr ?? "") + (res.error ? String(res.error) : "") };
}

/** Runs a machine-side tool; throws with its stderr unless it exits 0. */
function mustTool(argv: string[]): string {
  const res = tool(argv);
  if (res.code !== 0) throw new Error(`${argv.join(" ")} failed (${res.code}): ${res.stderr.trim()}`);
  return res.stdout;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function killPid(pid: number | undefined, signal: NodeJS.Signals = "SIGKILL"): void {
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** The pids of a process group. */
function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]) === pgid) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/**
 * Kills an `nsenter` (the leader of its own process group) and what it started: the command in the
 * container first, so that nsenter reaps it — killed first, nsenter would leave it a zombie no one
 * in the container can reap, and a shutdown would wait for it — then nsenter itself a moment later.
 */
function killNsenterGroup(pgid: number): void {
  for (const pid of groupPids(pgid)) if (pid !== pgid) killPid(pid);
  setTimeout(() => killPid(-pgid), 1000).unref();
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const decode = (s: string) => s.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => decode(line.split(" ")[4] ?? ""))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or under `dir` (lazily when busy); true when nothing is left mounted. */
function unmountUnder(dir: string): boolean {
  for (const m of mountsUnder(dir)) {
    if (tool(["umount", m]).code !== 0) tool(["umount", "--lazy", m]);
  }
  return mountsUnder(dir).length === 0;
}

/** Deletes a temp dir of a host, but never while something is mounted in it. */
function removeTempDir(dir: string): void {
  if (!existsSync(dir)) return;
  if (!unmountUnder(dir)) throw new Error(`${dir} still has mounts (${mountsUnder(dir).join(", ")}): not deleting it`);
  rmSync(dir, { recursive: true, force: true });
}

function netnsPids(netns: string): number[] {
  return tool(["ip", "netns", "pids", netns]).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
}

/**
 * Kills every process in a network namespace — a container's, whose init's death ends its pid
 * namespace — and waits (at most 5 s) until they are gone, so that their mounts are released.
 */
function killNetnsProcesses(netns: string): void {
  for (const pid of netnsPids(netns)) killPid(pid);
  const deadline = Date.now() + 5000;
  while (netnsPids(netns).some(pidAlive) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
}

/** Undoes a host from its state, synchronously and idempotently: processes, mount, netns, veth, files. */
function teardownSync(state: HostState, nspawnPid?: number): void {
  if (existsSync(`/run/netns/${state.netns}`)) killNetnsProcesses(state.netns);
  killPid(nspawnPid);
  for (const pid of nspawnPidsOf(state.machine)) killPid(pid);
  unmountUnder(state.rootDir);
  if (existsSync(`/run/netns/${state.netns}`)) tool(["ip", "netns", "del", state.netns]);
  if (existsSync(`/sys/class/net/${state.hostIf}`)) tool(["ip", "link", "del", state.hostIf]);
  rmSync(`/run/systemd/nspawn/propagate/${state.machine}`, { recursive: true, force: true });
  releaseSubnet(state.subnet, state.machine);
  removeTempDir(state.tempDir);
}

/** The pids of systemd-nspawn processes started for `machine` (by their `-M` argument). */
function nspawnPidsOf(machine: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (!argv[0]?.endsWith("systemd-nspawn")) continue;
      const i = argv.indexOf("-M");
      if (i >= 0 && argv[i + 1] === machine) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

// ---------------------------------------------------------------------------------------------
// Subnets: 10.213.N.0/24, claimed with an exclusive-create file per N (pid and machine inside).

function claimSubnet(machine: string, wanted?: number): number {
  mkdirSync(CLAIMS_DIR, { recursive: true });
  const inUse = mustTool(["ip", "-4", "-o", "addr", "show"]);
  const candidates = wanted !== undefined ? [wanted] : Array.from({ length: 200 }, () => randomInt(1, 255));
  for (const n of candidates) {
    if (inUse.includes(`10.213.${n}.`)) continue;
    const file = join(CLAIMS_DIR, String(n));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(file, `${process.pid} ${machine}\n`, { flag: "wx" });
        return n;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const owner = Number(readFileSync(file, "utf8").split(" ")[0]);
        if (owner && pidAlive(owner)) break;
        rmSync(file, { force: true }); // its test process died: the claim is stale
      }
    }
  }
  throw new Error(
    wanted !== undefined
      ? `subnet 10.213.${wanted}.0/24 is in use (an address in the root namespace, or a claim in ${CLAIMS_DIR})`
      : `no free 10.213.N.0/24 found in 200 tries (claims in ${CLAIMS_DIR})`,
  );
}

function releaseSubnet(n: number, machine: string): void {
  const file = join(CLAIMS_DIR, String(n));
  try {
    if (readFileSync(file, "utf8").split(" ")[1]?.trim() === machine) unlinkSync(file);
  } catch {
    // not claimed
  }
}

// ---------------------------------------------------------------------------------------------

let availability: NspawnAvailability | undefined;

/**
 * Whether systemd-nspawn hosts can run here: root, the tools (systemd-nspawn, debootstrap,
 * nsenter…), overlayfs, and a real try — a throwaway container (an overlay root with the machine's
 * /usr bound read-only) in a throwaway network namespace runs `/usr/bin/true`. Cached.
 */
export function nspawnAvailable(): NspawnAvailability {
  availability ??= probeAvailability();
  return availability;
}

function probeAvailability(): NspawnAvailability {
  if (process.getuid?.() !== 0) return { ok: false, why: "not root: systemd-nspawn hosts need root" };
  const missing = TOOLS.filter((t) => !which(t));
  if (missing.length > 0) {
    return { ok: false, why: `missing ${missing.join(", ")}: run scripts/setup.sh (apt-get install systemd-container debootstrap)` };
  }
  if (!/\toverlay$/m.test(readFileSync("/proc/filesystems", "utf8"))) {
    return { ok: false, why: "this kernel has no overlayfs (modprobe overlay), which gives each host its own writable root" };
  }
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}-${process.pid}-probe-`));
  const netns = `${PREFIX}-${process.pid}-probe`;
  try {
    const lower = join(dir, "lower");
    mkdirSync(join(lower, "usr"), { recursive: true });
    for (const d of ["bin", "sbin", "lib", "lib64"]) symlinkSync(`usr/${d}`, join(lower, d));
    for (const d of ["upper", "work", "root"]) mkdirSync(join(dir, d));
    const mount = tool(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, `${dir}/root`]);
    if (mount.code !== 0) return { ok: false, why: `cannot mount an overlayfs in ${tmpdir()}: ${mount.stderr.trim()}` };
    const add = tool(["ip", "netns", "add", netns]);
    if (add.code !== 0) return { ok: false, why: `ip netns add does not work here: ${add.stderr.trim()}` };
    const run = tool(
      ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-D", `${dir}/root`, "-M", netns, "--bind-ro=/usr",
        `--network-namespace-path=/run/netns/${netns}`, "--resolv-conf=off", "--timezone=off", "--link-journal=no", "/usr/bin/true"],
      30_000,
    );
    if (run.code !== 0) return { ok: false, why: `systemd-nspawn cannot start a container here (exit ${run.code}): ${run.stderr.trim().slice(0, 500)}` };
    return { ok: true };
  } finally {
    tool(["ip", "netns", "del", netns]);
    rmSync(`/run/systemd/nspawn/propagate/${netns}`, { recursive: true, force: true });
    try {
      removeTempDir(dir);
    } catch {
      // left for cleanupStale
    }
  }
}

/**
 * The cached Debian bookworm root (built by scripts/nspawn-root.sh on first use, about 80 s;
 * waits for a build another test file started). Thrown when the build fails, with its reason.
 */
export function ensureRoot(timeoutMs = 900_000): Promise<string> {
  return new Promise((resolvePath, reject) => {
    // its own process group: a timeout kills debootstrap too
    const child = spawn("bash", [ROOT_SCRIPT], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => killPid(-child.pid!), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      const path = out.trim().split("\n").pop() ?? "";
      if (code === 0 && path && existsSync(join(path, "etc/firedrill-test-root"))) resolvePath(path);
      else reject(new Error(`scripts/nspawn-root.sh failed (exit ${code ?? "killed"} after at most ${timeoutMs} ms): ${err.trim()}`));
    });
  });
}

/**
 * Removes what hosts of test processes that no longer exist left behind (a test process killed
 * with SIGKILL runs no exit handler): their containers' processes, overlay mounts, network
 * namespaces, veths, subnet claims and temp dirs — only things named `fdn-<pid>-…` with that pid
 * dead. Returns what it removed, for a log line.
 */
export function cleanupStale(): string[] {
  const removed: string[] = [];
  const deadPid = (name: string): boolean => {
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    return !!m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  };
  const tmp = tmpdir();
  for (const entry of readdirSync(tmp)) {
    if (!deadPid(entry)) continue;
    const dir = join(tmp, entry);
    try {
      const state = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as HostState;
      teardownSync(state);
    } catch {
      removeTempDir(dir);
    }
    removed.push(dir);
  }
  const netnsDir = "/run/netns";
  for (const ns of existsSync(netnsDir) ? readdirSync(netnsDir) : []) {
    if (!deadPid(ns)) continue;
    killNetnsProcesses(ns);
    for (const pid of nspawnPidsOf(ns)) killPid(pid);
    tool(["ip", "netns", "del", ns]);
    rmSync(`/run/systemd/nspawn/propagate/${ns}`, { recursive: true, force: true });
    removed.push(`netns ${ns}`);
  }
  for (const link of readdirSync("/sys/class/net")) {
    if (!deadPid(link)) continue;
    tool(["ip", "link", "del", link]);
    removed.push(`link ${link}`);
  }
  if (existsSync(CLAIMS_DIR)) {
    for (const claim of readdirSync(CLAIMS_DIR)) {
      const owner = Number(readFileSync(join(CLAIMS_DIR, claim), "utf8").split(" ")[0]);
      if (owner && owner !== process.pid && !pidAlive(owner)) {
        rmSync(join(CLAIMS_DIR, claim), { force: true });
        removed.push(`subnet claim ${claim}`);
      }
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------

const liveHosts = new Set<NspawnHost>();
let exitHandlerInstalled = false;
let linkCounter = 0;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on("exit", () => {
    for (const host of liveHosts) host.teardownNow();
  });
}

/**
 * A booted Debian host (see the file comment). Made by `startHost`; `stop()` it in `afterAll`.
 */
export class NspawnHost {
  /** The machine name (also the container's hostname and the network namespace's name). */
  readonly machine: string;
  readonly netns: string;
  /** The root namespace's end of the veth pair. */
  readonly hostInterface: string;
  /** The container's end of the veth pair. */
  readonly containerInterface = "host0";
  /** 10.213.N.1: the machine's address on the host's link (bind the test's servers here). */
  readonly hostAddress: string;
  /** 10.213.N.2: the container's address. */
  readonly containerAddress: string;
  /** The container's root as the machine sees it (the overlay mount); read it, write with exec/copyIn. */
  readonly rootDir: string;
  /** The containers' console output, all boots appended. */
  readonly logFile: string;

  private readonly state: HostState;
  private readonly uuid = randomUUID().replaceAll("-", "");
  private nspawn: ChildProcess | undefined;
  private nspawnExit: Promise<number | null> | undefined;
  private init: number | undefined;
  private stopping: Promise<void> | undefined;
  private torndown = false;
  private bootCount = 0;

  /** @internal use `startHost` */
  constructor(
    readonly name: string,
    private readonly lower: string,
    subnet: number,
    tempDir: string,
  ) {
    this.machine = `${PREFIX}-${process.pid}-${name}`;
    this.netns = this.machine;
    this.hostInterface = `${PREFIX}-${process.pid}-${(linkCounter++).toString(36)}`; // at most 15 characters: pid ≤ 7 digits
    this.hostAddress = `10.213.${subnet}.1`;
    this.containerAddress = `10.213.${subnet}.2`;
    this.rootDir = join(tempDir, "root");
    this.logFile = join(tempDir, "console.log");
    this.state = { machine: this.machine, netns: this.netns, hostIf: this.hostInterface, subnet, tempDir, rootDir: this.rootDir };
  }

  /** The pid (on the machine) of the container's init, while it runs. */
  get initPid(): number | undefined {
    return this.init;
  }

  /** How many times systemd-nspawn was started (a reboot from inside adds one). */
  get boots(): number {
    return this.bootCount;
  }

  /** Whether systemd-nspawn runs (the container is up or booting). */
  get running(): boolean {
    return !!this.nspawn && this.nspawn.exitCode === null && this.nspawn.signalCode === null;
  }

  /** @internal the overlay, the network namespace and the veth pair. */
  setUp(): void {
    writeFileSync(join(this.state.tempDir, "state.json"), `${JSON.stringify(this.state)}\n`);
    for (const d of ["upper", "work", "root"]) mkdirSync(join(this.state.tempDir, d));
    mustTool(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${this.lower},upperdir=${this.state.tempDir}/upper,workdir=${this.state.tempDir}/work`, this.rootDir]);
    mustTool(["ip", "netns", "add", this.netns]);
    mustTool(["ip", "link", "add", this.hostInterface, "type", "veth", "peer", "name", this.containerInterface, "netns", this.netns]);
    mustTool(["ip", "addr", "add", `${this.hostAddress}/24`, "dev", this.hostInterface]);
    mustTool(["ip", "link", "set", this.hostInterface, "up"]);
    const inNs = (...argv: string[]) => mustTool(["ip", "-n", this.netns, ...argv]);
    inNs("link", "set", "lo", "up");
    inNs("addr", "add", `${this.containerAddress}/24`, "dev", this.containerInterface);
    inNs("link", "set", this.containerInterface, "up");
    inNs("route", "add", "default", "via", this.hostAddress);
  }

  /** Starts systemd-nspawn (not waiting for the boot). */
  private launch(): void {
    const log = openSync(this.logFile, "a");
    this.bootCount++;
    writeFileSync(log, `\n--- boot ${this.bootCount} at ${new Date().toISOString()}\n`);
    const child = spawn(
      "systemd-nspawn",
      [
        "--boot", "-D", this.rootDir, "-M", this.machine, `--uuid=${this.uuid}`,
        `--network-namespace-path=/run/netns/${this.netns}`,
        // A VM's root may change its own network (nft, tc): the container's network namespace is its
        // own, so CAP_NET_ADMIN in it reaches nothing of the machine's.
        "--capability=CAP_NET_ADMIN",
        // no machined or system bus here
        "--register=no", "--keep-unit",
        "--console=read-only", "--link-journal=no", "--resolv-conf=off", "--timezone=off", "--quiet",
      ],
      // TERM=dumb: a console log without colours
      { stdio: ["ignore", log, log], env: { ...process.env, TERM: "dumb" } },
    );
    closeSync(log);
    this.nspawn = child;
    this.init = undefined;
    this.nspawnExit = new Promise((resolveExit) => {
      child.once("exit", (code, signal) => {
        if (this.nspawn === child) this.init = undefined;
        resolveExit(code ?? (signal ? 128 : null));
        // 133: the container rebooted; like a VM, it comes back (unless the host is being stopped)
        if (code === 133 && !this.stopping && this.nspawn === child) this.launch();
      });
    });
    child.once("error", () => undefined); // reported through exit
  }

  /** Finds the container's init: the child of systemd-nspawn running systemd in another pid namespace. */
  private findInit(): number | undefined {
    const nspawnPid = this.nspawn?.pid;
    if (!nspawnPid || !this.running) return undefined;
    let children: string[] = [];
    try {
      children = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, "utf8").trim().split(/\s+/);
    } catch {
      return undefined;
    }
    const ownPidNs = readlinkSync("/proc/self/ns/pid");
    for (const c of children.filter((c) => /^\d+$/.test(c))) {
      try {
        if (readFileSync(`/proc/${c}/comm`, "utf8").trim() === "systemd" && readlinkSync(`/proc/${c}/ns/pid`) !== ownPidNs) return Number(c);
      } catch {
        // gone
      }
    }
    return undefined;
  }

  private requireInit(): number {
    this.init ??= this.findInit();
    if (!this.init) throw new Error(`host ${this.machine} is not running (systemd-nspawn ${this.running ? "has not started its init yet" : "exited"}); console: ${this.logFile}`);
    return this.init;
  }

  /** The last lines of the console log. */
  consoleTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /**
   * Runs a command (argument array) in the container: its files, its namespaces, its systemd.
   * Resolves with the exit code and output; rejected on timeout (the command and everything it
   * started in its process group are killed) or when the host is not running.
   */
  exec(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    let init: number;
    try {
      init = this.requireInit();
    } catch (err) {
      return Promise.reject(err);
    }
    const nsenter = which("nsenter") ?? "nsenter";
    return new Promise((resolveExec, reject) => {
      const child = spawn(nsenter, ["-t", String(init), "-a", "-r", "-w", "--", ...cmd], {
        env: { PATH: CONTAINER_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "dumb", ...opts.env },
        stdio: ["pipe", "pipe", "pipe"],
        detached: true, // its own process group: a timeout kills what it started too
      });
      let stdout = "";
      let stderr = "";
      let timedOut = false;
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.stdin.on("error", () => undefined); // the command may not read its input
      child.stdin.end(opts.input ?? "");
      const timer = setTimeout(() => {
        timedOut = true;
        killNsenterGroup(child.pid!);
      }, timeoutMs);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        if (timedOut) reject(new Error(`${cmd.join(" ")} in ${this.machine} timed out after ${timeoutMs} ms; output so far: ${(stdout + stderr).trim().slice(-2000)}`));
        else resolveExec({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
  }

  /**
   * Waits until `systemctl is-system-running` says running or degraded (the failed units are
   * printed then). Thrown after `timeoutMs`, or when systemd-nspawn exits, with the console's tail.
   */
  async waitRunning(timeoutMs = 60_000): Promise<"running" | "degraded"> {
    const deadline = Date.now() + timeoutMs;
    let last = "not started";
    for (;;) {
      if (!this.running) throw new Error(`host ${this.machine}: systemd-nspawn exited during boot; console:\n${this.consoleTail()}`);
      this.init ??= this.findInit();
      if (this.init) {
        try {
          const res = await this.exec(["systemctl", "is-system-running"], { timeoutMs: Math.max(1000, Math.min(5000, deadline - Date.now())) });
          last = res.stdout.trim() || res.stderr.trim();
          if (last === "running") return "running";
          if (last === "degraded") {
            const failed = await this.exec(["systemctl", "--failed", "--no-legend", "--plain"], { timeoutMs: 5000 });
            console.log(`host ${this.machine} is degraded; failed units:\n${failed.stdout.trim()}`);
            return "degraded";
          }
        } catch (err) {
          last = (err as Error).message;
        }
      }
      if (Date.now() >= deadline) {
        let jobs = "";
        if (this.init) jobs = await this.exec(["systemctl", "list-jobs", "--no-legend"], { timeoutMs: 5000 }).then((r) => r.stdout, () => "");
        throw new Error(`host ${this.machine} not running after ${timeoutMs} ms (last: ${last}); jobs:\n${jobs}\nconsole:\n${this.consoleTail()}`);
      }
      await sleep(100);
    }
  }

  /** Waits (at most timeoutMs) for a boot's systemd-nspawn to exit; its exit code. */
  private async waitExit(exit: Promise<number | null> | undefined, timeoutMs: number, what: string): Promise<number | null> {
    if (!exit) return null;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`host ${this.machine}: ${what} did not end systemd-nspawn within ${timeoutMs} ms; console:\n${this.consoleTail()}`)), timeoutMs);
    });
    try {
      return await Promise.race([exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * `systemctl reboot` in the container; resolves once the new boot is running (same root, same
   * network namespace: files on disk survive, /run does not). Thrown when it takes longer.
   */
  async reboot(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const before = this.nspawn;
    const exit = this.nspawnExit;
    await this.exec(["systemctl", "reboot"], { timeoutMs: 10_000 }).catch(() => undefined); // may die with the system
    const code = await this.waitExit(exit, Math.max(1, deadline - Date.now()), "systemctl reboot");
    if (code !== 133) throw new Error(`host ${this.machine}: systemd-nspawn exited ${code} after systemctl reboot (133 means reboot); console:\n${this.consoleTail()}`);
    if (this.nspawn === before) throw new Error(`host ${this.machine} was not started again after its reboot`);
    await this.waitRunning(Math.max(1000, deadline - Date.now()));
  }

  /** `systemctl poweroff` in the container; resolves when systemd-nspawn has exited. `boot()` starts it again. */
  async poweroff(timeoutMs = 30_000): Promise<void> {
    if (!this.running) return;
    const exit = this.nspawnExit;
    await this.exec(["systemctl", "poweroff"], { timeoutMs: Math.min(10_000, timeoutMs) }).catch(() => undefined);
    await this.waitExit(exit, timeoutMs, "systemctl poweroff");
  }

  /**
   * Pulls the plug: SIGKILL to the container's init, which kills every process of the container at
   * once (no unit stops, no ExecStopPost); resolves when systemd-nspawn has exited. `boot()` starts
   * it again.
   */
  async kill(timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    const nspawn = this.nspawn;
    const exit = this.nspawnExit;
    killPid(this.init ?? this.findInit());
    try {
      await this.waitExit(exit, timeoutMs, "SIGKILL to the container's init");
    } catch {
      nspawn?.kill("SIGKILL");
      await this.waitExit(exit, 5000, "SIGKILL");
    }
  }

  /** Boots the host again after `poweroff()` or `kill()`; resolves once it is running. */
  async boot(timeoutMs = 60_000): Promise<"running" | "degraded"> {
    if (this.stopping) throw new Error(`host ${this.machine} is stopped`);
    if (this.running) throw new Error(`host ${this.machine} is already running`);
    this.launch();
    return this.waitRunning(timeoutMs);
  }

  /**
   * Copies a file or a directory (recursively) of the machine into the container, streamed through
   * the container's own `cat` / `tar` (so symlinks resolve inside the container, never on the
   * machine). A file keeps its mode; a directory is created when missing.
   */
  async copyIn(hostPath: string, containerPath: string, timeoutMs = 60_000): Promise<void> {
    const st = statSync(hostPath);
    if (st.isDirectory()) {
      const tar = spawn("tar", ["-C", hostPath, "-cf", "-", "."], { stdio: ["ignore", "pipe", "pipe"] });
      const chunks: Buffer[] = [];
      tar.stdout.on("data", (d: Buffer) => chunks.push(d));
      const code = await new Promise<number | null>((r) => tar.once("close", r));
      if (code !== 0) throw new Error(`tar of ${hostPath} failed (${code})`);
      const res = await this.exec(["sh", "-c", 'mkdir -p "$1" && tar -C "$1" -xf -', "sh", containerPath], { input: Buffer.concat(chunks), timeoutMs });
      if (res.code !== 0) throw new Error(`copying ${hostPath} into ${this.machine}:${containerPath} failed: ${res.stderr.trim()}`);
      return;
    }
    const init = this.requireInit();
    const mode = (st.mode & 0o7777).toString(8);
    const nsenter = which("nsenter") ?? "nsenter";
    await new Promise<void>((resolveCopy, reject) => {
      const child = spawn(nsenter, ["-t", String(init), "-a", "-r", "-w", "--", "sh", "-c", 'cat > "$1.fdn-copy" && chmod "$2" "$1.fdn-copy" && mv -f "$1.fdn-copy" "$1"', "sh", containerPath, mode], {
        env: { PATH: CONTAINER_PATH },
        stdio: ["pipe", "ignore", "pipe"],
        detached: true,
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => killNsenterGroup(child.pid!), timeoutMs);
      createReadStream(hostPath).pipe(child.stdin);
      child.once("error", reject);
      child.once("close", (code) => {
        clearTimeout(timer);
        if (code === 0) resolveCopy();
        else reject(new Error(`copying ${hostPath} into ${this.machine}:${containerPath} failed (${code ?? "killed after " + timeoutMs + " ms"}): ${stderr.trim()}`));
      });
    });
  }

  /**
   * Stops the host and removes everything it made: poweroff (at most `timeoutMs`), else SIGKILL;
   * then the overlay mount, the network namespace and veth, the subnet claim and the temp dir.
   * Safe to call again; the cached root is never touched.
   */
  stop(timeoutMs = 20_000): Promise<void> {
    this.stopping ??= (async () => {
      if (this.running) {
        try {
          await this.poweroff(timeoutMs);
        } catch {
          await this.kill(5000).catch(() => undefined);
        }
      }
      if (this.running) {
        this.nspawn?.kill("SIGKILL");
        await this.waitExit(this.nspawnExit, 5000, "SIGKILL").catch(() => undefined);
      }
      this.teardownNow();
    })();
    return this.stopping;
  }

  /** @internal synchronous teardown (also the exit handler's). */
  teardownNow(): void {
    if (this.torndown) return;
    this.torndown = true;
    this.stopping ??= Promise.resolve();
    liveHosts.delete(this);
    teardownSync(this.state, this.nspawn?.pid);
  }
}

/**
 * Boots a Debian host with systemd (see the file comment) and resolves once
 * `systemctl is-system-running` says running (or degraded). Builds the cached root first if it is
 * missing (about 80 s). On failure, what was set up is removed and the error says why.
 */
export async function startHost(opts: StartHostOptions): Promise<NspawnHost> {
  if (!/^[a-z0-9][a-z0-9-]{0,19}$/.test(opts.name)) throw new Error(`host name "${opts.name}": use [a-z0-9-], at most 20 characters`);
  const avail = nspawnAvailable();
  if (!avail.ok) throw new Error(`systemd-nspawn hosts cannot run here: ${avail.why}`);
  const lower = opts.root ?? (await ensureRoot());
  installExitHandler();
  const machine = `${PREFIX}-${process.pid}-${opts.name}`;
  if (existsSync(`/run/netns/${machine}`)) throw new Error(`a host named ${opts.name} already runs in this process (netns ${machine})`);
  const subnet = claimSubnet(machine, opts.subnet);
  let tempDir: string;
  try {
    tempDir = mkdtempSync(join(tmpdir(), `${machine}-`));
  } catch (err) {
    releaseSubnet(subnet, machine);
    throw err;
  }
  const host = new NspawnHost(opts.name, lower, subnet, tempDir);
  liveHosts.add(host);
  try {
    host.setUp();
    await host.boot(opts.bootTimeoutMs ?? 120_000);
  } catch (err) {
    await host.stop(5000).catch(() => undefined);
    throw err;
  }
  return host;
}
