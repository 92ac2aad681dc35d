/**
 * API token format and hashing. A token is `fdt_<id>_<secret>`: the id (12 hex characters) is
 * public and finds the row; the secret is 32 random bytes (256 bits, base64url) of which only the
 * SHA-256 is stored. A 256-bit random secret needs no slow hash: nothing can be guessed from it.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The prefix every firedrill API token starts with (secret scanners can look for it). */
export const TOKEN_PREFIX = "fdt_";

/** The longest Authorization header value considered at all. */
export const MAX_TOKEN_LENGTH = 200;

const TOKEN_RE = /^fdt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** A freshly made token: its id, the full secret text (shown once), and the hash to store. */
export interface NewToken {
  id: string;
  /** `fdt_<id>_<secret>`: shown to the user once, never stored or logged. */
  text: string;
  secretHash: string;
}

/** Makes a new token. */
export function generateToken(): NewToken {
  const id = randomBytes(6).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { id: `tok_${id}`, text: `${TOKEN_PREFIX}${id}_${secret}`, secretHash: hashSecret(secret) };
}

/** SHA-256 of a token secret, hex. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** Splits a presented token into its id (`tok_…`) and secret; undefined when it is not one. */
export function parseToken(text: string): { id: string; secret: string } | undefined {
  if (text.length > MAX_TOKEN_LENGTH) return undefined;
  const m = TOKEN_RE.exec(text);
  if (!m) return undefined;
  return { id: `tok_${m[1]!}`, secret: m[2]! };
}

/** Compares a presented secret with a stored hash in constant time. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), "hex");
  const b = Buffer.from(storedHash, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}
