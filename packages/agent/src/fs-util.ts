import { closeSync, constants, fstatSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { octalMode } from "@firedrill/protocol/core";

/** fsyncs a directory so that a create, rename or unlink in it is durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a file atomically and durably: write a temp file, fsync it, rename over the target,
 * fsync the directory. After it returns, a crash leaves either the old or the new content.
 */
export function writeFileDurable(path: string, data: string, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  // Never through a link planted at the temp name.
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/** Removes a file durably; a file already gone counts as removed. */
export function removeFileDurable(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    return;
  }
  fsyncDir(dirname(path));
}

/** Thrown when a state file is not one this process wrote: a link, not a regular file, another owner, writable by others. */
export class UntrustedFileError extends Error {
  override readonly name = "UntrustedFileError";
  readonly code = "EUNTRUSTED";
}

/**
 * Reads a small state file only when it is this process's own: a regular file (never through a
 * symbolic link), owned by root or this user, writable by no one else. Files that name pids to
 * signal (guard.json, agent.lock) are read with it. Thrown: ENOENT and the like from open, or
 * UntrustedFileError saying what is wrong and how to fix it.
 */
export function readOwnFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    const euid = process.geteuid?.() ?? 0;
    if (!st.isFile()) throw new UntrustedFileError(`${path} is not a regular file; remove it`);
    if (st.uid !== 0 && st.uid !== euid) {
      throw new UntrustedFileError(`${path} is owned by uid ${st.uid}, not by this agent (uid ${euid}): not trusted; remove it`);
    }
    if ((st.mode & 0o022) !== 0) {
      throw new UntrustedFileError(`${path} is writable by group or others (mode ${octalMode(st.mode)}): not trusted; remove it`);
    }
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}
