/**
 * The agent's stable identity and its exclusive hold on the state dir.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { checkTrustedDir } from "@firedrill/protocol/core";
import { readOwnFile, writeFileDurable, removeFileDurable } from "./fs-util.js";
import { isProcessAlive, readProcessStartTime } from "./proc.js";

/** Thrown when another live agent holds the state dir. */
export class StateDirLockedError extends Error {
  override readonly name = "StateDirLockedError";
  constructor(
    readonly stateDir: string,
    readonly pid: number,
  ) {
    super(
      `state dir ${stateDir} is in use by firedrill-agent pid ${pid}; stop that agent first ` +
        `(or give this one its own --state-dir)`,
    );
  }
}

/**
 * Creates the state dir if needed (mode 0700) and checks that no other local user can change it:
 * it, and every directory on the way, owned by root or this user and not writable by group or
 * others (a directory on the way may be, with the sticky bit, as /tmp). The agent acts on what it
 * finds there as root (guard.json names a pid it stops, the journal says what to delete). An
 * existing dir readable by others is narrowed to 0700: it holds the agent's key.
 * Thrown: UnsafePathError naming the directory, its owner and mode, and the chmod/chown fix.
 */
export function ensureStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  checkTrustedDir(stateDir, {
    label: "state dir",
    why: "another local user could plant or swap the files the agent acts on as root (guard.json names a pid it stops, the journal what to revert)",
    alternative: "or give another --state-dir",
  });
  if ((statSync(stateDir).mode & 0o077) !== 0) chmodSync(stateDir, 0o700);
}

/**
 * Reads the agent id from the state dir, creating one on first use: the self-chosen id of
 * `--insecure` mode (with TLS the control plane chooses it at enrollment).
 */
export function loadOrCreateAgentId(stateDir: string): string {
  const file = join(stateDir, "agent-id");
  try {
    const id = readFileSync(file, "utf8").trim();
    if (/^[A-Za-z0-9_.-]{1,64}$/.test(id)) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const id = `agt_${randomBytes(8).toString("hex")}`;
  writeFileDurable(file, `${id}\n`, 0o644);
  return id;
}

/** The identity of this process: pid plus start time (robust against pid reuse). */
export function selfProcess(): { pid: number; startTime: number } {
  return { pid: process.pid, startTime: readProcessStartTime(process.pid) ?? 0 };
}

/** The live process holding the state dir, if any. */
export function stateDirHolder(stateDir: string): { pid: number; startTime: number } | undefined {
  try {
    // Only a lock this agent's user wrote (the dir is checked by ensureStateDir; this is the file).
    const held = JSON.parse(readOwnFile(join(stateDir, "agent.lock"))) as { pid: number; startTime: number };
    if (held.pid !== process.pid && isProcessAlive(held.pid, held.startTime)) return held;
  } catch {
    // no lock, or a torn one: nobody holds it
  }
  return undefined;
}

/**
 * Takes the state dir for this process. Throws StateDirLockedError when another live agent holds
 * it; a lock left by a dead process is taken over.
 */
export function lockStateDir(stateDir: string): () => void {
  const holder = stateDirHolder(stateDir);
  if (holder) throw new StateDirLockedError(stateDir, holder.pid);
  const file = join(stateDir, "agent.lock");
  writeFileDurable(file, JSON.stringify(selfProcess()), 0o644);
  return () => {
    if (!stateDirHolder(stateDir)) removeFileDurable(file);
  };
}
