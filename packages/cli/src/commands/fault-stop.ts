/** `firedrill fault stop`: revert one fault, or every fault of an agent. */
import type { Command } from "commander";
import type { FaultJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { segment } from "../http-client.js";
import { formatState } from "../format.js";

interface StopOptions {
  agent?: string;
  all?: boolean;
  json?: boolean;
}

function describe(fault: FaultJson): string {
  const state = fault.state === "revert_failed" ? "REVERT FAILED (the effect may still be on the host)" : formatState(fault.state, fault.reason);
  return `${fault.id}  ${state}${fault.error ? `  error: ${fault.error}` : ""}`;
}

const RESENT = "the stop is recorded and sent again whenever the agent reconnects, until it confirms or its lease must have ended the fault";

/** Registers `fault stop`. */
export function registerFaultStopCommand(fault: Command, ctx: CommandContext): void {
  fault
    .command("stop")
    .description("stop a fault (or, with --all, every fault on an agent) and wait for the agent to revert it")
    .argument("[fault-id]", "the fault to stop")
    .option("--agent <id>", "the agent holding the fault (looked up when omitted); required with --all")
    .option("--all", "stop every fault on the agent")
    .option("--json", "print the resulting fault(s) as JSON")
    .action(async (faultId: string | undefined, options: StopOptions) => {
      const client = ctx.client();
      if (options.all) {
        if (faultId !== undefined) throw new CliError(`give either a fault id or --all, not both (got ${faultId} and --all)`);
        if (!options.agent) throw new CliError("--all needs --agent <id>: the agent whose faults to stop");
        const { body } = await client.delete<{ faults: FaultJson[] }>(`/api/v1/agents/${segment(options.agent)}/faults`);
        if (options.json) return printJson(ctx.io, body.faults);
        if (body.faults.length === 0) ctx.io.out(`agent ${options.agent} had no active faults\n`);
        for (const f of body.faults) ctx.io.out(`${describe(f)}\n`);
        const pending = body.faults.filter((f) => f.endedAt === null);
        if (pending.length > 0) {
          ctx.io.err(
            `warning: agent ${options.agent} has not confirmed the revert of ${pending.map((f) => f.id).join(", ")} yet; ${RESENT}. Check with: firedrill fault list --agent ${options.agent}\n`,
          );
        }
        return;
      }
      if (faultId === undefined) {
        throw new CliError("give the fault id to stop (see `firedrill fault list`), or --agent <id> --all to stop every fault on an agent");
      }
      let agentId = options.agent;
      if (agentId === undefined) {
        const { body } = await client.get<{ fault: FaultJson }>(`/api/v1/faults/${segment(faultId)}`);
        agentId = body.fault.agentId;
      }
      const { status, body } = await client.delete<{ fault: FaultJson }>(
        `/api/v1/agents/${segment(agentId)}/faults/${segment(faultId)}`,
      );
      if (options.json) printJson(ctx.io, body.fault);
      else ctx.io.out(`${describe(body.fault)}\n`);
      if (status === 202 && body.fault.state === "revert_failed") {
        ctx.io.err(
          `warning: the revert of ${faultId} FAILED and agent ${agentId} has not confirmed a new one (it tries again when it gets the stop, if connected): its effect may still be on the host. See the error with firedrill fault show ${faultId}, fix the cause, and stop it again\n`,
        );
      } else if (status === 202) {
        ctx.io.err(
          `warning: agent ${agentId} has not confirmed the revert yet (state ${body.fault.state}); ${RESENT}. Check with: firedrill fault show ${faultId}\n`,
        );
      }
    });
}
