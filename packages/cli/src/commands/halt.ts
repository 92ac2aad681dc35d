/** `firedrill halt --reason …` and `firedrill unhalt`: the global stop button. */
import type { Command } from "commander";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";

interface HaltJson {
  reason: string;
  actor: string;
  at: string;
}

/** Registers `halt` and `unhalt`. */
export function registerHaltCommands(program: Command, ctx: CommandContext): void {
  program
    .command("halt")
    .description("abort every run, revert every fault on every agent, and refuse new runs and faults until unhalt")
    .requiredOption("--reason <text>", "why (recorded with your name)")
    .option("--json", "print the halt as JSON")
    .action(async (options: { reason: string; json?: boolean }) => {
      const { body } = await ctx.client().post<{ halt: HaltJson }>("/api/v1/halt", { reason: options.reason });
      if (options.json) return printJson(ctx.io, body.halt);
      ctx.io.out(`halted by ${body.halt.actor} at ${body.halt.at}: ${body.halt.reason}\nevery run was aborted; new runs and faults are refused until firedrill unhalt\n`);
    });
  program
    .command("unhalt")
    .description("lift the global halt")
    .option("--json", "print the lifted halt as JSON")
    .action(async (options: { json?: boolean }) => {
      const { body } = await ctx.client().delete<{ lifted: (HaltJson & { liftedBy: string; liftedAt: string }) | null }>("/api/v1/halt");
      if (options.json) return printJson(ctx.io, body.lifted);
      ctx.io.out(
        body.lifted
          ? `halt lifted by ${body.lifted.liftedBy} (it was set by ${body.lifted.actor} at ${body.lifted.at}: ${body.lifted.reason})\n`
          : "firedrill was not halted\n",
      );
    });
}
