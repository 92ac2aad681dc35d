import { closeSync, fsyncSync, openSync, renameSync, writeFileSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";

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
  const fd = openSync(tmp, "w", mode);
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
