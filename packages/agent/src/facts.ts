/**
 * Host facts (systeminformation) and capabilities, sent in the Hello.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { CapabilitiesSchema, FilesystemSchema, HostFactsSchema, NetworkInterfaceSchema } from "@firedrill/protocol";
import type { Capabilities, HostFacts } from "@firedrill/protocol";
import si from "systeminformation";
import { findExecutable, hasExecutable } from "./executables.js";
import type { Ec2Identity } from "./imds.js";

export { findExecutable, hasExecutable } from "./executables.js";

/** Gathers host facts. Slow parts (filesystems) are bounded; a failing probe leaves its field empty. */
export async function gatherHostFacts(ec2: Ec2Identity): Promise<HostFacts> {
  const settle = <T>(p: Promise<T>, fallback: T): Promise<T> => p.catch(() => fallback);
  const [os, cpu, mem, fs, ifaces, defaultIface] = await Promise.all([
    settle(si.osInfo(), undefined),
    settle(si.cpu(), undefined),
    settle(si.mem(), undefined),
    settle(si.fsSize(), []),
    settle(si.networkInterfaces(), []),
    settle(si.networkInterfaceDefault(), ""),
  ]);
  const interfaces = Array.isArray(ifaces) ? ifaces : [ifaces];
  const byName = new Map<string, string[]>();
  for (const i of interfaces) {
    const list = byName.get(i.iface) ?? [];
    for (const addr of [i.ip4, i.ip6]) if (addr) list.push(addr);
    byName.set(i.iface, list);
  }
  return create(HostFactsSchema, {
    hostname: os?.hostname ?? "",
    osPlatform: os?.platform ?? process.platform,
    osDistro: os?.distro ?? "",
    osRelease: os?.release ?? "",
    kernel: os?.kernel ?? "",
    arch: os?.arch ?? process.arch,
    cpuCount: cpu?.cores ?? 0,
    cpuModel: cpu ? `${cpu.manufacturer} ${cpu.brand}`.trim() : "",
    memoryBytes: BigInt(mem?.total ?? 0),
    filesystems: fs.map((f) =>
      create(FilesystemSchema, {
        device: f.fs,
        type: f.type,
        mount: f.mount,
        sizeBytes: BigInt(Math.max(0, Math.round(f.size))),
        usedBytes: BigInt(Math.max(0, Math.round(f.used))),
      }),
    ),
    interfaces: interfaces.map((i) =>
      create(NetworkInterfaceSchema, {
        name: i.iface,
        mac: i.mac,
        addresses: [i.ip4, i.ip6].filter((a) => a !== ""),
        internal: i.internal,
        defaultRoute: i.iface === defaultIface,
      }),
    ),
    instanceId: ec2.instanceId,
    availabilityZone: ec2.availabilityZone,
    region: ec2.region,
  });
}

/** Queueing disciplines network-delay needs from the kernel. */
export type ProbedQdisc = "netem" | "prio";

/** Whether the kernel provides a qdisc, and how sure we are. */
export interface QdiscSupport {
  available: boolean;
  /** True when a real `tc qdisc add` answered; false when only module lists were read. */
  definitive: boolean;
  /** How it was found out, for logs. */
  how: string;
}

const PROBE_ARGS: Record<ProbedQdisc, string[]> = { netem: ["delay", "1ms"], prio: ["bands", "4"] };
const qdiscSupportCache = new Map<ProbedQdisc, QdiscSupport>();

/**
 * Whether the running kernel provides the `kind` qdisc. Definitive where possible: adds it for real
 * to the loopback device of a throwaway network namespace (`unshare --net tc qdisc add dev lo root
 * … <kind>`; the namespace dies with the command, so nothing can be left behind, and the kernel
 * loads the module on demand exactly as it would for the fault). Where that cannot run (not root,
 * no unshare), falls back to the module lists and the kernel config, which can only guess.
 * Cached; `refresh` probes again (after `modprobe`, say).
 */
export function kernelQdiscSupport(kind: ProbedQdisc, opts: { refresh?: boolean } = {}): QdiscSupport {
  const cached = qdiscSupportCache.get(kind);
  if (cached && !opts.refresh) return cached;
  const result = probeQdisc(kind) ?? guessQdisc(kind);
  qdiscSupportCache.set(kind, result);
  return result;
}

function probeQdisc(kind: ProbedQdisc): QdiscSupport | undefined {
  const unshare = findExecutable("unshare");
  const tc = findExecutable("tc");
  if (!unshare || !tc || process.getuid?.() !== 0) return undefined;
  const res = spawnSync(unshare, ["--net", tc, "qdisc", "add", "dev", "lo", "root", "handle", "1:", kind, ...PROBE_ARGS[kind]], {
    timeout: 5000,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (res.status === 0) return { available: true, definitive: true, how: `tc qdisc add ${kind} in a throwaway network namespace worked` };
  if (/Specified qdisc kind is unknown/i.test(res.stderr ?? "")) {
    return { available: false, definitive: true, how: `the kernel refused a ${kind} qdisc in a throwaway network namespace: ${res.stderr.trim()}` };
  }
  // unshare not permitted (a container), or some other failure: no verdict from the probe.
  return undefined;
}

function guessQdisc(kind: ProbedQdisc): QdiscSupport {
  const module = `sch_${kind}`;
  const guess = (available: boolean, how: string): QdiscSupport => ({ available, definitive: false, how });
  if (existsSync(`/sys/module/${module}`)) return guess(true, `${module} is loaded`);
  let release = "";
  try {
    release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    if (readFileSync(`/lib/modules/${release}/modules.builtin`, "utf8").includes(`/${module}.ko`)) return guess(true, `${module} is built in`);
  } catch {
    // no module lists
  }
  try {
    if (new RegExp(`/${module}\\.ko`).test(readFileSync(`/lib/modules/${release}/modules.dep`, "utf8"))) {
      return guess(true, `${module} is an installed module`);
    }
  } catch {
    // no module lists
  }
  try {
    const config = gunzipSync(readFileSync("/proc/config.gz")).toString("utf8");
    const option = `CONFIG_NET_SCH_${kind.toUpperCase()}`;
    if (new RegExp(`^${option}=y$`, "m").test(config)) return guess(true, `${option}=y in /proc/config.gz`);
  } catch {
    // no kernel config exposed
  }
  return guess(false, `${module} is neither loaded, built in nor installed as a module`);
}

/**
 * Whether the running kernel can run network-delay: sch_netem, and sch_prio that carries it (see
 * kernelQdiscSupport). Reported as the `netem` capability.
 */
export function kernelHasNetem(): boolean {
  return kernelQdiscSupport("netem").available && kernelQdiscSupport("prio").available;
}

/** Whether systemd is the host's init (sd_booted: /run/systemd/system exists) and systemctl is present. */
export function hostRunsSystemd(): boolean {
  return existsSync("/run/systemd/system") && hasExecutable("systemctl");
}

/** What this host can run. */
export function detectCapabilities(faultKinds: string[]): Capabilities {
  return create(CapabilitiesSchema, {
    faultKinds,
    root: process.getuid?.() === 0,
    netem: kernelHasNetem(),
    nftables: hasExecutable("nft"),
    tc: hasExecutable("tc"),
    systemd: hostRunsSystemd(),
  });
}
