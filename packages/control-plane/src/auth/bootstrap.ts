/**
 * The first admin: on the first start (no principal yet) the server creates the principal `admin`
 * and writes its token to `DATA_DIR/admin-token` (0600, in the 0700 data dir). Only the file's
 * path is printed. `firedrill server reset-admin-token` replaces a lost one, offline.
 */
import { chmodSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import type { IdentityStore } from "./identity-store.js";

/** The admin token file name inside the data dir. */
export const ADMIN_TOKEN_FILE = "admin-token";
/** The bootstrap admin's principal name. */
export const BOOTSTRAP_ADMIN = "admin";

/** Writes a secret file: 0600, atomically (temp file, then rename), in a 0700 directory. */
export function writeSecretFile(dir: string, name: string, content: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, name);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/** Options of {@link ensureBootstrapAdmin}. */
export interface BootstrapOptions {
  identities: IdentityStore;
  dataDir: string;
  out: Writable;
  log: Logger;
  now?: () => number;
}

/**
 * On the first start, creates the admin principal and its token in `DATA_DIR/admin-token`.
 * Returns the file when it was written now.
 */
export function ensureBootstrapAdmin(options: BootstrapOptions): string | undefined {
  if (options.identities.hasPrincipals()) return undefined;
  const now = options.now ?? Date.now;
  const { token, text } = options.identities.createToken(
    { name: BOOTSTRAP_ADMIN, role: "admin", kind: "person", createdBy: "bootstrap", bootstrap: true },
    now(),
  );
  const file = writeSecretFile(options.dataDir, ADMIN_TOKEN_FILE, `${text}\n`);
  options.out.write(
    [
      "",
      `firedrill: created the first admin API token (${token.id}); it is in ${file} (mode 0600).`,
      `Log in with: firedrill login --server <this server's URL> --token-file ${file}`,
      "then create a token per person and service (firedrill token create) and keep this one offline.",
      "",
      "",
    ].join("\n"),
  );
  options.log.info({ file, tokenId: token.id }, "created the bootstrap admin token");
  return file;
}

/**
 * Replaces the bootstrap admin token: revokes every earlier bootstrap token and writes a new one
 * for the `admin` principal to `DATA_DIR/admin-token`. Returns the file and the new token's id.
 */
export function resetAdminToken(identities: IdentityStore, dataDir: string, now = Date.now()): { file: string; tokenId: string; revoked: number } {
  const revoked = identities.revokeBootstrapTokens("reset-admin-token", now);
  const existing = identities.getPrincipal(BOOTSTRAP_ADMIN);
  if (existing && existing.role !== "admin") {
    throw new Error(`the principal ${BOOTSTRAP_ADMIN} exists with role ${existing.role}, so it cannot hold the admin token; rename it or reset a fresh --data-dir`);
  }
  const { token, text } = identities.createToken({ name: BOOTSTRAP_ADMIN, role: "admin", kind: "person", createdBy: "reset-admin-token", bootstrap: true }, now);
  const file = writeSecretFile(dataDir, ADMIN_TOKEN_FILE, `${text}\n`);
  return { file, tokenId: token.id, revoked };
}
