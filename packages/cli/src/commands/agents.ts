/** `firedrill agents`: the agents this control plane knows. */
import type { Command } from "commander";
import type { AgentJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { formatLabels, formatRelativeTime, renderTable } from "../format.js";

/** Renders agents as the `firedrill agents` table. */
export function renderAgents(agents: readonly AgentJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "HOSTNAME", "CONNECTED", "LAST SEEN", "LABELS", "FAULTS"],
    agents.map((a) => [
      a.id,
      a.hostname || "-",
      a.connected ? "yes" : "no",
      a.connected ? "now" : formatRelativeTime(a.lastSeenAt, now),
      formatLabels(a.labels),
      String(a.activeFaults),
    ]),
  );
}

/** Registers `agents`. */
export function registerAgentsCommand(program: Command, ctx: CommandContext): void {
  program
    .command("agents")
    .description("list the agents that have connected: id, host, link state, labels and active faults")
    .option("--json", "print the agents as JSON")
    .action(async (options: { json?: boolean }) => {
      const { body } = await ctx.client().get<{ agents: AgentJson[] }>("/api/v1/agents");
      if (options.json) return printJson(ctx.io, body.agents);
      if (body.agents.length === 0) {
        ctx.io.out("no agents have connected yet: start firedrill-agent on a host with this control plane's address and join token\n");
        return;
      }
      ctx.io.out(renderAgents(body.agents));
    });
}
