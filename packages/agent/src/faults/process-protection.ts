/**
 * What process faults never signal, beyond PID 1, kernel threads and the agent itself: the
 * processes that keep the host reachable and manageable (sshd, systemd and its own daemons, the
 * container runtimes), every firedrill process (the control plane, other agents, their guards), the
 * process listening on the control plane's port when it runs on this host, and the rules of the
 * agent's own --protect-process (which the control plane cannot change). See docs/security.md.
 *
 * A process is protected when its name (comm, or the base name of argv[0], which `exec -a` and
 * setproctitle set: sshd's children read `sshd: user@pts/0`) or its systemd unit (from its cgroup)
 * says so. Renaming a process can only protect it more, never less.
 */
import { lookup } from "node:dns/promises";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { compileProcessPattern } from "@firedrill/protocol";
import type { ProcessPattern } from "@firedrill/protocol";
import type { ProcessProtectionConfig } from "./types.js";

/** What protection needs to know about a process. */
export interface ProtectedCandidate {
  pid: number;
  ppid: number;
  comm: string;
  /** The command line, arguments joined by spaces (its first 4 KiB). */
  cmdline: string;
}

/** A built-in protected name: exact, or a prefix. */
interface NameRule {
  name: string;
  prefix?: boolean;
  why: string;
}

const SSH = "sshd (SSH access to the host)";
const SYSTEMD = "systemd (init and the service manager)";
const SYSTEMD_DAEMON = "one of systemd's own daemons";
const RUNTIME = "a container runtime";

/** Built-in protected process names. */
export const PROTECTED_NAMES: readonly NameRule[] = [
  { name: "init", why: "init" },
  { name: "systemd", why: SYSTEMD },
  { name: "systemd-", prefix: true, why: SYSTEMD_DAEMON },
  { name: "dbus-daemon", why: "the D-Bus system bus (systemctl and logind need it)" },
  { name: "dbus-broker", prefix: true, why: "the D-Bus system bus (systemctl and logind need it)" },
  { name: "sshd", why: SSH },
  { name: "sshd-session", why: SSH },
  { name: "sshd-auth", why: SSH },
  { name: "containerd", why: RUNTIME },
  { name: "containerd-shim", prefix: true, why: RUNTIME },
  { name: "dockerd", why: RUNTIME },
  { name: "runc", why: RUNTIME },
  { name: "crio", why: RUNTIME },
  { name: "conmon", why: RUNTIME },
  { name: "podman", why: RUNTIME },
  { name: "kubelet", why: RUNTIME },
];

/**
 * Built-in protected systemd units (any process in their cgroup): systemd's own daemons, the system
 * bus, sshd's service (whatever its binary is called) and the container runtimes' services.
 */
const PROTECTED_UNITS: readonly { test: RegExp; why: string }[] = [
  { test: /^init\.scope$/, why: SYSTEMD },
  { test: /^systemd-[^/]*\.service$/, why: SYSTEMD_DAEMON },
  { test: /^dbus(-broker)?\.service$/, why: "the D-Bus system bus (systemctl and logind need it)" },
  { test: /^sshd?\.service$/, why: SSH },
  { test: /^(containerd|docker|crio|kubelet|podman)\.service$/, why: RUNTIME },
];

/** One --protect-process rule, compiled. */
export interface ProtectionRule {
  /** The rule as written. */
  text: string;
  test(p: ProtectedCandidate, unitsOf: () => string[]): boolean;
}

const UNIT_NAME = /^[A-Za-z0-9@._:\\-]{1,255}$/;
const RULE_NAME = /^[^\s/*]{1,64}\*?$/;

/**
 * Compiles a --protect-process rule: `NAME` (exact process name or argv[0] base name; `NAME*`
 * matches a prefix), `/REGEX/` (RE2, on the command line), or `unit:NAME` (a systemd unit).
 * Thrown when the rule is malformed: Error with a message saying what is allowed.
 */
export function parseProtectionRule(text: string): ProtectionRule {
  const rule = text.trim();
  if (rule.startsWith("unit:")) {
    const unit = rule.slice("unit:".length);
    if (!UNIT_NAME.test(unit)) {
      throw new Error(`"${text}": unit:NAME needs a systemd unit name such as unit:postgresql.service`);
    }
    return { text: rule, test: (_p, unitsOf) => unitsOf().includes(unit) };
  }
  if (rule.startsWith("/")) {
    if (rule.length < 3 || !rule.endsWith("/")) {
      throw new Error(`"${text}": a command-line pattern is written /REGEX/, e.g. /java .*-Dapp=billing/`);
    }
    let pattern: ProcessPattern;
    try {
      pattern = compileProcessPattern(rule.slice(1, -1));
    } catch (err) {
      throw new Error(`"${text}": the pattern ${(err as Error).message}`);
    }
    return { text: rule, test: (p) => pattern.test(p.cmdline) };
  }
  if (!RULE_NAME.test(rule)) {
    throw new Error(
      `"${text}": use a process name (e.g. postgres, or nginx* for a prefix), /REGEX/ for the command line, or unit:NAME for a systemd unit`,
    );
  }
  const prefix = rule.endsWith("*");
  const name = prefix ? rule.slice(0, -1) : rule;
  return { text: rule, test: (p) => namesOf(p).some((n) => (prefix ? n.startsWith(name) : n === name)) };
}

/** The names a process goes by: comm, and the base name of argv[0] (`sshd:` → `sshd`). */
export function namesOf(p: ProtectedCandidate): string[] {
  const argv0 = p.cmdline.split(" ", 1)[0] ?? "";
  const base = argv0.slice(argv0.lastIndexOf("/") + 1).replace(/:$/, "");
  return base !== "" && base !== p.comm ? [p.comm, base] : [p.comm];
}

/** The systemd units (path components ending in .service or .scope) of a process's cgroups. */
export function readUnits(pid: number): string[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, "utf8");
  } catch {
    return [];
  }
  const units = new Set<string>();
  for (const line of text.split("\n")) {
    const path = line.slice(line.indexOf(":", line.indexOf(":") + 1) + 1);
    for (const part of path.split("/")) if (/\.(service|scope)$/.test(part)) units.add(part);
  }
  return [...units];
}

/**
 * The bundles of the release tarballs, wherever they are unpacked (/opt/firedrill/agent/<v>/lib/,
 * firedrill-agent-<v>-linux-<arch>/lib/): the agent and its guard, and the CLI.
 */
const RELEASE_AGENT = /(^|\/)firedrill[^/]*\/(.+\/)?lib\/(agent|guard)\.mjs$/;
const RELEASE_SERVER = /(^|\/)firedrill[^/]*\/(.+\/)?lib\/firedrill\.mjs$/;

/** Whether argv (split on spaces) runs the firedrill CLI or agent, and which. */
function firedrillRole(cmdline: string): string | undefined {
  const args = cmdline.split(" ");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const base = arg.slice(arg.lastIndexOf("/") + 1);
    if (base === "firedrill-agent" || /(^|\/)(packages|@firedrill)\/agent\/(src|dist)\/(guard-)?bin\.[jt]s$/.test(arg) || RELEASE_AGENT.test(arg)) {
      return "a firedrill agent or its guard";
    }
    if (base === "firedrill" || base === "firedrill.js" || RELEASE_SERVER.test(arg) || /(^|\/)(packages|@firedrill)\/cli\/(src|dist)\/bin\.[jt]s$/.test(arg)) {
      return args.slice(i + 1).includes("server") ? "the firedrill control plane" : undefined;
    }
  }
  return undefined;
}

/** Socket inodes listening on TCP `port` (IPv4 and IPv6) in this network namespace. */
export function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (field 9); st 0A is LISTEN.
      if (f.length > 9 && f[3] === "0A" && f[1]!.endsWith(`:${hexPort}`)) inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** Whether the process holds one of `inodes` among its open files. */
function holdsSocket(pid: number, inodes: ReadonlySet<string>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith("socket:[") && inodes.has(target.slice(8, -1))) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

const compiledRules = new Map<string, ProtectionRule>();

function rule(text: string): ProtectionRule {
  let compiled = compiledRules.get(text);
  if (!compiled) {
    compiled = parseProtectionRule(text);
    if (compiledRules.size > 1000) compiledRules.clear();
    compiledRules.set(text, compiled);
  }
  return compiled;
}

/**
 * Decides, for one selection, why a process must be left alone. Cheap checks first; the cgroup and
 * the open sockets are read only for processes that matched a selector.
 */
export function createProtection(config: ProcessProtectionConfig | undefined): (p: ProtectedCandidate) => string | undefined {
  const rules = (config?.rules ?? []).map(rule);
  const port = config?.controlPlanePort;
  let inodes: Set<string> | undefined;
  return (p) => {
    const names = namesOf(p);
    for (const r of PROTECTED_NAMES) {
      if (names.some((n) => (r.prefix ? n.startsWith(r.name) : n === r.name))) return r.why;
    }
    const role = firedrillRole(p.cmdline);
    if (role) return role;
    let units: string[] | undefined;
    const unitsOf = () => (units ??= readUnits(p.pid));
    for (const unit of unitsOf()) {
      const found = PROTECTED_UNITS.find((u) => u.test.test(unit));
      if (found) return `${found.why} (${unit})`;
    }
    const local = rules.find((r) => r.test(p, unitsOf));
    if (local) return `protected by this agent's --protect-process ${local.text}`;
    if (port !== undefined) {
      inodes ??= listeningInodes(port);
      if (inodes.size > 0 && holdsSocket(p.pid, inodes)) return `listens on the control plane's port ${port}`;
    }
    return undefined;
  };
}

/**
 * The control plane's port when `server` (host:port) is this host (a loopback address, or one of
 * its interfaces' addresses), else undefined: whatever listens on that port is then protected.
 */
export async function localControlPlanePort(server: string): Promise<number | undefined> {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(server) ?? /^([^:]+):(\d+)$/.exec(server);
  if (!match) return undefined;
  const host = match[1]!;
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return undefined;
  }
  const local = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)));
  const isLocal = (a: string) => local.has(a) || a.startsWith("127.") || a === "::1" || a === "0.0.0.0" || a === "::";
  return addresses.some(isLocal) ? Number(match[2]) : undefined;
}
