import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findSshListenPorts, isSshdName, listeningTcpSockets } from "./ssh-listeners.js";

const HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
/** One /proc/net/tcp line. */
const tcpLine = (local: string, state: string, inode: number) =>
  `   0: ${local} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A /proc tree: listening sockets and processes holding them. */
function fakeProc(procs: { pid: number; comm: string; cmdline: string; sockets: number[] }[]): string {
  const root = mkdtempSync(join(tmpdir(), "firedrill-fakeproc-"));
  dirs.push(root);
  mkdirSync(join(root, "net"));
  writeFileSync(
    join(root, "net", "tcp"),
    HEADER +
      tcpLine("00000000:0016", "0A", 1001) + // 0.0.0.0:22 LISTEN
      tcpLine("0100007F:08AE", "0A", 1002) + // 127.0.0.1:2222 LISTEN
      tcpLine("00000000:1F90", "0A", 1003) + // 0.0.0.0:8080 LISTEN
      tcpLine("0600D50A:0016", "01", 1004), // 10.213.0.6:22 ESTABLISHED (a session, not a listener)
  );
  writeFileSync(join(root, "net", "tcp6"), HEADER + tcpLine("00000000000000000000000000000000:0B22", "0A", 1005)); // [::]:2850
  for (const p of procs) {
    const dir = join(root, String(p.pid));
    mkdirSync(join(dir, "fd"), { recursive: true });
    writeFileSync(join(dir, "comm"), `${p.comm}\n`);
    writeFileSync(join(dir, "cmdline"), p.cmdline);
    symlinkSync("/dev/null", join(dir, "fd", "0"));
    p.sockets.forEach((inode, i) => symlinkSync(`socket:[${inode}]`, join(dir, "fd", String(i + 3))));
  }
  return root;
}

describe("finding the ports sshd listens on", () => {
  it("reads listening sockets (state 0A) of tcp and tcp6: inode → port", () => {
    const root = fakeProc([]);
    expect([...listeningTcpSockets(root)]).toEqual([["1001", 22], ["1002", 2222], ["1003", 8080], ["1005", 2850]]);
  });

  it.each([
    ["sshd", "", true],
    ["node", "sshd", true],
    ["node", "/usr/sbin/sshd", true],
    ["sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", true],
    ["python3", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", true],
    ["sshd-session", "sshd-session: root@pts/0", false],
    ["node", "node", false],
    ["notsshd", "/opt/notsshd", false],
  ])("comm %j, argv[0] %j: sshd %s", (comm, argv0, expected) => {
    expect(isSshdName(comm, argv0)).toBe(expected);
  });

  it("keeps the listening sockets held by a process named sshd (comm or argv[0]), nothing else", () => {
    const root = fakeProc([
      { pid: 10, comm: "sshd", cmdline: "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups\0", sockets: [1001, 1005] },
      { pid: 11, comm: "node", cmdline: "sshd\0/tmp/listener.js\0", sockets: [1002] },
      { pid: 12, comm: "node", cmdline: "node\0server.js\0", sockets: [1003] },
      { pid: 13, comm: "sshd-session", cmdline: "sshd-session: root@pts/0\0", sockets: [1004] },
    ]);
    const scan = findSshListenPorts({ procRoot: root });
    expect(scan.ports).toEqual([22, 2222, 2850]);
    expect(scan.incomplete).toBeUndefined();
  });

  it("bounded: stops after maxProcesses and says so (what it found so far still counts)", () => {
    const root = fakeProc([
      { pid: 10, comm: "sshd", cmdline: "sshd\0", sockets: [1001] },
      { pid: 11, comm: "sshd", cmdline: "sshd\0", sockets: [1002] },
    ]);
    const scan = findSshListenPorts({ procRoot: root, maxProcesses: 1 });
    expect(scan.ports).toEqual([22]);
    expect(scan.incomplete).toBe("stopped after 1 of 2 processes");
    expect(findSshListenPorts({ procRoot: root, budgetMs: -1 }).incomplete).toMatch(/^stopped after -1 ms, 0 of 2 processes looked at$/);
  });

  it("no listening sockets: nothing to look for; an unreadable /proc gives nothing, never a throw", () => {
    expect(findSshListenPorts({ procRoot: "/nonexistent-proc" }).ports).toEqual([]);
  });

  it("on this host for real: a TCP listener started as `exec -a sshd` is found, a plain one is not", async () => {
    const listener = (argv0: string) => {
      const child = spawn(process.execPath, ["-e", 'require("net").createServer().listen(0, "127.0.0.1", function () { console.log(this.address().port) })'], {
        argv0,
        stdio: ["ignore", "pipe", "inherit"],
      });
      const port = new Promise<number>((resolve) => child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
      return { child, port };
    };
    const sshd = listener("sshd");
    const plain = listener("node");
    try {
      const [sshdPort, plainPort] = await Promise.all([sshd.port, plain.port]);
      const scan = findSshListenPorts();
      console.log(`scan of this host's /proc: sshd ports ${JSON.stringify(scan.ports)} in ${scan.tookMs} ms`);
      expect(scan.ports).toContain(sshdPort);
      expect(scan.ports).not.toContain(plainPort);
    } finally {
      sshd.child.kill("SIGKILL");
      plain.child.kill("SIGKILL");
    }
  });
});
