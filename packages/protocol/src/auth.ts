/** The call metadata key that carries the join token. */
export const AGENT_TOKEN_METADATA_KEY = "authorization";

/** Formats a join token as the `authorization` metadata value. */
export function bearer(token: string): string {
  return `Bearer ${token}`;
}

/** Extracts the token from an `authorization` metadata value, or undefined when malformed. */
export function parseBearer(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(value.trim());
  return match?.[1];
}

/**
 * Trailing metadata key of a refused Connect, Enroll or RenewCertificate: why, in one word (see
 * {@link Refusal}). An agent acts on it only when it verified the server (TLS pinned to its CA).
 */
export const REFUSAL_METADATA_KEY = "firedrill-refusal";

/**
 * Why the control plane refused an agent:
 * - `revoked`: an operator revoked this agent (`firedrill agents revoke`): it must stop for good;
 * - `identity-mismatch`: Hello's agent id is not the certificate's;
 * - `not-enrolled`: no valid client certificate (enroll with a join token);
 * - `join-token`: the join token is unknown, expired, revoked or used up (the message says which);
 * - `limit`: too many agents or enrollments right now (retry later).
 */
export type Refusal = "revoked" | "identity-mismatch" | "not-enrolled" | "join-token" | "limit";

/** Every {@link Refusal}. */
export const REFUSALS: readonly Refusal[] = ["revoked", "identity-mismatch", "not-enrolled", "join-token", "limit"];

/** Reads a `firedrill-refusal` metadata value; undefined when absent or not a known refusal. */
export function parseRefusal(value: unknown): Refusal | undefined {
  const text = Buffer.isBuffer(value) ? value.toString("utf8") : value;
  return typeof text === "string" && (REFUSALS as readonly string[]).includes(text.trim()) ? (text.trim() as Refusal) : undefined;
}

/** The prefix of join tokens. */
export const JOIN_TOKEN_PREFIX = "fdj_";

const JOIN_TOKEN_RE = /^fdj_([0-9a-f]{12})_([A-Za-z0-9_-]{43})_([0-9a-f]{64})$/;

/** A join token's parts: its id (public), its secret, and the SHA-256 (hex) of the CA certificate it pins. */
export interface JoinTokenParts {
  id: string;
  secret: string;
  caSha256: string;
}

/**
 * Parses `fdj_<id>_<secret>_<ca sha256>`. Returns undefined when the text is not a join token of
 * this format (e.g. one from before the CA was pinned).
 */
export function parseJoinToken(text: string): JoinTokenParts | undefined {
  const trimmed = text.trim();
  if (trimmed.length > 200) return undefined;
  const m = JOIN_TOKEN_RE.exec(trimmed);
  return m ? { id: `jt_${m[1]!}`, secret: m[2]!, caSha256: m[3]! } : undefined;
}

/** Formats a join token from its parts (`id` as `jt_<12 hex>`). */
export function formatJoinToken(parts: JoinTokenParts): string {
  return `${JOIN_TOKEN_PREFIX}${parts.id.replace(/^jt_/, "")}_${parts.secret}_${parts.caSha256}`;
}
