/**
 * Console sessions: a browser logs in once with an API token (`POST /console/api/login`) and gets
 * an HttpOnly, SameSite=Strict cookie holding a random session id. Sessions live in memory only
 * (a restart logs everyone out), are bounded, expire after 12 h unused and never outlive their
 * token; the token itself is re-checked on every request, so revoking it ends the session at once.
 * Each session has a CSRF token the console sends back in `x-firedrill-csrf` on every change.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The cookie's name. */
export const SESSION_COOKIE = "firedrill_session";
/** The header a cookie-authenticated change must carry, equal to the session's CSRF token. */
export const CSRF_HEADER = "x-firedrill-csrf";
/** A session unused this long ends. @default 12 h */
export const SESSION_IDLE_MS = 12 * 3_600_000;
/** The most sessions held; past it the least recently used one is dropped. */
export const MAX_SESSIONS = 10_000;
/** A Cookie header longer than this is ignored (no session). */
export const MAX_COOKIE_HEADER = 8 * 1024;
/** At most this many `name=value` pairs of a Cookie header are looked at. */
export const MAX_COOKIE_PAIRS = 50;

/** A session id or CSRF token: 32 random bytes, base64url (43 characters). */
const RANDOM_RE = /^[A-Za-z0-9_-]{43}$/;

/** One logged-in browser. */
export interface Session {
  /** The API token the browser logged in with (never logged, never sent back). */
  readonly token: string;
  readonly tokenId: string;
  readonly csrf: string;
  readonly createdAt: number;
  /** When the token expires (epoch ms), or null: the session never outlives it. */
  readonly tokenExpiresAt: number | null;
  lastUsedAt: number;
}

/** What a new session is made from. */
export interface NewSession {
  token: string;
  tokenId: string;
  tokenExpiresAt: number | null;
}

/** Options of {@link createSessionStore}. */
export interface SessionStoreOptions {
  /** @default {@link SESSION_IDLE_MS} */
  idleMs?: number;
  /** @default {@link MAX_SESSIONS} */
  max?: number;
}

/** The console's sessions, in memory. */
export interface SessionStore {
  /** Starts a session; returns its id (the cookie's value) and CSRF token. */
  create(input: NewSession, now: number): { id: string; csrf: string; session: Session };
  /** The live session with this id (and marks it used), or undefined: unknown, idle too long, or past its token's expiry. */
  get(id: string, now: number): Session | undefined;
  /** Ends a session; true when there was one. */
  delete(id: string): boolean;
  /** How many sessions are held. */
  size(): number;
  /** How long the session's cookie should live from `now`, in seconds (12 h, or less when the token expires sooner). */
  maxAgeS(session: Session, now: number): number;
}

/** The map key of a session id: its SHA-256, so lookups reveal nothing about the id through timing. */
const keyOf = (id: string): string => createHash("sha256").update(id, "utf8").digest("base64url");

/** Creates an empty session store. */
export function createSessionStore(options: SessionStoreOptions = {}): SessionStore {
  const idleMs = options.idleMs ?? SESSION_IDLE_MS;
  const max = options.max ?? MAX_SESSIONS;
  // Insertion order = least recently used first (a used session is moved to the end).
  const sessions = new Map<string, Session>();

  const live = (s: Session, now: number): boolean => now - s.lastUsedAt < idleMs && (s.tokenExpiresAt === null || now < s.tokenExpiresAt);

  return {
    create(input, now) {
      // Idle sessions gather at the front: drop them, then the least recently used while full.
      for (const [key, s] of sessions) {
        if (live(s, now)) break;
        sessions.delete(key);
      }
      while (sessions.size >= max) sessions.delete(sessions.keys().next().value as string);
      const id = randomBytes(32).toString("base64url");
      const session: Session = {
        token: input.token,
        tokenId: input.tokenId,
        csrf: randomBytes(32).toString("base64url"),
        createdAt: now,
        tokenExpiresAt: input.tokenExpiresAt,
        lastUsedAt: now,
      };
      sessions.set(keyOf(id), session);
      return { id, csrf: session.csrf, session };
    },
    get(id, now) {
      if (!RANDOM_RE.test(id)) return undefined;
      const key = keyOf(id);
      const session = sessions.get(key);
      if (!session) return undefined;
      sessions.delete(key);
      if (!live(session, now)) return undefined;
      session.lastUsedAt = now;
      sessions.set(key, session);
      return session;
    },
    delete(id) {
      return RANDOM_RE.test(id) && sessions.delete(keyOf(id));
    },
    size: () => sessions.size,
    maxAgeS(session, now) {
      const idle = Math.floor(idleMs / 1000);
      if (session.tokenExpiresAt === null) return idle;
      return Math.max(0, Math.min(idle, Math.floor((session.tokenExpiresAt - now) / 1000)));
    },
  };
}

/** Whether a presented CSRF token equals the session's, compared in constant time. */
export function csrfMatches(presented: unknown, session: Session): boolean {
  if (typeof presented !== "string" || presented.length > 200) return false;
  const a = createHash("sha256").update(presented, "utf8").digest();
  const b = createHash("sha256").update(session.csrf, "utf8").digest();
  return timingSafeEqual(a, b);
}

/**
 * The value of cookie `name` in a Cookie header, or undefined. Bounded: a header longer than
 * {@link MAX_COOKIE_HEADER} is ignored and only the first {@link MAX_COOKIE_PAIRS} pairs are read;
 * the first pair with the name wins (browsers send the most specific path first).
 */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (typeof header !== "string" || header.length > MAX_COOKIE_HEADER) return undefined;
  let start = 0;
  for (let pairs = 0; pairs < MAX_COOKIE_PAIRS && start < header.length; pairs += 1) {
    let end = header.indexOf(";", start);
    if (end === -1) end = header.length;
    const pair = header.slice(start, end);
    start = end + 1;
    const eq = pair.indexOf("=");
    if (eq === -1) continue;
    if (pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return value;
  }
  return undefined;
}

/** The `Set-Cookie` value that holds a session id for `maxAgeS` seconds (`Secure` over HTTPS). */
export function sessionCookie(id: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${secure ? "; Secure" : ""}`;
}

/** The `Set-Cookie` value that removes the session cookie. */
export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0${secure ? "; Secure" : ""}`;
}
