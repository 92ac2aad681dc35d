/**
 * The CA shared by control-plane replicas on one PostgreSQL store (docs/ha.md): every replica must
 * sign and trust the same agent certificates, and agents pin one CA fingerprint whichever replica
 * they reach. The first replica to start puts its CA (certificate and private key) in the store's
 * settings; every replica then keeps the same pair in its own data dir (`pki/`, 0600 key in a 0700
 * directory) and loads it from there like a single server does.
 *
 * The key in the database is as sensitive as the key file: whoever can read the `settings` table
 * can mint agent certificates. docs/security.md says so (restrict the database role, TLS to PG).
 */
import { join } from "node:path";
import type { SqlDatabase } from "../store/sql/types.js";
import { CA_CERT_FILE, CA_KEY_FILE, PkiError, ensureCa, type CertificateAuthority } from "./ca.js";
import { ensurePkiDir, readIfExists, writeFileAtomic } from "./files.js";

const CERT_KEY = "pki.ca.cert";
const KEY_KEY = "pki.ca.key";

/** Loads the replicas' CA: the store's when there is one, else this data dir's (created if missing), published to the store. */
export async function ensureSharedCa(db: SqlDatabase, dataDir: string): Promise<CertificateAuthority> {
  const dir = await ensurePkiDir(dataDir);
  const certFile = join(dir, CA_CERT_FILE);
  const keyFile = join(dir, CA_KEY_FILE);
  const read = () => {
    const rows = db.prepare<[string, string], { key: string; value: string }>("SELECT key, value FROM settings WHERE key IN (?, ?)").all(CERT_KEY, KEY_KEY);
    const cert = rows.find((r) => r.key === CERT_KEY)?.value;
    const key = rows.find((r) => r.key === KEY_KEY)?.value;
    return cert !== undefined && key !== undefined ? { cert, key } : undefined;
  };
  const adopt = async (pair: { cert: string; key: string }) => {
    if ((await readIfExists(keyFile)) !== pair.key) await writeFileAtomic(keyFile, pair.key, 0o600);
    if ((await readIfExists(certFile)) !== pair.cert) await writeFileAtomic(certFile, pair.cert, 0o644);
  };
  const stored = read();
  if (stored !== undefined) {
    const local = await readIfExists(certFile);
    if (local !== undefined && local !== stored.cert && (await readIfExists(keyFile)) !== undefined) {
      throw new PkiError(
        `this data dir's CA (${certFile}) is not the CA the other replicas use (the one in the store): agents pinned to one would refuse the other. Move ${dir} away to take the shared CA, or start this replica on its own store`,
        certFile,
      );
    }
    await adopt(stored);
    return ensureCa(dataDir);
  }
  const ca = await ensureCa(dataDir);
  const cert = await readIfExists(certFile);
  const key = await readIfExists(keyFile);
  if (cert === undefined || key === undefined) throw new PkiError(`the CA files in ${dir} vanished while starting`, certFile);
  db.transaction(() => {
    const insert = db.prepare<[string, string]>("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING");
    insert.run(CERT_KEY, cert);
    insert.run(KEY_KEY, key);
  }).immediate();
  const winner = read();
  if (winner === undefined) throw new PkiError("the shared CA could not be written to the store", certFile);
  if (winner.cert === cert) return ca;
  // Another replica published its CA first: take it.
  await adopt(winner);
  return ensureCa(dataDir);
}
