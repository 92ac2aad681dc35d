/** `firedrill plan FILE`: resolve targets and evaluate every guardrail, without acting. */
import type { Command } from "commander";
import type { HostPreview, RunPlan } from "@firedrill/control-plane";
import { formatDuration } from "@firedrill/protocol";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { renderTable } from "../format.js";
import { experimentError, readExperimentFile } from "./experiment-io.js";

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
        s.type === "wait" ? "wait" : `${s.fault}${s.summary ? `: ${s.summary}` : ""} on ${s.target}`,
        s.startAfter.join(", ") || "-",
        formatDuration(s.durationMs),
        s.type === "wait" ? "-" : s.hosts.map((h) => h.hostname).join(", ") || "(none)",
      ]),
    ).trimEnd(),
  );
  lines.push(...renderPreviews(plan));
  lines.push("", "Stop conditions");
  if (plan.stopConditions.length === 0) lines.push("  (none: nothing will abort this run automatically)");
  for (const c of plan.stopConditions) lines.push(`  ${c}`);
  lines.push("", "Guardrails");
  for (const v of plan.guardrails) lines.push(`  ${v.ok ? "ok     " : "REFUSED"}  ${v.rule}: ${v.message}`);
  lines.push(
    "",
    plan.halt
      ? `Verdict: HALTED — halted by ${plan.halt.actor} since ${plan.halt.at}: ${plan.halt.reason} — a run would be refused until an admin lifts the halt (firedrill unhalt).`
      : plan.allowed
        ? "Verdict: allowed — `firedrill run` would start this plan."
        : "Verdict: REFUSED by the guardrails above; nothing would start.",
  );
  const refused = plan.steps.flatMap((s) => (s.previews ?? []).filter((p) => p.status === "refused").map((p) => `${s.name} on ${p.hostname}`));
  if (refused.length > 0) {
    lines.push(`Warning: the agent would refuse ${refused.join(", ")} (see "On the hosts"): the run would fail at that step.`);
  }
  return `${lines.join("\n")}\n`;
}

/** Most processes listed per host (the rest are counted). */
const PROCESSES_SHOWN = 20;

function renderHostPreview(step: string, p: HostPreview): string[] {
  const where = `  ${step} on ${p.hostname} (${p.hostId})`;
  if (p.status === "refused") return [`${where}: REFUSED by the agent: ${p.error ?? ""}`, ...p.details.map((d) => `      ${d}`)];
  if (p.status === "unavailable") return [`${where}: no preview: ${p.error ?? "no answer"}`];
  if (p.details.length === 0 && !p.processes?.length) return [`${where}: ok (the agent accepts the parameters)`];
  const lines = [`${where}:`, ...p.details.map((d) => `      ${d}`)];
  if (p.processes && p.processes.length > 0) {
    const shown = p.processes.slice(0, PROCESSES_SHOWN);
    lines.push(
      ...renderTable(["PID", "NAME", "COMMAND"], shown.map((proc) => [String(proc.pid), proc.name, proc.cmdline]))
        .trimEnd()
        .split("\n")
        .map((l) => `      ${l}`),
    );
    const more = (p.matched ?? p.processes.length) - shown.length;
    if (more > 0) lines.push(`      … and ${more} more`);
  }
  return lines;
}

/** "On the hosts": the dry run of each host fault step on each host, as its agent answered. */
function renderPreviews(plan: RunPlan): string[] {
  const steps = plan.steps.filter((s) => s.previews && s.previews.length > 0);
  if (steps.length === 0) return [];
  const lines = ["", "On the hosts (a dry run on each agent; nothing was touched)"];
  for (const s of steps) for (const p of s.previews!) lines.push(...renderHostPreview(s.name, p));
  return lines;
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
      const { body } = await ctx
        .client()
        .post<{ plan: RunPlan }>("/api/v1/plan", { spec })
        .catch((err: unknown) => {
          throw experimentError(err, file);
        });
      if (options.json) return printJson(ctx.io, body.plan);
      ctx.io.out(renderPlan(body.plan));
      if (!body.plan.allowed) ctx.setExitCode(1);
    });
}
