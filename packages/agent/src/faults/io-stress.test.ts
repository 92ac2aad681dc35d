import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, statfsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject } from "@firedrill/protocol";
import { InvalidFaultRequestError } from "@firedrill/protocol";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isProcessAlive } from "../proc.js";
import { checkIoFileFits, histogramQuantile, ioStress } from "./io-stress.js";
import { revertIoStressRecord } from "./io-stress-revert.js";
import type { FaultContext, RunningFault } from "./types.js";

const log = pino({ level: "silent" });
const host = { cpuCount: 2, stateDir: "/tmp", protectedPids: () => [process.pid], networkExclusions: [] };
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.message;
    throw err;
  }
  return "accepted";
}

describe("io-stress planning", () => {
  const params = { fileSize: 256 * MiB, keepFreeBytes: 256 * MiB, blockSize: MiB };

  it("lets the working file in only with keepFreeBytes left and usage at most 98 %", () => {
    expect(refusal(() => checkIoFileFits(params, "/x", { used: GiB, avail: GiB, total: 2 * GiB, percent: 50 }))).toBe("accepted");
    expect(refusal(() => checkIoFileFits(params, "/x", { used: GiB, avail: 400 * MiB, total: GiB + 400 * MiB, percent: 71 }))).toBe(
      "params.fileSize: a 256 MiB working file on the filesystem holding /x (1 GiB used, 400 MiB free) would leave 144 MiB free, less than keepFreeBytes 256 MiB; at most 144 MiB fits; lower fileSize to 144 MiB or less, or lower keepFreeBytes",
    );
    expect(refusal(() => checkIoFileFits({ ...params, keepFreeBytes: 0 }, "/x", { used: 9.9 * GiB, avail: 300 * MiB, total: 9.9 * GiB + 300 * MiB, percent: 97 }))).toMatch(
      /^params\.fileSize: a 256 MiB working file on the filesystem holding \/x \(9\.9 GiB used, 300 MiB free\) would push usage to 99\.\d%, past the limit 98%; at most \d+ MiB fits; lower fileSize to \d+ MiB or less$/,
    );
    expect(refusal(() => checkIoFileFits(params, "/x", { used: GiB, avail: 100 * MiB, total: GiB + 100 * MiB, percent: 91 }))).toBe(
      "params.fileSize: a 256 MiB working file on the filesystem holding /x (1 GiB used, 100 MiB free) would leave 0 B free, less than keepFreeBytes 256 MiB; nothing fits there while keeping keepFreeBytes 256 MiB free; lower keepFreeBytes, free space first, or give a path on another filesystem",
    );
  });

  it("reads latency percentiles off the histogram", () => {
    // Buckets i hold latencies around 1.05^i µs.
    const hist = new Map<number, number>([
      [Math.floor(Math.log(100) / Math.log(1.05)), 98], // ~0.1 ms
      [Math.floor(Math.log(20_000) / Math.log(1.05)), 2], // ~20 ms
    ]);
    expect(histogramQuantile(hist, 0.5)).toBeCloseTo(0.1, 1);
    expect(histogramQuantile(hist, 0.99)! / 20).toBeGreaterThan(0.97);
    expect(histogramQuantile(hist, 0.99)! / 20).toBeLessThan(1.03);
    expect(histogramQuantile(new Map(), 0.5)).toBeUndefined();
  });

  it("refuses a path other users could change, as disk-fill does", () => {
    const base = mkdtempSync(join(tmpdir(), "fd-io-path-"));
    try {
      const open = join(base, "open");
      mkdirSync(open);
      chmodSync(open, 0o777);
      expect(refusal(() => ioStress.validate({ path: open }, host))).toMatch(
        new RegExp(`^params\\.path: the directory ${open} is not safe: it is writable by group and others \\(mode 0777\\) without the sticky bit`),
      );
      writeFileSync(join(base, "file"), "");
      expect(refusal(() => ioStress.validate({ path: join(base, "file") }, host))).toBe(
        `params.path: ${join(base, "file")} is not a directory; give a directory on the filesystem to stress`,
      );
      expect(refusal(() => ioStress.validate({ path: join(base, "nope") }, host))).toBe(
        `params.path: ${join(base, "nope")} does not exist; give an existing directory on the filesystem to stress`,
      );
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe("io-stress on a 64 MiB tmpfs", () => {
  let base: string;
  let mnt: string;
  let running: RunningFault | undefined;

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-io-stress-"));
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
        execFileSync("umount", ["-l", mnt]);
      }
      rmSync(base, { recursive: true, force: true });
    }
  });

  const used = () => {
    const s = statfsSync(mnt);
    return (s.blocks - s.bfree) * s.bsize;
  };

  async function start(params: JsonObject) {
    const records: JsonObject[] = [];
    const ctx: FaultContext = { faultId: `io-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, log, host, updateRevert: (r) => records.push(r) };
    const plan = ioStress.validate(params, host);
    const planned = ioStress.planRevert(plan, ctx);
    running = await ioStress.start(plan, ctx);
    return { ctx, records, planned };
  }

  async function until<T>(what: string, check: () => T | undefined | false, ms = 15_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = check();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("journals the file and then the workers, lays the file out, runs the mix with measurements, and leaves nothing on revert", async () => {
    const { ctx, records, planned } = await start({ path: mnt, fileSize: "16MiB", blockSize: "64KiB", mbps: 50, keepFreeBytes: "8MiB" });
    const file = join(mnt, ".firedrill-fill", `${ctx.faultId}.io.fill`);
    expect(planned).toEqual({ file, dir: join(mnt, ".firedrill-fill") });
    // First the file by device and inode, then the workers by pid and start time, before any I/O.
    expect(records).toHaveLength(2);
    expect(records[0]).toEqual({ ...planned, dev: expect.stringMatching(/^\d+$/), ino: expect.stringMatching(/^\d+$/) });
    const { pid, startTime } = records[1]!.child as { pid: number; startTime: number };
    expect(records[1]).toEqual({ ...records[0], child: { pid, startTime } });
    expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("fd-io-stress");
    expect((statSync(join(mnt, ".firedrill-fill")).mode & 0o777).toString(8)).toBe("700");

    await until("the file laid out", () => statSync(file).size === 16 * MiB && running!.measure!().laying_out === 0);
    expect(used()).toBeGreaterThanOrEqual(16 * MiB);
    running!.measure!();
    await new Promise((r) => setTimeout(r, 1500));
    const m = running!.measure!();
    expect(m).toMatchObject({ mbps_asked: 50, file_mib: 16, laying_out: 0, errors: 0, workers_alive: 1 });
    expect(m.read_mbps).toBeGreaterThan(0);
    expect(m.write_mbps).toBeGreaterThan(0);
    expect(m.p50_ms).toBeGreaterThan(0);
    expect(m.p99_ms).toBeGreaterThanOrEqual(m.p50_ms!);

    await running!.revert();
    running = undefined;
    expect(isProcessAlive(pid, startTime)).toBe(false);
    expect(existsSync(join(mnt, ".firedrill-fill"))).toBe(false);
    expect(used()).toBeLessThan(MiB);
  });

  it("is reverted from the journal record alone while its workers still run (the guard's path), and the live revert after it is a no-op", async () => {
    const { records } = await start({ path: mnt, fileSize: "8MiB", blockSize: "4KiB", readPercent: 0, mbps: 5, keepFreeBytes: "8MiB" });
    const record = JSON.parse(JSON.stringify(records.at(-1))) as JsonObject;
    const { pid, startTime } = record.child as { pid: number; startTime: number };
    await until("some of the file written", () => used() > 0);
    await revertIoStressRecord(record, { log });
    expect(isProcessAlive(pid, startTime)).toBe(false);
    expect(readdirSync(mnt)).toEqual([]);
    expect(used()).toBeLessThan(MiB);
    await running!.revert();
    running = undefined;
    await revertIoStressRecord(record, { log });
  });

  it("refuses a working file that does not fit above keepFreeBytes; records not naming an io-stress file", async () => {
    expect(refusal(() => ioStress.validate({ path: mnt, fileSize: "60MiB", keepFreeBytes: "8MiB" }, host))).toBe(
      `params.fileSize: a 60 MiB working file on the filesystem holding ${mnt} (0 B used, 64 MiB free) would leave 4 MiB free, less than keepFreeBytes 8 MiB; at most 56 MiB fits; lower fileSize to 56 MiB or less, or lower keepFreeBytes`,
    );
    await expect(revertIoStressRecord({ file: "/etc/passwd", dir: "/etc" }, { log })).rejects.toThrow(
      "the io-stress journal record does not name an io-stress working file (*.io.fill)",
    );
    await expect(revertIoStressRecord({ file: join(mnt, "x.io.fill"), dir: mnt }, { log })).rejects.toThrow(
      "the disk-fill journal record does not name a fill file under a .firedrill-fill folder",
    );
  });
});
