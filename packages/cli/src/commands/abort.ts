/** `firedrill abort RUN_ID`: abort a run; waits until its faults are reverted. */
import type { Command } from "commander";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { segment } from "../http-client.js";
import type { RunJson } from "./run.js";

/** Registers `abort`. */
export function registerAbortCommand(program: Command, ctx: CommandContext): void {
  program
    .command("abort")
    .description("abort a run: no new steps, every fault of the run reverted (waits for the acks)")
    .argument("<run-id>", "the run (see firedrill runs)")
    .option("--reason <text>", "why, for the timeline and the report", "aborted from the CLI")
    .option("--json", "print the run as JSON")
    .action(async (runId: string, options: { reason: string; json?: boolean }) => {
      const { body } = await ctx.client().post<{ run: RunJson }>(`/api/v1/runs/${segment(runId)}/abort`, { reason: options.reason });
      if (options.json) return printJson(ctx.io, body.run);
      ctx.io.out(`run ${body.run.id} ${body.run.state}${body.run.reason ? `: ${body.run.reason}` : ""}\n`);
    });
}
