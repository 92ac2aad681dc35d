/** `firedrill fault start`: inject one fault on one agent. */
import type { Command } from "commander";
import type { FaultJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { CliError } from "../errors.js";
import { printJson } from "../context.js";
import { segment } from "../http-client.js";
import { parseParams } from "../params.js";

interface StartOptions {
  agent: string;
  kind: string;
  param: string[];
  duration: string;
  runId?: string;
  overridePolicy?: string;
  json?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Registers `fault start`. */
export function registerFaultStartCommand(fault: Command, ctx: CommandContext): void {
  fault
    .command("start")
    .description("start a fault on an agent; prints the fault id once the agent has accepted it")
    .requiredOption("--agent <id>", "the agent to run it on (see `firedrill agents`)")
    .requiredOption("--kind <kind>", "fault kind, e.g. cpu-burn")
    .option("--param <name=value>", "a fault parameter; repeat for more (50 is a number, true/false booleans)", collect, [])
    .requiredOption("--duration <duration>", "how long the fault lasts, e.g. 30s, 5m, 1h (max 12h)")
    .option("--run-id <id>", "tag the fault with an experiment run id")
    .option("--override-policy <why>", "admins only: skip the server's guardrail policy for this fault, recording why (never skips the token scope, the halt or capabilities)")
    .option("--json", "print the fault as JSON instead of its id")
    .action(async (options: StartOptions) => {
      const params = parseParams(options.param);
      const overridePolicy = options.overridePolicy?.trim();
      if (options.overridePolicy !== undefined && !overridePolicy) {
        throw new CliError('--override-policy needs the reason, e.g. --override-policy "INC-123: reproduce on the excluded db host"');
      }
      const { status, body } = await ctx.client().post<{ fault: FaultJson }>(`/api/v1/agents/${segment(options.agent)}/faults`, {
        kind: options.kind,
        params,
        duration: options.duration,
        ...(options.runId ? { runId: options.runId } : {}),
        ...(overridePolicy ? { overridePolicy } : {}),
      });
      if (status === 202) {
        ctx.io.err(
          `warning: agent ${options.agent} has not acknowledged ${body.fault.id} yet (state ${body.fault.state}); follow it with: firedrill fault show ${body.fault.id}\n`,
        );
      }
      if (options.json) printJson(ctx.io, body.fault);
      else ctx.io.out(`${body.fault.id}\n`);
    });
}
