/**
 * The revert half of disk-fill: frees a fill from its journal record alone (restart, `recover`, the
 * guard), and the helpers the running fault's own revert shares. Only node:fs and the protocol's
 * core: the guard loads this without the rest of the agent. See disk-fill.ts.
 */
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, readdirSync, rmdirSync, unlinkSync } from "node:fs";
import type { BigIntStats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { checkTrustedDir, octalMode, userName } from "@firedrill/protocol/core";
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";

/** The agent-owned folder, inside the directory given as `path`, that holds fill files. */
export const FILL_DIR_NAME = ".firedrill-fill";

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

/** Why `path` must be out of other users' reach (messages). */
export const PATH_WHY = "another local user could rename or replace the fill folder there and keep the revert from freeing the space";

/** The agent's user. */
export function agentUid(): number {
  return process.geteuid?.() ?? 0;
}

/** A uid with its user name, for messages. */
export function owner(uid: number): string {
  const name = userName(uid);
  return name ? `uid ${uid} (${name})` : `uid ${uid}`;
}

/**
 * Checks that the fill folder is the agent's: a real directory (no link), owned by the agent's
 * user, mode 0700 (no one else can enter it, let alone swap the fill file). Thrown when it is not
 * (ENOENT when it does not exist yet).
 */
export function checkFillDir(fillDir: string): void {
  const st = lstatSync(fillDir);
  const uid = agentUid();
  if (!st.isDirectory()) {
    throw new Error(
      `${fillDir} exists and is ${st.isSymbolicLink() ? "a symbolic link" : "not a directory"} (owner ${owner(st.uid)}): firedrill keeps its fill there and makes it itself; check what it is and remove it (rm ${fillDir})`,
    );
  }
  if (st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new Error(
      `${fillDir} exists but is not the agent's (owner ${owner(st.uid)}, mode ${octalMode(st.mode)}; the agent makes it owned by ${owner(uid)}, mode 0700): ` +
        `someone else made it; check what it holds and remove it (rm -r ${fillDir})`,
    );
  }
}

/** The device and inode of a file, as decimal strings (inodes may not fit a double). */
export interface FileId {
  dev: string;
  ino: string;
}

/** The device and inode of a file stat. */
export function idOf(st: BigIntStats): FileId {
  return { dev: st.dev.toString(), ino: st.ino.toString() };
}

/** Whether a stat is the regular file `id` names. */
export function sameFile(st: BigIntStats, id: FileId): boolean {
  return st.isFile() && st.dev.toString() === id.dev && st.ino.toString() === id.ino;
}

/** lstat (bigint), or undefined when nothing is there. */
export function lstatOrUndefined(path: string): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw err;
  }
}

/** Most directory entries looked at when searching for a fill file by inode. */
const SCAN_LIMIT = 10_000;

function entries(dir: string): string[] {
  try {
    return readdirSync(dir).slice(0, SCAN_LIMIT);
  } catch {
    return [];
  }
}

/**
 * Finds the fill file by device and inode: at its name, renamed inside its folder, or in a folder
 * of the agent's (its user, mode 0700: the fill folder renamed) directly inside `path`.
 */
export function locateFill(file: string, fillDir: string, id: FileId): string | undefined {
  if (lstatOrUndefined(file) && sameFile(lstatOrUndefined(file)!, id)) return file;
  const inFolder = (folder: string) => entries(folder).map((n) => join(folder, n)).find((p) => {
    const st = lstatOrUndefined(p);
    return st !== undefined && sameFile(st, id);
  });
  const found = inFolder(fillDir);
  if (found) return found;
  const parent = dirname(fillDir);
  for (const name of entries(parent)) {
    const folder = join(parent, name);
    if (folder === fillDir) continue;
    const st = lstatOrUndefined(folder);
    if (!st?.isDirectory() || Number(st.uid) !== agentUid() || (Number(st.mode) & 0o077) !== 0) continue;
    const there = inFolder(folder);
    if (there) return there;
  }
  return undefined;
}

/** What to do about a failed truncate or unlink, by errno. */
export function hint(err: unknown, file: string): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case "EPERM":
      return `the file or its folder is immutable or append-only (see lsattr ${file}); clear it with chattr -i -a`;
    case "EROFS":
      return "the filesystem is read-only now; remount it read-write (mount -o remount,rw)";
    case "EIO":
      return "the disk reports I/O errors; check dmesg";
    default:
      return "fix the cause";
  }
}

/** An fs error as `CODE: message`. */
export function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message}` : String(e.message ?? err);
}

/** Thrown when a disk-fill revert could not free the space. The message says what, where and how to fix it. */
export class DiskFillRevertError extends Error {
  override readonly name = "DiskFillRevertError";
}

/** Truncates an open fill file to nothing and checks that its blocks are free. */
export function truncateOpen(fd: number, file: string, id: FileId, allocated: number): void {
  try {
    ftruncateSync(fd, 0);
  } catch (err) {
    throw new DiskFillRevertError(
      `could not free the disk fill: truncating ${file} (device ${id.dev}, inode ${id.ino}, ${formatBytes(allocated)}) failed (${errText(err)}); ${hint(err, file)}, and the revert is retried`,
    );
  }
  const st = fstatSync(fd);
  if (st.size !== 0 || st.blocks !== 0) {
    throw new DiskFillRevertError(
      `could not free the disk fill: ${file} (device ${id.dev}, inode ${id.ino}) still holds ${formatBytes(st.blocks * 512)} after truncation; the revert is retried`,
    );
  }
}

/**
 * Removes the name of a fill file already emptied, when it still names our inode (found wherever
 * it went inside `path`), and the folder when empty. The space is free already: a name that cannot
 * be removed is only logged.
 */
export function removeNames(file: string, fillDir: string, id: FileId, log: Logger): void {
  const at = locateFill(file, fillDir, id);
  if (at !== undefined) {
    try {
      unlinkSync(at);
    } catch (err) {
      log.warn({ file: at, err: errText(err) }, `the disk fill is freed (the file is empty) but its name could not be removed: ${hint(err, at)}, then rm ${at}`);
    }
  }
  for (const folder of new Set([fillDir, ...(at !== undefined ? [dirname(at)] : [])])) {
    try {
      rmdirSync(folder);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Another fault's fill still lives there, or it is gone already.
      if (code !== "ENOENT" && code !== "ENOTEMPTY" && code !== "EEXIST") log.warn({ folder, err: errText(err) }, "could not remove the fill folder");
    }
  }
}

/** The device and inode a journal record names, when it names them. */
function asFileId(revert: JsonObject): FileId | undefined {
  const { dev, ino } = revert;
  return typeof dev === "string" && typeof ino === "string" && /^\d+$/.test(dev) && /^\d+$/.test(ino) ? { dev, ino } : undefined;
}

/**
 * Reverts from the journal record alone. With the device and inode (recorded once the file
 * existed), the fill is found by them and verified before it is touched; without them (a crash
 * between creating the file and recording it), only a regular file of the agent's user at the
 * recorded name, inside the agent's own fill folder, is.
 */
function revertFromRecord(file: string, fillDir: string, id: FileId | undefined, log: Logger): void {
  let at: string | undefined;
  if (id) at = locateFill(file, fillDir, id);
  else {
    const st = lstatOrUndefined(file);
    if (st) {
      checkFillDir(fillDir);
      if (!st.isFile() || Number(st.uid) !== agentUid()) {
        throw new DiskFillRevertError(`${file} is not the agent's fill file (owner ${owner(Number(st.uid))}): left alone; remove it by hand if it is a leftover fill`);
      }
      at = file;
      id = idOf(st);
    }
  }
  if (at === undefined || id === undefined) {
    if (id && lstatOrUndefined(fillDir) === undefined) {
      // Neither the file nor its folder: removed by a revert that did not get to clear the record,
      // unless someone could have moved them out of `path`, which only an unsafe path allows.
      const parent = dirname(fillDir);
      if (lstatOrUndefined(parent) !== undefined) {
        try {
          checkTrustedDir(parent, { label: "the directory", why: PATH_WHY, final: "sticky-ok" });
        } catch (err) {
          throw new DiskFillRevertError(
            `could not find the disk fill (device ${id.dev}, inode ${id.ino}) in ${parent}, and ${(err as Error).message}; find it with find ${parent} -xdev -inum ${id.ino} and delete it, and fix the directory; the revert is retried`,
          );
        }
      }
    }
    log.info({ file }, "fill file already gone");
    return;
  }
  let fd: number;
  try {
    fd = openSync(at, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw new DiskFillRevertError(
      `could not free the disk fill: opening ${at} (device ${id.dev}, inode ${id.ino}) to truncate it failed (${errText(err)}); ${hint(err, at)}, and the revert is retried`,
    );
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (!sameFile(st, id)) throw new DiskFillRevertError(`${at} changed while it was being reverted (not device ${id.dev}, inode ${id.ino} any more); the revert is retried`);
    const allocated = Number(st.blocks) * 512;
    truncateOpen(fd, at, id, allocated);
    log.info({ file: at, freed: allocated }, "fill file emptied");
  } finally {
    closeSync(fd);
  }
  removeNames(file, fillDir, id, log);
}

/**
 * Reverts a disk-fill from its journal record alone (`{file, dir, dev?, ino?}`): truncates the fill
 * file found by device and inode and removes it. Idempotent; a file already gone is success.
 * Thrown: a record that does not name a fill file under a .firedrill-fill folder, or
 * DiskFillRevertError when the space could not be freed (retried).
 */
export async function revertDiskFillRecord(revert: JsonObject, { log }: { log: Logger }): Promise<void> {
  const file = revert.file;
  const dir = revert.dir;
  // The agent runs as root: only ever touch what looks like our own fill file.
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
  revertFromRecord(file, dir, asFileId(revert), log);
}
