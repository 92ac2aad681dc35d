/**
 * Console sessions: a browser logs in once with an API token (`POST /console/api/login`) and gets
 * an HttpOnly, SameSite=Strict cookie holding a random session id. Sessions live in the store
 * (table console_sessions, SQLite or PostgreSQL), so they survive a restart and every replica of a
 * PostgreSQL store accepts them. Only a SHA-256 of the session id is stored, never the id; the API
 * token is not stored either: the session keeps its id, and the token is re-checked by that id on
 * every request, so revoking it (or its expiry, or its removal) ends the session at once. Sessions
 * are bounded (the least recently used goes first), expire after 12 h unused and never outlive
 * their token. Each session has a CSRF token the console sends back in `x-firedrill-csrf` on every
 * change.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { SqlDatabase } from "../store/sql/types.js";
import type { AuthFailure, IdentityStore } from "./identity-store.js";
import type { Caller } from "./types.js";

/** The cookie's name. */
export const SESSION_COOKIE = "firedrill_session";
/** The header a cookie-authenticated change must carry, equal to the session's CSRF token. */
export const CSRF_HEADER = "x-firedrill-csrf";
/** A session unused this long ends. @default 12 h */
export const SESSION_IDLE_MS = 12 * 3_600_000;
/** The most sessions held; past it the least recently used one is dropped. */
export const MAX_SESSIONS = 10_000;
/** A session's last use is written at most this often (so a session ends up to this much early). */
export const SESSION_TOUCH_MS = 60_000;
/** A Cookie header longer than this is ignored (no session). */
export const MAX_COOKIE_HEADER = 8 * 1024;
/** At most this many `name=value` pairs of a Cookie header are looked at. */
export const MAX_COOKIE_PAIRS = 50;

/** A session id or CSRF token: 32 random bytes, base64url (43 characters). */
const RANDOM_RE = /^[A-Za-z0-9_-]{43}$/;

/** One logged-in browser. */
export interface Session {
  /** The id of the API token the browser logged in with (its text is never kept). */
  readonly tokenId: string;
  readonly csrf: string;
  readonly createdAt: number;
  /** When the token expires (epoch ms), or null: the session never outlives it. */
  readonly tokenExpiresAt: number | null;
  /** Its last use as recorded (written at most once a {@link SESSION_TOUCH_MS}). */
  readonly lastUsedAt: number;
}

/** What a new session is made from: a token its holder just proved. */
export interface NewSession {
  tokenId: string;
  tokenExpiresAt: number | null;
}

/** Options of {@link createSessionStore}. */
export interface SessionStoreOptions {
  /** The control plane's database (its migrations made console_sessions). */
  db: SqlDatabase;
  /** Where a session's token is re-checked, by id. */
  identities: IdentityStore;
  /** @default {@link SESSION_IDLE_MS} */
  idleMs?: number;
  /** @default {@link MAX_SESSIONS} */
  max?: number;
}

/** The outcome of checking a session cookie: the session and its token's caller, or why not. */
export type SessionCheck =
  | { ok: true; session: Session; caller: Caller }
  | { ok: false; failure: AuthFailure | "missing"; tokenId?: string };

/** The console's sessions, in the store. */
export interface SessionStore {
  /** Starts a session; returns its id (the cookie's value) and CSRF token. */
  create(input: NewSession, now: number): { id: string; csrf: string; session: Session };
  /** The live session with this id (and marks it used), or undefined: unknown, idle too long, or past its token's expiry (then removed). */
  get(id: string, now: number): Session | undefined;
  /**
   * {@link get}, then its token re-checked by id: a revoked, expired or unknown token ends the
   * session (removed) and says why; "missing" when there is no live session.
   */
  authenticate(id: string, now: number, source: string): SessionCheck;
  /** Ends a session; true when there was one. */
  delete(id: string): boolean;
  /** How many sessions are held (ended ones not yet removed included). */
  size(): number;
  /** How long the session's cookie should live from `now`, in seconds (12 h, or less when the token expires sooner). */
  maxAgeS(session: Session, now: number): number;
}

interface SessionRow {
  id_hash: string;
  token_id: string;
  csrf: string;
  created_at: number;
  last_used_at: number;
  token_expires_at: number | null;
}

/** The stored key of a session id: its SHA-256 (the id itself is never stored, and lookups reveal nothing about it through timing). */
const keyOf = (id: string): string => createHash("sha256").update(id, "utf8").digest("base64url");

const toSession = (row: SessionRow, lastUsedAt: number): Session => ({
  tokenId: row.token_id,
  csrf: row.csrf,
  createdAt: row.created_at,
  tokenExpiresAt: row.token_expires_at,
  lastUsedAt,
});

/** Opens the session store on the control plane's database. */
export function createSessionStore(options: SessionStoreOptions): SessionStore {
  const { db, identities } = options;
  const idleMs = options.idleMs ?? SESSION_IDLE_MS;
  const max = options.max ?? MAX_SESSIONS;
  const stmt = {
    byKey: db.prepare<[string], SessionRow>("SELECT * FROM console_sessions WHERE id_hash = ?"),
    insert: db.prepare(
      `INSERT INTO console_sessions (id_hash, token_id, csrf, created_at, last_used_at, token_expires_at)
       VALUES (@idHash, @tokenId, @csrf, @createdAt, @createdAt, @tokenExpiresAt)`,
    ),
    // Ended sessions: unused for idleMs, or past their token's expiry.
    pruneEnded: db.prepare<[number, number]>(
      "DELETE FROM console_sessions WHERE last_used_at <= ? OR (token_expires_at IS NOT NULL AND token_expires_at <= ?)",
    ),
    count: db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM console_sessions"),
    evictLru: db.prepare<[number]>(
      "DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions ORDER BY last_used_at, created_at, id_hash LIMIT ?)",
    ),
    // The condition keeps the write once a minute even when replicas race on one session.
    touch: db.prepare<[number, string, number]>("UPDATE console_sessions SET last_used_at = ? WHERE id_hash = ? AND last_used_at <= ?"),
    delete: db.prepare<[string]>("DELETE FROM console_sessions WHERE id_hash = ?"),
  };

  const live = (row: SessionRow, now: number): boolean =>
    now - row.last_used_at < idleMs && (row.token_expires_at === null || now < row.token_expires_at);

  // Only the database is touched: safe to re-run on a PostgreSQL serialization failure.
  const insert = db.transaction((idHash: string, csrf: string, input: NewSession, now: number) => {
    stmt.pruneEnded.run(now - idleMs, now);
    const n = Number(stmt.count.get()?.n ?? 0);
    if (n >= max) stmt.evictLru.run(n - max + 1);
    stmt.insert.run({ idHash, tokenId: input.tokenId, csrf, createdAt: now, tokenExpiresAt: input.tokenExpiresAt });
  });

  const get = (id: string, now: number): Session | undefined => {
    if (!RANDOM_RE.test(id)) return undefined;
    const key = keyOf(id);
    const row = stmt.byKey.get(key);
    if (!row) return undefined;
    if (!live(row, now)) {
      stmt.delete.run(key);
      return undefined;
    }
    if (now - row.last_used_at < SESSION_TOUCH_MS) return toSession(row, row.last_used_at);
    stmt.touch.run(now, key, now - SESSION_TOUCH_MS);
    return toSession(row, now);
  };

  return {
    create(input, now) {
      const id = randomBytes(32).toString("base64url");
      const csrf = randomBytes(32).toString("base64url");
      insert.immediate(keyOf(id), csrf, input, now);
      return { id, csrf, session: { tokenId: input.tokenId, csrf, createdAt: now, tokenExpiresAt: input.tokenExpiresAt, lastUsedAt: now } };
    },
    get,
    authenticate(id, now, source) {
      const session = get(id, now);
      if (!session) return { ok: false, failure: "missing" };
      const result = identities.authenticateById(session.tokenId, now, source);
      if (!result.ok) {
        stmt.delete.run(keyOf(id));
        return { ok: false, failure: result.failure, tokenId: session.tokenId };
      }
      return { ok: true, session, caller: result.caller };
    },
    delete: (id) => RANDOM_RE.test(id) && stmt.delete.run(keyOf(id)).changes > 0,
    size: () => Number(stmt.count.get()?.n ?? 0),
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
