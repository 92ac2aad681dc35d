import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { RevertReason, StartFaultSchema, durationFromMs } from "@firedrill/protocol";
import { Journal } from "../journal.js";
import { isProcessAlive, readProcessStartTime } from "../proc.js";
import { recoverJournal } from "../recover.js";
import { FaultRuntime } from "../runtime.js";
import { createFaultRegistry } from "./index.js";
import { processKill } from "./process-kill.js";
import { readProcess, selectProcesses, signalProcess } from "./process-select.js";
import { processStop } from "./process-stop.js";
import type { FaultContext, HostInfo, RunningFault } from "./types.js";

const log = pino({ level: "silent" });

/** A process the test started, with how it ended. */
interface Spawned {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let dir: string;
/** The test's own copy of sleep, under a unique name, so selection by name can only hit it. */
let sleepName: string;
let sleepPath: string;
const spawned: Spawned[] = [];
const loops: number[] = [];
const extraProtected: number[] = [];
const running: RunningFault[] = [];

/** No protections at all: only for reading (selection), never for signalling. */
const unprotected = { protectedPids: () => [] };

const host: HostInfo = {
  cpuCount: 2,
  stateDir: "/tmp",
  protectedPids: () => [process.pid, process.ppid, 1, ...extraProtected],
  networkExclusions: [],
};

function makeCtx(records: JsonObject[] = [], onUpdate?: (r: JsonObject) => void): FaultContext {
  return {
    faultId: `pk-${randomBytes(3).toString("hex")}`,
    log,
    host,
    updateRevert: (r) => {
      onUpdate?.(r);
      records.push(JSON.parse(JSON.stringify(r)) as JsonObject);
    },
  };
}

function spawnSleep(...args: string[]): Spawned {
  const child = spawn(sleepPath, args.length > 0 ? args : ["1000"], { stdio: "ignore" });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const s = { child, pid: child.pid!, exited };
  spawned.push(s);
  return s;
}

/** Waits until `check` holds (polling), or fails after `ms`. */
async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Our sleeps (by name) that are alive right now. */
function ourSleeps() {
  return selectProcesses({ name: sleepName, maxProcesses: 100 }, unprotected).selected;
}

function state(pid: number): string | undefined {
  return readProcess(pid)?.state;
}

async function start(kind: typeof processKill | typeof processStop, params: JsonObject, ctx = makeCtx()) {
  const plan = kind.validate(params, host);
  const record = JSON.parse(JSON.stringify(kind.planRevert(plan as never, ctx))) as JsonObject;
  const r = await kind.start(plan as never, ctx);
  running.push(r);
  return { running: r, record, ctx };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fd-process-"));
  sleepName = `fdt-${randomBytes(3).toString("hex")}`;
  sleepPath = join(dir, sleepName);
  copyFileSync("/bin/sleep", sleepPath);
  chmodSync(sleepPath, 0o755);
});

afterEach(async () => {
  for (const r of running.splice(0)) await r.revert();
  for (const pgid of loops.splice(0)) {
    try {
      process.kill(-pgid, "SIGKILL"); // the loop's process group: bash and its current sleep
    } catch {
      // already gone
    }
  }
  for (const s of spawned.splice(0)) {
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
    await s.exited;
  }
  extraProtected.length = 0;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("process-kill", () => {
  it("kills by exact name, with SIGTERM by default", async () => {
    const a = spawnSleep();
    const b = spawnSleep();
    const { running: r } = await start(processKill, { name: sleepName });
    expect(await a.exited).toEqual({ code: null, signal: "SIGTERM" });
    expect(await b.exited).toEqual({ code: null, signal: "SIGTERM" });
    expect(r.measure!()).toMatchObject({ killed: 2, processes: 2, came_back: 0, last_pids: 2 });
  });

  it("kills by command-line pattern, and only what matches", async () => {
    const marker = `1000.${randomBytes(3).readUIntBE(0, 3)}`;
    const target = spawnSleep(marker);
    const bystander = spawnSleep("1000");
    const { running: r } = await start(processKill, { pattern: `${sleepName} ${marker.replace(".", "\\.")}$`, signal: "SIGKILL" });
    expect(await target.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(r.measure!()).toMatchObject({ killed: 1, processes: 1 });
    expect(bystander.child.exitCode).toBeNull();
    expect(isProcessAlive(bystander.pid, readProcessStartTime(bystander.pid)!)).toBe(true);
  });

  it.each<[JsonObject[string], NodeJS.Signals]>([
    ["SIGKILL", "SIGKILL"],
    ["USR1", "SIGUSR1"],
    [9, "SIGKILL"],
    ["hup", "SIGHUP"],
  ])("kills by pid with the signal asked (%s)", async (signal, expected) => {
    const target = spawnSleep();
    await start(processKill, { pid: target.pid, signal });
    expect(await target.exited).toEqual({ code: null, signal: expected });
  });

  it("with repeatEvery, kills respawns for the fault's duration and counts how often they came back", async () => {
    const loop = spawn("bash", ["-c", `while :; do ./${sleepName} 1000; done`], { cwd: dir, stdio: "ignore", detached: true });
    loops.push(loop.pid!);
    await waitFor("the loop's first sleep", () => ourSleeps().length === 1);
    const { running: r } = await start(processKill, { name: sleepName, repeatEvery: "200ms" });
    await waitFor("three kills", () => r.measure!().killed! >= 3);
    const m = r.measure!();
    expect(m.came_back).toBeGreaterThanOrEqual(1);
    expect(m.processes).toBeGreaterThanOrEqual(3);
    await r.revert();
    // The loop is stopped: the next respawn lives.
    await waitFor("a respawn after the revert", () => ourSleeps().length === 1);
    const survivor = ourSleeps()[0]!;
    await new Promise((res) => setTimeout(res, 600));
    expect(isProcessAlive(survivor.pid, survivor.startTime)).toBe(true);
    const killed = r.measure!().killed;
    await new Promise((res) => setTimeout(res, 300));
    expect(r.measure!().killed).toBe(killed);
  });

  it("with repeatEvery and no match yet, waits for the target to appear", async () => {
    const { running: r } = await start(processKill, { name: sleepName, repeatEvery: "100ms", signal: "KILL" });
    expect(r.measure!()).toMatchObject({ killed: 0, processes: 0 });
    const late = spawnSleep();
    expect(await late.exited).toEqual({ code: null, signal: "SIGKILL" });
    await waitFor("the kill to be counted", () => r.measure!().killed === 1);
    expect(r.measure!().came_back).toBe(0);
  });

  it("refuses when nothing matches (without repeatEvery)", () => {
    expect(() => processKill.validate({ name: "fdt-nomatch" }, host)).toThrow(
      'params.name: no process matches name "fdt-nomatch"; check with ps -eo pid,comm,args, or set repeatEvery to wait for it to appear',
    );
  });

  it("never selects PID 1, the test process (protected), or kernel threads", async () => {
    expect(() => processKill.validate({ pid: 1 }, host)).toThrow("params.pid: 1 is protected (init)");
    expect(() => processKill.validate({ pid: process.pid, signal: "KILL" }, host)).toThrow(
      `params.pid: ${process.pid} is protected (the firedrill agent, its guard or its parent)`,
    );
    // PID 1's own name selects everything called that, except PID 1.
    const init = readProcess(1)!;
    const byInitName = selectProcesses({ name: init.comm, maxProcesses: 100 }, host);
    expect(byInitName.selected.map((p) => p.pid)).not.toContain(1);
    expect(byInitName.skipped).toContainEqual({ process: expect.objectContaining({ pid: 1 }), reason: "init" });
    // A pattern matching every command line still leaves out init, this process and kernel threads.
    const everything = selectProcesses({ pattern: "", maxProcesses: 100 }, host);
    const pids = everything.selected.map((p) => p.pid);
    expect(pids).not.toContain(1);
    expect(pids).not.toContain(process.pid);
    expect(everything.selected.every((p) => p.cmdline !== "" && p.ppid !== 2)).toBe(true);
    expect(() => processKill.validate({ pattern: ".", maxProcesses: 1 }, host)).toThrow(
      /^params.pattern: \d+ processes match pattern \/\.\/ \(besides \d+ protected, never signalled\), more than maxProcesses 1: \d+ \(.+\), .*; narrow the selection/,
    );
  });

  it("selection leaves out kernel threads and zombies (fake process table)", () => {
    const base = { startTime: 100, comm: "worker", cmdline: "/usr/bin/worker", ppid: 500, state: "S" };
    const table = [
      { ...base, pid: 10 },
      { ...base, pid: 11, ppid: 2, cmdline: "" }, // kernel thread
      { ...base, pid: 12, cmdline: "" }, // no command line: kernel thread
      { ...base, pid: 13, state: "Z", cmdline: "" }, // zombie
      { ...base, pid: 2, ppid: 0, cmdline: "" }, // kthreadd
    ];
    const selection = selectProcesses({ name: "worker", maxProcesses: 100 }, unprotected, { processes: table });
    expect(selection.selected.map((p) => p.pid)).toEqual([10]);
    expect(selection.skipped.map((s) => [s.process.pid, s.reason])).toEqual([
      [11, "a kernel thread"],
      [12, "a kernel thread"],
      [2, "a kernel thread"],
    ]);
  });

  it("when only protected processes match, says which, and signals nothing", async () => {
    const guarded = spawnSleep();
    extraProtected.push(guarded.pid);
    expect(() => processKill.validate({ name: sleepName, signal: "KILL" }, host)).toThrow(
      `params.name: only processes that are off limits match name "${sleepName}", and they are never signalled: ` +
        `${guarded.pid} (${sleepName}: the firedrill agent, its guard or its parent)`,
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(guarded.child.exitCode).toBeNull();
    expect(guarded.child.signalCode).toBeNull();
  });

  it("never signals a pid whose start time changed (pid reuse)", async () => {
    const target = spawnSleep();
    const startTime = readProcessStartTime(target.pid)!;
    expect(signalProcess({ pid: target.pid, startTime: startTime + 1 }, "SIGKILL")).toBe(false);
    // As if the pid had been reused between the snapshot and the kill:
    expect(signalProcess({ pid: target.pid, startTime }, "SIGKILL", () => startTime + 7)).toBe(false);
    await new Promise((r) => setTimeout(r, 100));
    expect(isProcessAlive(target.pid, startTime)).toBe(true);
    expect(signalProcess({ pid: target.pid, startTime }, "SIGKILL")).toBe(true);
    expect(await target.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(signalProcess({ pid: target.pid, startTime }, "SIGKILL")).toBe(false); // gone
  });

  it.each<[string, JsonObject, string]>([
    ["no selector", { signal: "KILL" }, "params.name: is required: select processes with exactly one of name (exact process name), pattern (command-line regex) or pid"],
    ["two selectors", { name: "x", pid: 5 }, "params.pid: cannot be combined with name; select processes with exactly one of name, pattern or pid"],
    ["name too long", { name: "a-very-long-process-name" }, 'params.name: "a-very-long-process-name" is longer than 15 characters, and Linux truncates process names (comm) to 15: use "a-very-long-pro", or match the command line with pattern'],
    ["bad regex", { pattern: "worker(" }, 'params.pattern: "worker(" is not a valid RE2 regular expression: missing closing ): `worker(` (see https://github.com/google/re2/wiki/Syntax)'],
    ["backreference", { pattern: "(a)\\1" }, 'params.pattern: "(a)\\\\1" backreferences (\\1) are not supported: patterns run on RE2'],
    ["lookahead", { pattern: "java(?!.*test)" }, 'params.pattern: "java(?!.*test)" lookahead ((?=…), (?!…)) is not supported'],
    ["pattern too long", { pattern: "a".repeat(257) }, "is 257 characters long, more than the 256 allowed"],
    ["maxProcesses 1001", { name: "x", maxProcesses: 1001 }, "params.maxProcesses: 1001 is above the maximum 1000"],
    ["pid 0", { pid: 0 }, "params.pid: 0 is below the minimum 1"],
    ["pid abc", { pid: "abc" }, 'params.pid: "abc" is not a number'],
    ["unknown signal", { name: "x", signal: "SIGFOO" }, 'params.signal: "SIGFOO" is not a signal; use a name such as SIGTERM, SIGKILL, HUP, or a number such as 9'],
    ["SIGSTOP", { name: "x", signal: "STOP" }, "params.signal: SIGSTOP would leave the processes suspended; use the process-stop fault, which resumes them on revert"],
    ["repeatEvery 50ms", { name: "x", repeatEvery: "50ms" }, "params.repeatEvery: 50ms is shorter than the minimum 100ms"],
    ["repeatEvery soon", { name: "x", repeatEvery: "soon" }, 'params.repeatEvery: "soon" is not a duration; use e.g. 500ms, 1s, 30s'],
    ["maxProcesses 0", { name: "x", maxProcesses: 0 }, "params.maxProcesses: 0 is below the minimum 1"],
    ["unknown parameter", { name: "x", sig: "KILL" }, "params.sig: unknown parameter for process-kill; allowed: name, pattern, pid, signal, repeatEvery, maxProcesses"],
  ])("bad params: %s", async (_name, params, message) => {
    const bystander = spawnSleep();
    expect(() => processKill.validate(params, host)).toThrow(message);
    await new Promise((r) => setTimeout(r, 50));
    expect(bystander.child.exitCode).toBeNull();
    expect(bystander.child.signalCode).toBeNull();
  });

  it("revertRecord has nothing to undo, but refuses while a live agent runs the repeat loop", async () => {
    const record = processKill.planRevert(processKill.validate({ name: "x", repeatEvery: "1s" }, host), makeCtx());
    expect(record).toEqual({ selector: 'name "x"', signal: "SIGTERM", repeat: true });
    await processKill.revertRecord(record, { log, holderAlive: false });
    await expect(processKill.revertRecord(record, { log, holderAlive: true })).rejects.toThrow(/live firedrill-agent/);
  });
});

describe("process-stop", () => {
  it("stops the matches (state T), journals them first, and revert resumes them", async () => {
    const a = spawnSleep();
    const b = spawnSleep();
    const records: JsonObject[] = [];
    const statesAtJournal: (string | undefined)[] = [];
    const ctx = makeCtx(records, () => statesAtJournal.push(state(a.pid), state(b.pid)));
    const { running: r } = await start(processStop, { name: sleepName }, ctx);
    expect(records).toHaveLength(1);
    expect(statesAtJournal).toHaveLength(2);
    expect(statesAtJournal).not.toContain("T"); // journalled before anyone was stopped
    expect(records[0]!.pids).toEqual(
      expect.arrayContaining([
        { pid: a.pid, startTime: readProcessStartTime(a.pid) },
        { pid: b.pid, startTime: readProcessStartTime(b.pid) },
      ]),
    );
    await waitFor("both stopped", () => state(a.pid) === "T" && state(b.pid) === "T");
    expect(r.measure!()).toEqual({ processes: 2, stopped: 2, gone: 0 });
    await r.revert();
    await waitFor("both running again", () => state(a.pid) === "S" && state(b.pid) === "S");
    await r.revert(); // idempotent
    expect(r.measure!()).toMatchObject({ stopped: 0 });
  });

  it("revertRecord resumes them from the journal record alone (as the guard does after a SIGKILLed agent)", async () => {
    const a = spawnSleep();
    const records: JsonObject[] = [];
    await start(processStop, { pid: a.pid }, makeCtx(records));
    await waitFor("stopped", () => state(a.pid) === "T");
    await processStop.revertRecord(records.at(-1)!, { log, holderAlive: false });
    await waitFor("running again", () => state(a.pid) === "S");
  });

  it("through the runtime: the journal holds the pids, and recovery in a fresh process resumes them", async () => {
    const a = spawnSleep();
    const stateDir = mkdtempSync(join(tmpdir(), "fd-process-state-"));
    try {
      const journal = new Journal(stateDir);
      const registry = createFaultRegistry([processStop as never]);
      const runtime = new FaultRuntime({
        registry,
        journal,
        host,
        log,
        holder: { pid: process.pid, startTime: readProcessStartTime(process.pid)! },
        emit: () => {},
      });
      await runtime.start(
        create(StartFaultSchema, { faultId: "stop-1", kind: "process-stop", params: { pid: a.pid }, duration: durationFromMs(60_000) }),
      );
      await waitFor("stopped", () => state(a.pid) === "T");
      const { records } = journal.readAll();
      expect(records[0]!.revert).toEqual({ pids: [{ pid: a.pid, startTime: readProcessStartTime(a.pid) }] });
      // As after an agent crash: another journal reader reverts from the record alone.
      const result = await recoverJournal({ journal: new Journal(stateDir), registry, log });
      expect(result.reverted.map((r) => r.faultId)).toEqual(["stop-1"]);
      await waitFor("running again", () => state(a.pid) === "S");
      await runtime.stopAll(RevertReason.STOPPED);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it("revert of a process that is gone is a success", async () => {
    const a = spawnSleep();
    const records: JsonObject[] = [];
    const { running: r } = await start(processStop, { name: sleepName }, makeCtx(records));
    a.child.kill("SIGKILL");
    await a.exited;
    expect(r.measure!()).toMatchObject({ gone: 1 });
    await r.revert();
    await processStop.revertRecord(records[0]!, { log, holderAlive: false });
  });

  it("leaves alone a process someone else stopped (its revert must not resume it)", async () => {
    const a = spawnSleep();
    a.child.kill("SIGSTOP");
    await waitFor("stopped by the test", () => state(a.pid) === "T");
    expect(() => processStop.validate({ name: sleepName }, host)).toThrow(
      `params.name: only processes that are off limits match name "${sleepName}", and they are never signalled: ${a.pid} (${sleepName}: already stopped, by someone else)`,
    );
  });

  it("revertRecord rejects a malformed record", async () => {
    await expect(processStop.revertRecord({ pids: [{ pid: 1, startTime: 1 }] }, { log, holderAlive: false })).rejects.toThrow(/bad entry/);
    await expect(processStop.revertRecord({}, { log, holderAlive: false })).rejects.toThrow(/no pid list/);
  });

  it.each<[string, JsonObject, string]>([
    ["signal", { name: "x", signal: "KILL" }, "params.signal: process-stop always sends SIGSTOP (and SIGCONT on revert); to send another signal use process-kill"],
    ["repeatEvery", { name: "x", repeatEvery: "1s" }, "params.repeatEvery: process-stop stops the matching processes once; to keep killing respawns use process-kill"],
    ["pid 1", { pid: 1 }, "params.pid: 1 is protected (init)"],
    ["no selector", {}, "params.name: is required"],
    ["unknown parameter", { name: "x", nam: "y" }, "params.nam: unknown parameter for process-stop; allowed: name, pattern, pid, maxProcesses"],
  ])("bad params: %s", async (_name, params, message) => {
    const bystander = spawnSleep();
    expect(() => processStop.validate(params, host)).toThrow(message);
    await new Promise((r) => setTimeout(r, 50));
    // Not stopped (a process just spawned on a busy machine may still be R or D rather than S).
    expect(state(bystander.pid)).not.toBe("T");
  });

  it("the test's sleeps really are the test's: the name is unique", () => {
    expect(readFileSync(`/proc/${spawnSleep().pid}/comm`, "utf8").trim()).toBe(sleepName);
  });
});
