/**
 * The first join token: on the first start (no join token yet) the control plane creates one that
 * pins its CA, valid 24 hours for any number of hosts, writes it to `DATA_DIR/join-token` (0600)
 * and prints it once. More with `firedrill join-token create`.
 */
import { existsSync } from "node:fs";
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import { writeSecretFile } from "../auth/bootstrap.js";
import type { JoinTokenStore } from "./join-tokens.js";

/** The join token file name inside the data dir. */
export const JOIN_TOKEN_FILE = "join-token";
/** How long the bootstrap join token is valid. */
export const BOOTSTRAP_JOIN_TOKEN_TTL_MS = 24 * 3_600_000;

/** Options of {@link ensureBootstrapJoinToken}. */
export interface BootstrapJoinTokenOptions {
  joinTokens: JoinTokenStore;
  dataDir: string;
  caSha256: string;
  out: Writable;
  log: Logger;
  now?: number;
}

/** Creates the first join token when there is none yet; returns its file. */
export function ensureBootstrapJoinToken(options: BootstrapJoinTokenOptions): string {
  const now = options.now ?? Date.now();
  const file = `${options.dataDir}/${JOIN_TOKEN_FILE}`;
  if (options.joinTokens.list(true, now).length > 0) {
    if (!existsSync(file)) options.log.info({ file }, "no join token file; create join tokens with firedrill join-token create");
    return file;
  }
  const { token, text } = options.joinTokens.create(
    { expiresAt: now + BOOTSTRAP_JOIN_TOKEN_TTL_MS, usesAllowed: null, labels: {}, createdBy: "bootstrap", bootstrap: true },
    options.caSha256,
    now,
  );
  writeSecretFile(options.dataDir, JOIN_TOKEN_FILE, `${text}\n`);
  options.out.write(
    [
      "",
      `firedrill: generated the first agent join token ${token.id} (valid 24h, shown only this once; saved to ${file}, mode 0600):`,
      "",
      `    ${text}`,
      "",
      "It pins this control plane's CA: an agent checks the server against it before sending anything.",
      "Start agents with --token-file (they enroll once, then use their own certificate); make more with firedrill join-token create.",
      "",
      "",
    ].join("\n"),
  );
  options.log.info({ file, joinToken: token.id }, "generated the first agent join token");
  return file;
}
