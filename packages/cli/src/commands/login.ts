/**
 * `firedrill login --server URL --token-file F [--ca-fingerprint sha256:…]`: checks the token
 * against the server (and, for https with a fingerprint, pins the server's CA), then saves server,
 * token and CA to the config file (0600).
 */
import type { Command } from "commander";
import { normalizeFingerprint } from "@firedrill/control-plane";
import type { CliConfig } from "../config.js";
import { writeConfig } from "../config.js";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";
import { createApiClient } from "../http-client.js";
import { fetchPeerCertificates, isLoopbackHost } from "../tls.js";
import type { PeerCertificate } from "../tls.js";
import type { WhoamiJson } from "./whoami.js";

interface LoginOptions {
  caFingerprint?: string;
  json?: boolean;
}

/** Registers `login`. */
export function registerLoginCommand(program: Command, ctx: CommandContext): void {
  program
    .command("login")
    .description("check an API token against the control plane and save server, token (and pinned CA) for later commands")
    .option("--ca-fingerprint <sha256>", "for https: the SHA-256 fingerprint of the server's CA to pin (firedrill server prints it at start)")
    .option("--json", "print the result as JSON (never the token)")
    .addHelpText(
      "after",
      "\nGive the server with --server URL and the token with --token-file FILE (or FIREDRILL_TOKEN).\nExample: firedrill login --server https://cp.example.internal:7080 --token-file ~/admin-token --ca-fingerprint sha256:3b1f…\n",
    )
    .action(async (options: LoginOptions) => {
      const settings = ctx.settings();
      const server = settings.server;
      const url = new URL(server);
      // A saved token is not a login: it must come from --token-file or FIREDRILL_TOKEN.
      if (settings.token === undefined || settings.tokenSource === undefined || settings.tokenSource === "config") {
        throw new CliError(
          `login needs a token: firedrill login --server ${server} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN`,
        );
      }
      const config: CliConfig = { server, token: settings.token };
      if (url.protocol === "http:") {
        if (options.caFingerprint !== undefined) {
          throw new CliError(`--ca-fingerprint pins the CA of an https server, but ${server} is http://; use https://${url.host}${url.pathname.replace(/\/$/, "")} if the server has TLS`);
        }
        if (!isLoopbackHost(url.hostname)) {
          ctx.io.err(`warning: ${server} is plain http and not on this machine: the token travels in clear text; serve the API over https (firedrill server makes its own certificate)\n`);
        }
      } else if (options.caFingerprint !== undefined) {
        const expected = normalizeFingerprint(options.caFingerprint);
        if (expected === undefined) {
          throw new CliError(
            `--ca-fingerprint ${JSON.stringify(options.caFingerprint)} is not a SHA-256 fingerprint; give the 64 hex digits firedrill server prints at start, e.g. sha256:3b1f…`,
          );
        }
        const presented = await fetchPeerCertificates(server);
        const match = presented.find((c) => c.fingerprint === expected && c.ca);
        if (!match) {
          const list = (certs: PeerCertificate[]) => certs.map((c) => `${c.fingerprint} (${c.subject.replaceAll("\n", ", ")})`).join(", ");
          const cas = presented.filter((c) => c.ca);
          const seen = cas.length > 0 ? `a CA with fingerprint ${list(cas)}` : `no CA certificate (only ${list(presented) || "nothing"})`;
          const leaf = presented.some((c) => c.fingerprint === expected)
            ? ` (${expected} is the server's own certificate, not its CA: pin the CA's fingerprint, which firedrill server prints at start)`
            : "";
          throw new CliError(
            `the server at ${server} presented ${seen}; expected ${expected}${leaf}; check with the server's operator (firedrill server prints its CA fingerprint at start) before trusting it. Nothing was saved.`,
          );
        }
        config.caFingerprint = expected;
        config.caCert = match.pem;
      } else if (settings.caCert !== undefined) {
        // Logging in again to a server whose CA is pinned: keep trusting that CA, and only it.
        config.caCert = settings.caCert;
        if (settings.caFingerprint !== undefined) config.caFingerprint = settings.caFingerprint;
      }
      const client = createApiClient({
        server,
        token: settings.token,
        tokenFrom: settings.tokenFrom,
        caCert: config.caCert,
        caFingerprint: config.caFingerprint,
        caSource: options.caFingerprint !== undefined ? "--ca-fingerprint" : `the config file ${settings.location.file}`,
      });
      const { body } = await client.get<WhoamiJson>("/api/v1/whoami");
      writeConfig(settings.location, config);
      const who = body.principal;
      if (options.json) {
        return printJson(ctx.io, {
          server,
          principal: who,
          tokenId: body.token.id,
          configFile: settings.location.file,
          caFingerprint: config.caFingerprint ?? null,
        });
      }
      ctx.io.out(`logged in to ${server} as ${who.name} (${who.role})\n`);
      const pinned = config.caFingerprint ? `, pinned CA ${config.caFingerprint}` : "";
      ctx.io.out(`saved the server, the token${pinned} to ${settings.location.file} (mode 0600)\n`);
    });
}
