import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DataDirLockedError, HOLDER_FILE, LOCK_FILE, lockDataDir } from "./data-dir-lock.js";
import type { DataDirLock } from "./data-dir-lock.js";

const dirs: string[] = [];
const locks: DataDirLock[] = [];
const children: { pid: number; kill: (s: NodeJS.Signals) => void; exited: Promise<unknown> }[] = [];

afterEach(async () => {
  for (const l of locks.splice(0)) l.release();
  for (const c of children.splice(0)) {
    c.kill("SIGKILL");
    await c.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), "firedrill-lock-"));
  dirs.push(d);
  return join(d, "data");
}

/** Another process that takes the lock and holds it until killed; resolves once it holds it. */
async function holder(dir: string) {
  const script = `
    import { lockDataDir } from "./src/store/data-dir-lock.ts";
    // Kept referenced: a lock nobody holds on to is closed by the garbage collector.
    globalThis.heldLock = lockDataDir(process.env.DATA_DIR);
    process.stdout.write("locked\\n");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", "--input-type=module", "-e", script], {
    cwd: join(import.meta.dirname, "../.."),
    env: { ...process.env, DATA_DIR: dir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  children.push({ pid: child.pid!, kill: (s) => child.kill(s), exited });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("locked")) resolve();
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) => reject(new Error(`the holder exited (${code}): ${out}`)));
  });
  return { pid: child.pid!, kill: (s: NodeJS.Signals) => child.kill(s), exited };
}

describe("the data dir lock", () => {
  it("a second lock in the same process is refused; released, it can be taken again", () => {
    const dir = dataDir();
    const first = lockDataDir(dir);
    locks.push(first);
    expect(statSync(join(dir, LOCK_FILE)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(dir, HOLDER_FILE), "utf8"))).toMatchObject({ pid: process.pid });
    expect(() => lockDataDir(dir)).toThrow(DataDirLockedError);
    expect(() => lockDataDir(dir)).toThrow(/is in use by another control plane in this same process \(pid \d+/);
    first.release();
    expect(existsSync(join(dir, HOLDER_FILE))).toBe(false);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(true); // never deleted
    locks.push(lockDataDir(dir));
  });

  it("another process's lock refuses this one, naming its pid; SIGKILLed, its lock is gone at once", async () => {
    const dir = dataDir();
    const other = await holder(dir);
    let refused: unknown;
    try {
      locks.push(lockDataDir(dir));
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DataDirLockedError);
    expect((refused as DataDirLockedError).holder?.pid).toBe(other.pid);
    expect((refused as Error).message).toMatch(
      new RegExp(`^the data dir ${dir} is in use by another firedrill server: pid ${other.pid}, started \\S+Z; one server per data dir: stop it first \\(kill ${other.pid}\\), or give this one another --data-dir`),
    );

    other.kill("SIGKILL");
    await other.exited;
    const started = performance.now();
    const mine = lockDataDir(dir);
    locks.push(mine);
    console.log(`[measure] lock taken ${(performance.now() - started).toFixed(1)} ms after the holder was SIGKILLed (its server.pid was left behind, stale)`);
    expect(mine.holder.pid).toBe(process.pid);
    expect(JSON.parse(readFileSync(join(dir, HOLDER_FILE), "utf8")).pid).toBe(process.pid);
  });
});
