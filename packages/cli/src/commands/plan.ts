/** `firedrill plan FILE`: resolve targets and evaluate every guardrail, without acting. */
import type { Command } from "commander";
import type { RunPlan } from "@firedrill/control-plane";
import { formatDuration } from "@firedrill/protocol";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { renderTable } from "../format.js";
import { readExperimentFile } from "./experiment-io.js";

/** Renders a plan: hosts per target and step, stop conditions, guardrail verdicts. */
export function renderPlan(plan: RunPlan): string {
  const lines: string[] = [];
  lines.push(`Experiment  ${plan.experiment}`);
  lines.push(`Hypothesis  ${plan.hypothesis}`);
  lines.push(`Duration    ${formatDuration(plan.estimatedDurationMs)} (longest chain of steps)`);
  lines.push("", "Targets");
  lines.push(
    renderTable(
      ["TARGET", "MATCHING", "ELIGIBLE", "SELECTED", "HOSTS"],
      Object.entries(plan.targets).map(([name, t]) => [
        name,
        String(t.matching),
        String(t.eligible),
        String(t.selected.length),
        t.selected.map((h) => `${h.hostname} (${h.id})`).join(", ") || "-",
      ]),
    ).trimEnd(),
  );
  for (const [name, t] of Object.entries(plan.targets)) {
    for (const e of t.excluded) lines.push(`  ${name}: excluded ${e.hostname} (${e.id}): ${e.why}`);
  }
  lines.push("", "Steps");
  lines.push(
    renderTable(
      ["STEP", "DOES", "AFTER", "DURATION", "HOSTS"],
      plan.steps.map((s) => [
        s.name,
        s.type === "wait" ? "wait" : `${s.fault} on ${s.target}`,
        s.startAfter.join(", ") || "-",
        formatDuration(s.durationMs),
        s.type === "wait" ? "-" : s.hosts.map((h) => h.hostname).join(", ") || "(none)",
      ]),
    ).trimEnd(),
  );
  lines.push("", "Stop conditions");
  if (plan.stopConditions.length === 0) lines.push("  (none: nothing will abort this run automatically)");
  for (const c of plan.stopConditions) lines.push(`  ${c}`);
  lines.push("", "Guardrails");
  for (const v of plan.guardrails) lines.push(`  ${v.ok ? "ok     " : "REFUSED"}  ${v.rule}: ${v.message}`);
  lines.push("", plan.allowed ? "Verdict: allowed — `firedrill run` would start this plan." : "Verdict: REFUSED by the guardrails above; nothing would start.");
  return `${lines.join("\n")}\n`;
}

/** Registers `plan`. */
export function registerPlanCommand(program: Command, ctx: CommandContext): void {
  program
    .command("plan")
    .description("show the hosts each step would hit and every guardrail's verdict, without acting")
    .argument("<file>", "the experiment YAML")
    .option("--json", "print the plan as JSON")
    .action(async (file: string, options: { json?: boolean }) => {
      const spec = readExperimentFile(file);
      const { body } = await ctx.client().post<{ plan: RunPlan }>("/api/v1/plan", { spec });
      if (options.json) return printJson(ctx.io, body.plan);
      ctx.io.out(renderPlan(body.plan));
      if (!body.plan.allowed) ctx.setExitCode(1);
    });
}
