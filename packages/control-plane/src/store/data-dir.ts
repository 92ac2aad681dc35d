/**
 * The control plane's data dir and database files: private to the control plane's user, whatever
 * existed before (a data dir made 0755 by hand, a database left 0644 by an older version).
 */
import { chmodSync, closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, statSync } from "node:fs";
import { checkTrustedDir } from "@firedrill/protocol";

/**
 * Creates the data dir if needed (mode 0700) and checks that no other local user can read or
 * change it: it, and every directory on the way, owned by root or this user and not writable by
 * group or others (a directory on the way may be, with the sticky bit, as /tmp). An existing dir
 * readable by others is narrowed to 0700: it holds the database (token hashes, the audit log),
 * the CA key and the bootstrap tokens.
 * Thrown: UnsafePathError naming the directory, its owner and mode, and the chmod/chown fix.
 */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  checkTrustedDir(dataDir, {
    label: "data dir",
    why: "another local user could read or replace the database (token hashes, the audit log) and the CA key",
    alternative: "or give another --data-dir",
  });
  if ((statSync(dataDir).mode & 0o077) !== 0) chmodSync(dataDir, 0o700);
}

/** Thrown when a database file is not the control plane's own. */
export class UnsafeDatabaseFileError extends Error {
  override readonly name = "UnsafeDatabaseFileError";
}

/**
 * Makes `file` the control plane's private file before SQLite opens it: created 0600 when missing
 * (never through a link), and an existing one must be a regular file owned by this user, narrowed
 * to 0600. With `create: false` a missing file is left missing (SQLite's -wal and -shm, which it
 * creates with the database file's mode). Thrown: UnsafeDatabaseFileError saying what to fix.
 */
export function ensurePrivateFile(file: string, options: { create: boolean }): void {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (options.create ? constants.O_CREAT : 0), 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !options.create) return;
    if (code === "ELOOP") {
      const st = lstatSync(file);
      throw new UnsafeDatabaseFileError(
        `${file} is a symbolic link (owned by uid ${st.uid}); the control plane keeps its database there as a plain file: remove the link`,
      );
    }
    throw err;
  }
  try {
    const st = fstatSync(fd);
    const euid = process.geteuid?.() ?? 0;
    if (!st.isFile()) throw new UnsafeDatabaseFileError(`${file} is not a regular file; the control plane keeps its database there: remove it`);
    if (st.uid !== euid) {
      throw new UnsafeDatabaseFileError(
        `${file} is owned by uid ${st.uid}, not by this process (uid ${euid}): another user could read or change the database; chown ${euid} ${file} (after checking it is the database you expect)`,
      );
    }
    if ((st.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}
