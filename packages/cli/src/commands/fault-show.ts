/** `firedrill fault show`: one fault and its timeline. */
import type { Command } from "commander";
import { LEASE_ASSUMED_REASON } from "@firedrill/control-plane";
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

/** The State line: loud for a revert that failed, explicit for a revert nobody confirmed. */
function describeState(fault: FaultJson): string {
  if (fault.state === "revert_failed") {
    return "REVERT FAILED: the agent gave the revert up; the fault's effect may still be on the host";
  }
  if (fault.state === "reverted" && fault.reason === LEASE_ASSUMED_REASON) {
    return "reverted (lease-assumed): NOT confirmed by the agent; the control plane closed it once the agent's lease must have ended it";
  }
  if (fault.endedAt === null && fault.stopRequestedAt) return `${formatState(fault.state, fault.reason)}, stopping: the revert is not confirmed yet`;
  return formatState(fault.state, fault.reason);
}

/** The Stop line: when the control plane wanted the fault ended, why, and whether that is confirmed. */
function describeStop(fault: FaultJson, now: number): string | undefined {
  if (!fault.stopRequestedAt) return undefined;
  const why = [fault.stopReason, fault.stopRequestedBy].filter(Boolean).join(": ");
  const status =
    fault.endedAt === null
      ? "not confirmed yet: sent again whenever the agent reconnects, and every few seconds while it is connected, until it confirms or its lease must have ended the fault"
      : fault.reason === LEASE_ASSUMED_REASON
        ? "never confirmed by the agent"
        : fault.state === "revert_failed"
          ? "the agent tried and gave up"
          : "confirmed by the agent";
  return `wanted since ${when(fault.stopRequestedAt, now)}${why ? ` (${why})` : ""}; ${status}`;
}

/** Renders a fault with its event timeline. */
export function renderFault(fault: FaultJson, events: readonly FaultEventJson[], now: number = Date.now()): string {
  const fields: [string, string][] = [
    ["ID", fault.id],
    ["Agent", fault.agentId],
    ["Kind", fault.kind],
    ["Params", formatParams(fault.params)],
    ["State", describeState(fault)],
    ["Duration", formatFaultDuration(fault.durationMs)],
    ["Created", when(fault.createdAt, now)],
    ["Started", when(fault.startedAt, now)],
    ["Ended", when(fault.endedAt, now)],
    ["Measured", formatMeasurements(fault.measurements)],
  ];
  if (fault.actor) fields.push(["By", fault.actor]);
  if (fault.policyOverride) fields.push(["Override", `server policy overridden: ${fault.policyOverride}`]);
  if (fault.runId) fields.push(["Run", fault.runId]);
  const stop = describeStop(fault, now);
  if (stop) fields.push(["Stop", stop]);
  if (fault.error) fields.push([fault.state === "failed" ? "Refused" : "Error", fault.error]);
  if (fault.state === "revert_failed") {
    fields.push(["Fix", `remove the cause named in Error, then firedrill fault stop ${fault.id} (the agent tries the revert again) or firedrill-agent recover on the host: the revert it reports replaces this state`]);
  }
  // What the agent said about the fault, e.g. what it leaves alone: one line each.
  for (const [i, line] of (fault.details ?? []).entries()) fields.push([i === 0 ? "Details" : "", line]);
  const width = Math.max(...fields.map(([k]) => k.length));
  const head = fields.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join("\n");
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
