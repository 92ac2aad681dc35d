/**
 * `firedrill report RUN_ID`: hypothesis, verdict, what was hit, what broke, timeline; with
 * `--html FILE`, the self-contained HTML report (charts and data inline) written to FILE.
 */
import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import type { ReportJson as ServerReportJson, RunReport } from "@firedrill/control-plane";
import { plural } from "@firedrill/protocol";
import { callerPath } from "../caller-path.js";
import type { CommandContext } from "../context.js";
import { CliError } from "../errors.js";
import { printJson } from "../context.js";
import { formatMeasurements, renderTable } from "../format.js";
import { segment } from "../http-client.js";
import type { RunEventJson } from "./run.js";
import { renderRunEvent } from "./run.js";

// Reports of older control planes have no stop-condition samples or per-host effects.
type ReportJson = Omit<RunReport, "timeline"> & { timeline: RunEventJson[] } & Partial<Pick<ServerReportJson, "stopConditions" | "hosts">>;

/** A stop condition's samples in a few words: "27 samples, 2-238 ms". */
function describeSamples(c: NonNullable<ReportJson["stopConditions"]>[number]): string {
  let min = Infinity;
  let max = -Infinity;
  for (const s of c.samples) {
    if (s.v === null) continue;
    min = Math.min(min, s.v);
    max = Math.max(max, s.v);
  }
  const unit = c.unit === "ms" ? " ms" : c.unit === "firing" ? " firing" : "";
  const range = min <= max ? `, ${min}-${max}${unit}` : "";
  const bad = c.samples.filter((s) => !s.ok).length;
  return `${plural(c.samples.length, "sample")}${range}${bad > 0 ? `, ${bad} unhealthy` : ""}`;
}

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
  const effects = (r.hosts ?? []).flatMap((h) => h.faults.map((f) => [h.hostname ?? h.agentId, f.kind, f.faultId, f.effect]));
  if (effects.length > 0) {
    out.push("", "Measured effect");
    out.push(renderTable(["HOST", "KIND", "FAULT", "EFFECT"], effects).trimEnd());
  }
  const conditions = r.stopConditions ?? [];
  if (conditions.length > 0) {
    out.push("", "Stop conditions");
    for (const c of conditions) {
      const breach = c.breach ? `; BREACHED at ${new Date(c.breach.at).toISOString()}: ${c.breach.reason}` : "";
      out.push(`  ${c.condition}: ${c.state}; ${describeSamples(c)}${breach}`);
    }
  }
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

/** `1.2 MiB`, `340 KiB`, `512 bytes`. */
function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Downloads the run's report.html and writes it to `file` (an existing file only with `force`). */
async function writeHtmlReport(ctx: CommandContext, runId: string, file: string, force: boolean): Promise<void> {
  const { body, contentType } = await ctx.client().getFile(`/api/v1/runs/${segment(runId)}/report.html`);
  if (!contentType?.startsWith("text/html")) {
    throw new CliError(`the control plane answered the HTML report of ${runId} with ${contentType ?? "no content type"}, not HTML; is --server pointing at a firedrill server of this version?`);
  }
  try {
    writeFileSync(file, body, { flag: force ? "w" : "wx", mode: 0o644 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new CliError(`${file} already exists; pass --force to overwrite it, or choose another file`);
    throw new CliError(`cannot write the report to ${file}: ${(err as Error).message}`);
  }
  ctx.io.out(`wrote the report of ${runId} to ${file} (${formatSize(body.length)}); it opens in any browser, offline\n`);
}

/** Registers `report`. */
export function registerReportCommand(program: Command, ctx: CommandContext): void {
  program
    .command("report")
    .description("the report of a run: hypothesis, verdict, timeline, what was hit, what broke")
    .argument("<run-id>", "the run (see firedrill runs)")
    .option("--json", "print the report as JSON")
    .option("--html <file>", "write the report as one self-contained HTML file (charts and data inline; opens offline, prints one run per page)", callerPath)
    .option("--force", "with --html: overwrite the file if it exists")
    .action(async (runId: string, options: { json?: boolean; html?: string; force?: boolean }) => {
      if (options.html !== undefined) {
        if (options.json) throw new CliError("--html and --json each choose what to write; give one");
        return writeHtmlReport(ctx, runId, options.html, options.force === true);
      }
      if (options.force) throw new CliError("--force only applies to --html FILE");
      const { body } = await ctx.client().get<{ report: ReportJson }>(`/api/v1/runs/${segment(runId)}/report`);
      if (options.json) return printJson(ctx.io, body.report);
      ctx.io.out(renderReport(body.report));
    });
}
