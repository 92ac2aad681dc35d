/** `firedrill agents [revoke | rm]`: the agents this control plane knows, and how to be rid of one. */
import type { Command } from "commander";
import type { AgentJson, AgentListJson, AgentSummaryJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { ApiRequestError, CliError } from "../errors.js";
import { EMPTY, formatLabels, formatRelativeTime, renderTable } from "../format.js";
import { segment } from "../http-client.js";

/** `POST /api/v1/agents/:id/revoke`. */
interface RevokedAgent {
  agent: AgentJson;
  /** How many of its faults StopAll reverted, or its lease will. */
  faultsReverted: number;
  /** False when the agent did not acknowledge StopAll in time; its lease reverts the faults. */
  confirmed: boolean;
}

/** `DELETE /api/v1/agents/:id`. */
interface RemovedAgent {
  removed: { id: string; hostname: string };
}

/** The largest page the control plane serves. */
const PAGE = 1000;

/** `yes`, `no`, `no (stale)`, `no (revoked)`. */
function formatConnected(a: AgentSummaryJson): string {
  const mark = a.revokedAt ? " (revoked)" : a.stale ? " (stale)" : "";
  return `${a.connected ? "yes" : "no"}${mark}`;
}

/** When its certificate expires (`in 6d`, `expired 2d ago`); `-` when it has none. */
function formatCertificate(a: AgentSummaryJson, now: number): string {
  if (!a.enrolled || !a.certificateNotAfter) return EMPTY;
  const when = formatRelativeTime(a.certificateNotAfter, now);
  return Date.parse(a.certificateNotAfter) <= now ? `expired ${when}` : when;
}

/** `agt_1 (web-1)`, or the id alone when the host name is unknown. */
function agentName(agent: { id: string; hostname: string }): string {
  return agent.hostname ? `${agent.id} (${agent.hostname})` : agent.id;
}

/** Renders agents as the `firedrill agents` table; stale and revoked agents are marked under CONNECTED. */
export function renderAgents(agents: readonly AgentSummaryJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "HOSTNAME", "CONNECTED", "LAST SEEN", "CERT EXPIRES", "LABELS", "FAULTS"],
    agents.map((a) => [
      a.id,
      a.hostname || EMPTY,
      formatConnected(a),
      a.connected ? "now" : formatRelativeTime(a.lastSeenAt, now),
      formatCertificate(a, now),
      formatLabels(a.labels),
      String(a.activeFaults),
    ]),
  );
}

/** What to do about stale and revoked agents, or "" when there are none. */
export function agentsHint(agents: readonly AgentSummaryJson[]): string {
  const revoked = agents.filter((a) => a.revokedAt).length;
  const stale = agents.filter((a) => !a.revokedAt && a.stale).length;
  const lines: string[] = [];
  if (stale > 0) {
    const it = stale === 1 ? "agent is" : "agents are";
    lines.push(`${stale} stale ${it} unseen for longer than the server's --agent-stale-after and never targeted: if a host is gone, forget its agent with firedrill agents rm ID`);
  }
  if (revoked > 0) {
    lines.push(`${revoked} revoked ${revoked === 1 ? "agent" : "agents"} can never connect again with ${revoked === 1 ? "its" : "their"} certificate: forget ${revoked === 1 ? "it" : "them"} with firedrill agents rm ID`);
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** The agents, page after page (each of at most 1000, following nextCursor), until `max` or the last page. */
async function listAgents(ctx: CommandContext, max: number, full: boolean): Promise<{ agents: AgentSummaryJson[]; total: number; more: boolean }> {
  const agents: AgentSummaryJson[] = [];
  let cursor: string | undefined;
  let total = 0;
  for (;;) {
    const { body } = await ctx.client().get<AgentListJson<AgentSummaryJson>>("/api/v1/agents", {
      limit: String(Math.min(PAGE, max - agents.length)),
      cursor,
      view: full ? "full" : undefined,
    });
    agents.push(...body.agents);
    // A control plane from before pagination answers every agent at once, without nextCursor or total.
    total = body.total ?? agents.length;
    const next = body.nextCursor ?? null;
    if (next === null || agents.length >= max) return { agents, total, more: next !== null };
    cursor = next;
  }
}

/** Whether `--json` was given to the subcommand or to `agents` (which takes it too). */
function wantsJson(command: Command): boolean {
  return command.optsWithGlobals<{ json?: boolean }>().json === true;
}

/** Registers `agents`, `agents revoke` and `agents rm`; returns the `agents` command. */
export function registerAgentsCommand(program: Command, ctx: CommandContext): Command {
  const agents = program
    .command("agents")
    .description("list the agents that have connected: id, host, link state, certificate, labels and active faults")
    .option("--limit <n>", "show at most this many, by id (default: every agent, fetched 1000 at a time)")
    .option("--full", "with each agent's host facts (OS, CPUs, memory, filesystems, interfaces), for --json")
    .option("--json", "print the agents as JSON")
    .action(async (options: { json?: boolean; limit?: string; full?: boolean }) => {
      let max = Number.POSITIVE_INFINITY;
      if (options.limit !== undefined) {
        if (!/^\d+$/.test(options.limit) || Number(options.limit) < 1) {
          throw new CliError(`--limit ${JSON.stringify(options.limit)} is not valid; use a whole number of at least 1, or leave it out to list every agent`);
        }
        max = Number(options.limit);
      }
      const { agents: list, total, more } = await listAgents(ctx, max, options.full === true);
      if (options.json) return printJson(ctx.io, list);
      if (list.length === 0) {
        ctx.io.out(
          "no agents have connected yet: create a join token with firedrill join-token create and start firedrill-agent on a host with this control plane's address and that token\n",
        );
        return;
      }
      ctx.io.out(renderAgents(list));
      ctx.io.err(agentsHint(list));
      if (more) ctx.io.err(`showing ${list.length} of ${total} agents (the first by id): raise --limit, or leave it out to list them all\n`);
    });
  agents
    .command("revoke")
    .description("revoke an agent: stop all its faults and refuse its certificate from now on")
    .argument("<agent-id>", "the agent (see firedrill agents)")
    .option("--reason <text>", "why, for the audit log")
    .option("--json", "print { agent, faultsReverted, confirmed } as JSON")
    .action(async (id: string, options: { reason?: string }, command: Command) => {
      const { body } = await ctx
        .client()
        .post<RevokedAgent>(`/api/v1/agents/${segment(id)}/revoke`, options.reason !== undefined ? { reason: options.reason } : {});
      if (wantsJson(command)) return printJson(ctx.io, body);
      const n = body.faultsReverted;
      const faults = `${n} ${n === 1 ? "fault" : "faults"}`;
      ctx.io.out(
        `agent ${agentName(body.agent)} is revoked: it can never connect again with its certificate.\n` +
          (body.confirmed
            ? `It stopped all its faults and confirmed: ${faults} reverted.\n`
            : `It did not confirm stopping its faults in time (${faults}): its lease reverts them when it runs out.\n`) +
          `If the host is gone, forget it with firedrill agents rm ${body.agent.id}\n`,
      );
    });
  agents
    .command("rm")
    .description("forget an agent whose host is gone (revoke it first if it is still connected)")
    .argument("<agent-id>", "the agent (see firedrill agents)")
    .option("--json", "print { removed: { id, hostname } } as JSON")
    .action(async (id: string, _options: unknown, command: Command) => {
      let body: RemovedAgent;
      try {
        body = (await ctx.client().delete<RemovedAgent>(`/api/v1/agents/${segment(id)}`)).body;
      } catch (err) {
        // The control plane's words, with the way out when they lack it.
        if (err instanceof ApiRequestError && err.code === "agent_connected" && !err.message.includes("agents revoke")) {
          throw new ApiRequestError(err.status, err.code, `${err.message}; revoke it first: firedrill agents revoke ${id}`, err.issues);
        }
        throw err;
      }
      if (wantsJson(command)) return printJson(ctx.io, body);
      ctx.io.out(`removed agent ${agentName(body.removed)}: the control plane has forgotten it\n`);
    });
  return agents;
}
