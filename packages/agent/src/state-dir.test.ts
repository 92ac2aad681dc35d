/**
 * The agent's state dir against another local user: created 0700, refused when another user owns
 * it or can write to it (or to a directory on the way), and guard.json / agent.lock trusted only
 * when the agent wrote them. And a journal record whose revert fails does not keep the agent down.
 */
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromJsonString } from "@bufbuild/protobuf";
import { FaultEventSchema, FaultEventType, FaultState, RevertReason, UnsafePathError } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startAgent } from "./agent.js";
import type { Agent } from "./agent.js";
import { diskFill, readDiskUsage } from "./faults/disk-fill.js";
import { createFaultRegistry } from "./faults/index.js";
import type { FaultKindDefinition, RunningFault } from "./faults/index.js";
import { readGuard, stopGuard } from "./guard.js";
import { ensureStateDir, stateDirHolder } from "./identity.js";
import { Journal } from "./journal.js";
import { isProcessAlive, readProcessStartTime } from "./proc.js";
import { joinTokenFor, startFakeControlPlane } from "./testing/fake-control-plane.js";
import type { FakeControlPlane } from "./testing/fake-control-plane.js";
import { captureLog } from "./testing/log-capture.js";

const NOBODY = 65534;
const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8).padStart(4, "0");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("the agent's state dir", () => {
  let base: string;
  let victims: ChildProcess[];
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-state-dir-"));
    victims = [];
  });
  afterEach(() => {
    for (const v of victims) v.kill("SIGKILL");
    rmSync(base, { recursive: true, force: true });
  });

  /** A process an attacker would like the root agent to kill (this test's own child). */
  function victim(): { pid: number; startTime: number } {
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    victims.push(child);
    return { pid: child.pid!, startTime: readProcessStartTime(child.pid!)! };
  }

  it("is created 0700 (with its parents); an existing 0755 one is narrowed to 0700", () => {
    const created = join(base, "a", "b", "state");
    ensureStateDir(created);
    expect(mode(created)).toBe("0700");
    const existing = join(base, "existing");
    mkdirSync(existing);
    chmodSync(existing, 0o755);
    ensureStateDir(existing);
    expect(mode(existing)).toBe("0700");
  });

  it("is refused when another user owns it, naming the owner and the chown fix", () => {
    const dir = join(base, "theirs");
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, NOBODY, NOBODY);
    expect(() => ensureStateDir(dir)).toThrow(
      `state dir ${dir} is not safe: it is owned by uid 65534 (nobody), not by root; another local user could plant or swap the files the agent acts on as root (guard.json names a pid it stops, the journal what to revert). ` +
        `Fix: chown root ${dir} (after checking what it holds), or give another --state-dir`,
    );
  });

  it.each([
    ["0777", 0o777, "group and others"],
    ["0770", 0o770, "its group"],
    ["1777", 0o1777, "group and others"],
  ])("is refused with mode %s, with the chmod fix", (shown, m, by) => {
    const dir = join(base, "wide");
    mkdirSync(dir);
    chmodSync(dir, m);
    expect(() => ensureStateDir(dir)).toThrow(`state dir ${dir} is not safe: it is writable by ${by} (mode ${shown}); another local user could plant`);
    expect(() => ensureStateDir(dir)).toThrow(`Fix: chmod 700 ${dir}, or give another --state-dir`);
  });

  it("is refused inside a directory another user owns or can write without the sticky bit", () => {
    const theirs = join(base, "home-of-nobody");
    mkdirSync(theirs);
    chownSync(theirs, NOBODY, NOBODY);
    expect(() => ensureStateDir(join(theirs, "state"))).toThrow(`state dir ${join(theirs, "state")} is not safe: ${theirs} is owned by uid 65534 (nobody)`);
    const open = join(base, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => ensureStateDir(join(open, "state"))).toThrow(UnsafePathError);
  });

  it("the issue's attack: guard.json in a writable state dir names a process; the agent refuses to start and kills nothing", async () => {
    const dir = join(base, "state");
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const target = victim();
    writeFileSync(join(dir, "guard.json"), JSON.stringify(target));
    await expect(
      startAgent({ server: "127.0.0.1:1", insecure: true, token: "test-token-0123", stateDir: dir, labels: {}, log: captureLog().log, imdsEndpoint: "off" }),
    ).rejects.toThrow(`state dir ${dir} is not safe: it is writable by group and others (mode 0777)`);
    await sleep(300);
    expect(isProcessAlive(target.pid, target.startTime)).toBe(true);
  });

  it("guard.json and agent.lock are trusted only when the agent's user wrote them: not another user's file, not a link", async () => {
    const dir = join(base, "state");
    ensureStateDir(dir);
    const target = victim();
    for (const name of ["guard.json", "agent.lock"]) {
      writeFileSync(join(dir, name), JSON.stringify(target), { mode: 0o644 });
      chownSync(join(dir, name), NOBODY, NOBODY);
    }
    expect(readGuard(dir)).toBeUndefined();
    expect(stateDirHolder(dir)).toBeUndefined();
    expect(await stopGuard(dir, 500)).toBeUndefined();
    // A link to a file that names the victim: not followed.
    const elsewhere = join(base, "elsewhere.json");
    writeFileSync(elsewhere, JSON.stringify(target), { mode: 0o600 });
    for (const name of ["guard.json", "agent.lock"]) {
      rmSync(join(dir, name));
      symlinkSync(elsewhere, join(dir, name));
    }
    expect(readGuard(dir)).toBeUndefined();
    expect(stateDirHolder(dir)).toBeUndefined();
    // The agent's own file (root, 0644) is read.
    rmSync(join(dir, "guard.json"));
    writeFileSync(join(dir, "guard.json"), JSON.stringify(target), { mode: 0o644 });
    expect(readGuard(dir)).toEqual(target);
    rmSync(join(dir, "guard.json"));
    expect(isProcessAlive(target.pid, target.startTime)).toBe(true);
  });
});

describe("an agent whose journal holds a fault it cannot revert", () => {
  let base: string;
  let mnt: string;
  let plane: FakeControlPlane | undefined;
  let agent: Agent | undefined;
  let running: RunningFault | undefined;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-unrevertable-"));
    mnt = join(base, "mnt");
    mkdirSync(mnt);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]);
  });
  afterEach(async () => {
    await agent?.stop();
    await plane?.close();
    try {
      execFileSync("chattr", ["-R", "-a", mnt], { stdio: "ignore" });
    } catch {
      // nothing left to clear
    }
    await running?.revert().catch(() => undefined);
    try {
      execFileSync("umount", [mnt]);
    } catch {
      execFileSync("umount", ["-l", mnt]);
    }
    rmdirSync(mnt);
    rmSync(base, { recursive: true, force: true });
    agent = plane = running = undefined;
  });

  it("starts anyway, reports it revert_failed (held as reverting), keeps the record, and reverts it once the cause is fixed", async () => {
    const stateDir = join(base, "state");
    ensureStateDir(stateDir);
    const journal = new Journal(stateDir);
    // A disk fill left by an agent that died, made append-only: its revert cannot truncate it.
    const log = captureLog();
    let revert: JsonObject = {};
    const host = { cpuCount: 2, stateDir, protectedPids: () => [], networkExclusions: [] };
    const ctx = { faultId: "flt_unrevertable", log: log.log, host, updateRevert: (r: JsonObject) => void (revert = r) };
    const plan = diskFill.validate({ path: mnt, targetPercent: 50, keepFreeBytes: 0 }, host);
    running = await diskFill.start(plan, ctx);
    const file = String(revert.file);
    journal.write({ faultId: ctx.faultId, kind: "disk-fill", params: {}, revert, holder: { pid: 999_999, startTime: 1 }, startedAt: new Date().toISOString(), endsAt: new Date().toISOString() });
    execFileSync("chattr", ["+a", file]);
    expect(readDiskUsage(mnt).percent).toBeGreaterThan(49);

    plane = await startFakeControlPlane({ dataDir: join(base, "cp") });
    const t0 = performance.now();
    agent = await startAgent({
      server: plane.address,
      token: joinTokenFor(plane.ca),
      stateDir,
      labels: {},
      log: log.log,
      imdsEndpoint: "off",
      registry: createFaultRegistry([diskFill as FaultKindDefinition]),
      journalRetryMs: 300,
    });
    console.log(`agent started with an unrevertable fault in its journal in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(log.find(/starting anyway: they are reported as revert_failed/)).toHaveLength(1);
    expect(journal.readAll().records.map((r) => r.faultId)).toEqual([ctx.faultId]);
    const report = fromJsonString(FaultEventSchema, readFileSync(join(stateDir, "reports", `${ctx.faultId}.json`), "utf8"));
    expect(report.type).toBe(FaultEventType.REVERT_FAILED);
    expect(report.error).toMatch(new RegExp(`^could not free the disk fill: opening ${file} .* failed \\(EPERM`));
    // The control plane hears of it on connect: held as reverting, not reverted.
    const hello = await waitFor("a Hello", () => plane!.calls.find((c) => c.method === "connect" && c.hello)?.hello);
    expect(hello.heldFaults.find((f) => f.faultId === ctx.faultId)?.state).toBe(FaultState.REVERTING);

    execFileSync("chattr", ["-a", file]); // the operator fixes the cause
    const t1 = performance.now();
    await waitFor("the retry to revert it", () => journal.readAll().records.length === 0);
    console.log(`fault reverted by the agent's retry ${(performance.now() - t1).toFixed(0)} ms after the cause was fixed (retry every 300 ms)`);
    expect(readDiskUsage(mnt).used).toBe(0);
    expect(readdirSync(mnt)).toEqual([]);
    const after = readdirSync(join(stateDir, "reports")).map((n) => fromJsonString(FaultEventSchema, readFileSync(join(stateDir, "reports", n), "utf8")));
    // Delivered on the live link (and removed), or still pending as the final REVERTED (recovery).
    for (const e of after) expect({ type: e.type, reason: e.reason }).toEqual({ type: FaultEventType.REVERTED, reason: RevertReason.RECOVERY });
    expect(existsSync(join(mnt, ".firedrill-fill"))).toBe(false);
  });
});
