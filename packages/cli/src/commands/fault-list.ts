/** `firedrill fault list`: active (or all) faults. */
import type { Command } from "commander";
import type { FaultJson, FaultListJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { formatFaultDuration, formatFaultReason, formatFaultState, formatMeasurements, formatRelativeTime, renderTable } from "../format.js";

/** The largest page the control plane serves. */
const PAGE = 1000;

/** Renders faults as the `firedrill fault list` table. */
export function renderFaults(faults: readonly FaultJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "AGENT", "KIND", "STATE", "REASON", "STARTED", "DURATION", "MEASURED"],
    faults.map((f) => [
      f.id,
      f.agentId,
      f.kind,
      formatFaultState(f),
      formatFaultReason(f),
      formatRelativeTime(f.startedAt, now),
      formatFaultDuration(f.durationMs),
      formatMeasurements(f.measurements),
    ]),
  );
}

interface ListOptions {
  agent?: string;
  run?: string;
  all?: boolean;
  limit: string;
  json?: boolean;
}

/** A warning about faults whose revert failed, or "" when there are none. */
export function revertFailedWarning(faults: readonly FaultJson[]): string {
  const failed = faults.filter((f) => f.state === "revert_failed");
  if (failed.length === 0) return "";
  const which = failed.map((f) => `${f.id} (${f.kind} on ${f.agentId})`).join(", ");
  return (
    `warning: the revert of ${failed.length === 1 ? "1 fault" : `${failed.length} faults`} FAILED: ${which}. ` +
    "Its effect may still be on the host: see firedrill fault show ID for the error; fix the cause, then firedrill fault stop ID to have the agent try the revert again\n"
  );
}

/** Registers `fault list`. */
export function registerFaultListCommand(fault: Command, ctx: CommandContext): void {
  fault
    .command("list")
    .description("list faults, newest first: active ones (pending, accepted, running, and revert_failed: their effect may remain) unless --all")
    .option("--agent <id>", "only this agent's faults")
    .option("--run <id>", "only the faults of this run")
    .option("--all", "include faults that have ended")
    .option("--limit <n>", "at most this many, newest first (fetched 1000 at a time)", "100")
    .option("--json", "print the faults as JSON")
    .action(async (options: ListOptions) => {
      if (!/^\d+$/.test(options.limit) || Number(options.limit) < 1) {
        throw new CliError(`--limit ${JSON.stringify(options.limit)} is not valid; use a whole number of at least 1`);
      }
      const max = Number(options.limit);
      const faults: FaultJson[] = [];
      let cursor: string | undefined;
      let more = false;
      for (;;) {
        const { body } = await ctx.client().get<FaultListJson>("/api/v1/faults", {
          state: options.all ? "all" : "active",
          agent: options.agent,
          runId: options.run,
          limit: String(Math.min(PAGE, max - faults.length)),
          cursor,
        });
        faults.push(...body.faults);
        // A control plane from before pagination has no nextCursor: its one page is all there is.
        const next = body.nextCursor ?? null;
        more = next !== null;
        if (next === null || faults.length >= max) break;
        cursor = next;
      }
      if (options.json) return printJson(ctx.io, faults);
      if (faults.length === 0) {
        const where = `${options.agent ? ` on agent ${options.agent}` : ""}${options.run ? ` of run ${options.run}` : ""}`;
        ctx.io.out(options.all ? `no faults${where}\n` : `no active faults${where} (--all shows ended ones)\n`);
        return;
      }
      ctx.io.out(renderFaults(faults));
      const warning = revertFailedWarning(faults);
      if (warning) ctx.io.err(warning);
      if (more) ctx.io.err(`showing the newest ${faults.length}: more faults match; raise --limit to see more\n`);
    });
}
