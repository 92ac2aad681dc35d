/**
 * Reports that must reach the control plane even across an agent restart: the final event of a
 * fault reverted while the link was down (lease, recovery). Stored one file per fault in
 * `<stateDir>/reports` and deleted once written to a live stream.
 */
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { FaultEventSchema } from "@firedrill/protocol/core";
import type { FaultEvent } from "@firedrill/protocol/core";
import { removeFileDurable, writeFileDurable } from "./fs-util.js";

/** Durable store of final fault events not yet delivered to the control plane. */
export class PendingReports {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "reports");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Stores the final event of a fault until it is delivered. */
  put(event: FaultEvent): void {
    writeFileDurable(join(this.dir, `${event.faultId}.json`), toJsonString(FaultEventSchema, event));
  }

  /** Forgets a delivered event. */
  delete(faultId: string): void {
    removeFileDurable(join(this.dir, `${faultId}.json`));
  }

  /** Every stored event, oldest first. Unreadable files are skipped. */
  list(): FaultEvent[] {
    const events: FaultEvent[] = [];
    for (const name of readdirSync(this.dir).sort()) {
      if (!name.endsWith(".json")) continue;
      try {
        events.push(fromJsonString(FaultEventSchema, readFileSync(join(this.dir, name), "utf8")));
      } catch {
        // A torn write from a crash: the control plane reconciles this fault from the Hello.
      }
    }
    return events.sort((a, b) => Number((a.time?.seconds ?? 0n) - (b.time?.seconds ?? 0n)));
  }
}
