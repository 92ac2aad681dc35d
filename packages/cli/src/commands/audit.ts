/**
 * `firedrill audit`: the control plane's audit log (who did what, from where, with what outcome);
 * `firedrill audit verify`: checks the log's hash chain.
 */
import type { Command } from "commander";
import type { AuditJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError, withFlagNames } from "../errors.js";
import { EMPTY, renderTable } from "../format.js";

/** `GET /api/v1/audit/verify`. */
export interface AuditVerifyJson {
  ok: boolean;
  rows: number;
  message: string;
  firstBad: { id: number; problem: string } | null;
}

/** API query parameter → the flag that sets it. */
const FLAGS: Record<string, string> = { "query.since": "--since", "query.actor": "--actor", "query.limit": "--limit" };

interface AuditOptions {
  since?: string;
  actor?: string;
  limit: string;
  json?: boolean;
}

/** `2026-11-27 15:01:02Z` for an ISO time. */
function when(iso: string): string {
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** The audit entries as a table. */
export function renderAudit(entries: readonly AuditJson[]): string {
  return renderTable(
    ["TIME", "PRINCIPAL", "SOURCE", "REQUEST", "STATUS", "OUTCOME", "TARGETS"],
    entries.map((e) => [
      when(e.time),
      e.principal ?? EMPTY,
      e.source,
      `${e.method} ${e.path}`,
      String(e.status),
      e.outcome,
      e.targets.length ? e.targets.join(",") : EMPTY,
    ]),
  );
}

/** Registers `audit` and `audit verify`; returns the `audit` command. */
export function registerAuditCommands(program: Command, ctx: CommandContext): Command {
  const audit = program
    .command("audit")
    .description("show the audit log: every change and every refused request, newest first (`audit verify` checks it)")
    .option("--since <when>", "only entries since a duration ago (1h, 7d) or a time (2026-01-31T10:00:00Z)")
    .option("--actor <name>", "only entries of this principal")
    .option("--limit <n>", "at most this many", "100")
    .option("--json", "print the entries as JSON")
    .action(async (options: AuditOptions) => {
      if (!/^\d+$/.test(options.limit) || Number(options.limit) < 1 || Number(options.limit) > 10_000) {
        throw new CliError(`--limit ${JSON.stringify(options.limit)} is not valid; use a whole number from 1 to 10000`);
      }
      let entries: AuditJson[];
      try {
        const { body } = await ctx.client().get<{ entries: AuditJson[] }>("/api/v1/audit", {
          since: options.since,
          actor: options.actor,
          limit: options.limit,
        });
        entries = body.entries;
      } catch (err) {
        throw withFlagNames(err, FLAGS, "audit query");
      }
      if (options.json) return printJson(ctx.io, entries);
      if (entries.length === 0) {
        const filters = [options.since ? `since ${options.since}` : "", options.actor ? `by ${options.actor}` : ""].filter(Boolean).join(" ");
        ctx.io.out(`no audit entries${filters ? ` ${filters}` : ""}\n`);
        return;
      }
      ctx.io.out(renderAudit(entries));
    });
  audit
    .command("verify")
    .description("check the audit log's hash chain: exit 0 when intact, 1 when a row was changed or removed")
    .option("--json", "print the result as JSON")
    .action(async (options: { json?: boolean }) => {
      const { body } = await ctx.client().get<AuditVerifyJson>("/api/v1/audit/verify");
      // `audit` has a --json of its own, which commander gives to it when it follows `verify`.
      if (options.json || audit.opts<AuditOptions>().json) printJson(ctx.io, body);
      else if (body.ok) ctx.io.out(`${body.message}\n`);
      else ctx.io.err(`error: ${body.message}\n`);
      ctx.setExitCode(body.ok ? 0 : 1);
    });
  return audit;
}
