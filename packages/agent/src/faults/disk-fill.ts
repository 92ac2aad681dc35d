/**
 * disk-fill: fills the filesystem holding `path` up to a target usage (or by a fixed size) with one
 * file in an agent-owned folder, `<path>/.firedrill-fill/<faultId>.fill`. Deleting the file is the
 * whole revert, so the journal record is just its path.
 *
 * Safety: never leave less than `keepFreeBytes` free, never push usage past 98%, refuse when the
 * filesystem is already at the target. Usage is computed as df does: used = (blocks - bfree) * bsize,
 * avail = bavail * bsize, percent = used / (used + avail) (root-reserved blocks count as neither).
 */
import { execFile } from "node:child_process";
import { closeSync, constants, lstatSync, mkdirSync, openSync, rmdirSync, statfsSync, statSync, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { InvalidFaultRequestError, parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import type { FaultContext, FaultKindDefinition, RunningFault } from "./types.js";

const execFileAsync = promisify(execFile);

type DiskFillParams = FaultParamsByKind["disk-fill"];

/** The agent-owned folder, inside the directory given as `path`, that holds fill files. */
export const FILL_DIR_NAME = ".firedrill-fill";
/** The highest usage a fill may cause, in percent. */
const MAX_PERCENT = 98;
/** Chunk size of the write fallback. */
const CHUNK_BYTES = 4 * 1024 * 1024;

/** Options of the disk-fill kind (seams for tests). */
export interface DiskFillOptions {
  /** The fallocate program; point it at something that fails to force the write fallback. @default "fallocate" */
  fallocateCommand?: string;
}

/** Validated disk-fill parameters with the fill planned against the filesystem as it was then. */
export interface DiskFillPlan extends DiskFillParams {
  /** The directory, resolved. */
  dir: string;
  /** The agent-owned folder holding the fill file. */
  fillDir: string;
  /** Bytes to fill, as planned at validation. */
  bytes: number;
  /** The usage the fill is expected to reach, in percent. */
  expectedPercent: number;
}

/** Filesystem usage as df reports it. */
export interface DiskUsage {
  used: number;
  avail: number;
  /** used + avail: the size as df shows it (root-reserved blocks excluded). */
  total: number;
  percent: number;
}

/** Reads the usage of the filesystem holding `path`. */
export function readDiskUsage(path: string): DiskUsage {
  const s = statfsSync(path);
  const used = (s.blocks - s.bfree) * s.bsize;
  const avail = s.bavail * s.bsize;
  const total = used + avail;
  return { used, avail, total, percent: total > 0 ? (used / total) * 100 : 100 };
}

/** Formats bytes for messages: `256 MiB`, `1.5 GiB`, `900 B` (to one decimal, rounded with `round`). */
export function formatBytes(bytes: number, round: (n: number) => number = Math.round): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? round(value) : round(value * 10) / 10} ${units[i]}`;
}

function pct(n: number): string {
  return `${Math.round(n * 10) / 10}%`;
}

function refuse(field: string, message: string): never {
  throw new InvalidFaultRequestError([{ field: `params.${field}`, message }]);
}

/**
 * How many bytes to fill on the filesystem as it is now; throws InvalidFaultRequestError when the
 * fill is not allowed (already at the target, below the keepFreeBytes floor, past 98%).
 */
export function planFillBytes(params: DiskFillParams, dir: string, usage: DiskUsage): { bytes: number; expectedPercent: number } {
  const { total, used, avail } = usage;
  const field = params.targetPercent !== undefined ? "targetPercent" : "size";
  let bytes: number;
  if (params.targetPercent !== undefined) {
    if (usage.percent >= params.targetPercent) {
      refuse(
        "targetPercent",
        `the filesystem holding ${dir} is already ${pct(usage.percent)} full (above the target ${pct(params.targetPercent)}); ` +
          `give a targetPercent above ${pct(usage.percent)}, or free space first`,
      );
    }
    bytes = Math.ceil((params.targetPercent / 100) * total - used);
  } else bytes = params.size ?? 0;
  const freeAfter = avail - bytes;
  const percentAfter = total > 0 ? ((used + bytes) / total) * 100 : 100;
  // The most this filesystem can take while keeping both floors.
  const maxBytes = Math.max(0, Math.min(avail - params.keepFreeBytes, Math.floor((MAX_PERCENT / 100) * total - used)));
  const maxPercent = total > 0 ? ((used + maxBytes) / total) * 100 : 0;
  const asked = params.targetPercent !== undefined ? `reaching ${pct(params.targetPercent)}` : `filling ${formatBytes(bytes)}`;
  const lowerKeepFree = avail - bytes < params.keepFreeBytes ? ", or lower keepFreeBytes" : "";
  const fix =
    maxBytes > 0
      ? `at most ${formatBytes(maxBytes, Math.floor)} can be filled (usage ${pct(maxPercent)}); ` +
        (params.targetPercent !== undefined
          ? `lower targetPercent to ${Math.floor(maxPercent * 10) / 10} or less`
          : `lower size to ${formatBytes(maxBytes, Math.floor)} or less`) +
        lowerKeepFree
      : avail <= params.keepFreeBytes
        ? `nothing can be filled there while keeping keepFreeBytes ${formatBytes(params.keepFreeBytes)} free; lower keepFreeBytes, or free space first`
        : `nothing can be filled there without passing ${MAX_PERCENT}%; free space first`;
  const where = `on the filesystem holding ${dir} (${formatBytes(used)} used, ${formatBytes(avail)} free)`;
  if (freeAfter < 0) refuse(field, `${asked} ${where} needs more than is free; ${fix}`);
  if (freeAfter < params.keepFreeBytes) {
    refuse(
      field,
      `${asked} ${where} would leave ${formatBytes(freeAfter)} free, less than keepFreeBytes ${formatBytes(params.keepFreeBytes)}; ${fix}`,
    );
  }
  if (percentAfter > MAX_PERCENT) {
    refuse(
      field,
      `${asked} on the filesystem holding ${dir} (${pct(usage.percent)} full, ${formatBytes(avail)} free) would push usage to ${pct(percentAfter)}, past the limit ${MAX_PERCENT}%; ${fix}`,
    );
  }
  return { bytes, expectedPercent: percentAfter };
}

function validate(params: JsonObject): DiskFillPlan {
  const parsed = parseFaultParams("disk-fill", params);
  const dir = resolve(parsed.path);
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    refuse("path", code === "ENOENT" ? `${dir} does not exist; give an existing directory on the filesystem to fill` : `${dir} cannot be read (${code})`);
  }
  if (!isDir) refuse("path", `${dir} is not a directory; give a directory on the filesystem to fill`);
  const fillDir = join(dir, FILL_DIR_NAME);
  try {
    checkFillDir(fillDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") refuse("path", (err as Error).message);
  }
  const { bytes, expectedPercent } = planFillBytes(parsed, dir, readDiskUsage(dir));
  return { ...parsed, dir, fillDir, bytes, expectedPercent };
}

/**
 * Checks that the fill folder is ours: a real directory (no symlink), owned by this user and
 * writable by nobody else, so no one can swap the fill file for a link to something precious.
 * Thrown when it is not (ENOENT when it does not exist yet).
 */
function checkFillDir(fillDir: string): void {
  const st = lstatSync(fillDir);
  if (!st.isDirectory()) throw new Error(`${fillDir} exists and is not a directory; firedrill keeps its fill files there: remove it`);
  const uid = process.getuid?.() ?? st.uid;
  if (st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(
      `${fillDir} is not owned by the agent (uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}); firedrill keeps its fill files there: remove it`,
    );
  }
}

/** Removes a fill file (gone is fine) and its folder when empty. */
function removeFill(file: string, fillDir: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  try {
    rmdirSync(fillDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Another fill (or someone's file) still lives there, or it is gone already.
    if (code !== "ENOENT" && code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
  }
}

/** Bytes a file occupies on disk (0 when gone). */
function allocatedBytes(file: string): number {
  try {
    return statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

/** Creates the agent-owned folder (0700, a real directory) and the fill file, exclusively. */
function createFillFile(plan: DiskFillPlan, file: string): void {
  mkdirSync(plan.fillDir, { mode: 0o700, recursive: true });
  checkFillDir(plan.fillDir);
  // O_EXCL: never reuse or follow anything already at that name.
  const fd = openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
  closeSync(fd);
}

/** Fills with 4 MiB writes, re-checking the floors before every chunk. */
async function writeChunks(
  plan: DiskFillPlan,
  file: string,
  bytes: number,
  state: { written: number; abort: boolean; done: boolean },
  ctx: FaultContext,
): Promise<void> {
  const chunk = Buffer.alloc(CHUNK_BYTES, 0xa5); // non-zero: compressing filesystems must not shrink it
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, constants.O_WRONLY | constants.O_NOFOLLOW);
    await handle.truncate(0);
    while (!state.abort && state.written < bytes) {
      // Someone deleted the file (a revert from another process): stop, and free the space by closing.
      if ((await handle.stat()).nlink === 0) break;
      const usage = readDiskUsage(plan.dir);
      const room = Math.min(usage.avail - plan.keepFreeBytes, Math.floor((MAX_PERCENT / 100) * usage.total) - usage.used);
      const n = Math.min(CHUNK_BYTES, bytes - state.written, room);
      if (n <= 0) {
        ctx.log.warn({ written: state.written, planned: bytes, avail: usage.avail }, "disk fill stopped early at the free-space floor");
        break;
      }
      const { bytesWritten } = await handle.write(chunk, 0, n, state.written);
      state.written += bytesWritten;
    }
    await handle.datasync();
  } finally {
    state.done = true;
    await handle?.close();
  }
}

/** Builds the disk-fill kind. */
export function createDiskFill(options: DiskFillOptions = {}): FaultKindDefinition<DiskFillPlan> {
  const fallocate = options.fallocateCommand ?? "fallocate";
  return {
    kind: "disk-fill",
    validate,
    planRevert(plan, ctx) {
      return { file: join(plan.fillDir, `${ctx.faultId}.fill`), dir: plan.fillDir };
    },
    async start(plan, ctx): Promise<RunningFault> {
      const file = join(plan.fillDir, `${ctx.faultId}.fill`);
      // Plan again against the filesystem as it is now: time passed since validation.
      const { bytes, expectedPercent } = planFillBytes(plan, plan.dir, readDiskUsage(plan.dir));
      createFillFile(plan, file);
      const state = { written: 0, abort: false, done: false };
      let method: "fallocate" | "write" = "fallocate";
      let writing: Promise<void> | undefined;
      const t0 = performance.now();
      try {
        await execFileAsync(fallocate, ["-l", String(bytes), file], { timeout: 120_000 });
        state.written = bytes;
        state.done = true;
        ctx.log.info({ file, bytes, ms: Math.round(performance.now() - t0) }, "disk filled with fallocate");
      } catch (err) {
        method = "write";
        ctx.log.warn({ err: (err as Error).message, file }, "fallocate failed; filling with writes instead");
        // Writing may take minutes: it runs on while the fault runs, so a stop can interrupt it.
        writing = writeChunks(plan, file, bytes, state, ctx).then(
          () => ctx.log.info({ file, bytes: state.written, ms: Math.round(performance.now() - t0) }, "disk filled with writes"),
          (writeErr: unknown) => ctx.log.error({ err: writeErr, file, written: state.written }, "disk fill by writes failed part-way"),
        );
      }
      const targetPercent = plan.targetPercent ?? expectedPercent;
      let reverted: Promise<void> | undefined;
      return {
        measure() {
          const usage = readDiskUsage(plan.dir);
          return {
            bytes_written: method === "write" ? state.written : allocatedBytes(file),
            usage_percent: Math.round(usage.percent * 10) / 10,
            free_bytes: usage.avail,
            target_percent: Math.round(targetPercent * 10) / 10,
            filling: state.done ? 0 : 1,
            fallback_writes: method === "write" ? 1 : 0,
          };
        },
        revert() {
          reverted ??= (async () => {
            state.abort = true;
            await writing;
            removeFill(file, plan.fillDir);
          })().catch((err: unknown) => {
            reverted = undefined; // let the runtime retry
            throw err;
          });
          return reverted;
        },
      };
    },
    async revertRecord(revert, { log }) {
      const file = revert.file;
      const dir = revert.dir;
      // The agent runs as root: only ever delete what looks like our own fill file.
      if (
        typeof file !== "string" ||
        typeof dir !== "string" ||
        !file.startsWith("/") ||
        !file.endsWith(".fill") ||
        basename(dir) !== FILL_DIR_NAME ||
        dirname(file) !== dir
      ) {
        throw new Error(`the disk-fill journal record does not name a fill file under a ${FILL_DIR_NAME} folder: ${JSON.stringify(revert)}`);
      }
      const freed = allocatedBytes(file);
      removeFill(file, dir);
      log.info({ file, freed }, "fill file removed");
    },
  };
}

/** The disk-fill fault kind. */
export const diskFill = createDiskFill();
