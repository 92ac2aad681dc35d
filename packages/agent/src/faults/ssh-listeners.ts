/**
 * Finds the TCP ports sshd listens on in the agent's network namespace, so that network faults
 * leave them alone (with port 22, which is always left alone).
 *
 * How: the listening sockets (state 0A) of /proc/net/tcp and /proc/net/tcp6 give inode → port;
 * the processes named sshd (comm `sshd`, or argv[0] whose base name is `sshd` — `sshd:` as the
 * listener's title reads on Debian) are found in /proc/<pid>/comm and /proc/<pid>/cmdline; their
 * /proc/<pid>/fd links `socket:[inode]` say which of those sockets they hold. Synchronous (fault
 * validation is) and bounded: at most `maxProcesses` processes, `maxFdsPerProcess` descriptors
 * each, 256 bytes of each command line, and a time budget; a scan cut short says so.
 *
 * Any process may call itself sshd: that only makes more traffic excluded, never less.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync, readlinkSync } from "node:fs";
import { basename, join } from "node:path";

/** The port SSH is always excluded on, whatever listens there. */
export const SSH_PORT = 22;

/** What a scan found. */
export interface SshListenerScan {
  /** TCP ports a process named sshd listens on in this network namespace, ascending. */
  ports: number[];
  /** Why the scan stopped early, when it did (the ports found so far are still excluded). */
  incomplete?: string;
  /** How long the scan took, in ms. */
  tookMs: number;
}

/** Bounds and seams of a scan. */
export interface SshScanOptions {
  /** @default "/proc" */
  procRoot?: string;
  /** Processes looked at, at most. @default 32768 */
  maxProcesses?: number;
  /** File descriptors read per sshd process, at most. @default 4096 */
  maxFdsPerProcess?: number;
  /** Time budget of the whole scan. @default 250 */
  budgetMs?: number;
}

const LISTEN = "0A";
const CMDLINE_BYTES = 256;

/** Listening TCP sockets of this network namespace: inode → local port. */
export function listeningTcpSockets(procRoot = "/proc"): Map<string, number> {
  const byInode = new Map<string, number>();
  for (const file of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(join(procRoot, "net", file), "utf8");
    } catch {
      continue; // no IPv6, or no such file
    }
    // "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== LISTEN) continue;
      const local = f[1]!;
      const port = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      const inode = f[9]!;
      if (Number.isInteger(port) && port > 0 && inode !== "0") byInode.set(inode, port);
    }
  }
  return byInode;
}

/** The first `CMDLINE_BYTES` of a process's command line, or "" (kernel thread, gone, refused). */
function readArgv0(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const buf = Buffer.alloc(CMDLINE_BYTES);
    const n = readSync(fd, buf, 0, CMDLINE_BYTES, 0);
    return buf.subarray(0, n).toString("utf8").split("\0")[0] ?? "";
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Whether a process's comm or argv[0] names sshd. */
export function isSshdName(comm: string, argv0: string): boolean {
  if (comm.trim() === "sshd") return true;
  // "/usr/sbin/sshd", "sshd", "sshd: /usr/sbin/sshd -D [listener] ..." (the listener's title)
  const first = argv0.trim().split(/\s/)[0] ?? "";
  return basename(first.replace(/:$/, "")) === "sshd";
}

/**
 * The TCP ports sshd listens on in this network namespace (read now).
 * Never throws: what cannot be read is skipped, and a scan cut short says why in `incomplete`.
 */
export function findSshListenPorts(opts: SshScanOptions = {}): SshListenerScan {
  const started = performance.now();
  const procRoot = opts.procRoot ?? "/proc";
  const maxProcesses = opts.maxProcesses ?? 32_768;
  const maxFds = opts.maxFdsPerProcess ?? 4096;
  const budgetMs = opts.budgetMs ?? 250;
  const done = (ports: Set<number>, incomplete?: string): SshListenerScan => ({
    ports: [...ports].sort((a, b) => a - b),
    ...(incomplete ? { incomplete } : {}),
    tookMs: Math.round((performance.now() - started) * 10) / 10,
  });
  const found = new Set<number>();
  const sockets = listeningTcpSockets(procRoot);
  if (sockets.size === 0) return done(found);

  let pids: string[];
  try {
    pids = readdirSync(procRoot)
      .filter((n) => /^\d+$/.test(n))
      .sort((a, b) => Number(a) - Number(b));
  } catch (err) {
    return done(found, `cannot list ${procRoot}: ${(err as Error).message}`);
  }
  let looked = 0;
  for (const pid of pids) {
    if (looked >= maxProcesses) return done(found, `stopped after ${maxProcesses} of ${pids.length} processes`);
    if (performance.now() - started > budgetMs) return done(found, `stopped after ${budgetMs} ms, ${looked} of ${pids.length} processes looked at`);
    looked++;
    let comm = "";
    try {
      comm = readFileSync(join(procRoot, pid, "comm"), "utf8");
    } catch {
      continue; // gone
    }
    if (!isSshdName(comm, comm.trim() === "sshd" ? "" : readArgv0(join(procRoot, pid, "cmdline")))) continue;
    let fds: string[];
    try {
      fds = readdirSync(join(procRoot, pid, "fd"));
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds.slice(0, maxFds)) {
      let target: string;
      try {
        target = readlinkSync(join(procRoot, pid, "fd", fd));
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      const port = m ? sockets.get(m[1]!) : undefined;
      if (port !== undefined) found.add(port);
    }
  }
  return done(found);
}
