/**
 * `firedrill run FILE [--follow]` starts a run; `firedrill run show ID` shows one.
 * With --follow: a live timeline (steps, acks, measurements, stop conditions, progress of long
 * steps) until the run ends; exit code 0 completed, 2 aborted, 1 failed, 3 ended with a revert not
 * confirmed (a cloud revert still retried, a host fault's revert failed or unconfirmed).
 */
import type { Command } from "commander";
import type { RunPlan } from "@firedrill/control-plane";
import { formatDuration } from "@firedrill/protocol";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { segment } from "../http-client.js";
import { readEventStream } from "../sse.js";
import { clock, experimentError, exitCodeForRun, readExperimentFile } from "./experiment-io.js";

/** A run as the API returns it. */
export interface RunJson {
  id: string;
  name: string;
  state: string;
  reason: string | null;
  actor: string;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** Cloud reverts wanted and not confirmed by AWS (the journal's reconciler keeps retrying them). */
  cloudRevertsUnconfirmed?: number;
  /** With one run: host faults whose revert failed, or is not confirmed though the run has ended. */
  faultRevertsUnconfirmed?: number;
}

/** A cloud action of a run with its revert, as `GET /api/v1/runs/:id` returns it. */
export interface CloudRevertJson {
  id: number;
  step: string | null;
  action: string;
  resource: string;
  region: string;
  state: string;
  unconfirmed: boolean;
  createdAt: string;
  revertRequestedAt: string | null;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  detail: string | null;
  text: string;
}

/** The lines about a run's cloud reverts not confirmed (none when all are). */
export function renderCloudReverts(reverts: readonly CloudRevertJson[]): string {
  const open = reverts.filter((r) => r.unconfirmed);
  if (open.length === 0) return "";
  const lines = [`\nCloud reverts NOT confirmed (${open.length}): the control plane keeps retrying each until AWS confirms it`];
  for (const r of open) {
    const next = r.state === "reverting" && r.nextAttemptAt ? `; next attempt ${clock(r.nextAttemptAt)}` : "";
    lines.push(`  #${r.id} ${r.step ? `[${r.step}] ` : ""}${r.text}${next}`);
  }
  return `${lines.join("\n")}\n`;
}

/** A run event as the API returns it. */
export interface RunEventJson {
  id: number;
  time: string;
  type: string;
  step: string | null;
  agentId: string | null;
  faultId: string | null;
  message: string;
  data: unknown;
}

const MARK: Record<string, string> = {
  state: "●",
  breach: "✗",
  abort: "✗",
  "fault-refused": "✗",
  "fault-failed": "✗",
  "agent-lost": "✗",
  unconfirmed: "!",
  "revert-assumed": "!",
  "revert-failed": "✗",
  "fault-reverted": "↺",
  "cloud-reverted": "↺",
  "step-started": "▶",
  "step-ended": "■",
};

/** One timeline line. With `stepTimes`, measurement lines show the step's progress. */
export function renderRunEvent(e: RunEventJson, stepTimes?: Map<string, { start: number; durationMs: number }>): string {
  const where = [e.step ? `[${e.step}]` : "", e.agentId ?? ""].filter(Boolean).join(" ");
  let progress = "";
  if (e.type === "measurement" && e.step && stepTimes?.has(e.step)) {
    const { start, durationMs } = stepTimes.get(e.step)!;
    const elapsed = Math.max(0, Date.parse(e.time) - start);
    progress = ` (${formatDuration(Math.min(elapsed, durationMs))} / ${formatDuration(durationMs)})`;
  }
  return `${clock(e.time)}  ${(MARK[e.type] ?? "·").padEnd(1)} ${e.type.padEnd(15)} ${where ? `${where}  ` : ""}${e.message}${progress}\n`;
}

/** Follows a run's event stream, printing the timeline. Resolves with the final run. */
export async function followRun(ctx: CommandContext, runId: string, plan?: RunPlan): Promise<RunJson> {
  const stepTimes = new Map<string, { start: number; durationMs: number }>();
  const durations = new Map((plan?.steps ?? []).map((s) => [s.name, s.durationMs]));
  let final: RunJson | undefined;
  await readEventStream(`${ctx.client().server}/api/v1/runs/${segment(runId)}/events`, (sse) => {
    if (sse.event === "end") {
      final = JSON.parse(sse.data) as RunJson;
      return "stop";
    }
    const event = JSON.parse(sse.data) as RunEventJson;
    if (event.type === "step-started" && event.step) {
      stepTimes.set(event.step, { start: Date.parse(event.time), durationMs: durations.get(event.step) ?? 0 });
    }
    ctx.io.out(renderRunEvent(event, stepTimes));
    return undefined;
  });
  if (!final) {
    const { body } = await ctx.client().get<{ run: RunJson }>(`/api/v1/runs/${segment(runId)}`);
    final = body.run;
  }
  return final;
}

/** Registers `run FILE` and `run show ID`. */
export function registerRunCommand(program: Command, ctx: CommandContext): void {
  program
    .command("run")
    .description("run an experiment (`run FILE [--follow]`), or show a run (`run show RUN_ID`)")
    .argument("<file-or-show>", "the experiment YAML, or `show`")
    .argument("[run-id]", "with `show`: the run")
    .option("--follow", "print the live timeline until the run ends; exit 0 completed, 2 aborted, 1 failed, 3 ended with a revert not confirmed")
    .option("--json", "print the run as JSON")
    .action(async (first: string, runId: string | undefined, options: { follow?: boolean; json?: boolean }) => {
      if (first === "show") {
        if (!runId) throw new CliError("run show needs a run id: firedrill run show RUN_ID (see firedrill runs)");
        const { body } = await ctx.client().get<{ run: RunJson; events: RunEventJson[]; cloudReverts?: CloudRevertJson[] }>(`/api/v1/runs/${segment(runId)}`);
        if (options.json) return printJson(ctx.io, body);
        ctx.io.out(`Run ${body.run.id}  ${body.run.name}  ${body.run.state}${body.run.reason ? `: ${body.run.reason}` : ""}\n`);
        ctx.io.out(`started by ${body.run.actor} at ${body.run.createdAt}\n\n`);
        for (const e of body.events) if (e.type !== "measurement") ctx.io.out(renderRunEvent(e));
        ctx.io.out(renderCloudReverts(body.cloudReverts ?? []));
        const failedReverts = body.events.filter((e) => e.type === "revert-failed");
        if (failedReverts.length > 0) {
          ctx.io.err(
            `warning: ${failedReverts.length === 1 ? "a revert" : `${failedReverts.length} reverts`} of this run FAILED (${failedReverts.map((e) => e.faultId ?? "?").join(", ")}): the effect may still be on the host; see firedrill fault show FAULT_ID\n`,
          );
        }
        ctx.setExitCode(!body.run.endedAt ? 0 : exitCodeForRun(body.run));
        return;
      }
      if (runId !== undefined) throw new CliError(`unexpected argument ${JSON.stringify(runId)}: run takes one experiment file`);
      const spec = readExperimentFile(first);
      const { body } = await ctx
        .client()
        .post<{ run: RunJson; plan: RunPlan }>("/api/v1/runs", { spec })
        .catch((err: unknown) => {
          throw experimentError(err, first);
        });
      if (!options.follow) {
        if (options.json) return printJson(ctx.io, body.run);
        ctx.io.out(`${body.run.id}\n`);
        return;
      }
      ctx.io.out(`run ${body.run.id}: ${body.run.name} — ${body.plan.hypothesis}\n`);
      const final = await followRun(ctx, body.run.id, body.plan);
      ctx.io.out(`\nrun ${final.id} ${final.state}${final.reason ? `: ${final.reason}` : ""}\n`);
      if ((final.cloudRevertsUnconfirmed ?? 0) > 0) {
        const { body: shown } = await ctx.client().get<{ cloudReverts?: CloudRevertJson[] }>(`/api/v1/runs/${segment(final.id)}`);
        ctx.io.err(renderCloudReverts(shown.cloudReverts ?? []).replace(/^\n/, ""));
        ctx.io.err(`warning: run ${final.id} ended with cloud actions NOT reverted yet; watch them with firedrill run show ${final.id}\n`);
      }
      if (options.json) printJson(ctx.io, final);
      ctx.setExitCode(exitCodeForRun(final));
    });
}
