/**
 * io-stress: block reads and writes on one working file under `path`, at a target throughput
 * (`mbps`, MB/s) or as fast as the disk goes (`max`), with a block size and a read/write mix.
 *
 * The file, `<path>/.firedrill-fill/<faultId>.io.fill`, lives where a disk-fill would (the same
 * directory rules: `path` and every directory on the way out of other local users' reach, the
 * folder the agent's own, mode 0700), is created exclusively and never through a link, and is
 * recorded in the journal by device and inode before a byte is written. It must fit: `fileSize`
 * never leaves less than `keepFreeBytes` free nor pushes usage past 98 %.
 *
 * The workers run in a child process (`node -e`) that gets the agent's open file as its fd 3: it
 * first lays the file out (sequential writes), then runs `workers` concurrent block operations at
 * random block-aligned offsets, each a read or a write by the mix, throttled by a token bucket, with
 * an fdatasync after every 16 MiB written (and at least once a second) so the writes reach the
 * device. It reports bytes, operations and a latency histogram every 500 ms. It exits by itself
 * when its stdin (a pipe only the agent holds) closes.
 *
 * Revert: kill the child (pid and start time, recorded before it does any I/O), then truncate the
 * file through the agent's descriptor and remove it, as disk-fill does; from the journal record
 * alone (guard, restart) the same, the file found by device and inode.
 */
import { fstatSync } from "node:fs";
import { join } from "node:path";
import { InvalidFaultRequestError, parseFaultParams } from "@firedrill/protocol";
import type { IoStressParams, JsonObject } from "@firedrill/protocol";
import { checkFaultDir, createFaultFile, readDiskUsage } from "./disk-fill.js";
import type { DiskUsage } from "./disk-fill.js";
import { formatBytes, removeNames, truncateOpen } from "./disk-fill-revert.js";
import { killChild } from "./held-child.js";
import { IO_CHILD, revertIoStressRecord } from "./io-stress-revert.js";
import { spawnStressChild } from "./stress-child.js";
import type { ChildMessage, StressChild } from "./stress-child.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, RunningFault } from "./types.js";

/** The highest usage the working file may cause, in percent (disk-fill's limit). */
const MAX_PERCENT = 98;
/** fdatasync after this many bytes written... */
export const FSYNC_BYTES = 16 * 1024 * 1024;
/** ...and at least this often while there are unsynced writes. */
export const FSYNC_MS = 1000;
/** How often the child reports its counters. */
const REPORT_MS = 500;
/** Latency histogram buckets: each 5 % wider than the last (so percentiles are within ~2.5 %). */
export const LATENCY_BUCKET_GROWTH = 1.05;

/** Validated io-stress parameters with the directory checked. */
export interface IoStressPlan extends IoStressParams {
  /** The directory: its real path (links resolved), checked out of other users' reach. */
  dir: string;
  /** The agent-owned folder holding the working file. */
  fillDir: string;
}

function refuse(field: string, message: string): never {
  throw new InvalidFaultRequestError([{ field: `params.${field}`, message }]);
}

function pct(n: number): string {
  return `${Math.round(n * 10) / 10}%`;
}

/**
 * Checks that a `fileSize` working file fits on the filesystem as it is now: never less than
 * `keepFreeBytes` free after it, never past 98 %. Thrown: InvalidFaultRequestError on `fileSize`
 * with the most that fits.
 */
export function checkIoFileFits(params: Pick<IoStressParams, "fileSize" | "keepFreeBytes" | "blockSize">, dir: string, usage: DiskUsage): void {
  const { total, used, avail } = usage;
  const maxBytes = Math.max(0, Math.min(avail - params.keepFreeBytes, Math.floor((MAX_PERCENT / 100) * total - used)));
  const maxBlocks = Math.floor(maxBytes / params.blockSize) * params.blockSize;
  const fix =
    maxBlocks >= params.blockSize
      ? `at most ${formatBytes(maxBlocks, Math.floor)} fits; lower fileSize to ${formatBytes(maxBlocks, Math.floor)} or less${avail - params.fileSize < params.keepFreeBytes ? ", or lower keepFreeBytes" : ""}`
      : avail <= params.keepFreeBytes
        ? `nothing fits there while keeping keepFreeBytes ${formatBytes(params.keepFreeBytes)} free; lower keepFreeBytes, free space first, or give a path on another filesystem`
        : `nothing fits there without passing ${MAX_PERCENT}%; free space first, or give a path on another filesystem`;
  const what = `a ${formatBytes(params.fileSize)} working file on the filesystem holding ${dir} (${formatBytes(used)} used, ${formatBytes(avail)} free)`;
  const freeAfter = avail - params.fileSize;
  const percentAfter = total > 0 ? ((used + params.fileSize) / total) * 100 : 100;
  if (freeAfter < params.keepFreeBytes) {
    refuse("fileSize", `${what} would leave ${formatBytes(Math.max(0, freeAfter))} free, less than keepFreeBytes ${formatBytes(params.keepFreeBytes)}; ${fix}`);
  }
  if (percentAfter > MAX_PERCENT) refuse("fileSize", `${what} would push usage to ${pct(percentAfter)}, past the limit ${MAX_PERCENT}%; ${fix}`);
}

function validate(params: JsonObject): IoStressPlan {
  const parsed = parseFaultParams("io-stress", params);
  const { dir, fillDir } = checkFaultDir(parsed.path, "stress");
  checkIoFileFits(parsed, dir, readDiskUsage(dir));
  return { ...parsed, dir, fillDir };
}

/**
 * The workers: plain JS evaluated by `node -e`, the working file as fd 3. On "go": lays the file
 * out, then runs the mix until its stdin closes.
 */
const WORKERS_SOURCE = `
"use strict";
const fs = require("node:fs");
const cfg = JSON.parse(process.argv[process.argv.length - 1]);
const FD = 3;
const BS = cfg.blockSize;
try { fs.writeFileSync("/proc/self/comm", "fd-io-stress"); } catch {}
process.stdout.on("error", () => {});
const send = (m) => { try { process.stdout.write(JSON.stringify(m) + "\\n"); } catch {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pread = (buf, pos) => new Promise((res, rej) => fs.read(FD, buf, 0, buf.length, pos, (e, n) => (e ? rej(e) : res(n))));
const pwrite = (buf, pos) => new Promise((res, rej) => fs.write(FD, buf, 0, buf.length, pos, (e, n) => (e ? rej(e) : res(n))));
const datasync = () => new Promise((res, rej) => fs.fdatasync(FD, (e) => (e ? rej(e) : res())));
const LOG_GROWTH = Math.log(cfg.bucketGrowth);
// Cumulative counters, and the latency histogram since the last report.
const c = { rb: 0, wb: 0, rops: 0, wops: 0, syncs: 0, errors: 0 };
let hist = {};
let laid = 0, laidOut = false, lastError = "";
const record = (ms) => { const i = Math.floor(Math.log(Math.max(1, ms * 1000)) / LOG_GROWTH); hist[i] = (hist[i] || 0) + 1; };
setInterval(() => {
  send({ t: "stats", at: performance.now(), ...c, laid, laidOut, hist, lastError });
  hist = {};
}, cfg.reportMs);
// Token bucket over all I/O (lay-out included); rate 0: no limit.
const rate = cfg.bytesPerSec;
const capacity = Math.max(BS, rate * 0.1);
let tokens = BS, last = performance.now();
async function take(n) {
  if (!rate) return;
  for (;;) {
    const now = performance.now();
    tokens = Math.min(capacity, tokens + ((now - last) / 1000) * rate);
    last = now;
    if (tokens >= n) { tokens -= n; return; }
    await sleep(Math.max(1, ((n - tokens) / rate) * 1000));
  }
}
let unsynced = 0, lastSync = performance.now(), syncing = false;
async function maybeSync(force) {
  if (syncing || unsynced === 0) return;
  if (!force && unsynced < cfg.fsyncBytes && performance.now() - lastSync < cfg.fsyncMs) return;
  syncing = true;
  unsynced = 0;
  try { await datasync(); c.syncs++; } finally { syncing = false; lastSync = performance.now(); }
}
async function failed(e) {
  c.errors++;
  lastError = String((e && e.code) || (e && e.message) || e);
  await sleep(1000);
}
async function layout() {
  const buf = Buffer.alloc(BS, 0xa5);
  while (laid < cfg.fileSize) {
    const s = fs.statfsSync(cfg.dir);
    const avail = s.bavail * s.bsize, used = (s.blocks - s.bfree) * s.bsize, total = used + avail;
    const room = Math.min(avail - cfg.keepFreeBytes, Math.floor(0.98 * total) - used);
    if (room < BS) break;
    await take(BS);
    buf.writeDoubleLE(Math.random(), 0);
    try { await pwrite(buf, laid); } catch (e) { await failed(e); continue; }
    laid += BS;
    c.wb += BS;
    unsynced += BS;
    await maybeSync(false);
  }
  await maybeSync(true).catch(failed);
  laidOut = true;
  send({ t: "laid", bytes: laid, short: laid < cfg.fileSize });
}
let acc = 0;
function nextIsRead() { acc += cfg.readPercent; if (acc >= 100) { acc -= 100; return true; } return false; }
async function worker(i) {
  const buf = Buffer.alloc(BS, 0x5a + i);
  const blocks = Math.max(1, Math.floor(laid / BS));
  for (;;) {
    const isRead = nextIsRead();
    await take(BS);
    const pos = Math.floor(Math.random() * blocks) * BS;
    const t0 = performance.now();
    try {
      if (isRead) {
        const n = await pread(buf, pos);
        c.rb += n; c.rops++;
      } else {
        buf.writeDoubleLE(Math.random(), 0);
        await pwrite(buf, pos);
        c.wb += BS; c.wops++; unsynced += BS;
      }
    } catch (e) { await failed(e); continue; }
    record(performance.now() - t0);
    if (!isRead) await maybeSync(false).catch(failed);
  }
}
setInterval(() => { maybeSync(false).catch(failed); }, cfg.fsyncMs).unref();
let started = false;
async function run() {
  await layout();
  if (laid < BS) return;
  for (let i = 0; i < cfg.workers; i++) worker(i);
}
process.stdin.on("data", (d) => { if (!started && String(d).includes("go")) { started = true; run(); } });
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
send({ t: "ready" });
`;

/** A "stats" message of the child: cumulative counters at `at` (ms, the child's clock), the histogram since the last one. */
interface Stats {
  at: number;
  rb: number;
  wb: number;
  rops: number;
  wops: number;
  syncs: number;
  errors: number;
  laid: number;
  laidOut: boolean;
  hist: Record<string, number>;
  lastError: string;
}

/** The latency (ms) at quantile `q` (0-1) of a histogram of bucket index → count. */
export function histogramQuantile(hist: ReadonlyMap<number, number>, q: number, growth = LATENCY_BUCKET_GROWTH): number | undefined {
  let total = 0;
  for (const n of hist.values()) total += n;
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const i of [...hist.keys()].sort((a, b) => a - b)) {
    seen += hist.get(i)!;
    // The bucket's geometric middle, µs → ms.
    if (seen >= rank) return growth ** (i + 0.5) / 1000;
  }
  return undefined;
}

function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Bytes an open file occupies on disk (0 once closed). */
function allocatedBytes(fd: number): number {
  try {
    return fstatSync(fd).blocks * 512;
  } catch {
    return 0;
  }
}

/** The io-stress fault kind. */
export const ioStress: FaultKindDefinition<IoStressPlan> = {
  kind: "io-stress",
  validate,
  planRevert(plan, ctx) {
    return { file: join(plan.fillDir, `${ctx.faultId}.io.fill`), dir: plan.fillDir };
  },
  preview(plan): FaultPreviewResult {
    const usage = readDiskUsage(plan.dir);
    return {
      details: [
        `${plan.mbps === "max" ? "as fast as the disk goes" : `${plan.mbps} MB/s`}, ${formatBytes(plan.blockSize)} blocks, ${plan.readPercent}% reads, ${plan.workers} at a time, ` +
          `on a ${formatBytes(plan.fileSize)} working file in ${plan.fillDir} (${formatBytes(usage.avail)} free now)`,
        `never leaves less than ${formatBytes(plan.keepFreeBytes)} free, never past ${MAX_PERCENT}%`,
      ],
    };
  },
  async start(plan, ctx: FaultContext): Promise<RunningFault> {
    const file = join(plan.fillDir, `${ctx.faultId}.io.fill`);
    // Checked again against the filesystem as it is now: time passed since validation.
    checkIoFileFits(plan, plan.dir, readDiskUsage(plan.dir));
    const { handle, id } = await createFaultFile(plan.dir, plan.fillDir, file, "stress");
    const fd = handle.fd;
    let child: StressChild | undefined;
    let released = false;
    // Kills the workers (nothing writes the file after), then frees the file through the open descriptor.
    const release = async () => {
      if (released) return;
      if (child) {
        await killChild(child.ref, IO_CHILD, ctx.log);
        await child.exited;
      }
      truncateOpen(fd, file, id, allocatedBytes(fd));
      released = true;
      removeNames(file, plan.fillDir, id, ctx.log);
      await handle.close();
    };
    const record: JsonObject = { file, dir: plan.fillDir, dev: id.dev, ino: id.ino };
    const windows: Stats[] = [];
    let latest: Stats | undefined;
    let laidMessage: ChildMessage | undefined;
    try {
      // The record names the very file before a byte is written.
      ctx.updateRevert(record);
      child = await spawnStressChild({
        source: WORKERS_SOURCE,
        name: "firedrill-io-stress",
        faultId: ctx.faultId,
        fds: [fd],
        // One libuv thread per worker (plus the lay-out's and fsync's).
        env: { UV_THREADPOOL_SIZE: String(Math.max(4, plan.workers + 2)) },
        config: {
          dir: plan.dir,
          blockSize: plan.blockSize,
          fileSize: plan.fileSize,
          readPercent: plan.readPercent,
          workers: plan.workers,
          bytesPerSec: plan.mbps === "max" ? 0 : plan.mbps * 1e6,
          keepFreeBytes: plan.keepFreeBytes,
          fsyncBytes: FSYNC_BYTES,
          fsyncMs: FSYNC_MS,
          reportMs: REPORT_MS,
          bucketGrowth: LATENCY_BUCKET_GROWTH,
        },
      });
      const c = child;
      c.onMessage((msg) => {
        if (msg.t === "stats") {
          latest = msg as unknown as Stats;
          windows.push(latest);
          if (windows.length > 1000) windows.shift();
        } else if (msg.t === "laid") {
          laidMessage = msg;
          ctx.log.info({ bytes: msg.bytes, short: msg.short }, "io-stress working file laid out");
        }
      });
      await c.waitFor("ready", 10_000);
      // Journaled before any I/O: recovery kills this very process before it frees the file.
      ctx.updateRevert({ ...record, child: { pid: c.ref.pid, startTime: c.ref.startTime } });
      c.send("go");
    } catch (err) {
      await release().catch((releaseErr: unknown) => ctx.log.error({ err: releaseErr, file }, "could not undo an io-stress that failed to start"));
      throw err;
    }
    const c = child;
    ctx.log.info({ pid: c.ref.pid, file }, "io-stress running");
    // What measure() reported last: the child's counters then.
    let previous: Stats | undefined;
    let reverted: Promise<void> | undefined;
    return {
      details: [
        `workers pid ${c.ref.pid}: ${plan.mbps === "max" ? "as fast as the disk goes" : `${plan.mbps} MB/s`}, ${formatBytes(plan.blockSize)} blocks, ${plan.readPercent}% reads, ${plan.workers} at a time, fdatasync every ${formatBytes(FSYNC_BYTES)} written and every ${FSYNC_MS / 1000} s`,
        `working file ${file} (device ${id.dev}, inode ${id.ino}, ${formatBytes(plan.fileSize)}), held open by the agent: revert removes it even if it is renamed`,
        `never leaves less than ${formatBytes(plan.keepFreeBytes)} free, never past ${MAX_PERCENT}%`,
      ],
      measure() {
        const now = latest;
        const batch = windows.splice(0);
        // The first call: from the child's first report on.
        const base = previous ?? batch[0];
        const merged = new Map<number, number>();
        for (const w of batch) {
          for (const [k, n] of Object.entries(w.hist)) merged.set(Number(k), (merged.get(Number(k)) ?? 0) + n);
        }
        previous = now;
        const seconds = now && base ? (now.at - base.at) / 1000 : 0;
        const rate = (key: "rb" | "wb" | "rops" | "wops") => (now && base && seconds > 0 ? (now[key] - base[key]) / seconds : 0);
        const p50 = histogramQuantile(merged, 0.5);
        const p99 = histogramQuantile(merged, 0.99);
        const readBps = rate("rb");
        const writeBps = rate("wb");
        return {
          mbps_achieved: round((readBps + writeBps) / 1e6),
          read_mbps: round(readBps / 1e6),
          write_mbps: round(writeBps / 1e6),
          ...(plan.mbps !== "max" ? { mbps_asked: plan.mbps } : {}),
          iops: round(rate("rops") + rate("wops"), 0),
          ...(p50 !== undefined ? { p50_ms: round(p50, 3) } : {}),
          ...(p99 !== undefined ? { p99_ms: round(p99, 3) } : {}),
          file_mib: round((laidMessage ? Number(laidMessage.bytes) : (now?.laid ?? 0)) / 2 ** 20),
          laying_out: now?.laidOut ? 0 : 1,
          errors: now?.errors ?? 0,
          workers_alive: c.hasExited() ? 0 : 1,
        };
      },
      revert() {
        reverted ??= release().catch((err: unknown) => {
          reverted = undefined; // let the runtime retry
          throw err;
        });
        return reverted;
      },
    };
  },
  revertRecord: revertIoStressRecord,
};
