import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UnsafePathError } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createStore } from "./store.js";

const NOBODY = 65534;
const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8).padStart(4, "0");

// Real directories and files with real owners and modes (the tests run as root).
describe("the control plane's data dir and database files", () => {
  let base: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fd-data-dir-"));
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("creates a missing data dir 0700 and firedrill.db 0600 (-wal and -shm too)", () => {
    const dataDir = join(base, "new", "data");
    const store = createStore({ dataDir });
    try {
      store.setSetting("k", "v"); // a write: the WAL and its index exist now
      expect(mode(dataDir)).toBe("0700");
      for (const file of ["firedrill.db", "firedrill.db-wal", "firedrill.db-shm"]) expect(mode(join(dataDir, file))).toBe("0600");
    } finally {
      store.close();
    }
  });

  it("a pre-existing 0755 data dir with a 0644 database (and -wal, -shm) is narrowed to 0700 / 0600 before it is opened", () => {
    const dataDir = join(base, "data");
    mkdirSync(dataDir, { mode: 0o755 });
    chmodSync(dataDir, 0o755);
    createStore({ dataDir }).close();
    for (const file of ["firedrill.db", "firedrill.db-wal", "firedrill.db-shm"]) {
      if (existsSync(join(dataDir, file))) chmodSync(join(dataDir, file), 0o644);
      else writeFileSync(join(dataDir, file), "", { mode: 0o644 });
    }
    chmodSync(dataDir, 0o755);
    const store = createStore({ dataDir });
    try {
      store.setSetting("k", "v");
      expect(mode(dataDir)).toBe("0700");
      for (const file of ["firedrill.db", "firedrill.db-wal", "firedrill.db-shm"]) expect(mode(join(dataDir, file))).toBe("0600");
    } finally {
      store.close();
    }
  });

  it("refuses a data dir another user owns, naming the owner and the chown fix; nothing is created in it", () => {
    const dataDir = join(base, "theirs");
    mkdirSync(dataDir, { mode: 0o700 });
    chownSync(dataDir, NOBODY, NOBODY);
    expect(() => createStore({ dataDir })).toThrow(
      `data dir ${dataDir} is not safe: it is owned by uid 65534 (nobody), not by root; another local user could read or replace the database (token hashes, the audit log) and the CA key. ` +
        `Fix: chown root ${dataDir} (after checking what it holds), or give another --data-dir`,
    );
    expect(existsSync(join(dataDir, "firedrill.db"))).toBe(false);
  });

  it.each([
    ["0777", 0o777, "group and others"],
    ["0775", 0o775, "its group"],
  ])("refuses a data dir with mode %s, with the chmod fix", (shown, m, by) => {
    const dataDir = join(base, "wide");
    mkdirSync(dataDir);
    chmodSync(dataDir, m);
    expect(() => createStore({ dataDir })).toThrow(
      `data dir ${dataDir} is not safe: it is writable by ${by} (mode ${shown}); another local user could read or replace the database (token hashes, the audit log) and the CA key. Fix: chmod 700 ${dataDir}, or give another --data-dir`,
    );
    expect(existsSync(join(dataDir, "firedrill.db"))).toBe(false);
  });

  it("refuses a data dir inside a directory others can write without the sticky bit", () => {
    const open = join(base, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    const dataDir = join(open, "data");
    expect(() => createStore({ dataDir })).toThrow(UnsafePathError);
    expect(() => createStore({ dataDir })).toThrow(`data dir ${dataDir} is not safe: ${open} is writable by group and others (mode 0777) without the sticky bit`);
  });

  it("refuses a firedrill.db that is a link or another user's file", () => {
    const dataDir = join(base, "data");
    mkdirSync(dataDir, { mode: 0o700 });
    symlinkSync("/etc/passwd", join(dataDir, "firedrill.db"));
    expect(() => createStore({ dataDir })).toThrow(
      `${join(dataDir, "firedrill.db")} is a symbolic link (owned by uid 0); the control plane keeps its database there as a plain file: remove the link`,
    );
    rmSync(join(dataDir, "firedrill.db"));
    writeFileSync(join(dataDir, "firedrill.db"), "");
    chownSync(join(dataDir, "firedrill.db"), NOBODY, NOBODY);
    expect(() => createStore({ dataDir })).toThrow(`${join(dataDir, "firedrill.db")} is owned by uid 65534, not by this process (uid 0): another user could read or change the database`);
  });
});
