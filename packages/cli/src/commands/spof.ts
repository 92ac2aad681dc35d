/** `firedrill spof`: single points of failure in the Auto Scaling groups and among the agents. */
import type { Command } from "commander";
import type { SpofReportJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { renderTable } from "../format.js";

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** What was checked, in one line. */
function checked(report: SpofReportJson): string {
  const hosts = `${plural(report.hostsChecked, "connected host")} (label groups by ${report.labelKeys.join(", ")})`;
  if (report.groupsChecked === null) return hosts;
  return `${plural(report.groupsChecked, "Auto Scaling group")}${report.region ? ` in ${report.region}` : ""} and ${hosts}`;
}

/** Renders the report: a table of SPOFs (kind, subject, why) and a line saying what was checked. */
export function renderSpofs(report: SpofReportJson): string {
  const lines: string[] = [];
  if (report.spofs.length === 0) {
    lines.push(`no single point of failure found among ${checked(report)}\n`);
  } else {
    lines.push(renderTable(["KIND", "SUBJECT", "WHY"], report.spofs.map((s) => [s.kind, s.subject, s.why])));
    lines.push(`\n${plural(report.spofs.length, "single point of failure", "single points of failure")} among ${checked(report)}\n`);
  }
  if (report.note) lines.push(`note: ${report.note}\n`);
  return lines.join("");
}

/** Registers `spof`. */
export function registerSpofCommand(program: Command, ctx: CommandContext): void {
  program
    .command("spof")
    .description(
      "find single points of failure: Auto Scaling groups with one InService instance or MaxSize 1, groups whose instances all sit in one Availability Zone, and agent label groups (app=, service=, role=) with one connected host",
    )
    .option("--region <region>", "the region of the Auto Scaling groups (default: the control plane's AWS_REGION)")
    .option("--json", "print the report as JSON")
    .action(async (options: { region?: string; json?: boolean }) => {
      const { body } = await ctx.client().get<SpofReportJson>("/api/v1/spof", { region: options.region });
      if (options.json) return printJson(ctx.io, body);
      ctx.io.out(renderSpofs(body));
    });
}
