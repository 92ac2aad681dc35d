/**
 * Journal replay: reverts every fault the journal holds. Run at agent start-up before any work is
 * accepted, by `firedrill-agent recover`, and by the guard.
 */
import { create } from "@bufbuild/protobuf";
import { FaultEventSchema, FaultEventType, RevertReason, timestampFromMs } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { FaultRegistry } from "./faults/index.js";
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

/**
 * Reverts every record in the journal and removes those reverted. For each reverted fault a final
 * REVERTED event (reason recovery) is stored in `reports`, to reach the control plane on the next
 * connection. Never throws for a single fault: failures are returned.
 */
export async function recoverJournal(opts: {
  journal: Journal;
  registry: FaultRegistry;
  log: Logger;
  reports?: PendingReports;
}): Promise<RecoveryResult> {
  const { records, corrupt } = opts.journal.readAll();
  const result: RecoveryResult = { reverted: [], failed: [], corrupt };
  for (const c of corrupt) opts.log.error({ file: c.file, error: c.error }, "unreadable journal record; left in place");
  await Promise.all(
    records.map(async (record) => {
      const log = opts.log.child({ faultId: record.faultId, kind: record.kind });
      const def = opts.registry.get(record.kind);
      if (!def) {
        result.failed.push({ record, error: `this agent does not know fault kind ${JSON.stringify(record.kind)}` });
        return;
      }
      try {
        const holderAlive = record.holder ? isProcessAlive(record.holder.pid, record.holder.startTime) : false;
        await def.revertRecord(record.revert, { log, holderAlive });
        opts.journal.remove(record.faultId);
        result.reverted.push(record);
        log.info("reverted a fault left in the journal");
        opts.reports?.put(
          create(FaultEventSchema, {
            faultId: record.faultId,
            kind: record.kind,
            type: FaultEventType.REVERTED,
            reason: RevertReason.RECOVERY,
            time: timestampFromMs(Date.now()),
            message: `reverted from the journal by pid ${process.pid} (holder pid ${record.holder?.pid ?? "?"} was gone)`,
          }),
        );
      } catch (err) {
        log.error({ err }, "could not revert a fault left in the journal");
        result.failed.push({ record, error: (err as Error).message });
      }
    }),
  );
  return result;
}
