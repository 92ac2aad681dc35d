/**
 * The fault journal: write-ahead, fsync'd, one record per fault holding everything needed to
 * revert it. A record is written *before* the fault touches the host and removed only after the
 * revert is confirmed, so a crash at any point leaves a record for the next start (or
 * `firedrill-agent recover`, or the guard) to revert.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { JsonObject } from "@firedrill/protocol";
import { removeFileDurable, writeFileDurable } from "./fs-util.js";

/** One journal record. */
export interface JournalRecord {
  faultId: string;
  kind: string;
  /** Validated fault parameters. */
  params: JsonObject;
  /** What the fault kind needs to revert (file paths, handles, pids with start times...). */
  revert: JsonObject;
  /** The agent process that holds the fault (pid + start time, against pid reuse). */
  holder: { pid: number; startTime: number };
  runId?: string;
  startedAt: string;
  endsAt: string;
}

/** A record that could not be read; kept on disk for a human to look at. */
export interface CorruptRecord {
  file: string;
  error: string;
}

/** Thrown when a journal file is unreadable. */
export class JournalError extends Error {
  override readonly name = "JournalError";
}

const SAFE_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/** The write-ahead fault journal in `<stateDir>/journal`. */
export class Journal {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "journal");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(faultId: string): string {
    if (!SAFE_ID.test(faultId)) throw new JournalError(`fault id ${JSON.stringify(faultId)} is not a safe file name`);
    return join(this.dir, `${faultId}.json`);
  }

  /** Writes (or replaces) a record durably. Returns only once it is on disk. */
  write(record: JournalRecord): void {
    writeFileDurable(this.file(record.faultId), `${JSON.stringify(record, null, 2)}\n`);
  }

  /**
   * Whether the record is still there. A record the holder did not remove itself was reverted by
   * another process (the guard, while the holder was stalled).
   */
  has(faultId: string): boolean {
    return existsSync(this.file(faultId));
  }

  /** Removes a record durably; removing a missing record is fine. */
  remove(faultId: string): void {
    removeFileDurable(this.file(faultId));
  }

  /** Every readable record, plus the files that could not be parsed. */
  readAll(): { records: JournalRecord[]; corrupt: CorruptRecord[] } {
    const records: JournalRecord[] = [];
    const corrupt: CorruptRecord[] = [];
    for (const name of readdirSync(this.dir).sort()) {
      if (!name.endsWith(".json")) continue;
      const file = join(this.dir, name);
      try {
        const parsed = JSON.parse(readFileSync(file, "utf8")) as JournalRecord;
        if (typeof parsed.faultId !== "string" || typeof parsed.kind !== "string" || typeof parsed.revert !== "object") {
          throw new JournalError("missing faultId, kind or revert");
        }
        records.push(parsed);
      } catch (err) {
        corrupt.push({ file, error: (err as Error).message });
      }
    }
    return { records, corrupt };
  }
}
