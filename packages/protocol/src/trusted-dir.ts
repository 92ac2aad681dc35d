/**
 * Checks that a directory, and every directory on the way to it, is out of reach of other local
 * users: the agent (root) and the control plane keep state there, and the agent acts on it as root.
 *
 * A directory is trusted when it is owned by root or by this process's user, and no one else can
 * rename, remove or replace its entries: not writable by group or others, unless the sticky bit is
 * set (as on /tmp: then others cannot rename or remove an entry they do not own, and the next
 * component's owner is checked in turn). Symbolic links on the way are followed, and trusted only
 * when owned by root or this user (in a sticky directory, a link's owner can swap it).
 */
import { lstatSync, readFileSync, readlinkSync } from "node:fs";
import type { Stats } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";

/** Thrown when a directory (or one on its path) could be changed by another local user. */
export class UnsafePathError extends Error {
  override readonly name = "UnsafePathError";
  constructor(
    message: string,
    /** The path that was asked for. */
    readonly path: string,
    /** The path that failed the check: `path` itself or a directory or link on the way. */
    readonly offending: string,
    /** What to run (or do) to make it safe. */
    readonly fix: string,
  ) {
    super(message);
  }
}

/** Options of {@link checkTrustedDir}. */
export interface TrustedDirOptions {
  /** What the directory is, for messages: "state dir", "data dir", "params.path". */
  label: string;
  /** Why it matters, for messages: "another user could plant files the agent trusts". */
  why: string;
  /**
   * `private`: the directory itself must not be writable by group or others at all (a state or
   * data dir). `sticky-ok`: it may be, with the sticky bit (a directory to put a root-owned folder
   * in, such as /tmp). @default "private"
   */
  final?: "private" | "sticky-ok";
  /** Extra fix offered when the directory fails, e.g. "or give another --state-dir". */
  alternative?: string;
}

const MAX_LINKS = 40;

/** The user name of a uid, from /etc/passwd ("" when unknown). */
export function userName(uid: number): string {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , id] = line.split(":");
      if (name && id === String(uid)) return name;
    }
  } catch {
    // no passwd file: show the uid alone
  }
  return "";
}

function who(uid: number): string {
  const name = userName(uid);
  return name ? `uid ${uid} (${name})` : `uid ${uid}`;
}

/** The mode bits as `chmod` shows them: `0755`, `1777`. */
export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/**
 * Walks `path` from `/`, following symbolic links, and checks each directory and link on the way.
 * Returns the directory's real path (no links). Thrown: UnsafePathError naming the offending
 * directory, its owner and mode, and the fix; an Error with `code` (ENOENT, ENOTDIR, EACCES) when
 * the path cannot be walked.
 */
export function checkTrustedDir(path: string, options: TrustedDirOptions): string {
  const euid = process.geteuid?.() ?? 0;
  const trusted = (uid: number) => uid === 0 || uid === euid;
  const owners = euid === 0 ? "root" : `root or ${who(euid)} (this process)`;
  const chownTo = euid === 0 ? "root" : (userName(euid) || String(euid));
  const finalMode = options.final ?? "private";
  const given = resolve(path);
  const fail = (offending: string, problem: string, fix: string): never => {
    const where = offending === given ? "it" : offending;
    const alternative = options.alternative ? `, ${options.alternative}` : "";
    throw new UnsafePathError(`${options.label} ${given} is not safe: ${where} ${problem}; ${options.why}. Fix: ${fix}${alternative}`, given, offending, fix);
  };
  const checkDir = (dir: string, st: Stats, isFinal: boolean): void => {
    if (!trusted(st.uid)) {
      fail(dir, `is owned by ${who(st.uid)}, not by ${owners}`, `chown ${chownTo} ${dir} (after checking what it holds)`);
    }
    const writable = st.mode & 0o022;
    if (writable === 0) return;
    const by = writable === 0o022 ? "group and others" : writable === 0o020 ? "its group" : "others";
    const sticky = (st.mode & 0o1000) !== 0;
    if (isFinal && finalMode === "private") {
      fail(dir, `is writable by ${by} (mode ${octalMode(st.mode)})`, `chmod 700 ${dir}`);
    }
    if (!sticky) {
      fail(
        dir,
        `is writable by ${by} (mode ${octalMode(st.mode)}) without the sticky bit, so they can rename or replace what it holds`,
        `chmod go-w ${dir} (or chmod +t ${dir})`,
      );
    }
  };

  checkDir("/", lstatSync("/"), false);
  let current = "/";
  let todo = given.split("/").filter(Boolean);
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === ".") continue;
    if (part === "..") {
      current = dirname(current);
      continue;
    }
    const next = join(current, part);
    const st = lstatSync(next);
    if (st.isSymbolicLink()) {
      if (!trusted(st.uid)) {
        fail(next, `is a symbolic link owned by ${who(st.uid)}, who can point it elsewhere at any time`, `give the real path instead of the link, or replace the link with one owned by ${chownTo}`);
      }
      if (++links > MAX_LINKS) {
        throw Object.assign(new Error(`${options.label} ${given}: too many levels of symbolic links at ${next}`), { code: "ELOOP" });
      }
      const target = readlinkSync(next);
      if (isAbsolute(target)) current = "/";
      todo = [...target.split("/").filter(Boolean), ...todo];
      continue;
    }
    if (!st.isDirectory()) {
      throw Object.assign(new Error(`${options.label} ${given}: ${next} is not a directory`), { code: "ENOTDIR" });
    }
    if (todo.length > 0) checkDir(next, st, false);
    current = next;
  }
  // The directory itself, with its own rule (and again: a link may have led back up).
  checkDir(current, lstatSync(current), true);
  return current;
}
