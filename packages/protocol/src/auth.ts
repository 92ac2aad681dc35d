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
