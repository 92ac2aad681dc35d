/**
 * `firedrill token create | list | revoke`: API tokens (admin). A new token's secret is shown once,
 * by `create`; the control plane keeps only its hash.
 */
import { Option } from "commander";
import type { Command } from "commander";
import type { TokenJson } from "@firedrill/control-plane";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { withFlagNames } from "../errors.js";
import { EMPTY, formatRelativeTime, renderTable } from "../format.js";
import { segment } from "../http-client.js";
import { formatExpiry } from "./whoami.js";

/** API field → the flag that sets it. */
const FLAGS: Record<string, string> = { name: "--name", role: "--role", kind: "--kind", expires: "--expires", scope: "--scope" };

interface CreateOptions {
  name: string;
  role: string;
  kind?: string;
  expires?: string;
  scope?: string;
  json?: boolean;
}

/** A token's role with its scope: `operator`, `operator (env!=prod)`. */
function roleAndScope(token: TokenJson): string {
  return token.scope ? `${token.role}, scope ${token.scope}` : token.role;
}

/** The tokens as a table. */
export function renderTokens(tokens: readonly TokenJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "PRINCIPAL", "ROLE", "SCOPE", "EXPIRES", "LAST USED", "STATE"],
    tokens.map((t) => [
      t.id,
      t.kind === "service" ? `${t.principal} (service)` : t.principal,
      t.role,
      t.scope ?? EMPTY,
      t.expiresAt ? formatRelativeTime(t.expiresAt, now) : "never",
      t.lastUsedAt ? `${formatRelativeTime(t.lastUsedAt, now)}${t.lastUsedFrom ? ` from ${t.lastUsedFrom}` : ""}` : "never",
      t.state === "revoked" && t.revokedBy ? `revoked by ${t.revokedBy}` : t.state,
    ]),
  );
}

/** Registers `token create`, `token list` and `token revoke`; returns the `token` command. */
export function registerTokenCommands(program: Command, ctx: CommandContext): Command {
  const token = program.command("token").description("create, list and revoke API tokens (needs an admin token)");
  token
    .command("create")
    .description("create an API token for a person or service; the token is printed once, on stdout")
    .requiredOption("--name <name>", "who the token is for (the principal; created with --role when new)")
    .addOption(new Option("--role <role>", "what it may do").choices(["viewer", "operator", "admin", "alertmanager"]).makeOptionMandatory())
    .addOption(new Option("--kind <kind>", "a person or a service (default: person)").choices(["person", "service"]))
    .option("--expires <duration>", "lifetime, e.g. 12h, 90d, 1y (at most 5y; default: never expires)")
    .option("--scope <selector>", "only agents matching this label selector, e.g. 'env!=prod' or 'app=web,env=staging'")
    .option("--json", "print { token, secret } as JSON")
    .action(async (options: CreateOptions) => {
      const request = {
        name: options.name,
        role: options.role,
        ...(options.kind !== undefined ? { kind: options.kind } : {}),
        ...(options.expires !== undefined ? { expires: options.expires } : {}),
        ...(options.scope !== undefined ? { scope: options.scope } : {}),
      };
      let answer: { token: TokenJson; secret: string };
      try {
        answer = (await ctx.client().post<{ token: TokenJson; secret: string }>("/api/v1/tokens", request)).body;
      } catch (err) {
        throw withFlagNames(err, FLAGS, "token");
      }
      if (options.json) return printJson(ctx.io, { token: answer.token, secret: answer.secret });
      const t = answer.token;
      // The token alone on stdout (`… > file` saves just it); what it is, on stderr.
      ctx.io.err(
        `created token ${t.id} for ${t.principal} (${t.kind}, ${roleAndScope(t)}, expires ${formatExpiry(t.expiresAt)}).\n` +
          "It is shown only this time; the control plane keeps only its hash. Store it now:\n\n",
      );
      ctx.io.out(`${answer.secret}\n`);
      ctx.io.err(`\nlog in with it: firedrill login --server ${ctx.client().server} --token-file FILE\n`);
    });
  token
    .command("list")
    .description("list API tokens: active ones unless --all (never their secrets)")
    .option("--all", "include revoked and expired tokens")
    .option("--json", "print the tokens as JSON")
    .action(async (options: { all?: boolean; json?: boolean }) => {
      const { body } = await ctx.client().get<{ tokens: TokenJson[] }>("/api/v1/tokens", options.all ? { all: "1" } : {});
      if (options.json) return printJson(ctx.io, body.tokens);
      if (body.tokens.length === 0) {
        ctx.io.out(options.all ? "no tokens\n" : "no active tokens (--all shows revoked and expired ones)\n");
        return;
      }
      ctx.io.out(renderTokens(body.tokens));
    });
  token
    .command("revoke")
    .description("revoke an API token: it stops working at once")
    .argument("<token-id>", "the token, e.g. tok_0123456789ab (see firedrill token list)")
    .option("--json", "print the revoked token as JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      const { body } = await ctx.client().delete<{ token: TokenJson }>(`/api/v1/tokens/${segment(id)}`);
      if (options.json) return printJson(ctx.io, body.token);
      const t = body.token;
      ctx.io.out(`token ${t.id} of ${t.principal} (${t.role}) is revoked${t.revokedBy ? ` (by ${t.revokedBy} at ${t.revokedAt})` : ""}\n`);
    });
  return token;
}
