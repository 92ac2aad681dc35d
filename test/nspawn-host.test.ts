/**
 * The systemd-nspawn host harness (test/support/nspawn-host.ts) itself: a real Debian host boots
 * with systemd, runs commands, reaches the test's listener over its own link, reboots with its disk
 * kept and its /run emptied, and leaves nothing behind when stopped.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo, Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStale, ensureRoot, nspawnAvailable, startHost } from "./support/nspawn-host.js";
import { ROOT } from "./support/processes.js";
import type { NspawnHost } from "./support/nspawn-host.js";

/** Whether a process is gone (a zombie waiting for the machine's init to reap it counts as gone). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

const availability = nspawnAvailable();
const skipReason = availability.ok ? undefined : availability.why;
if (skipReason) console.log(`skipping the systemd-nspawn host tests: ${skipReason}`);

describe.skipIf(!!skipReason)("systemd-nspawn hosts", () => {
  let host: NspawnHost | undefined;
  let lower: string;
  const tempDirs: string[] = [];

  beforeAll(async () => {
    const stale = cleanupStale();
    if (stale.length > 0) console.log(`removed leftovers of dead test processes: ${stale.join(", ")}`);
    let t = Date.now();
    lower = await ensureRoot();
    console.log(`cached root ${lower} ready in ${Date.now() - t} ms`);
    t = Date.now();
    host = await startHost({ name: "basic" });
    console.log(`host ${host.machine} booted to running in ${Date.now() - t} ms`);
  }, 900_000);

  afterAll(async () => {
    await host?.stop();
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });

  it("boots systemd to running, and commands run in the container", async () => {
    const h = host!;
    const state = await h.exec(["systemctl", "is-system-running"]);
    expect(state.stdout.trim()).toBe("running");
    expect((await h.exec(["cat", "/proc/1/comm"])).stdout.trim()).toBe("systemd");
    expect((await h.exec(["cat", "/etc/debian_version"])).stdout).toMatch(/^12\./);
    expect((await h.exec(["hostname"])).stdout.trim()).toBe(h.machine);
    // the container's files, not the machine's
    expect((await h.exec(["test", "-e", "/work/main/package.json"])).code).not.toBe(0);
    // its own systemd answers: a transient unit runs and its output lands in the container's journal
    const unit = await h.exec(["systemd-run", "--wait", "--quiet", "--unit=fdn-probe", "sh", "-c", "echo from-a-unit"]);
    expect(unit.code).toBe(0);
    expect((await h.exec(["journalctl", "-u", "fdn-probe", "--no-pager", "-o", "cat"])).stdout).toContain("from-a-unit");
    // stdin, exit codes and the environment pass through
    const echo = await h.exec(["sh", "-c", 'cat; echo "$FOO"; exit 3'], { input: "in\n", env: { FOO: "bar" } });
    expect(echo).toEqual({ code: 3, stdout: "in\nbar\n", stderr: "" });
    await expect(h.exec(["sleep", "5"], { timeoutMs: 300 })).rejects.toThrow(/timed out after 300 ms/);
    // the network faults' tools work in it (CAP_NET_ADMIN in its own namespace)
    expect((await h.exec(["nft", "list", "tables"])).code).toBe(0);
    expect((await h.exec(["tc", "qdisc", "show", "dev", "host0"])).code).toBe(0);
  });

  it("reaches a listener on the machine's side of its link, over its own interface", async () => {
    const h = host!;
    let server!: Server;
    const received = new Promise<string>((resolve) => {
      server = createServer((socket) => {
        let data = "";
        socket.on("data", (d) => (data += d.toString()));
        socket.on("end", () => resolve(data));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, h.hostAddress, resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const send = await h.exec(["bash", "-c", `echo hi > /dev/tcp/${h.hostAddress}/${port}`], { timeoutMs: 10_000 });
      expect(send.code, send.stderr).toBe(0);
      expect(await received).toBe("hi\n");
      const route = await h.exec(["ip", "-4", "route", "get", h.hostAddress]);
      expect(route.stdout).toContain("dev host0");
      expect((await h.exec(["ip", "-4", "-br", "addr", "show", "host0"])).stdout).toContain(`${h.containerAddress}/24`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("copies files in through the container's own tools", async () => {
    const h = host!;
    const dir = mkdtempSync(join(tmpdir(), "fdn-copy-"));
    tempDirs.push(dir);
    writeFileSync(join(dir, "tool.sh"), "#!/bin/sh\necho copied\n", { mode: 0o750 });
    await h.copyIn(join(dir, "tool.sh"), "/usr/local/bin/fdn-tool");
    expect((await h.exec(["fdn-tool"])).stdout).toBe("copied\n");
    expect((await h.exec(["stat", "-c", "%a", "/usr/local/bin/fdn-tool"])).stdout.trim()).toBe("750");
    await h.copyIn(dir, "/opt/fdn-dir");
    expect((await h.exec(["cat", "/opt/fdn-dir/tool.sh"])).stdout).toBe("#!/bin/sh\necho copied\n");
    // the cached root is the overlay's lower dir: never written
    expect(existsSync(join(lower, "usr/local/bin/fdn-tool"))).toBe(false);
  });

  it("reboots: the disk survives, /run does not, the machine id stays; a reboot from inside comes back too", async () => {
    const h = host!;
    await h.exec(["sh", "-c", "echo disk > /root/fdn-marker && echo run > /run/fdn-marker"]);
    const machineId = (await h.exec(["cat", "/etc/machine-id"])).stdout.trim();
    expect(machineId).toMatch(/^[0-9a-f]{32}$/);
    const initBefore = h.initPid;
    const bootsBefore = h.boots;

    let t = Date.now();
    await h.reboot();
    console.log(`host ${h.machine} rebooted (systemctl reboot to running) in ${Date.now() - t} ms`);
    expect(h.boots).toBe(bootsBefore + 1);
    expect(h.initPid).not.toBe(initBefore);
    expect((await h.exec(["systemctl", "is-system-running"])).stdout.trim()).toBe("running");
    expect((await h.exec(["cat", "/root/fdn-marker"])).stdout).toBe("disk\n");
    expect((await h.exec(["test", "-e", "/run/fdn-marker"])).code).not.toBe(0);
    expect((await h.exec(["cat", "/etc/machine-id"])).stdout.trim()).toBe(machineId);

    // a reboot that the container starts by itself (as an agent's host might): it comes back
    t = Date.now();
    await h.exec(["systemctl", "reboot"]).catch(() => undefined);
    const deadline = Date.now() + 60_000;
    while (h.boots < bootsBefore + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(h.boots).toBe(bootsBefore + 2);
    expect(await h.waitRunning(60_000)).toBe("running");
    console.log(`host ${h.machine} came back from its own reboot in ${Date.now() - t} ms`);
    expect((await h.exec(["cat", "/root/fdn-marker"])).stdout).toBe("disk\n");
  });

  it("pulling the plug kills every process at once; boot() starts it again", async () => {
    const h = host!;
    await h.exec(["systemd-run", "--unit=fdn-sleeper", "sleep", "600"]);
    const sleeper = Number((await h.exec(["systemctl", "show", "-p", "MainPID", "--value", "fdn-sleeper"])).stdout.trim());
    expect(sleeper).toBeGreaterThan(1);
    const init = h.initPid!;
    await h.kill();
    expect(h.running).toBe(false);
    expect(existsSync(`/proc/${init}`)).toBe(false);
    const t = Date.now();
    await h.boot();
    console.log(`host ${h.machine} booted again after a power cut in ${Date.now() - t} ms`);
    expect((await h.exec(["systemctl", "is-active", "fdn-sleeper"])).stdout.trim()).not.toBe("active");
  });

  it("stop() leaves no process, mount, network namespace, veth, claim or temp dir", async () => {
    const h = host!;
    // the container's processes, as the machine sees them: init, journald, dbus, logind…
    const procs = execFileSync("ip", ["netns", "pids", h.netns], { encoding: "utf8" }).split(/\s+/).filter(Boolean).map(Number);
    expect(procs).toContain(h.initPid);
    expect(procs.length).toBeGreaterThan(2);
    const tempDir = join(h.rootDir, "..");
    const subnet = h.hostAddress.split(".")[2]!;
    const t = Date.now();
    await h.stop();
    console.log(`host ${h.machine} stopped and removed in ${Date.now() - t} ms`);
    host = undefined;
    for (const pid of procs) expect(gone(pid), `pid ${pid}`).toBe(true);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(tempDir);
    expect(existsSync(`/run/netns/${h.netns}`)).toBe(false);
    expect(existsSync(`/sys/class/net/${h.hostInterface}`)).toBe(false);
    expect(existsSync(`/run/firedrill-test/subnets/${subnet}`)).toBe(false);
    expect(existsSync(tempDir)).toBe(false);
    expect(execFileSync("ip", ["-4", "-o", "addr", "show"], { encoding: "utf8" })).not.toContain(h.hostAddress);
    // again: nothing to do, no error
    await h.stop();
    // the cached root is intact
    expect(existsSync(join(lower, "etc/firedrill-test-root"))).toBe(true);
    expect(existsSync(join(lower, "root/fdn-marker"))).toBe(false);
  });

  it("cleanupStale() removes the host of a test process killed with SIGKILL (no exit handler ran)", { timeout: 120_000 }, async () => {
    const script = `import { startHost } from ${JSON.stringify(join(ROOT, "test/support/nspawn-host.ts"))};
      const h = await startHost({ name: "orphan" });
      console.log(JSON.stringify({ netns: h.netns, hostIf: h.hostInterface, rootDir: h.rootDir, init: h.initPid, subnet: h.hostAddress.split(".")[2] }));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    try {
      let out = "";
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("}\n")) resolve(out.slice(0, out.indexOf("}\n") + 1));
        });
        child.once("exit", (code) => reject(new Error(`the child exited ${code}: ${out}`)));
        setTimeout(() => reject(new Error(`the child did not start its host in 60 s: ${out}`)), 60_000);
      });
      const left = JSON.parse(line) as { netns: string; hostIf: string; rootDir: string; init: number; subnet: string };
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      // its host outlives it: the container runs on
      expect(gone(left.init)).toBe(false);
      expect(existsSync(`/run/netns/${left.netns}`)).toBe(true);

      const removed = cleanupStale();
      expect(removed.join(" ")).toContain(left.netns);
      expect(gone(left.init)).toBe(true);
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(left.rootDir);
      expect(existsSync(`/run/netns/${left.netns}`)).toBe(false);
      expect(existsSync(`/sys/class/net/${left.hostIf}`)).toBe(false);
      expect(existsSync(`/run/firedrill-test/subnets/${left.subnet}`)).toBe(false);
      expect(existsSync(join(left.rootDir, ".."))).toBe(false);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
