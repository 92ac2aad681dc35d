/**
 * Principals and their API tokens, in the control plane's SQLite database. Tokens are stored only
 * as hashes ({@link ./tokens.ts}); the token text exists once, in the answer that creates it.
 */
import { randomBytes } from "node:crypto";
import type { SqlDatabase } from "../store/sql/types.js";
import { ApiError } from "../errors.js";
import { generateToken, parseToken, secretMatches } from "./tokens.js";
import { ROLES } from "./types.js";
import type { Caller, PrincipalKind, Role } from "./types.js";

/** A principal. */
export interface PrincipalRecord {
  id: string;
  name: string;
  kind: PrincipalKind;
  role: Role;
  createdAt: number;
  createdBy: string;
}

/** Whether a token can still be used. */
export type TokenState = "active" | "expired" | "revoked";

/** A token as stored (without its hash). */
export interface TokenRecord {
  id: string;
  principal: string;
  principalId: string;
  kind: PrincipalKind;
  role: Role;
  scope: string | null;
  createdAt: number;
  createdBy: string;
  expiresAt: number | null;
  lastUsedAt: number | null;
  lastUsedFrom: string | null;
  revokedAt: number | null;
  revokedBy: string | null;
  /** True for the admin token written to `DATA_DIR/admin-token`. */
  bootstrap: boolean;
  state: TokenState;
}

/** What a new token is for. */
export interface NewTokenInput {
  /** The principal's name; created with `role` and `kind` when it does not exist yet. */
  name: string;
  role: Role;
  kind?: PrincipalKind;
  /** Label selector text (already validated by the caller). */
  scope?: string | null;
  expiresAt?: number | null;
  createdBy: string;
  bootstrap?: boolean;
}

/** Why a presented token was not accepted. */
export type AuthFailure = "malformed" | "unknown" | "revoked" | "expired";

/** The outcome of checking a presented token. */
export type AuthResult = { ok: true; caller: Caller } | { ok: false; failure: AuthFailure; tokenId?: string };

/** Principals and tokens. */
export interface IdentityStore {
  /** Whether any principal exists (the first start creates the bootstrap admin). */
  hasPrincipals(): boolean;
  getPrincipal(name: string): PrincipalRecord | undefined;
  /**
   * Creates a token for `name`, creating the principal when needed.
   * Thrown: ApiError 409 when the principal exists with another role or kind.
   */
  createToken(input: NewTokenInput, now: number): { token: TokenRecord; text: string };
  /** Checks a presented token; records its last use (at most once a minute per token). */
  authenticate(text: string, now: number, source: string): AuthResult;
  /**
   * Checks a token already proven by its holder, by its id alone (a console session holds the id,
   * never the text): "unknown" when there is no such token, else as {@link authenticate}.
   */
  authenticateById(id: string, now: number, source: string): AuthResult;
  listTokens(options: { includeInactive: boolean }, now: number): TokenRecord[];
  getToken(id: string, now: number): TokenRecord | undefined;
  /** Revokes a token; returns it, or undefined when unknown. Revoking twice keeps the first. */
  revokeToken(id: string, by: string, now: number): TokenRecord | undefined;
  /** Revokes every bootstrap token (reset-admin-token). */
  revokeBootstrapTokens(by: string, now: number): number;
}

interface TokenRow {
  id: string;
  principal_id: string;
  secret_hash: string;
  scope: string | null;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  last_used_at: number | null;
  last_used_from: string | null;
  revoked_at: number | null;
  revoked_by: string | null;
  bootstrap: number;
  name: string;
  kind: PrincipalKind;
  role: Role;
}

interface PrincipalRow {
  id: string;
  name: string;
  kind: PrincipalKind;
  role: Role;
  created_at: number;
  created_by: string;
}

/** How often a token's last use is written (per token). */
const LAST_USED_WRITE_MS = 60_000;

function stateOf(row: TokenRow, now: number): TokenState {
  if (row.revoked_at !== null) return "revoked";
  if (row.expires_at !== null && row.expires_at <= now) return "expired";
  return "active";
}

function toToken(row: TokenRow, now: number): TokenRecord {
  return {
    id: row.id,
    principal: row.name,
    principalId: row.principal_id,
    kind: row.kind,
    role: row.role,
    scope: row.scope,
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    lastUsedFrom: row.last_used_from,
    revokedAt: row.revoked_at,
    revokedBy: row.revoked_by,
    bootstrap: row.bootstrap === 1,
    state: stateOf(row, now),
  };
}

/** Opens the identity store on the control plane's database (the migration made its tables). */
export function createIdentityStore(db: SqlDatabase): IdentityStore {
  const tokenSelect = `SELECT t.*, p.name, p.kind, p.role FROM api_tokens t JOIN principals p ON p.id = t.principal_id`;
  const stmt = {
    anyPrincipal: db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM principals"),
    principalByName: db.prepare<[string], PrincipalRow>("SELECT * FROM principals WHERE name = ?"),
    insertPrincipal: db.prepare(
      "INSERT INTO principals (id, name, kind, role, created_at, created_by) VALUES (@id, @name, @kind, @role, @createdAt, @createdBy)",
    ),
    insertToken: db.prepare(`
      INSERT INTO api_tokens (id, principal_id, secret_hash, scope, created_at, created_by, expires_at, bootstrap)
      VALUES (@id, @principalId, @secretHash, @scope, @createdAt, @createdBy, @expiresAt, @bootstrap)`),
    token: db.prepare<[string], TokenRow>(`${tokenSelect} WHERE t.id = ?`),
    allTokens: db.prepare<[], TokenRow>(`${tokenSelect} ORDER BY t.created_at, t.id`),
    touch: db.prepare<[number, string, string]>("UPDATE api_tokens SET last_used_at = ?, last_used_from = ? WHERE id = ?"),
    revoke: db.prepare<[number, string, string]>("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL"),
    revokeBootstrap: db.prepare<[number, string]>("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE bootstrap = 1 AND revoked_at IS NULL"),
  };
  const lastWritten = new Map<string, number>();

  const createToken = db.transaction((input: NewTokenInput, now: number) => {
    if (!ROLES.includes(input.role)) throw new ApiError(400, "invalid_request", `role ${JSON.stringify(input.role)} is not one of ${ROLES.join(", ")}`);
    const kind = input.kind ?? "person";
    let principal = stmt.principalByName.get(input.name);
    if (principal && principal.role !== input.role) {
      throw new ApiError(
        409,
        "principal_role_mismatch",
        `${input.name} already exists with role ${principal.role}; a principal has one role: create the token with --role ${principal.role}, or use another --name for the ${input.role} role`,
        [{ field: "role", message: `${input.name} is ${principal.role}` }],
      );
    }
    if (principal && input.kind !== undefined && principal.kind !== input.kind) {
      throw new ApiError(409, "principal_kind_mismatch", `${input.name} already exists as a ${principal.kind}; leave out --kind or use another --name`, [
        { field: "kind", message: `${input.name} is a ${principal.kind}` },
      ]);
    }
    if (!principal) {
      principal = { id: `prn_${randomBytes(6).toString("hex")}`, name: input.name, kind, role: input.role, created_at: now, created_by: input.createdBy };
      stmt.insertPrincipal.run({ id: principal.id, name: principal.name, kind: principal.kind, role: principal.role, createdAt: now, createdBy: input.createdBy });
    }
    const token = generateToken();
    stmt.insertToken.run({
      id: token.id,
      principalId: principal.id,
      secretHash: token.secretHash,
      scope: input.scope ?? null,
      createdAt: now,
      createdBy: input.createdBy,
      expiresAt: input.expiresAt ?? null,
      bootstrap: input.bootstrap ? 1 : 0,
    });
    return { token: toToken(stmt.token.get(token.id)!, now), text: token.text };
  });

  /** The outcome for a known token whose secret was proven: refused unless active; records its last use. */
  const accept = (row: TokenRow, now: number, source: string): AuthResult => {
    const state = stateOf(row, now);
    if (state !== "active") return { ok: false, failure: state, tokenId: row.id };
    const last = lastWritten.get(row.id) ?? row.last_used_at ?? 0;
    if (now - last >= LAST_USED_WRITE_MS) {
      stmt.touch.run(now, source.slice(0, 100), row.id);
      if (lastWritten.size > 10_000) lastWritten.clear();
      lastWritten.set(row.id, now);
    }
    return {
      ok: true,
      caller: { name: row.name, principalId: row.principal_id, kind: row.kind, role: row.role, tokenId: row.id, scope: row.scope },
    };
  };

  return {
    hasPrincipals: () => (stmt.anyPrincipal.get()?.n ?? 0) > 0,
    getPrincipal(name) {
      const row = stmt.principalByName.get(name);
      return row ? { id: row.id, name: row.name, kind: row.kind, role: row.role, createdAt: row.created_at, createdBy: row.created_by } : undefined;
    },
    createToken: (input, now) => createToken.immediate(input, now),
    authenticate(text, now, source) {
      const parsed = parseToken(text);
      if (!parsed) return { ok: false, failure: "malformed" };
      const row = stmt.token.get(parsed.id);
      // The hash is compared even for a revoked or expired token, so only its holder learns why.
      if (!row || !secretMatches(parsed.secret, row.secret_hash)) return { ok: false, failure: "unknown" };
      return accept(row, now, source);
    },
    authenticateById(id, now, source) {
      const row = stmt.token.get(id);
      return row ? accept(row, now, source) : { ok: false, failure: "unknown" };
    },
    listTokens({ includeInactive }, now) {
      const all = stmt.allTokens.all().map((r) => toToken(r, now));
      return includeInactive ? all : all.filter((t) => t.state === "active");
    },
    getToken(id, now) {
      const row = stmt.token.get(id);
      return row ? toToken(row, now) : undefined;
    },
    revokeToken(id, by, now) {
      if (!stmt.token.get(id)) return undefined;
      stmt.revoke.run(now, by, id);
      return toToken(stmt.token.get(id)!, now);
    },
    revokeBootstrapTokens: (by, now) => stmt.revokeBootstrap.run(now, by).changes,
  };
}
