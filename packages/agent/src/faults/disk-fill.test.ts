import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDiskFill, diskFill, readDiskUsage } from "./disk-fill.js";
import type { FaultContext, RunningFault } from "./types.js";

const log = pino({ level: "silent" });
const host = { cpuCount: 2, stateDir: "/tmp", protectedPids: () => [process.pid], networkExclusions: [] };
const MiB = 1024 * 1024;

let ctxCount = 0;
function makeCtx(): FaultContext & { records: JsonObject[] } {
  const records: JsonObject[] = [];
  return { faultId: `df-${process.pid}-${++ctxCount}`, log, host, records, updateRevert: (r) => records.push(r) };
}

/** Starts a fault the way the runtime does: validate, plan the record (as JSON), start. */
async function startFill(params: JsonObject, kind = diskFill) {
  const ctx = makeCtx();
  const plan = kind.validate(params, host);
  const record = JSON.parse(JSON.stringify(kind.planRevert(plan, ctx))) as JsonObject;
  const t0 = performance.now();
  const running = await kind.start(plan, ctx);
  return { ctx, plan, record, running, ms: performance.now() - t0 };
}

/** Polls measure() until the fill is done (the write fallback runs on after start). */
async function waitFilled(running: RunningFault, timeoutMs = 30_000): Promise<Record<string, number>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const m = running.measure!();
    if (m.filling === 0) return m;
    if (Date.now() > until) throw new Error(`fill not done after ${timeoutMs}ms: ${JSON.stringify(m)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("disk-fill on a 64 MiB tmpfs", () => {
  let base: string;
  let mnt: string;
  let running: RunningFault | undefined;

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-disk-fill-"));
    mnt = join(base, "mnt");
    mkdirSync(mnt);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]);
  });

  afterEach(async () => {
    try {
      await running?.revert();
    } finally {
      running = undefined;
      try {
        execFileSync("umount", [mnt]);
      } catch {
        // Still busy (a test failed with a file open): detach it so nothing stays mounted.
        execFileSync("umount", ["-l", mnt]);
      }
      rmdirSync(mnt);
      rmdirSync(base);
    }
  });

  it.each([50, 80])("targetPercent %i reaches the target within 1 point, and revert removes the file", async (target) => {
    const fill = await startFill({ path: mnt, targetPercent: target, keepFreeBytes: "4MiB" });
    running = fill.running;
    const usage = readDiskUsage(mnt).percent;
    console.log(`disk-fill fallocate: targetPercent ${target} → ${usage.toFixed(2)}% in ${fill.ms.toFixed(0)} ms`);
    expect(Math.abs(usage - target)).toBeLessThanOrEqual(1);
    const file = String(fill.record.file);
    expect(file).toBe(join(mnt, ".firedrill-fill", `${fill.ctx.faultId}.fill`));
    expect(statSync(join(mnt, ".firedrill-fill")).mode & 0o777).toBe(0o700);
    const m = fill.running.measure!();
    expect(m).toMatchObject({ target_percent: target, filling: 0, fallback_writes: 0 });
    expect(Math.abs(m.usage_percent! - target)).toBeLessThanOrEqual(1);
    expect(m.bytes_written).toBeGreaterThan(((target - 1) / 100) * 64 * MiB);
    expect(m.free_bytes).toBe(readDiskUsage(mnt).avail);

    await fill.running.revert();
    await fill.running.revert(); // idempotent
    expect(existsSync(file)).toBe(false);
    expect(existsSync(join(mnt, ".firedrill-fill"))).toBe(false);
    expect(readDiskUsage(mnt).used).toBe(0);
  });

  it("revertRecord removes the fill from the journal record alone", async () => {
    const fill = await startFill({ path: mnt, targetPercent: 60, keepFreeBytes: 0 });
    running = fill.running; // reverted again in afterEach: must stay harmless
    expect(readDiskUsage(mnt).percent).toBeGreaterThan(59);
    await diskFill.revertRecord(fill.record, { log, holderAlive: false });
    expect(existsSync(String(fill.record.file))).toBe(false);
    expect(readDiskUsage(mnt).used).toBe(0);
    await diskFill.revertRecord(fill.record, { log, holderAlive: false }); // already gone = success
  });

  it("revertRecord deletes nothing but a fill file", async () => {
    const victim = join(mnt, "precious.txt");
    writeFileSync(victim, "keep me");
    await expect(diskFill.revertRecord({ file: victim, dir: mnt }, { log, holderAlive: false })).rejects.toThrow(
      /does not name a fill file/,
    );
    expect(existsSync(victim)).toBe(true);
  });

  it("size mode fills that many bytes", async () => {
    const fill = await startFill({ path: mnt, size: "16MiB", keepFreeBytes: "1MiB" });
    running = fill.running;
    expect(readDiskUsage(mnt).used).toBe(16 * MiB);
    expect(fill.running.measure!().bytes_written).toBe(16 * MiB);
    expect(fill.running.measure!().target_percent).toBe(25);
  });

  it("falls back to chunked writes when fallocate fails, and still reaches the target", async () => {
    const kind = createDiskFill({ fallocateCommand: "/nonexistent/fallocate" });
    const fill = await startFill({ path: mnt, targetPercent: 80, keepFreeBytes: "4MiB" }, kind);
    running = fill.running;
    const t0 = performance.now();
    const m = await waitFilled(fill.running);
    const usage = readDiskUsage(mnt).percent;
    console.log(`disk-fill write fallback: targetPercent 80 → ${usage.toFixed(2)}% in ${(fill.ms + performance.now() - t0).toFixed(0)} ms`);
    expect(Math.abs(usage - 80)).toBeLessThanOrEqual(1);
    expect(m).toMatchObject({ fallback_writes: 1, filling: 0, target_percent: 80 });
    expect(Math.abs(m.bytes_written! - 0.8 * 64 * MiB)).toBeLessThanOrEqual(MiB);
    await fill.running.revert();
    expect(existsSync(String(fill.record.file))).toBe(false);
    expect(readDiskUsage(mnt).used).toBe(0);
  });

  it("start plans again: a fill that no longer fits above the floor is refused, nothing left behind", async () => {
    const ctx = makeCtx();
    const plan = diskFill.validate({ path: mnt, size: "40MiB", keepFreeBytes: "8MiB" }, host);
    // Between validation and start, another writer takes 20 MiB.
    execFileSync("fallocate", ["-l", String(20 * MiB), join(mnt, "other")]);
    await expect(diskFill.start(plan, ctx)).rejects.toThrow(
      `params.size: filling 40 MiB on the filesystem holding ${mnt} (20 MiB used, 44 MiB free) would leave 4 MiB free, less than keepFreeBytes 8 MiB; at most 36 MiB can be filled (usage 87.5%); lower size to 36 MiB or less, or lower keepFreeBytes`,
    );
    await diskFill.revertRecord(diskFill.planRevert(plan, ctx), { log, holderAlive: false });
    expect(readdirSync(mnt)).toEqual(["other"]);
  });

  it("the write fallback re-checks free space every chunk and stops at the keepFreeBytes floor", async () => {
    const kind = createDiskFill({ fallocateCommand: "/nonexistent/fallocate" });
    const fill = await startFill({ path: mnt, size: "40MiB", keepFreeBytes: "8MiB" }, kind);
    running = fill.running;
    // While the writes run on, another writer takes all but 10 MiB of what the fill still needs
    // (execFileSync blocks the event loop, so the fill does not move meanwhile).
    const written = fill.running.measure!().bytes_written!;
    expect(written).toBeLessThan(40 * MiB);
    const other = 64 * MiB - 8 * MiB - written - 10 * MiB;
    execFileSync("fallocate", ["-l", String(other), join(mnt, "other")]);
    const m = await waitFilled(fill.running);
    expect(m.bytes_written).toBe(written + 10 * MiB);
    expect(readDiskUsage(mnt).avail).toBe(8 * MiB);
  });

  it("refuses a fill past the keepFreeBytes floor, and writes nothing", () => {
    expect(() => diskFill.validate({ path: mnt, targetPercent: 90, keepFreeBytes: "40MiB" }, host)).toThrow(
      `params.targetPercent: reaching 90% on the filesystem holding ${mnt} (0 B used, 64 MiB free) would leave 6.4 MiB free, less than keepFreeBytes 40 MiB; ` +
        "at most 24 MiB can be filled (usage 37.5%); lower targetPercent to 37.5 or less, or lower keepFreeBytes",
    );
    expect(readdirSync(mnt)).toEqual([]);
  });

  it("refuses with the default keepFreeBytes (256 MiB) on a small filesystem", () => {
    expect(() => diskFill.validate({ path: mnt, targetPercent: 50 }, host)).toThrow(
      /params.targetPercent: .* less than keepFreeBytes 256 MiB; nothing can be filled there while keeping keepFreeBytes 256 MiB free; lower keepFreeBytes, or free space first$/,
    );
  });

  it("refuses a size that would push usage past 98%", () => {
    expect(() => diskFill.validate({ path: mnt, size: "63.5MiB", keepFreeBytes: 0 }, host)).toThrow(
      `params.size: filling 63.5 MiB on the filesystem holding ${mnt} (0% full, 64 MiB free) would push usage to 99.2%, past the limit 98%; ` +
        "at most 62.7 MiB can be filled (usage 98%); lower size to 62.7 MiB or less",
    );
    expect(readdirSync(mnt)).toEqual([]);
  });

  it("refuses a size larger than the free space", () => {
    expect(() => diskFill.validate({ path: mnt, size: "1GiB" }, host)).toThrow(
      `params.size: filling 1 GiB on the filesystem holding ${mnt} (0 B used, 64 MiB free) needs more than is free; nothing can be filled there while keeping keepFreeBytes 256 MiB free; lower keepFreeBytes, or free space first`,
    );
  });

  it("refuses when the filesystem is already at or above the target", () => {
    execFileSync("fallocate", ["-l", String(40 * MiB), join(mnt, "other")]);
    expect(() => diskFill.validate({ path: mnt, targetPercent: 50, keepFreeBytes: 0 }, host)).toThrow(
      `params.targetPercent: the filesystem holding ${mnt} is already 62.5% full (above the target 50%); give a targetPercent above 62.5%, or free space first`,
    );
    expect(readdirSync(mnt)).toEqual(["other"]);
  });

  it.each<[string, JsonObject, string]>([
    ["no path", { targetPercent: 50 }, "params.path: is required"],
    ["relative path", { path: "var/tmp", targetPercent: 50 }, 'params.path: "var/tmp" is not valid; expected an absolute path to an existing directory, e.g. /var/tmp'],
    ["neither target nor size", { path: "/tmp" }, "params.targetPercent: is required unless size is given; give exactly one of targetPercent (1-98) or size (e.g. 500MiB)"],
    ["both target and size", { path: "/tmp", targetPercent: 50, size: "1G" }, "params.size: cannot be combined with targetPercent; give exactly one of targetPercent (1-98) or size (e.g. 500MiB)"],
    ["targetPercent 99", { path: "/tmp", targetPercent: 99 }, "params.targetPercent: 99 is above the maximum 98%"],
    ["targetPercent 0", { path: "/tmp", targetPercent: 0 }, "params.targetPercent: 0 is below the minimum 1%"],
    ["size abc", { path: "/tmp", size: "abc" }, 'params.size: "abc" is not a size; use a number of bytes or a size such as 500MiB, 2GiB, 1.5G'],
    ["size 0", { path: "/tmp", size: 0 }, "params.size: 0 is below the minimum 1 byte"],
    ["keepFreeBytes 12XB", { path: "/tmp", size: "1M", keepFreeBytes: "12XB" }, 'params.keepFreeBytes: "12XB" is not a size'],
    ["unknown parameter", { path: "/tmp", size: "1M", percent: 5 }, "params.percent: unknown parameter for disk-fill; allowed: path, targetPercent, size, keepFreeBytes"],
  ])("bad params: %s", (_name, params, message) => {
    expect(() => diskFill.validate(params, host)).toThrow(message);
  });

  it("host checks: the path must exist and be a directory", () => {
    writeFileSync(join(mnt, "a-file"), "x");
    expect(() => diskFill.validate({ path: join(mnt, "nope"), size: "1M", keepFreeBytes: 0 }, host)).toThrow(
      `params.path: ${join(mnt, "nope")} does not exist; give an existing directory on the filesystem to fill`,
    );
    expect(() => diskFill.validate({ path: join(mnt, "a-file"), size: "1M", keepFreeBytes: 0 }, host)).toThrow(
      `params.path: ${join(mnt, "a-file")} is not a directory; give a directory on the filesystem to fill`,
    );
    expect(readdirSync(mnt)).toEqual(["a-file"]);
  });

  it("sizes accept bytes and units", () => {
    const sizes: [JsonObject[string], number][] = [
      [1048576, MiB],
      ["1048576", MiB],
      ["2MiB", 2 * MiB],
      ["1.5M", 1.5 * MiB],
      ["3MB", 3_000_000],
      ["512k", 512 * 1024],
    ];
    for (const [size, bytes] of sizes) expect(diskFill.validate({ path: mnt, size, keepFreeBytes: 0 }, host).bytes).toBe(bytes);
  });
});

/** The unprivileged local user the attacks run as: nobody (uid 65534), through setpriv. */
const NOBODY = 65534;
function asNobody(script: string): { code: number | null; out: string } {
  const r = spawnSync("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", "sh", "-c", script], { encoding: "utf8" });
  return { code: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

describe("disk-fill against a hostile local user (nobody, uid 65534) on a 64 MiB tmpfs", () => {
  let base: string;
  let mnt: string;
  let running: RunningFault | undefined;

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-disk-fill-hostile-"));
    chmodSync(base, 0o755); // nobody must reach the mount to attack it
    mnt = join(base, "mnt");
    mkdirSync(mnt);
    // A tmpfs root is like /tmp: owned by root, mode 1777 (everyone may write, sticky).
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", mnt]);
  });

  afterEach(async () => {
    try {
      await running?.revert();
    } finally {
      running = undefined;
      try {
        execFileSync("umount", [mnt]);
      } catch {
        execFileSync("umount", ["-l", mnt]);
      }
      rmdirSync(mnt);
      rmdirSync(base);
    }
  });

  /** A directory under the mount with this owner and mode. */
  function dir(name: string, mode: number, uid = 0): string {
    const p = join(mnt, name);
    mkdirSync(p);
    chmodSync(p, mode);
    chownSync(p, uid, uid);
    return p;
  }

  it("refuses a path nobody owns, or one writable by others or the group without the sticky bit, naming the directory and the fix", () => {
    const owned = dir("nobodys", 0o755, NOBODY);
    const open = dir("open", 0o777);
    const group = dir("group", 0o775);
    const inside = join(owned, "sub");
    mkdirSync(inside, { mode: 0o755 }); // root's, but inside nobody's directory: nobody can rename it away
    const used = readDiskUsage(mnt).used;
    const refused = (path: string) => () => diskFill.validate({ path, size: "1MiB", keepFreeBytes: 0 }, host);

    expect(refused(owned)).toThrow(
      `params.path: the directory ${owned} is not safe: it is owned by uid 65534 (nobody), not by root; another local user could rename or replace the fill folder there and keep the revert from freeing the space. ` +
        `Fix: chown root ${owned} (after checking what it holds), or give a directory on the same filesystem that only root can change (its mount point, or /var/tmp for the root filesystem)`,
    );
    expect(refused(open)).toThrow(
      `params.path: the directory ${open} is not safe: it is writable by group and others (mode 0777) without the sticky bit, so they can rename or replace what it holds; ` +
        `another local user could rename or replace the fill folder there and keep the revert from freeing the space. Fix: chmod go-w ${open} (or chmod +t ${open}), or give`,
    );
    expect(refused(group)).toThrow(`it is writable by its group (mode 0775) without the sticky bit`);
    expect(refused(inside)).toThrow(`params.path: the directory ${inside} is not safe: ${owned} is owned by uid 65534 (nobody), not by root`);
    // Links: one nobody planted (and can point elsewhere later) is refused; root's is followed.
    const rootDir = dir("rootdir", 0o755);
    expect(asNobody(`ln -s ${rootDir} ${mnt}/via-nobody`).code).toBe(0);
    expect(refused(join(mnt, "via-nobody"))).toThrow(`${join(mnt, "via-nobody")} is not safe: it is a symbolic link owned by uid 65534 (nobody), who can point it elsewhere at any time`);
    symlinkSync(rootDir, join(mnt, "via-root"));
    expect(diskFill.validate({ path: join(mnt, "via-root"), size: "1MiB", keepFreeBytes: 0 }, host).dir).toBe(rootDir);
    expect(readDiskUsage(mnt).used).toBe(used); // nothing written
  });

  it("refuses a fill folder nobody planted first (a directory or a link), and writes nothing", () => {
    const used = readDiskUsage(mnt).used;
    expect(asNobody(`mkdir ${mnt}/.firedrill-fill`).code).toBe(0);
    expect(() => diskFill.validate({ path: mnt, size: "1MiB", keepFreeBytes: 0 }, host)).toThrow(
      `params.path: ${mnt}/.firedrill-fill exists but is not the agent's (owner uid 65534 (nobody), mode 0755; the agent makes it owned by uid 0 (root), mode 0700): someone else made it; check what it holds and remove it (rm -r ${mnt}/.firedrill-fill)`,
    );
    rmdirSync(join(mnt, ".firedrill-fill"));
    expect(asNobody(`ln -s /etc ${mnt}/.firedrill-fill`).code).toBe(0);
    expect(() => diskFill.validate({ path: mnt, size: "1MiB", keepFreeBytes: 0 }, host)).toThrow(
      `params.path: ${mnt}/.firedrill-fill exists and is a symbolic link (owner uid 65534 (nobody)): firedrill keeps its fill there and makes it itself; check what it is and remove it (rm ${mnt}/.firedrill-fill)`,
    );
    expect(readDiskUsage(mnt).used).toBe(used);
  });

  it.each([
    ["the sticky mount point (mode 1777, like /tmp)", ""],
    ["a root-owned 0755 directory", "srv"],
  ])("in %s nobody's attacks all fail, and revert frees the space", async (_name, sub) => {
    const path = sub ? dir(sub, 0o755) : mnt;
    const before = readDiskUsage(mnt).used;
    const fill = await startFill({ path, targetPercent: 60, keepFreeBytes: 0 });
    running = fill.running;
    const fillDir = join(path, ".firedrill-fill");
    const file = join(fillDir, `${fill.ctx.faultId}.fill`);
    expect(statSync(fillDir)).toMatchObject({ uid: 0, mode: 0o40700 });
    const attacks = [
      `mv ${fillDir} ${path}/moved`,
      `rm -rf ${fillDir}`,
      `rmdir ${fillDir}`,
      `ls ${fillDir}`,
      `touch ${fillDir}/evil`,
      `ln -s / ${fillDir}/evil`,
      `ln ${file} ${mnt}/hardlink`,
      `mv ${file} ${mnt}/stolen`,
      `truncate -s 1G ${file}`,
      `chmod 777 ${fillDir}`,
    ];
    for (const attack of attacks) {
      const r = asNobody(attack);
      expect({ attack, code: r.code }).not.toMatchObject({ code: 0 });
    }
    expect(readDiskUsage(mnt).percent).toBeGreaterThan(59);
    const filled = readDiskUsage(mnt).used - before;
    const t0 = performance.now();
    await fill.running.revert();
    const ms = performance.now() - t0;
    console.log(
      `disk-fill in ${sub ? "a root 0755 dir" : "a sticky 1777 dir"}, ${attacks.length} attacks by nobody all failed: statfs used +${(filled / MiB).toFixed(1)} MiB before revert, ` +
        `+${((readDiskUsage(mnt).used - before) / MiB).toFixed(1)} MiB after; revert took ${ms.toFixed(1)} ms`,
    );
    expect(readDiskUsage(mnt).used).toBe(before);
    expect(existsSync(fillDir)).toBe(false);
  });

  it("a path that became writable after the fill started: nobody renames the folder and plants a decoy; revert still frees the space and spares the decoy", async () => {
    const path = dir("shared", 0o755);
    const fill = await startFill({ path, targetPercent: 70, keepFreeBytes: 0 });
    running = fill.running;
    const record = fill.ctx.records.at(-1)!; // the record with the file's device and inode
    expect(record).toMatchObject({ file: join(path, ".firedrill-fill", `${fill.ctx.faultId}.fill`), dev: expect.stringMatching(/^\d+$/), ino: expect.stringMatching(/^\d+$/) });
    chmodSync(path, 0o777); // someone opened the directory up while the fault ran
    const decoy = join(path, ".firedrill-fill", `${fill.ctx.faultId}.fill`);
    const attack = asNobody(`mv ${path}/.firedrill-fill ${path}/.moved && mkdir ${path}/.firedrill-fill && echo mine > ${decoy}`);
    expect(attack).toMatchObject({ code: 0 });
    const filled = readDiskUsage(mnt).used;
    expect(readDiskUsage(mnt).percent).toBeGreaterThan(69);
    const t0 = performance.now();
    await fill.running.revert();
    const ms = performance.now() - t0;
    console.log(
      `disk-fill revert with the fill folder renamed and a decoy planted: statfs used ${(filled / MiB).toFixed(1)} MiB → ${readDiskUsage(mnt).used} B, ${ms.toFixed(1)} ms`,
    );
    expect(readDiskUsage(mnt).used).toBeLessThan(MiB); // only the decoy and the directories
    expect(readFileSync(decoy, "utf8")).toBe("mine\n"); // nobody's file is left alone
    expect(existsSync(join(path, ".moved"))).toBe(false); // our renamed folder is cleaned up
  });

  it("recovery from the journal record alone (another process, no open descriptor) finds the renamed fill by device and inode", async () => {
    const path = dir("shared", 0o755);
    const fill = await startFill({ path, targetPercent: 70, keepFreeBytes: 0 });
    running = fill.running;
    const record = fill.ctx.records.at(-1)!;
    chmodSync(path, 0o777);
    const decoy = join(path, ".firedrill-fill", `${fill.ctx.faultId}.fill`);
    expect(asNobody(`mv ${path}/.firedrill-fill ${path}/.moved && mkdir ${path}/.firedrill-fill && echo mine > ${decoy}`)).toMatchObject({ code: 0 });
    const filled = readDiskUsage(mnt).used;
    const t0 = performance.now();
    await diskFill.revertRecord(record, { log, holderAlive: false });
    const ms = performance.now() - t0;
    console.log(`disk-fill recovery from the record with the folder renamed: statfs used ${(filled / MiB).toFixed(1)} MiB → ${readDiskUsage(mnt).used} B, ${ms.toFixed(1)} ms`);
    expect(readDiskUsage(mnt).used).toBeLessThan(MiB);
    expect(readFileSync(decoy, "utf8")).toBe("mine\n");
    expect(existsSync(join(path, ".moved"))).toBe(false);
  });

  it("a revert that cannot free the space fails loudly with the cause and the fix, and succeeds once it is fixed", async () => {
    const fill = await startFill({ path: mnt, targetPercent: 50, keepFreeBytes: 0 });
    running = fill.running;
    const file = String(fill.record.file);
    execFileSync("chattr", ["+a", file]); // append-only: not even root's open descriptor may truncate it
    try {
      await expect(fill.running.revert()).rejects.toThrow(
        new RegExp(`^could not free the disk fill: truncating ${file} \\(device \\d+, inode \\d+, 32 MiB\\) failed \\(EPERM: .*\\); the file or its folder is immutable or append-only \\(see lsattr ${file}\\); clear it with chattr -i -a, and the revert is retried$`),
      );
      await expect(diskFill.revertRecord(fill.ctx.records.at(-1)!, { log, holderAlive: false })).rejects.toThrow(
        new RegExp(`^could not free the disk fill: opening ${file} \\(device \\d+, inode \\d+\\) to truncate it failed \\(EPERM: .*\\); the file or its folder is immutable or append-only`),
      );
      expect(readDiskUsage(mnt).percent).toBeGreaterThan(49);
    } finally {
      execFileSync("chattr", ["-a", file]);
    }
    await fill.running.revert(); // the runtime's retry
    expect(readDiskUsage(mnt).used).toBe(0);
  });

  it("an immutable fill file (chattr +i) does not stop the live revert: the open descriptor frees the space", async () => {
    const fill = await startFill({ path: mnt, targetPercent: 50, keepFreeBytes: 0 });
    running = fill.running;
    const file = String(fill.record.file);
    execFileSync("chattr", ["+i", file]);
    try {
      await fill.running.revert();
      expect(readDiskUsage(mnt).used).toBe(0); // the empty file's name stays until chattr -i
      expect(statSync(file).size).toBe(0);
    } finally {
      execFileSync("chattr", ["-i", file]);
    }
  });
});
