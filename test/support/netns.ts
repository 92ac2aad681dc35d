/**
 * Small hosts built from network namespaces and veth pairs, for tests of the network faults.
 *
 * Safety: every namespace, veth and address here is created by the test, with a random suffix
 * (`fdt-<hex>-…`); addresses are 10.213.N.x/30 with N random and unused. Nothing touches the
 * root namespace's qdiscs or nftables: only the root end of the root↔cp veth lives there (so the
 * test process can reach the control plane's HTTP API), and it dies with the cp namespace.
 * `cleanup()` kills every process started in the namespaces and deletes them, failure or not.
 *
 *        root ns (the test)                      cp (control plane, router)
 *   fdt<hex>rc 10.213.N.1/30  ─────────  fdt<hex>cr 10.213.N.2/30    HTTP API
 *                                        fdt<hex>ch 10.213.N.5/30    gRPC  ──── fdt<hex>hc 10.213.N.6/30  host (the agent)
 *                                        fdt<hex>ct 10.213.N.9/30    ──── fdt<hex>tc 10.213.N.10/30 tgt (echo servers)
 *
 * The host's only interface leads to cp, and its default route goes through it: the agent's link
 * to the control plane and the traffic to tgt share one device, as on a real VM.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { captureProcess, childEnv } from "./processes.js";

export const ROOT = resolve(import.meta.dirname, "../..");
const NODE_ARGS = ["--conditions=@firedrill/source", "--import", "tsx"];
/** Echo servers and probes (plain JS: no loader, quick to start). */
export const NET_TOOLS = join(ROOT, "test/support/net-tools.mjs");

const EXEC_TIMEOUT_MS = 15_000;

/**
 * Why network namespace tests cannot run here, or undefined when they can. Checked for real:
 * creates and deletes a namespace.
 */
export function netnsSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "not root: network namespace tests need root";
  const name = `fdt-${randomBytes(3).toString("hex")}-probe`;
  const add = spawnSync("ip", ["netns", "add", name], { encoding: "utf8", timeout: EXEC_TIMEOUT_MS });
  if (add.error || add.status !== 0) return `ip netns add does not work here: ${add.error?.message ?? add.stderr.trim()}`;
  spawnSync("ip", ["netns", "del", name], { timeout: EXEC_TIMEOUT_MS });
  return undefined;
}

/** Runs a command (argument array) to completion; throws with its stderr unless it exits 0. */
export function run(argv: string[], opts: { input?: string; allowFail?: boolean } = {}): { code: number; stdout: string; stderr: string } {
  const res = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: EXEC_TIMEOUT_MS, input: opts.input ?? "" });
  const out = { code: res.status ?? 1, stdout: res.stdout ?? "", stderr: res.stderr ?? String(res.error ?? "") };
  if (out.code !== 0 && !opts.allowFail) throw new Error(`${argv.join(" ")} failed (${out.code}): ${out.stderr.trim()}`);
  return out;
}

/** Runs a command inside a namespace. */
export function inNs(ns: string, argv: string[], opts: { input?: string; allowFail?: boolean } = {}) {
  return run(["ip", "netns", "exec", ns, ...argv], opts);
}

/** A process started inside a namespace by a test. */
export interface NsProcess {
  child: ChildProcess;
  pid: number;
  output: () => string;
  exited: Promise<number | null>;
  kill: (signal?: NodeJS.Signals) => void;
}

/** Namespaces (and the processes in them) one test file created; `cleanup()` removes them all. */
export class NetnsLab {
  readonly id = randomBytes(3).toString("hex");
  private readonly namespaces: string[] = [];
  private readonly rootLinks: string[] = [];
  private readonly procs = new Set<NsProcess>();
  private readonly stateDirs = new Set<string>();

  /** A fresh namespace named `fdt-<id>-<role>` with loopback up. */
  namespace(role: string): string {
    const name = `fdt-${this.id}-${role}`;
    run(["ip", "netns", "add", name]);
    this.namespaces.push(name);
    inNs(name, ["ip", "link", "set", "lo", "up"]);
    return name;
  }

  /**
   * A veth pair between two namespaces (undefined: the root namespace), each end with an address
   * and up.
   */
  link(a: { ns?: string; name: string; addr: string }, b: { ns: string; name: string; addr: string }): void {
    const inA = (argv: string[]) => (a.ns ? inNs(a.ns, argv) : run(argv));
    inA(["ip", "link", "add", "name", a.name, "type", "veth", "peer", "name", b.name, "netns", b.ns]);
    if (!a.ns) this.rootLinks.push(a.name);
    inA(["ip", "addr", "add", a.addr, "dev", a.name]);
    inA(["ip", "link", "set", a.name, "up"]);
    inNs(b.ns, ["ip", "addr", "add", b.addr, "dev", b.name]);
    inNs(b.ns, ["ip", "link", "set", b.name, "up"]);
  }

  /** Starts `node [tsx] script args` inside a namespace from the repo root; output captured. */
  spawnNode(ns: string, script: string, args: string[], opts: { tsx?: boolean; env?: Record<string, string> } = {}): NsProcess {
    const nodeArgs = opts.tsx === false ? [] : NODE_ARGS;
    // `ip netns exec` execs the program in place: the child's pid is node's.
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, ...nodeArgs, script, ...args], {
      cwd: ROOT,
      env: childEnv(opts.env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const proc: NsProcess = captureProcess(child);
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** Remembers an agent's state dir, so that cleanup also kills the guard it starts. */
  trackAgentStateDir(dir: string): void {
    this.stateDirs.add(dir);
  }

  /** Kills the guards of the agents this lab started. */
  killGuards(): void {
    for (const dir of this.stateDirs) {
      try {
        const { pid } = JSON.parse(readFileSync(join(dir, "guard.json"), "utf8")) as { pid: number };
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("guard")) process.kill(pid, "SIGKILL");
      } catch {
        // no guard, or gone
      }
    }
  }

  /** Kills every process of this lab (guards first, so they cannot act on a dying agent). */
  async killProcesses(): Promise<void> {
    this.killGuards();
    const procs = [...this.procs];
    for (const p of procs) p.kill("SIGKILL");
    await Promise.race([Promise.all(procs.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5000))]);
  }

  /**
   * Kills every process and deletes every namespace of this lab. Any process still inside one of
   * its namespaces was started by this lab's tests (directly or by an agent they started).
   */
  async cleanup(): Promise<void> {
    await this.killProcesses();
    for (const ns of this.namespaces.splice(0).reverse()) {
      const pids = run(["ip", "netns", "pids", ns], { allowFail: true }).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p));
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone
        }
      }
      run(["ip", "netns", "del", ns], { allowFail: true });
    }
    for (const link of this.rootLinks.splice(0)) {
      if (existsSync(`/sys/class/net/${link}`)) run(["ip", "link", "del", link], { allowFail: true });
    }
  }
}

/** A third octet N such that no address 10.213.N.x is in use in the root namespace. */
export function freeSubnet(): number {
  const used = execFileSync("ip", ["-4", "-o", "addr", "show"], { encoding: "utf8", timeout: EXEC_TIMEOUT_MS });
  for (let i = 0; i < 100; i++) {
    const n = randomInt(1, 255);
    if (!used.includes(`10.213.${n}.`)) return n;
  }
  throw new Error("no free 10.213.N.0/24 subnet found in 100 tries");
}

/** The three-namespace layout of the network fault tests. */
export interface TestHosts {
  lab: NetnsLab;
  cp: string;
  host: string;
  tgt: string;
  /** The host's one interface (to cp), which carries both the agent link and the traffic to tgt. */
  hostIf: string;
  addr: { rootSide: string; cpHttp: string; cpGrpc: string; host: string; cpToTgt: string; tgt: string };
}

/** Builds cp, host and tgt (see the file comment). Call `lab.cleanup()` in afterAll. */
export function buildHosts(lab: NetnsLab): TestHosts {
  const n = freeSubnet();
  const ip = (last: number) => `10.213.${n}.${last}`;
  const cp = lab.namespace("cp");
  const host = lab.namespace("host");
  const tgt = lab.namespace("tgt");
  const v = (suffix: string) => `fdt${lab.id}${suffix}`;
  lab.link({ name: v("rc"), addr: `${ip(1)}/30` }, { ns: cp, name: v("cr"), addr: `${ip(2)}/30` });
  lab.link({ ns: cp, name: v("ch"), addr: `${ip(5)}/30` }, { ns: host, name: v("hc"), addr: `${ip(6)}/30` });
  lab.link({ ns: cp, name: v("ct"), addr: `${ip(9)}/30` }, { ns: tgt, name: v("tc"), addr: `${ip(10)}/30` });
  inNs(cp, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
  inNs(host, ["ip", "route", "add", "default", "via", ip(5)]);
  inNs(tgt, ["ip", "route", "add", "default", "via", ip(9)]);
  return {
    lab,
    cp,
    host,
    tgt,
    hostIf: v("hc"),
    addr: { rootSide: ip(1), cpHttp: ip(2), cpGrpc: ip(5), host: ip(6), cpToTgt: ip(9), tgt: ip(10) },
  };
}

/** The nftables tables of a namespace, as "family name". */
export function nftTables(ns: string): string[] {
  const out = inNs(ns, ["nft", "-j", "list", "tables"]).stdout;
  const parsed = JSON.parse(out || "{}") as { nftables?: { table?: { family: string; name: string } }[] };
  return (parsed.nftables ?? []).flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : []));
}

/** The qdiscs of a device in a namespace, as `tc -j qdisc show` lists them. */
export function qdiscs(ns: string, dev: string): { kind: string; handle: string; root?: boolean; parent?: string }[] {
  return JSON.parse(inNs(ns, ["tc", "-j", "qdisc", "show", "dev", dev]).stdout || "[]");
}

/**
 * Waits (at most 5 s) until the IPv6 addresses of `dev` in `ns` have passed duplicate address
 * detection: a tentative link-local address cannot send yet, and packets to it are lost.
 */
export async function waitIpv6Ready(ns: string, dev: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const info = JSON.parse(inNs(ns, ["ip", "-j", "-6", "addr", "show", "dev", dev]).stdout || "[]") as {
      addr_info?: { local: string; tentative?: boolean }[];
    }[];
    const addrs = info.flatMap((i) => i.addr_info ?? []);
    if (addrs.length > 0 && addrs.every((a) => !a.tentative)) return;
    if (Date.now() > deadline) throw new Error(`IPv6 on ${dev} in ${ns} is still tentative after 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The configuration of a device's qdiscs, without the counters that traffic moves (e.g. htb's
 * direct_packets_stat), for "left exactly as it was" comparisons.
 */
export function qdiscConfig(ns: string, dev: string): string {
  return JSON.stringify(
    qdiscs(ns, dev).map((q) => {
      const { options, ...rest } = q as typeof q & { options?: Record<string, unknown> };
      const kept = Object.fromEntries(Object.entries(options ?? {}).filter(([k]) => !k.endsWith("_stat")));
      return { ...rest, options: kept };
    }),
  );
}
