/**
 * The join token agents present to connect. Only its SHA-256 is stored; the token itself is written
 * once to `<dataDir>/join-token` (mode 0600) and printed once, on the first start.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import type { Store } from "./store/store.js";

/** The join token file name inside the data dir. */
export const JOIN_TOKEN_FILE = "join-token";
const HASH_SETTING = "join_token_sha256";

/** Options of {@link ensureJoinToken}. */
export interface JoinTokenOptions {
  store: Store;
  dataDir: string;
  logger: Logger;
  /** Where the one-time notice goes. */
  out: Writable;
}

/** The join token of this control plane. */
export interface JoinToken {
  /** Where the token was saved when it was generated. */
  file: string;
  /** True on the start that generated it. */
  created: boolean;
  /** Whether `token` is the join token (constant-time comparison of hashes). */
  verify(token: string): boolean;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Generates a new random join token: `fdj_` and 32 random bytes, base64url. */
export function generateJoinToken(): string {
  return `fdj_${randomBytes(32).toString("base64url")}`;
}

/**
 * Loads the join token's hash, or on the first start generates a token, stores its hash, writes it
 * to `<dataDir>/join-token` with mode 0600 and prints it once.
 */
export function ensureJoinToken(options: JoinTokenOptions): JoinToken {
  const file = join(options.dataDir, JOIN_TOKEN_FILE);
  const log = options.logger;
  let stored = options.store.getSetting(HASH_SETTING);
  let created = false;
  if (stored === undefined) {
    const token = generateJoinToken();
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    // The mode given to writeFileSync only applies when the file is created; make sure.
    chmodSync(file, 0o600);
    stored = sha256(token).toString("hex");
    options.store.setSetting(HASH_SETTING, stored);
    created = true;
    options.out.write(
      [
        "",
        `firedrill: generated the agent join token (shown only this once; saved to ${file}, mode 0600):`,
        "",
        `    ${token}`,
        "",
        "Start agents with --token <token>, or copy the file to the agent hosts.",
        "",
        "",
      ].join("\n"),
    );
    log.info({ file }, "generated a new agent join token");
  } else if (!existsSync(file)) {
    log.warn(
      { file },
      "the join token file is gone; agents that already have the token still connect. Only its hash is kept, so a lost token cannot be recovered: to issue a new one, start with a fresh --data-dir",
    );
  }
  const expected = Buffer.from(stored, "hex");
  return {
    file,
    created,
    verify(token: string): boolean {
      const actual = sha256(token);
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
  };
}
