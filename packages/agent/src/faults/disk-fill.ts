/**
 * disk-fill: fills the filesystem holding `path` up to a target usage (or by a fixed size) with one
 * file, `<path>/.firedrill-fill/<faultId>.fill`.
 *
 * Nobody but root can keep the revert from freeing the space: `path` and every directory on the way
 * must be out of other local users' reach (owned by root or the agent's user, not writable by group
 * or others unless sticky, as /tmp), the fill folder is the agent's own (its user, mode 0700, a real
 * directory), and the fill file is created exclusively, never through a link. The agent keeps the
 * file open while the fault runs, so revert truncates it to 0 through that descriptor — the space
 * comes back wherever the name went — and then removes the name. The journal records the file's
 * device and inode: recovery in another process (restart, `recover`, the guard) finds the file by
 * them, also after a rename inside `path`, and touches nothing else.
 *
 * Safety: never leave less than `keepFreeBytes` free, never push usage past 98%, refuse when the
 * filesystem is already at the target. Usage is computed as df does: used = (blocks - bfree) * bsize,
 * avail = bavail * bsize, percent = used / (used + avail) (root-reserved blocks count as neither).
 */
import { spawn } from "node:child_process";
import { constants, fstatSync, mkdirSync, statfsSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { InvalidFaultRequestError, UnsafePathError, checkTrustedDir, parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import { FILL_DIR_NAME, PATH_WHY, checkFillDir, formatBytes, idOf, removeNames, revertDiskFillRecord, truncateOpen } from "./disk-fill-revert.js";
import type { FileId } from "./disk-fill-revert.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, RunningFault } from "./types.js";

export { DiskFillRevertError, FILL_DIR_NAME, formatBytes } from "./disk-fill-revert.js";

type DiskFillParams = FaultParamsByKind["disk-fill"];

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
  /** The directory: its real path (links resolved), checked out of other users' reach. */
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

const PATH_ALTERNATIVE = "or give a directory on the same filesystem that only root can change (its mount point, or /var/tmp for the root filesystem)";

/** Checks `dir` and the directories on the way; returns its real path. Thrown: InvalidFaultRequestError. Shared with io-stress. */
export function checkFaultPath(dir: string, purpose: string): string {
  try {
    return checkTrustedDir(dir, { label: "the directory", why: PATH_WHY, final: "sticky-ok", alternative: PATH_ALTERNATIVE });
  } catch (err) {
    if (err instanceof UnsafePathError) refuse("path", err.message);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") refuse("path", `${dir} does not exist; give an existing directory on the filesystem to ${purpose}`);
    refuse("path", `${dir} cannot be checked (${(err as Error).message})`);
  }
}

/**
 * Checks the directory a fault writes under (`path`: it exists, is a directory, it and the
 * directories on the way are trusted, the agent's folder in it is sound when there) and returns its
 * real path and the agent's folder in it. `purpose` ends the refusals ("fill", "stress"). Thrown:
 * InvalidFaultRequestError. Shared with io-stress.
 */
export function checkFaultDir(path: string, purpose: string): { dir: string; fillDir: string } {
  const given = resolve(path);
  let isDir: boolean;
  try {
    isDir = statSync(given).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    refuse("path", code === "ENOENT" ? `${given} does not exist; give an existing directory on the filesystem to ${purpose}` : `${given} cannot be read (${code})`);
  }
  if (!isDir) refuse("path", `${given} is not a directory; give a directory on the filesystem to ${purpose}`);
  const dir = checkFaultPath(given, purpose);
  const fillDir = join(dir, FILL_DIR_NAME);
  try {
    checkFillDir(fillDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") refuse("path", (err as Error).message);
  }
  return { dir, fillDir };
}

function validate(params: JsonObject): DiskFillPlan {
  const parsed = parseFaultParams("disk-fill", params);
  const { dir, fillDir } = checkFaultDir(parsed.path, "fill");
  const { bytes, expectedPercent } = planFillBytes(parsed, dir, readDiskUsage(dir));
  return { ...parsed, dir, fillDir, bytes, expectedPercent };
}

/** The fill file, open for the fault's whole life. */
export interface OpenFill {
  handle: FileHandle;
  id: FileId;
}

/**
 * Creates the agent's folder (0700, a real directory of the agent's user) in a checked directory
 * and `file` in it, exclusively and never through a link, and keeps it open. `dir` is checked again
 * first: time passed since validation. `purpose` ends the refusals ("fill", "stress"). Shared with
 * io-stress.
 */
export async function createFaultFile(dir: string, fillDir: string, file: string, purpose: string): Promise<OpenFill> {
  checkFaultPath(dir, purpose);
  for (let attempt = 1; ; attempt++) {
    try {
      mkdirSync(fillDir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    try {
      checkFillDir(fillDir);
    } catch (err) {
      refuse("path", (err as Error).message);
    }
    try {
      // O_EXCL: never reuse or follow anything already at that name.
      const handle = await open(file, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_NOFOLLOW, 0o600);
      return { handle, id: idOf(await handle.stat({ bigint: true })) };
    } catch (err) {
      // Another fault on this path (disk-fill, io-stress) removed the (then empty) folder in between: make it again.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 3) throw err;
    }
  }
}

/** Runs fallocate on the open fill file (as its fd 3: the very inode the agent holds, whatever its name). */
function fallocateFd(command: string, fd: number, bytes: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, ["-l", String(bytes), "/dev/fd/3"], { stdio: ["ignore", "ignore", "pipe", fd], timeout: 120_000 });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`${command} exited with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

/** Fills with 4 MiB writes, re-checking the floors before every chunk. */
async function writeChunks(
  plan: DiskFillPlan,
  handle: FileHandle,
  bytes: number,
  state: { written: number; abort: boolean; done: boolean },
  ctx: FaultContext,
): Promise<void> {
  const chunk = Buffer.alloc(CHUNK_BYTES, 0xa5); // non-zero: compressing filesystems must not shrink it
  try {
    await handle.truncate(0);
    while (!state.abort && state.written < bytes) {
      // Someone deleted the file (a revert from another process): stop; the revert truncates it.
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
  }
}

/** Bytes an open file occupies on disk (0 once closed). */
function allocatedBytes(fd: number): number {
  try {
    return fstatSync(fd).blocks * 512;
  } catch {
    return 0;
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
    preview(plan): FaultPreviewResult {
      const usage = readDiskUsage(plan.dir);
      return {
        details: [
          `fills ${formatBytes(plan.bytes)} in ${plan.fillDir} (usage ${pct(usage.percent)} → ${pct(plan.expectedPercent)}, ${formatBytes(usage.avail - plan.bytes)} left free)`,
          `never leaves less than ${formatBytes(plan.keepFreeBytes)} free, never past ${MAX_PERCENT}%`,
        ],
      };
    },
    async start(plan, ctx): Promise<RunningFault> {
      const file = join(plan.fillDir, `${ctx.faultId}.fill`);
      // Plan again against the filesystem as it is now: time passed since validation.
      const { bytes, expectedPercent } = planFillBytes(plan, plan.dir, readDiskUsage(plan.dir));
      const { handle, id } = await createFaultFile(plan.dir, plan.fillDir, file, "fill");
      const fd = handle.fd;
      const state = { written: 0, abort: false, done: false };
      let method: "fallocate" | "write" = "fallocate";
      let writing: Promise<void> | undefined;
      let released = false;
      // Frees the space through the open descriptor, whatever happened to the name, then tidies up.
      const release = async () => {
        if (released) return;
        state.abort = true;
        await writing;
        truncateOpen(fd, file, id, allocatedBytes(fd));
        released = true;
        removeNames(file, plan.fillDir, id, ctx.log);
        await handle.close();
      };
      try {
        // The record now names the very file: recovery finds it by device and inode.
        ctx.updateRevert({ file, dir: plan.fillDir, dev: id.dev, ino: id.ino });
        const t0 = performance.now();
        try {
          await fallocateFd(fallocate, fd, bytes);
          state.written = bytes;
          state.done = true;
          ctx.log.info({ file, bytes, ms: Math.round(performance.now() - t0) }, "disk filled with fallocate");
        } catch (err) {
          method = "write";
          ctx.log.warn({ err: (err as Error).message, file }, "fallocate failed; filling with writes instead");
          // Writing may take minutes: it runs on while the fault runs, so a stop can interrupt it.
          writing = writeChunks(plan, handle, bytes, state, ctx).then(
            () => ctx.log.info({ file, bytes: state.written, ms: Math.round(performance.now() - t0) }, "disk filled with writes"),
            (writeErr: unknown) => ctx.log.error({ err: writeErr, file, written: state.written }, "disk fill by writes failed part-way"),
          );
        }
      } catch (err) {
        await release().catch((releaseErr: unknown) => ctx.log.error({ err: releaseErr, file }, "could not undo a disk fill that failed to start"));
        throw err;
      }
      const targetPercent = plan.targetPercent ?? expectedPercent;
      let reverted: Promise<void> | undefined;
      return {
        details: [
          `fill file ${file} (device ${id.dev}, inode ${id.ino}), held open by the agent: revert frees it even if it is renamed`,
          `never leaves less than ${formatBytes(plan.keepFreeBytes)} free, never past ${MAX_PERCENT}%`,
        ],
        measure() {
          const usage = readDiskUsage(plan.dir);
          return {
            bytes_written: method === "write" ? state.written : allocatedBytes(fd),
            usage_percent: Math.round(usage.percent * 10) / 10,
            free_bytes: usage.avail,
            target_percent: Math.round(targetPercent * 10) / 10,
            filling: state.done ? 0 : 1,
            fallback_writes: method === "write" ? 1 : 0,
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
    revertRecord: revertDiskFillRecord,
  };
}

/** The disk-fill fault kind. */
export const diskFill = createDiskFill();
