/**
 * Process selection against real processes: catastrophic patterns on long crafted command lines
 * (bounded time, the event loop keeps turning), the 4 KiB command-line cap, the maxProcesses
 * refusal, and the protections (sshd, container runtimes, the control plane, local rules) shown on
 * processes this test starts under those names: they are skipped, reported, and survive a SIGKILL
 * fault that matches them.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import { FaultEventType, RevertReason, StartFaultSchema, durationFromMs } from "@firedrill/protocol";
import type { FaultEvent } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Journal } from "../journal.js";
import { readProcessStartTime } from "../proc.js";
import { FaultRuntime } from "../runtime.js";
import { createFaultRegistry } from "./index.js";
import { processKill } from "./process-kill.js";
import { parseProtectionRule } from "./process-protection.js";
import { readProcess, selectProcesses } from "./process-select.js";
import type { Selection } from "./process-select.js";
import { processStop } from "./process-stop.js";
import type { FaultContext, FaultKindDefinition, HostInfo, RunningFault } from "./types.js";

const log = pino({ level: "silent" });

interface Spawned {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const spawned: Spawned[] = [];
const running: RunningFault[] = [];
let dir: string;
/** A marker unique to this test run: every process it starts carries it in its command line. */
const MARK = `fdsel${randomBytes(4).toString("hex")}`;

function track(child: ChildProcess): Spawned {
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const s = { child, pid: child.pid!, exited };
  spawned.push(s);
  return s;
}

/** `sleep 1000` whose argv[0] is `argv0` (bash's `exec -a`): same pid, command line `argv0 1000`. */
function sleepAs(argv0: string): Spawned {
  return track(spawn("bash", ["-c", 'exec -a "$0" sleep 1000', argv0], { stdio: "ignore" }));
}

/** A copy of sleep under the file name `name` (so its comm is `name`). */
function sleepNamed(name: string, ...args: string[]): Spawned {
  const path = join(dir, name);
  if (!existsSync(path)) {
    copyFileSync("/bin/sleep", path);
    chmodSync(path, 0o755);
  }
  return track(spawn(path, args.length > 0 ? args : ["1000"], { stdio: "ignore" }));
}

/** Waits until the process has exec'd (its command line is no longer bash's). */
async function execd(s: Spawned, expect: (cmdline: string) => boolean): Promise<void> {
  const until = Date.now() + 5000;
  while (!expect(readProcess(s.pid)?.cmdline ?? "")) {
    if (Date.now() > until) throw new Error(`process ${s.pid} did not exec in time`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function alive(s: Spawned): boolean {
  return s.child.exitCode === null && s.child.signalCode === null;
}

const host = (extra: Partial<HostInfo> = {}): HostInfo => ({
  cpuCount: 2,
  stateDir: "/tmp",
  protectedPids: () => [1, process.pid, process.ppid],
  networkExclusions: [],
  ...extra,
});

const ctx = (h: HostInfo): FaultContext => ({ faultId: `sel-${MARK}`, log, host: h, updateRevert: () => {} });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), `fd-${MARK}-`));
});

afterEach(async () => {
  for (const r of running.splice(0)) await r.revert();
  for (const s of spawned.splice(0)) {
    if (alive(s)) s.child.kill("SIGKILL");
    await s.exited;
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("patterns: linear time on crafted command lines", () => {
  it("catastrophic patterns select within 1 s each while an event-loop probe keeps firing", async () => {
    // Long command lines made for each pattern's worst case (4000+ characters, under the 4 KiB cap).
    const as = sleepAs(`${"a".repeat(4000)}`); // ^(a+)+$, (a|aa)+$: "aaaa…a 1000"
    const fewA = sleepAs(`${"a".repeat(19)}${"b".repeat(4000)}`); // (.*a){20}: only 19 a's
    const noX = sleepAs(`${"x".repeat(4000)}`); // ^([^X]+)+X: no X anywhere
    await Promise.all([as, fewA, noX].map((s) => execd(s, (c) => c.endsWith(" 1000") && !c.startsWith("bash"))));

    let ticks = 0;
    let last = performance.now();
    let maxGap = 0;
    const probe = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 5);
    const timings: Record<string, number> = {};
    try {
      for (const pattern of ["^(a+)+$", "^([^X]+)+X", "(a|aa)+$", "(.*a){20}", "^(a+)+ 1000$"]) {
        await new Promise((r) => setTimeout(r, 20)); // let the probe tick between selections
        const t0 = performance.now();
        const selection = selectProcesses({ pattern, maxProcesses: 1000 }, host());
        timings[pattern] = performance.now() - t0;
        expect(timings[pattern], pattern).toBeLessThan(1000);
        if (pattern === "^(a+)+ 1000$") expect(selection.selected.map((p) => p.pid)).toEqual([as.pid]);
        if (pattern === "(.*a){20}") expect(selection.selected.map((p) => p.pid)).not.toContain(fewA.pid);
      }
    } finally {
      clearInterval(probe);
    }
    console.log(
      `selection over every process (${spawned.length} crafted 4 KiB command lines among them):`,
      Object.entries(timings).map(([p, ms]) => `${p} ${ms.toFixed(1)}ms`).join(", "),
      `| event-loop probe: ${ticks} ticks, longest gap ${maxGap.toFixed(1)}ms`,
    );
    expect(ticks).toBeGreaterThan(5);
    expect(maxGap).toBeLessThan(1000);
    expect([as, fewA, noX].every(alive)).toBe(true);
  });

  it("process-kill with a catastrophic pattern kills exactly its match, quickly", async () => {
    const target = sleepAs("a".repeat(4000));
    const bystander = sleepAs(`${"a".repeat(3999)}b`);
    await Promise.all([target, bystander].map((s) => execd(s, (c) => c.endsWith(" 1000") && !c.startsWith("bash"))));
    const t0 = performance.now();
    const plan = processKill.validate({ pattern: "^(a+)+ 1000$", signal: "SIGKILL" }, host());
    running.push(await processKill.start(plan, ctx(host())));
    expect(await target.exited).toEqual({ code: null, signal: "SIGKILL" });
    const ms = performance.now() - t0;
    console.log(`process-kill pattern ^(a+)+ 1000$ on a 4005-character command line: killed in ${ms.toFixed(1)}ms`);
    expect(ms).toBeLessThan(1000);
    expect(alive(bystander)).toBe(true);
  });

  it("a 1 s repeat-kill scanning crafted command lines with ^(a+)+$ every 100 ms still ends on time (its duration timer is not starved)", async () => {
    const crafted = [sleepAs("a".repeat(4000)), sleepAs("a".repeat(3000))];
    await Promise.all(crafted.map((s) => execd(s, (c) => c.endsWith(" 1000") && !c.startsWith("bash"))));
    const stateDir = join(dir, "state");
    const events: FaultEvent[] = [];
    const runtime = new FaultRuntime({
      registry: createFaultRegistry([processKill as FaultKindDefinition]),
      journal: new Journal(stateDir),
      host: host({ stateDir }),
      log,
      holder: { pid: process.pid, startTime: readProcessStartTime(process.pid)! },
      emit: (e) => events.push(e),
    });
    const t0 = performance.now();
    await runtime.start(
      create(StartFaultSchema, {
        faultId: `rk-${MARK}`,
        kind: "process-kill",
        params: { pattern: "^(a+)+$", repeatEvery: "100ms", signal: "KILL" },
        duration: durationFromMs(1000),
      }),
    );
    const until = Date.now() + 10_000;
    while (!events.some((e) => e.type === FaultEventType.REVERTED) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const endedAfterMs = performance.now() - t0;
    const reverted = events.find((e) => e.type === FaultEventType.REVERTED);
    console.log(`1 s process-kill (^(a+)+$ every 100ms over crafted 4 KiB command lines): reverted (duration) after ${endedAfterMs.toFixed(0)}ms, ${reverted?.measurements.rounds} rounds`);
    expect(reverted?.reason).toBe(RevertReason.DURATION);
    expect(endedAfterMs).toBeLessThan(3000);
    expect(crafted.every(alive)).toBe(true); // ^(a+)+$ matches neither ("aaa… 1000")
  });

  it("matches only the first 4 KiB of a command line", async () => {
    const long = sleepAs(`head-${MARK}-${"p".repeat(5000)}-tail-${MARK}`);
    await execd(long, (c) => c.startsWith(`head-${MARK}`));
    expect(readProcess(long.pid)!.cmdline).toHaveLength(4096);
    expect(selectProcesses({ pattern: `head-${MARK}`, maxProcesses: 10 }, host()).selected.map((p) => p.pid)).toEqual([long.pid]);
    expect(selectProcesses({ pattern: `tail-${MARK}`, maxProcesses: 10 }, host()).selected).toEqual([]);
  });

  it("a selection over its time budget is refused, not cut short", () => {
    const table = Array.from({ length: 100 }, (_, i) => ({ pid: 1000 + i, startTime: 1, comm: "w", cmdline: "w", ppid: 500, state: "S" }));
    expect(() => selectProcesses({ pattern: "w", maxProcesses: 1000 }, host(), { processes: table, budgetMs: 0 })).toThrow(
      /^params\.pattern: matching pattern \/w\/ took longer than 0ms on this host \(\d+ of 100 processes checked\); use a shorter, more literal pattern, or select by name or pid$/,
    );
  });
});

describe("maxProcesses", () => {
  it("a name matching more than maxProcesses is refused with the count and the first names; nothing is signalled", async () => {
    const name = `fdm${randomBytes(3).toString("hex")}`;
    const five = Array.from({ length: 5 }, () => sleepNamed(name));
    await Promise.all(five.map((s) => execd(s, (c) => c.includes(name))));
    let error = "";
    try {
      processKill.validate({ name, signal: "SIGKILL", maxProcesses: 3 }, host());
    } catch (err) {
      error = (err as Error).message;
    }
    expect(error).toMatch(new RegExp(`^params\\.name: 5 processes match name "${name}", more than maxProcesses 3: \\d+ \\(${name}\\)(, \\d+ \\(${name}\\)){4}; narrow the selection, or raise maxProcesses \\(at most 1000\\) if that many is really meant$`));
    for (const s of five) expect(error).toContain(`${s.pid} (${name})`);
    expect(() => processStop.validate({ name, maxProcesses: 4 }, host())).toThrow("5 processes match");
    await new Promise((r) => setTimeout(r, 100));
    expect(five.every(alive)).toBe(true);
    for (const s of five) expect(readProcess(s.pid)!.state).not.toBe("T");
  });
});

describe("protections", () => {
  /** Processes named like what must never be signalled, each carrying MARK, plus one victim. */
  async function lookalikes() {
    const p = {
      sshdByArgv0: sleepAs(`sshd: ${MARK}@pts/7`), // exec -a, like sshd's setproctitle
      sshdByName: sleepNamed("sshd"), // comm "sshd" (its path holds MARK)
      containerd: sleepAs(`containerd ${MARK}`),
      shim: sleepNamed("containerd-shim-runc-v2"),
      dockerd: sleepAs(`/usr/bin/dockerd ${MARK}`),
      kubelet: sleepAs(`kubelet ${MARK}`),
      journald: sleepAs(`/lib/systemd/systemd-journald ${MARK}`),
      controlPlane: track(
        spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)", `/opt/${MARK}/packages/cli/src/bin.ts`, "server", "--data-dir", "/x"], { stdio: "ignore" }),
      ),
      otherAgent: track(
        spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)", `/opt/${MARK}/node_modules/@firedrill/agent/dist/bin.js`, "guard", "--state-dir", "/x"], { stdio: "ignore" }),
      ),
      // Installed from the release tarballs (bin/firedrill-agent runs node on lib/agent.mjs; the
      // agent starts lib/guard.mjs; bin/firedrill server runs lib/firedrill.mjs).
      installedGuard: track(
        spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)", `/opt/firedrill-${MARK}/agent/0.1.0/lib/guard.mjs`, "--state-dir", "/x"], { stdio: "ignore" }),
      ),
      installedServer: track(
        spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)", `/opt/firedrill-server-${MARK}/lib/firedrill.mjs`, "server", "--data-dir", "/x"], { stdio: "ignore" }),
      ),
      listener: track(
        spawn(process.execPath, ["-e", "require('net').createServer().listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port)) })", MARK], {
          stdio: ["ignore", "pipe", "ignore"],
        }),
      ),
      localName: sleepNamed(`pg-${MARK}`.slice(0, 15)),
      localPrefix: sleepAs(`billing-worker-3 ${MARK}`),
      localPattern: sleepAs(`java -Dapp=ledger ${MARK}`),
      victim: sleepAs(`victim ${MARK}`),
    };
    const port = await new Promise<number>((resolve) => p.listener.child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString()))));
    for (const s of Object.values(p)) await execd(s, (c) => c.includes(MARK) && !c.startsWith("bash"));
    const protectedHost = host({
      processProtection: {
        rules: [`pg-${MARK}`.slice(0, 15), "billing-*", "/-Dapp=ledger /"],
        controlPlanePort: port,
      },
    });
    return { p, port, protectedHost };
  }

  it("sshd, systemd's daemons, container runtimes, the control plane, its port's listener and local rules are skipped and reported; a SIGKILL fault matching them all hits only the victim", async () => {
    const { p, port, protectedHost } = await lookalikes();
    const selection: Selection = selectProcesses({ pattern: MARK, maxProcesses: 100 }, protectedHost);
    expect(selection.selected.map((x) => x.pid)).toEqual([p.victim.pid]);
    const reasons = new Map(selection.skipped.map((s) => [s.process.pid, s.reason]));
    expect(Object.fromEntries(Object.entries(p).filter(([k]) => k !== "victim").map(([k, s]) => [k, reasons.get(s.pid)]))).toEqual({
      sshdByArgv0: "sshd (SSH access to the host)",
      sshdByName: "sshd (SSH access to the host)",
      containerd: "a container runtime",
      shim: "a container runtime",
      dockerd: "a container runtime",
      kubelet: "a container runtime",
      journald: "one of systemd's own daemons",
      controlPlane: "the firedrill control plane",
      otherAgent: "a firedrill agent or its guard",
      installedGuard: "a firedrill agent or its guard",
      installedServer: "the firedrill control plane",
      listener: `listens on the control plane's port ${port}`,
      localName: `protected by this agent's --protect-process ${`pg-${MARK}`.slice(0, 15)}`,
      localPrefix: "protected by this agent's --protect-process billing-*",
      localPattern: "protected by this agent's --protect-process /-Dapp=ledger /",
    });

    // The dry run says the same, and touches nothing.
    const preview = await processKill.preview!(processKill.validate({ pattern: MARK, signal: "KILL" }, protectedHost), protectedHost);
    expect(preview.matched).toBe(1);
    expect(preview.processes).toEqual([{ pid: p.victim.pid, name: "sleep", cmdline: `victim ${MARK} 1000` }]);
    expect(preview.details[0]).toBe(`sends SIGKILL to 1 process matching pattern /${MARK}/`);
    expect(preview.details).toContain(`leaves alone ${p.sshdByArgv0.pid} (sleep): sshd (SSH access to the host)`);
    expect(preview.details).toContain("leaves alone 5 more protected processes");

    const plan = processKill.validate({ pattern: MARK, signal: "SIGKILL" }, protectedHost);
    const fault = await processKill.start(plan, ctx(protectedHost));
    running.push(fault);
    expect(await p.victim.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(fault.details).toContain(`leaves alone ${p.sshdByName.pid} (sshd): sshd (SSH access to the host)`);
    await new Promise((r) => setTimeout(r, 200));
    const survivors = Object.entries(p).filter(([k]) => k !== "victim");
    expect(survivors.filter(([, s]) => !alive(s)).map(([k]) => k)).toEqual([]);
  });

  it("process-stop never stops a protected process, and only protected matches are refused by name", async () => {
    const { p, protectedHost } = await lookalikes();
    const fault = await processStop.start(processStop.validate({ pattern: MARK }, protectedHost), ctx(protectedHost));
    running.push(fault);
    await execd(p.victim, () => readProcess(p.victim.pid)?.state === "T");
    for (const [name, s] of Object.entries(p)) if (name !== "victim") expect(readProcess(s.pid)!.state, name).not.toBe("T");
    await fault.revert();
    expect(() => processKill.validate({ pattern: `sshd: ${MARK}`, signal: "KILL" }, protectedHost)).toThrow(
      `params.pattern: only processes that are off limits match pattern /sshd: ${MARK}/, and they are never signalled: ${p.sshdByArgv0.pid} (sleep: sshd (SSH access to the host))`,
    );
    expect(() => processKill.validate({ pid: p.controlPlane.pid }, protectedHost)).toThrow(`params.pid: ${p.controlPlane.pid} is protected (the firedrill control plane)`);
    expect(() => processKill.validate({ name: "containerd-shim" }, protectedHost)).toThrow(/only processes that are off limits match name "containerd-shim"/);
  });

  it("local rules: names, prefixes, /patterns/ and unit:NAME; malformed ones are refused with how to write them", () => {
    const candidate = { pid: 5, ppid: 1, comm: "postgres", cmdline: "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql" };
    const units = () => ["postgresql@15-main.service"];
    expect(parseProtectionRule("postgres").test(candidate, units)).toBe(true);
    expect(parseProtectionRule("postg*").test(candidate, units)).toBe(true);
    expect(parseProtectionRule("postg").test(candidate, units)).toBe(false);
    expect(parseProtectionRule("/-D \\/var\\/lib/").test(candidate, units)).toBe(true);
    expect(parseProtectionRule("unit:postgresql@15-main.service").test(candidate, units)).toBe(true);
    expect(parseProtectionRule("unit:nginx.service").test(candidate, units)).toBe(false);
    expect(() => parseProtectionRule("/(a)\\1/")).toThrow('"/(a)\\1/": the pattern backreferences (\\1) are not supported');
    expect(() => parseProtectionRule("/unterminated")).toThrow("a command-line pattern is written /REGEX/");
    expect(() => parseProtectionRule("two words")).toThrow("use a process name (e.g. postgres, or nginx* for a prefix)");
    expect(() => parseProtectionRule("unit:")).toThrow("unit:NAME needs a systemd unit name");
  });
});
