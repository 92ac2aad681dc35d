/**
 * One server per data dir. A control plane holds an exclusive lock on `<dataDir>/server.lock` from
 * start to close; a second server on the same data dir is refused with the holder's pid, host and
 * start time, and what to do. Two servers on one data dir would each take the other's runs for
 * ones a crash interrupted (and mark them failed while they keep running), and both would act on
 * the same schedules and cloud reverts. Several control planes sharing state is a later step (on
 * PostgreSQL), not a data dir shared between servers.
 *
 * The lock is SQLite's own file lock (POSIX fcntl, `locking_mode = EXCLUSIVE`) on a small database
 * of its own: the kernel drops it when the holder exits in any way, SIGKILL included, so a lock is
 * never stale and there is nothing to clean up. Who holds it is written beside it, in
 * `<dataDir>/server.pid`, for the error message only (that file may be stale; the lock never is).
 */
import { chmodSync, closeSync, constants, lstatSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { ensureDataDir, UnsafeDatabaseFileError } from "./data-dir.js";

/** The lock file in the data dir. Never deleted: a process may be waiting on it. */
export const LOCK_FILE = "server.lock";
/** Who holds the lock (JSON), for messages. */
export const HOLDER_FILE = "server.pid";

/** Who holds a data dir's lock, as the holder wrote it. */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** When the holder took the lock (ISO 8601). */
  startedAt: string;
  /** The holder's command line, shortened. */
  command: string;
}

/** Thrown when another server holds the data dir. */
export class DataDirLockedError extends Error {
  override readonly name = "DataDirLockedError";
  constructor(
    message: string,
    readonly dataDir: string,
    /** The holder, when it recorded itself. */
    readonly holder: LockHolder | undefined,
  ) {
    super(message);
  }
}

/** A held data dir lock. */
export interface DataDirLock {
  readonly dataDir: string;
  readonly holder: LockHolder;
  /** Releases the lock (idempotent). */
  release(): void;
}

function readHolder(dataDir: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(join(dataDir, HOLDER_FILE), "utf8")) as Partial<LockHolder>;
    if (typeof parsed.pid !== "number") return undefined;
    return { pid: parsed.pid, hostname: String(parsed.hostname ?? "?"), startedAt: String(parsed.startedAt ?? "?"), command: String(parsed.command ?? "") };
  } catch {
    return undefined;
  }
}

/** Whether a process with this pid runs on this host. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function lockedMessage(dataDir: string, holder: LockHolder | undefined): string {
  const base = `the data dir ${dataDir} is in use by another firedrill server`;
  const rest = "or give this one another --data-dir (several servers sharing one data dir is not supported)";
  if (!holder) return `${base}, which holds ${join(dataDir, LOCK_FILE)} but recorded no pid in ${HOLDER_FILE} yet; one server per data dir: stop it first, ${rest}`;
  const here = holder.hostname === hostname();
  const who = `pid ${holder.pid}${here ? "" : ` on host ${holder.hostname}`}, started ${holder.startedAt}${holder.command ? ` (${holder.command})` : ""}`;
  const stop = here && alive(holder.pid) ? `stop it first (kill ${holder.pid})` : "stop it first";
  return `${base}: ${who}; one server per data dir: ${stop}, ${rest}`;
}

/**
 * The lock file, made private without ever opening an existing one: closing any descriptor of a
 * file drops every POSIX lock this process holds on it, so an open-and-close check of a lock file
 * held here would free it for other processes.
 */
function ensureLockFile(path: string): void {
  try {
    closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600));
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = lstatSync(path);
  const euid = process.geteuid?.() ?? 0;
  if (!st.isFile()) throw new UnsafeDatabaseFileError(`${path} is not a regular file (a link or something else); the control plane keeps its data dir lock there: remove it`);
  if (st.uid !== euid) {
    throw new UnsafeDatabaseFileError(`${path} is owned by uid ${st.uid}, not by this process (uid ${euid}); chown ${euid} ${path}, or remove it (only while no server runs on this data dir)`);
  }
  if ((st.mode & 0o077) !== 0) chmodSync(path, 0o600);
}

/** The data dirs this process holds, by real path (a second lock here must not touch the file). */
const heldHere = new Map<string, LockHolder>();

/**
 * Takes the data dir's lock (creating the dir as {@link ensureDataDir} does).
 * Thrown: {@link DataDirLockedError} when another process holds it; UnsafePathError /
 * UnsafeDatabaseFileError for a data dir or lock file others could change.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  ensureDataDir(dataDir);
  const real = realpathSync(dataDir);
  const mine = heldHere.get(real);
  if (mine) {
    throw new DataDirLockedError(
      `the data dir ${dataDir} is in use by another control plane in this same process (pid ${mine.pid}, started ${mine.startedAt}); close it first, or give this one another data dir`,
      dataDir,
      mine,
    );
  }
  const path = join(dataDir, LOCK_FILE);
  ensureLockFile(path);
  const db = new Database(path, { timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    // The first write takes the EXCLUSIVE lock; in this mode it is held until the connection closes.
    db.exec("CREATE TABLE IF NOT EXISTS lock (id INTEGER PRIMARY KEY CHECK (id = 1), taken_at INTEGER NOT NULL)");
    db.prepare("INSERT INTO lock (id, taken_at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET taken_at = excluded.taken_at").run(Date.now());
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === "SQLITE_BUSY") {
      const holder = readHolder(dataDir);
      throw new DataDirLockedError(lockedMessage(dataDir, holder), dataDir, holder);
    }
    throw err;
  }
  const holder: LockHolder = {
    pid: process.pid,
    hostname: hostname(),
    startedAt: new Date().toISOString(),
    command: process.argv.slice(1).join(" ").slice(0, 200),
  };
  const holderFile = join(dataDir, HOLDER_FILE);
  const tmp = `${holderFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(holder)}\n`, { mode: 0o600 });
  renameSync(tmp, holderFile);
  heldHere.set(real, holder);
  let released = false;
  return {
    dataDir,
    holder,
    release() {
      if (released) return;
      released = true;
      // Ours only: the next holder may already have written its own.
      if (readHolder(dataDir)?.pid === process.pid) rmSync(holderFile, { force: true });
      db.close();
      heldHere.delete(real);
    },
  };
}
