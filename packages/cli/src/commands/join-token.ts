/**
 * `firedrill join-token create | list | revoke`: the tokens agents enroll with (admin). A join
 * token's text is shown once, by `create`; it pins this control plane's CA, so an agent holding it
 * never presents it to another server.
 */
import type { JoinTokenJson } from "@firedrill/control-plane";
import type { Command } from "commander";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError, withFlagNames } from "../errors.js";
import { formatLabels, formatRelativeTime, renderTable } from "../format.js";
import { segment } from "../http-client.js";
import { formatExpiry } from "./whoami.js";

/** `POST /api/v1/join-tokens` → 201. */
interface CreatedJoinToken {
  joinToken: JoinTokenJson;
  /** The token itself, `fdj_…`: in this answer only. */
  token: string;
}

/** API field → the flag that sets it. */
const FLAGS: Record<string, string> = { ttl: "--ttl", uses: "--uses", labels: "--labels" };

interface CreateOptions {
  ttl?: string;
  uses?: string;
  labels?: string;
  json?: boolean;
}

/**
 * Parses `--labels k=v,k2=v2`; the control plane checks keys and values.
 * Thrown when a pair has no `=` or an empty key: CliError.
 */
export function parseLabelsFlag(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(`--labels: "${pair}" is not key=value; use e.g. --labels env=prod,app=web`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return labels;
}

/** `3/100`, or `3/∞` when the uses are not limited. */
export function formatUses(t: JoinTokenJson): string {
  return `${t.uses}/${t.usesAllowed ?? "∞"}`;
}

/** A join token's state, with who revoked it. */
function formatJoinTokenState(t: JoinTokenJson): string {
  return t.state === "revoked" && t.revokedBy ? `revoked by ${t.revokedBy}` : t.state;
}

/** The join tokens as a table. */
export function renderJoinTokens(tokens: readonly JoinTokenJson[], now: number = Date.now()): string {
  return renderTable(
    ["ID", "STATE", "EXPIRES", "USES", "LABELS", "CREATED BY"],
    tokens.map((t) => [
      t.id,
      formatJoinTokenState(t),
      t.expiresAt ? formatRelativeTime(t.expiresAt, now) : "never",
      formatUses(t),
      formatLabels(t.labels),
      t.createdBy,
    ]),
  );
}

/**
 * How to install an agent on a host with this join token from the control plane at `server` (the
 * HTTP API's URL): with its CA in ca.pem (`--cacert`), and without, fetching ca.pem first and
 * checking it against the CA fingerprint the token pins with coreutils alone before anything is
 * run. `token` is the token itself, or a placeholder.
 */
export function installInstructions(server: string, token: string, caFingerprint: string): string {
  const base = server.replace(/\/+$/, "");
  const pin = caFingerprint.replace(/^sha256:/, "");
  if (base.startsWith("http://")) {
    return (
      "\ninstall the agent on a host (as root: it downloads the agent from this control plane, enrolls it and waits until it is connected):\n" +
      `  curl -fsSL ${base}/install/agent.sh | sudo sh -s -- --join-token ${token}\n` +
      "(this control plane's API is plain HTTP: only a host that reaches it on a trusted network, or this host, should install from it)\n"
    );
  }
  const check =
    `{ [ "$(tail -n +2 ca.pem | head -n -1 | base64 -d | sha256sum | cut -d' ' -f1)" = ${pin} ] || ` +
    "{ echo 'ca.pem is not the CA the join token pins: not installing' >&2; false; }; }";
  return (
    "\ninstall the agent on a host (as root: it downloads the agent from this control plane, enrolls it and waits until it is connected), with this control plane's CA in ca.pem:\n" +
    `  curl -fsSL --cacert ca.pem ${base}/install/agent.sh | sudo sh -s -- --join-token ${token}\n` +
    "or without ca.pem: fetch it, check it against the CA fingerprint in the token, then install:\n" +
    `  curl -fsSLk -o ca.pem ${base}/install/ca.pem && ${check} && curl -fsSL --cacert ca.pem ${base}/install/agent.sh | sudo sh -s -- --cacert ca.pem --join-token ${token}\n`
  );
}

/** Registers `join-token create`, `join-token list` and `join-token revoke`; returns the `join-token` command. */
export function registerJoinTokenCommands(program: Command, ctx: CommandContext): Command {
  const joinToken = program
    .command("join-token")
    .description("create, list and revoke the tokens agents enroll with (needs an admin token)");
  joinToken
    .command("create")
    .description("create a join token for firedrill-agent --token-file; the token is printed once, on stdout")
    .option("--ttl <duration>", "how long it can enroll agents, e.g. 1h, 24h, 7d (default: 24h)")
    .option("--uses <n>", "how many agents may enroll with it (default: any number)")
    .option("--labels <k=v,...>", "labels every agent enrolled with it gets, e.g. env=prod,app=web")
    .option("--json", "print { joinToken, token } as JSON")
    .action(async (options: CreateOptions) => {
      if (options.uses !== undefined && !/^[1-9]\d{0,8}$/.test(options.uses)) {
        throw new CliError(`--uses ${JSON.stringify(options.uses)} is not valid; use a whole number of agents, at least 1`);
      }
      const request = {
        ...(options.ttl !== undefined ? { ttl: options.ttl } : {}),
        ...(options.uses !== undefined ? { uses: Number(options.uses) } : {}),
        ...(options.labels !== undefined ? { labels: parseLabelsFlag(options.labels) } : {}),
      };
      let answer: CreatedJoinToken;
      try {
        answer = (await ctx.client().post<CreatedJoinToken>("/api/v1/join-tokens", request)).body;
      } catch (err) {
        throw withFlagNames(err, FLAGS, "join token");
      }
      if (options.json) return printJson(ctx.io, { joinToken: answer.joinToken, token: answer.token });
      const t = answer.joinToken;
      const uses = t.usesAllowed === null ? "any number of agents" : `${t.usesAllowed} ${t.usesAllowed === 1 ? "agent" : "agents"}`;
      const labels = Object.keys(t.labels).length ? `, labels ${formatLabels(t.labels)}` : "";
      // The token alone on stdout (`… > file` saves just it); what it is, on stderr.
      ctx.io.err(
        `created join token ${t.id} (${uses}, expires ${formatExpiry(t.expiresAt)}${labels}).\n` +
          "It is shown only this time and can't be shown again. Store it now:\n\n",
      );
      ctx.io.out(`${answer.token}\n`);
      // On a terminal the token is on screen anyway: the install line carries it. Written to a
      // file or a pipe, it stays out of stderr (a log, a CI job's output): TOKEN stands for it.
      const inline = ctx.io.outIsTerminal === true;
      ctx.io.err(
        installInstructions(ctx.settings().server, inline ? answer.token : "TOKEN", t.caFingerprint) +
          (inline ? "" : "(TOKEN: the join token written to stdout above)\n") +
          "\nor run the agent yourself with the token in its token file (mode 0600):\n" +
          "  firedrill-agent --server HOST:PORT --token-file FILE --state-dir DIR\n" +
          `It pins this control plane's CA (${t.caFingerprint}): an agent sends it only to this control plane, never to another server.\n`,
      );
    });
  joinToken
    .command("list")
    .description("list join tokens: active ones unless --all (never the tokens themselves)")
    .option("--all", "include expired, used-up and revoked join tokens")
    .option("--json", "print the join tokens as JSON")
    .action(async (options: { all?: boolean; json?: boolean }) => {
      const { body } = await ctx.client().get<{ joinTokens: JoinTokenJson[] }>("/api/v1/join-tokens", options.all ? { all: "1" } : {});
      if (options.json) return printJson(ctx.io, body.joinTokens);
      if (body.joinTokens.length === 0) {
        ctx.io.out(options.all ? "no join tokens\n" : "no active join tokens (--all shows expired, used-up and revoked ones)\n");
        return;
      }
      ctx.io.out(renderJoinTokens(body.joinTokens));
    });
  joinToken
    .command("revoke")
    .description("revoke a join token: no agent can enroll with it any more")
    .argument("<join-token-id>", "the join token, e.g. jt_0123456789ab (see firedrill join-token list)")
    .option("--json", "print the revoked join token as JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      const { body } = await ctx.client().delete<{ joinToken: JoinTokenJson }>(`/api/v1/join-tokens/${segment(id)}`);
      if (options.json) return printJson(ctx.io, body.joinToken);
      const t = body.joinToken;
      ctx.io.out(
        `join token ${t.id} is revoked${t.revokedBy ? ` (by ${t.revokedBy} at ${t.revokedAt})` : ""}: no agent can enroll with it any more ` +
          `(${t.uses} enrolled with it; revoke one with firedrill agents revoke AGENT_ID)\n`,
      );
    });
  return joinToken;
}
