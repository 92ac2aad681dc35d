/** `firedrill fault show`: one fault and its timeline. */
import type { Command } from "commander";
import type { FaultEventJson, FaultJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { segment } from "../http-client.js";
import {
  EMPTY,
  formatFaultDuration,
  formatMeasurements,
  formatParams,
  formatRelativeTime,
  formatState,
  renderTable,
} from "../format.js";

function when(iso: string | null, now: number): string {
  return iso ? `${iso} (${formatRelativeTime(iso, now)})` : EMPTY;
}

function eventDetails(event: FaultEventJson): string {
  const parts: string[] = [];
  if (event.reason) parts.push(`reason=${event.reason}`);
  if (event.message) parts.push(event.message);
  if (event.error) parts.push(`error: ${event.error}`);
  if (event.measurements && Object.keys(event.measurements).length) parts.push(formatMeasurements(event.measurements));
  return parts.join("; ");
}

/** Renders a fault with its event timeline. */
export function renderFault(fault: FaultJson, events: readonly FaultEventJson[], now: number = Date.now()): string {
  const fields: [string, string][] = [
    ["ID", fault.id],
    ["Agent", fault.agentId],
    ["Kind", fault.kind],
    ["Params", formatParams(fault.params)],
    ["State", formatState(fault.state, fault.reason)],
    ["Duration", formatFaultDuration(fault.durationMs)],
    ["Created", when(fault.createdAt, now)],
    ["Started", when(fault.startedAt, now)],
    ["Ended", when(fault.endedAt, now)],
    ["Measured", formatMeasurements(fault.measurements)],
  ];
  if (fault.actor) fields.push(["By", fault.actor]);
  if (fault.policyOverride) fields.push(["Override", `server policy overridden: ${fault.policyOverride}`]);
  if (fault.runId) fields.push(["Run", fault.runId]);
  if (fault.error) fields.push(["Error", fault.error]);
  const width = Math.max(...fields.map(([k]) => k.length));
  const head = fields.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
  const timeline = events.length
    ? renderTable(
        ["TIME", "EVENT", "DETAILS"],
        events.map((e) => [e.time, e.type, eventDetails(e)]),
      )
        .split("\n")
        .map((l) => (l ? `  ${l}` : l))
        .join("\n")
    : "  (no events from the agent yet)\n";
  return `${head}\n\nTimeline\n${timeline}`;
}

/** Registers `fault show`. */
export function registerFaultShowCommand(fault: Command, ctx: CommandContext): void {
  fault
    .command("show")
    .description("show one fault and the timeline of its events")
    .argument("<fault-id>", "the fault, e.g. flt_0123456789abcdef")
    .option("--json", "print the fault and its events as JSON")
    .action(async (faultId: string, options: { json?: boolean }) => {
      const { body } = await ctx.client().get<{ fault: FaultJson; events: FaultEventJson[] }>(`/api/v1/faults/${segment(faultId)}`);
      if (options.json) return printJson(ctx.io, body);
      ctx.io.out(renderFault(body.fault, body.events));
    });
}
