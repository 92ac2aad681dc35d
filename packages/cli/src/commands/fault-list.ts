/** `firedrill fault list`: active (or all) faults. */
import type { Command } from "commander";
import type { FaultJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { formatFaultDuration, formatFaultReason, formatFaultState, formatMeasurements, formatRelativeTime, renderTable } from "../format.js";

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
    .option("--all", "include faults that have ended")
    .option("--limit <n>", "at most this many", "100")
    .option("--json", "print the faults as JSON")
    .action(async (options: ListOptions) => {
      if (!/^\d+$/.test(options.limit) || Number(options.limit) < 1 || Number(options.limit) > 1000) {
        throw new CliError(`--limit ${JSON.stringify(options.limit)} is not valid; use a whole number from 1 to 1000`);
      }
      const { body } = await ctx.client().get<{ faults: FaultJson[] }>("/api/v1/faults", {
        state: options.all ? "all" : "active",
        agent: options.agent,
        limit: options.limit,
      });
      if (options.json) return printJson(ctx.io, body.faults);
      if (body.faults.length === 0) {
        const where = options.agent ? ` on agent ${options.agent}` : "";
        ctx.io.out(options.all ? `no faults${where}\n` : `no active faults${where} (--all shows ended ones)\n`);
        return;
      }
      ctx.io.out(renderFaults(body.faults));
      const warning = revertFailedWarning(body.faults);
      if (warning) ctx.io.err(warning);
    });
}
