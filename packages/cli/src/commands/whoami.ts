/** `firedrill whoami`: who the token in use belongs to, and what it may do. */
import type { Command } from "commander";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { EMPTY, formatRelativeTime } from "../format.js";

/** `GET /api/v1/whoami`. */
export interface WhoamiJson {
  principal: { name: string; kind: string; role: string };
  token: { id: string; scope: string | null; expiresAt: string | null };
}

/** `2027-02-25T10:00:00.000Z (in 89d)`, or `never`. */
export function formatExpiry(iso: string | null, now: number = Date.now()): string {
  return iso ? `${iso} (${formatRelativeTime(iso, now)})` : "never";
}

/** Renders who the caller is, as label/value lines. */
export function renderWhoami(who: WhoamiJson, server: string, tokenFrom: string | undefined, now: number = Date.now()): string {
  const fields: [string, string][] = [
    ["Name", who.principal.name],
    ["Role", who.principal.role],
    ["Kind", who.principal.kind],
    ["Token", `${who.token.id}${tokenFrom ? ` (from ${tokenFrom})` : ""}`],
    ["Scope", who.token.scope ?? `${EMPTY} (every agent)`],
    ["Expires", formatExpiry(who.token.expiresAt, now)],
    ["Server", server],
  ];
  const width = Math.max(...fields.map(([k]) => k.length));
  return `${fields.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n")}\n`;
}

/** Registers `whoami`. */
export function registerWhoamiCommand(program: Command, ctx: CommandContext): void {
  program
    .command("whoami")
    .description("show who the API token in use belongs to: name, role, scope, expiry, server")
    .option("--json", "print the answer as JSON (with the server; never the token)")
    .action(async (options: { json?: boolean }) => {
      const client = ctx.client();
      const { body } = await client.get<WhoamiJson>("/api/v1/whoami");
      if (options.json) return printJson(ctx.io, { ...body, server: client.server });
      ctx.io.out(renderWhoami(body, client.server, ctx.settings().tokenFrom));
    });
}
