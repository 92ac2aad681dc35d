/**
 * `firedrill run FILE [--follow]` starts a run; `firedrill run show ID` shows one.
 * With --follow: a live timeline (steps, acks, measurements, stop conditions, progress of long
 * steps) until the run ends; exit code 0 completed, 2 aborted, 1 failed.
 */
import type { Command } from "commander";
import type { RunPlan } from "@firedrill/control-plane";
import { formatDuration } from "@firedrill/protocol";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { segment } from "../http-client.js";
import { readEventStream } from "../sse.js";
import { clock, experimentError, exitCodeFor, readExperimentFile } from "./experiment-io.js";

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
    .option("--follow", "print the live timeline until the run ends; exit 0 completed, 2 aborted, 1 failed")
    .option("--json", "print the run as JSON")
    .action(async (first: string, runId: string | undefined, options: { follow?: boolean; json?: boolean }) => {
      if (first === "show") {
        if (!runId) throw new CliError("run show needs a run id: firedrill run show RUN_ID (see firedrill runs)");
        const { body } = await ctx.client().get<{ run: RunJson; events: RunEventJson[] }>(`/api/v1/runs/${segment(runId)}`);
        if (options.json) return printJson(ctx.io, body);
        ctx.io.out(`Run ${body.run.id}  ${body.run.name}  ${body.run.state}${body.run.reason ? `: ${body.run.reason}` : ""}\n`);
        ctx.io.out(`started by ${body.run.actor} at ${body.run.createdAt}\n\n`);
        for (const e of body.events) if (e.type !== "measurement") ctx.io.out(renderRunEvent(e));
        const failedReverts = body.events.filter((e) => e.type === "revert-failed");
        if (failedReverts.length > 0) {
          ctx.io.err(
            `warning: ${failedReverts.length === 1 ? "a revert" : `${failedReverts.length} reverts`} of this run FAILED (${failedReverts.map((e) => e.faultId ?? "?").join(", ")}): the effect may still be on the host; see firedrill fault show FAULT_ID\n`,
          );
        }
        ctx.setExitCode(body.run.state === "completed" || !body.run.endedAt ? 0 : exitCodeFor(body.run.state));
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
      if (options.json) printJson(ctx.io, final);
      ctx.setExitCode(exitCodeFor(final.state));
    });
}
