/** `firedrill report RUN_ID`: hypothesis, verdict, what was hit, what broke, timeline. */
import type { Command } from "commander";
import type { RunReport } from "@firedrill/control-plane";
import { plural } from "@firedrill/protocol";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { formatMeasurements, renderTable } from "../format.js";
import { segment } from "../http-client.js";
import type { RunEventJson } from "./run.js";
import { renderRunEvent } from "./run.js";

type ReportJson = Omit<RunReport, "timeline"> & { timeline: RunEventJson[] };

/** Renders a report as text. */
export function renderReport(r: ReportJson): string {
  const out: string[] = [];
  out.push(`Run         ${r.run.id}  ${r.run.name}`);
  out.push(`State       ${r.run.state}${r.run.reason ? `: ${r.run.reason}` : ""}`);
  out.push(`Started by  ${r.run.actor}`);
  out.push(`Hypothesis  ${r.hypothesis}`);
  out.push(`Verdict     ${r.verdict.toUpperCase()}: ${r.summary}`);
  out.push("", "What was hit");
  out.push(
    r.hits.length
      ? renderTable(
          ["STEP", "AGENT", "FAULT", "KIND", "STATE", "REASON", "LAST MEASURED"],
          r.hits.map((h) => [h.step ?? "-", h.agentId, h.faultId, h.kind, h.state, h.reason ?? h.error ?? "", formatMeasurements(h.measurements)]),
        ).trimEnd()
      : (r.cloudActions ?? []).length > 0
        ? "  no fault on hosts (cloud actions below)"
        : "  nothing: no fault was started",
  );
  // Reports of older control planes have no cloud actions.
  const cloud = r.cloudActions ?? [];
  if (cloud.length > 0) {
    out.push("", "Cloud actions");
    out.push(
      renderTable(
        ["TIME", "STEP", "ACTION", "INSTANCE", "RESULT"],
        cloud.map((a) => [
          new Date(a.time).toISOString(),
          a.step ?? "-",
          `${a.call ?? a.action}${a.irreversible ? " (IRREVERSIBLE)" : ""}`,
          `${a.instanceId}${a.autoScalingGroup ? ` (${a.autoScalingGroup})` : ""}`,
          a.result === "done" ? "done" : `${a.result}: ${a.error ?? ""}`,
        ]),
      ).trimEnd(),
    );
  }
  // Reversible cloud actions (ec2-stop) with their revert, from the cloud-revert journal.
  const reverts = r.cloudReverts ?? [];
  if (reverts.length > 0) {
    out.push("", "Cloud reverts");
    out.push(
      renderTable(
        ["#", "STEP", "ACTION", "ON", "REVERT", "ATTEMPTS", "DETAIL"],
        reverts.map((c) => [String(c.id), c.step ?? "-", c.action, c.resource, c.state, String(c.attempts), c.text]),
      ).trimEnd(),
    );
  }
  out.push("", "What broke");
  if (r.broke.length === 0) out.push("  nothing");
  for (const b of r.broke) out.push(`  ${new Date(b.time).toISOString()}  ${b.type}: ${b.message}`);
  // Reports of older control planes have no revert summary.
  if (r.reverts) out.push("", `Reverts     ${r.reverts.text}`);
  const failed = r.revertFailed ?? [];
  if (failed.length > 0) {
    out.push("", "REVERT FAILED: the effect may still be on these hosts (fix the cause, then firedrill fault stop FAULT_ID to have the agent try the revert again)");
    for (const f of failed) out.push(`  ${f.faultId}  ${f.kind} on ${f.agentId}: ${f.error ?? "no reason given"}`);
  }
  const notReverted = r.cloudNotReverted ?? [];
  if (notReverted.length > 0) {
    out.push("", "Cloud actions NOT reverted (the control plane keeps retrying each until AWS confirms it)");
    for (const line of notReverted) out.push(`  ${line}`);
  }
  if (r.unconfirmed.length > 0) {
    out.push("", "Reverts not confirmed");
    for (const u of r.unconfirmed) out.push(`  ${u.message}`);
  }
  out.push("", `Timeline (${plural(r.measurements, "measurement")} not shown)`);
  for (const e of r.timeline) out.push(`  ${renderRunEvent(e).trimEnd()}`);
  return `${out.join("\n")}\n`;
}

/** Registers `report`. */
export function registerReportCommand(program: Command, ctx: CommandContext): void {
  program
    .command("report")
    .description("the report of a run: hypothesis, verdict, timeline, what was hit, what broke")
    .argument("<run-id>", "the run (see firedrill runs)")
    .option("--json", "print the report as JSON")
    .action(async (runId: string, options: { json?: boolean }) => {
      const { body } = await ctx.client().get<{ report: ReportJson }>(`/api/v1/runs/${segment(runId)}/report`);
      if (options.json) return printJson(ctx.io, body.report);
      ctx.io.out(renderReport(body.report));
    });
}
