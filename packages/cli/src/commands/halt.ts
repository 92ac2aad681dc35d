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
    .requiredOption("--reason <text>", "why (recorded with your name; when already halted, the halt is kept and this reason goes to the audit log)")
    .option("--json", "print the halt as JSON (with alreadyHalted: true when it was set before)")
    .action(async (options: { reason: string; json?: boolean }) => {
      const { body } = await ctx.client().post<{ halt: HaltJson; alreadyHalted?: boolean }>("/api/v1/halt", { reason: options.reason });
      if (options.json) return printJson(ctx.io, { ...body.halt, alreadyHalted: body.alreadyHalted === true });
      const { actor, at, reason } = body.halt;
      ctx.io.out(
        body.alreadyHalted
          ? `firedrill was already halted by ${actor} since ${at}: ${reason}\n` +
              `that halt is kept (firedrill unhalt lifts it); your reason (${options.reason}) is recorded in the audit log, and every agent was told again to revert every fault\n`
          : `halted by ${actor} at ${at}: ${reason}\nevery run was aborted; new runs and faults are refused until firedrill unhalt\n`,
      );
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
