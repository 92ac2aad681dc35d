import { chmodSync, chownSync, lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UnsafePathError, checkTrustedDir } from "./trusted-dir.js";

const NOBODY = 65534;
const opts = { label: "state dir", why: "someone could swap it", alternative: "or give another --state-dir" };

// Real directories, real owners (the tests run as root: chown to nobody works).
describe("checkTrustedDir", () => {
  let base: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-trusted-"));
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  const dir = (name: string, mode: number, uid = 0): string => {
    const p = join(base, name);
    mkdirSync(p, { recursive: true });
    chmodSync(p, mode);
    chownSync(p, uid, uid);
    return p;
  };
  const check = (path: string, final: "private" | "sticky-ok" = "private") => () => checkTrustedDir(path, { ...opts, final });

  it("accepts a root-owned 0700 or 0755 directory under /tmp (sticky) and returns its real path", () => {
    const d = dir("ok", 0o755);
    expect(checkTrustedDir(d, opts)).toBe(d);
    symlinkSync(d, join(base, "link"));
    expect(checkTrustedDir(join(base, "link"), opts)).toBe(d);
    expect(checkTrustedDir(`${base}/ok/../ok/.`, opts)).toBe(d);
  });

  it("refuses a directory owned by another user, naming its owner and the chown fix", () => {
    const d = dir("theirs", 0o700, NOBODY);
    expect(check(d)).toThrow(
      `state dir ${d} is not safe: it is owned by uid 65534 (nobody), not by root; someone could swap it. Fix: chown root ${d} (after checking what it holds), or give another --state-dir`,
    );
    try {
      check(d)();
    } catch (err) {
      expect(err).toBeInstanceOf(UnsafePathError);
      expect(err).toMatchObject({ path: d, offending: d, fix: `chown root ${d} (after checking what it holds)` });
    }
  });

  it.each([
    ["0777", 0o777, "group and others"],
    ["0770", 0o770, "its group"],
    ["0703", 0o703, "others"],
    ["1777", 0o1777, "group and others"],
  ])("refuses a private directory with mode %s, with the chmod fix", (shown, mode, by) => {
    const d = dir("wide", mode);
    expect(check(d)).toThrow(`state dir ${d} is not safe: it is writable by ${by} (mode ${shown}); someone could swap it. Fix: chmod 700 ${d}, or give another --state-dir`);
  });

  it("sticky-ok: a world-writable directory with the sticky bit is accepted as the final one, without it refused", () => {
    expect(checkTrustedDir(dir("sticky", 0o1777), { ...opts, final: "sticky-ok" })).toBe(join(base, "sticky"));
    const open = dir("open", 0o777);
    expect(check(open, "sticky-ok")).toThrow(
      `it is writable by group and others (mode 0777) without the sticky bit, so they can rename or replace what it holds; someone could swap it. Fix: chmod go-w ${open} (or chmod +t ${open})`,
    );
  });

  it("checks every directory on the way: a writable parent without the sticky bit, or one another user owns, is named", () => {
    dir("open", 0o777);
    const inOpen = dir("open/state", 0o700);
    expect(check(inOpen)).toThrow(`state dir ${inOpen} is not safe: ${join(base, "open")} is writable by group and others (mode 0777) without the sticky bit`);
    dir("theirs", 0o755, NOBODY);
    const inTheirs = dir("theirs/state", 0o700);
    expect(check(inTheirs)).toThrow(`state dir ${inTheirs} is not safe: ${join(base, "theirs")} is owned by uid 65534 (nobody)`);
    // A sticky parent is fine when the entry in it is trusted, refused when another user owns it.
    dir("sticky", 0o1777);
    expect(checkTrustedDir(dir("sticky/mine", 0o700), opts)).toBe(join(base, "sticky/mine"));
    const squatted = dir("sticky/squat", 0o700, NOBODY);
    expect(check(squatted)).toThrow(`it is owned by uid 65534 (nobody)`);
  });

  it("refuses a link another user owns (they can repoint it), and checks where a trusted link leads", () => {
    const target = dir("target", 0o700);
    const link = join(base, "their-link");
    symlinkSync(target, link);
    lchownSync(link, NOBODY, NOBODY);
    expect(check(link)).toThrow(`state dir ${link} is not safe: it is a symbolic link owned by uid 65534 (nobody), who can point it elsewhere at any time`);
    const theirs = dir("theirs", 0o700, NOBODY);
    symlinkSync(theirs, join(base, "to-theirs"));
    expect(check(join(base, "to-theirs"))).toThrow(`${theirs} is owned by uid 65534 (nobody)`);
  });

  it("says when the path is missing, not a directory, or loops", () => {
    expect(check(join(base, "missing"))).toThrow(expect.objectContaining({ code: "ENOENT" }));
    writeFileSync(join(base, "file"), "x");
    expect(check(join(base, "file"))).toThrow(`state dir ${join(base, "file")}: ${join(base, "file")} is not a directory`);
    symlinkSync(join(base, "b"), join(base, "a"));
    symlinkSync(join(base, "a"), join(base, "b"));
    expect(check(join(base, "a"))).toThrow(expect.objectContaining({ code: "ELOOP" }));
  });
});
