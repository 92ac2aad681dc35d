/**
 * Journal replay: reverts every fault the journal holds. Run at agent start-up before any work is
 * accepted, by `firedrill-agent recover`, and by the guard.
 */
import { create } from "@bufbuild/protobuf";
import { FaultEventSchema, FaultEventType, RevertReason, timestampFromMs } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import type { RevertRegistry } from "./faults/revert-registry.js";
import type { CorruptRecord, Journal, JournalRecord } from "./journal.js";
import { isProcessAlive } from "./proc.js";
import type { PendingReports } from "./reports.js";

/** What a journal replay did. */
export interface RecoveryResult {
  reverted: JournalRecord[];
  failed: { record: JournalRecord; error: string }[];
  corrupt: CorruptRecord[];
}

/** Thrown when the journal holds faults that could not be reverted. */
export class RecoveryError extends Error {
  override readonly name = "RecoveryError";
  constructor(readonly result: RecoveryResult) {
    const lines = [
      ...result.failed.map((f) => `  ${f.record.faultId} (${f.record.kind}): ${f.error}`),
      ...result.corrupt.map((c) => `  ${c.file}: unreadable (${c.error})`),
    ];
    super(
      `the journal holds faults that could not be reverted; fix the cause, then run firedrill-agent recover:\n${lines.join("\n")}`,
    );
  }
}

/** Options of {@link recoverJournal}. */
export interface RecoverOptions {
  journal: Journal;
  /** How each kind is reverted: the full registry, or the revert half alone (the guard). */
  registry: RevertRegistry;
  log: Logger;
  reports?: PendingReports;
  /** Which records to revert. @default every record */
  select?: (record: JournalRecord) => boolean;
  /**
   * Whether the holder may still run the fault's in-process part (cpu-burn threads, a repeat-kill
   * loop). @default the holder process is alive (pid + start time)
   */
  holderAlive?: (record: JournalRecord) => boolean;
  /** Why the holder is not reverting it itself, for the report. @default "holder pid N was gone" */
  why?: (record: JournalRecord) => string;
}

/**
 * Reverts every (selected) record in the journal and removes those reverted. For each reverted
 * fault a final REVERTED event (reason recovery) is stored in `reports` — before the record is
 * removed, so that a holder that finds its record gone knows the report is there — to reach the
 * control plane on the next connection. A revert that fails leaves the record and stores a
 * REVERT_FAILED event with the error (a later successful recovery replaces it). Never throws for a
 * single fault: failures are returned.
 */
export async function recoverJournal(opts: RecoverOptions): Promise<RecoveryResult> {
  const { records: all, corrupt } = opts.journal.readAll();
  const records = opts.select ? all.filter(opts.select) : all;
  const result: RecoveryResult = { reverted: [], failed: [], corrupt };
  for (const c of corrupt) opts.log.error({ file: c.file, error: c.error }, "unreadable journal record; left in place");
  const report = (record: JournalRecord, type: FaultEventType, extra: { message: string; error?: string }) =>
    opts.reports?.put(
      create(FaultEventSchema, {
        faultId: record.faultId,
        kind: record.kind,
        type,
        reason: type === FaultEventType.REVERTED ? RevertReason.RECOVERY : RevertReason.UNSPECIFIED,
        time: timestampFromMs(Date.now()),
        message: extra.message,
        error: extra.error ?? "",
      }),
    );
  await Promise.all(
    records.map(async (record) => {
      const log = opts.log.child({ faultId: record.faultId, kind: record.kind });
      const why = opts.why?.(record) ?? `holder pid ${record.holder?.pid ?? "?"} was gone`;
      const def = opts.registry.get(record.kind);
      if (!def) {
        const error = `this agent does not know fault kind ${JSON.stringify(record.kind)}`;
        result.failed.push({ record, error });
        report(record, FaultEventType.REVERT_FAILED, { message: `could not revert from the journal (${why})`, error });
        return;
      }
      try {
        const holderAlive = opts.holderAlive
          ? opts.holderAlive(record)
          : record.holder
            ? isProcessAlive(record.holder.pid, record.holder.startTime)
            : false;
        await def.revertRecord(record.revert, { log, holderAlive });
        result.reverted.push(record);
        // A holder that came back and ended the fault itself has reported it: no second report.
        if (opts.journal.has(record.faultId)) {
          report(record, FaultEventType.REVERTED, { message: `reverted from the journal by pid ${process.pid} (${why})` });
          opts.journal.remove(record.faultId);
        }
        log.info("reverted a fault left in the journal");
      } catch (err) {
        const error = (err as Error).message;
        log.error({ err }, "could not revert a fault left in the journal");
        result.failed.push({ record, error });
        report(record, FaultEventType.REVERT_FAILED, {
          message: `could not revert from the journal by pid ${process.pid} (${why}); the record is kept: fix the cause, then run firedrill-agent recover`,
          error,
        });
      }
    }),
  );
  return result;
}
