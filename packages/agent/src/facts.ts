/**
 * Host facts (systeminformation) and capabilities, sent in the Hello.
 */
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { CapabilitiesSchema, FilesystemSchema, HostFactsSchema, NetworkInterfaceSchema } from "@firedrill/protocol";
import type { Capabilities, HostFacts } from "@firedrill/protocol";
import si from "systeminformation";
import type { Ec2Identity } from "./imds.js";

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

/** Whether an executable named `name` is on PATH (or in the sbin dirs root uses). */
export function hasExecutable(name: string): boolean {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin"];
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Whether the running kernel can provide sch_netem: loaded, built in, or available as a module.
 */
export function kernelHasNetem(): boolean {
  if (existsSync("/sys/module/sch_netem")) return true;
  try {
    const release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    const modules = readFileSync(`/lib/modules/${release}/modules.dep`, "utf8");
    if (/\/sch_netem\.ko/.test(modules)) return true;
    return readFileSync(`/lib/modules/${release}/modules.builtin`, "utf8").includes("sch_netem.ko");
  } catch {
    return false;
  }
}

/** What this host can run. */
export function detectCapabilities(faultKinds: string[]): Capabilities {
  return create(CapabilitiesSchema, {
    faultKinds,
    root: process.getuid?.() === 0,
    netem: kernelHasNetem(),
    nftables: hasExecutable("nft"),
    tc: hasExecutable("tc"),
  });
}
