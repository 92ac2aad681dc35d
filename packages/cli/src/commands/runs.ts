/** `firedrill runs`: recent runs. */
import type { Command } from "commander";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { formatRelativeTime, renderTable } from "../format.js";
import type { RunJson } from "./run.js";

/** Registers `runs`. */
export function registerRunsCommand(program: Command, ctx: CommandContext): void {
  program
    .command("runs")
    .description("list experiment runs, newest first")
    .option("--active", "only runs still pending, in preflight or running")
    .option("--limit <n>", "at most this many", "50")
    .option("--json", "print the runs as JSON")
    .action(async (options: { active?: boolean; limit: string; json?: boolean }) => {
      const { body } = await ctx.client().get<{ runs: RunJson[] }>("/api/v1/runs", {
        limit: options.limit,
        ...(options.active ? { state: "active" } : {}),
      });
      if (options.json) return printJson(ctx.io, body.runs);
      if (body.runs.length === 0) return ctx.io.out("no runs yet: start one with firedrill run FILE\n");
      // Cloud actions not reverted yet are the first thing to see: a column of their own when any run has some.
      const unreverted = body.runs.some((r) => (r.cloudRevertsUnconfirmed ?? 0) > 0);
      ctx.io.out(
        renderTable(
          ["ID", "EXPERIMENT", "STATE", ...(unreverted ? ["CLOUD REVERTS"] : []), "STARTED", "BY", "REASON"],
          body.runs.map((r) => [
            r.id,
            r.name,
            r.state,
            ...(unreverted ? [(r.cloudRevertsUnconfirmed ?? 0) > 0 ? `${r.cloudRevertsUnconfirmed} NOT confirmed` : ""] : []),
            formatRelativeTime(r.createdAt),
            r.actor,
            r.reason ?? "",
          ]),
        ),
      );
      if (unreverted) ctx.io.err("warning: some runs have cloud actions NOT reverted yet (the control plane keeps retrying); see firedrill run show RUN_ID\n");
    });
}
