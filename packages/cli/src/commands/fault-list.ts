/** `firedrill fault list`: active (or all) faults. */
import type { Command } from "commander";
import type { FaultJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { EMPTY, formatFaultDuration, formatMeasurements, formatRelativeTime, renderTable } from "../format.js";

/** Renders faults as the `firedrill fault list` table. */
export function renderFaults(faults: readonly FaultJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "AGENT", "KIND", "STATE", "REASON", "STARTED", "DURATION", "MEASURED"],
    faults.map((f) => [
      f.id,
      f.agentId,
      f.kind,
      f.state,
      f.reason ?? EMPTY,
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

/** Registers `fault list`. */
export function registerFaultListCommand(fault: Command, ctx: CommandContext): void {
  fault
    .command("list")
    .description("list faults, newest first: active ones (pending, accepted, running) unless --all")
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
    });
}
