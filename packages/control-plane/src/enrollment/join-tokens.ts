/**
 * Join tokens: `fdj_<id>_<secret>_<CA sha256>`. The CA hash lets an agent verify the control plane
 * before it sends the token; the store keeps only the secret's SHA-256, an expiry, a use limit and
 * the labels enrolled agents get. Using a token is one atomic step (checked and counted together).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { SqlDatabase } from "../store/sql/types.js";
import { formatJoinToken, parseJoinToken } from "@firedrill/protocol";
import { parseStoredLabels } from "./identities.js";

/** Whether a join token can still enroll an agent. */
export type JoinTokenState = "active" | "expired" | "used-up" | "revoked";

/** A join token as stored (never its secret). */
export interface JoinTokenRecord {
  id: string;
  createdAt: number;
  createdBy: string;
  expiresAt: number | null;
  usesAllowed: number | null;
  uses: number;
  labels: Record<string, string>;
  revokedAt: number | null;
  revokedBy: string | null;
  bootstrap: boolean;
  state: JoinTokenState;
}

/** What a new join token allows. */
export interface NewJoinToken {
  /** Epoch ms; null for none. */
  expiresAt: number | null;
  /** null for unlimited. */
  usesAllowed: number | null;
  labels: Record<string, string>;
  createdBy: string;
  bootstrap?: boolean;
}

/** The outcome of using a join token. */
export type JoinTokenUse = { ok: true; token: JoinTokenRecord } | { ok: false; reason: string; tokenId?: string };

/** The join tokens of this control plane. */
export interface JoinTokenStore {
  /** Creates a token pinning the CA whose SHA-256 (hex) is `caSha256`; the text is returned once. */
  create(input: NewJoinToken, caSha256: string, now: number): { token: JoinTokenRecord; text: string };
  list(includeInactive: boolean, now: number): JoinTokenRecord[];
  get(id: string, now: number): JoinTokenRecord | undefined;
  revoke(id: string, by: string, now: number): JoinTokenRecord | undefined;
  /** Checks a presented token and counts one use, atomically. */
  use(text: string, caSha256: string, now: number): JoinTokenUse;
  /** Checks a presented token without counting a use (insecure-agents mode: every Connect shows it). */
  check(text: string, now: number): JoinTokenUse;
}

interface Row {
  id: string;
  secret_hash: string;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  uses_allowed: number | null;
  uses: number;
  labels: string;
  revoked_at: number | null;
  revoked_by: string | null;
  bootstrap: number;
}

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

function stateOf(row: Row, now: number): JoinTokenState {
  if (row.revoked_at !== null) return "revoked";
  if (row.expires_at !== null && row.expires_at <= now) return "expired";
  if (row.uses_allowed !== null && row.uses >= row.uses_allowed) return "used-up";
  return "active";
}

function toRecord(row: Row, now: number): JoinTokenRecord {
  const labels = parseStoredLabels(row.labels);
  return {
    id: row.id,
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    usesAllowed: row.uses_allowed,
    uses: row.uses,
    labels,
    revokedAt: row.revoked_at,
    revokedBy: row.revoked_by,
    bootstrap: row.bootstrap === 1,
    state: stateOf(row, now),
  };
}

const REASONS: Record<Exclude<JoinTokenState, "active">, string> = {
  expired: "the join token has expired",
  "used-up": "the join token has been used as many times as it allows",
  revoked: "the join token was revoked",
};

/** Opens the join token store on the control plane's database. */
export function createJoinTokenStore(db: SqlDatabase): JoinTokenStore {
  const stmt = {
    insert: db.prepare(`
      INSERT INTO join_tokens (id, secret_hash, created_at, created_by, expires_at, uses_allowed, labels, bootstrap)
      VALUES (@id, @secretHash, @createdAt, @createdBy, @expiresAt, @usesAllowed, @labels, @bootstrap)`),
    get: db.prepare<[string], Row>("SELECT * FROM join_tokens WHERE id = ?"),
    all: db.prepare<[], Row>("SELECT * FROM join_tokens ORDER BY created_at, id"),
    revoke: db.prepare<[number, string, string]>("UPDATE join_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL"),
    count: db.prepare<[string]>("UPDATE join_tokens SET uses = uses + 1 WHERE id = ?"),
  };

  const check = (text: string, now: number): JoinTokenUse => {
    const parts = parseJoinToken(text);
    if (!parts) return { ok: false, reason: "this is not a join token of this firedrill version (fdj_<id>_<secret>_<ca hash>); create one with firedrill join-token create" };
    const row = stmt.get.get(parts.id);
    const actual = sha256(parts.secret);
    if (!row || !timingSafeEqual(actual, Buffer.from(row.secret_hash, "hex"))) {
      return { ok: false, reason: "the join token is not one of this control plane's" };
    }
    const state = stateOf(row, now);
    if (state !== "active") return { ok: false, reason: `${REASONS[state]}; create a new one with firedrill join-token create`, tokenId: row.id };
    return { ok: true, token: toRecord(row, now) };
  };

  const use = db.transaction((text: string, caSha256: string, now: number): JoinTokenUse => {
    const parts = parseJoinToken(text);
    if (parts && parts.caSha256 !== caSha256) {
      return { ok: false, reason: "the join token pins another CA than this control plane's; it was made by another control plane" };
    }
    const checked = check(text, now);
    if (!checked.ok) return checked;
    stmt.count.run(checked.token.id);
    return { ok: true, token: toRecord(stmt.get.get(checked.token.id)!, now) };
  });

  return {
    create(input, caSha256, now) {
      const id = `jt_${randomBytes(6).toString("hex")}`;
      const secret = randomBytes(32).toString("base64url");
      stmt.insert.run({
        id,
        secretHash: sha256(secret).toString("hex"),
        createdAt: now,
        createdBy: input.createdBy,
        expiresAt: input.expiresAt,
        usesAllowed: input.usesAllowed,
        labels: JSON.stringify(input.labels),
        bootstrap: input.bootstrap ? 1 : 0,
      });
      return { token: toRecord(stmt.get.get(id)!, now), text: formatJoinToken({ id, secret, caSha256 }) };
    },
    list(includeInactive, now) {
      const all = stmt.all.all().map((r) => toRecord(r, now));
      return includeInactive ? all : all.filter((t) => t.state === "active");
    },
    get(id, now) {
      const row = stmt.get.get(id);
      return row ? toRecord(row, now) : undefined;
    },
    revoke(id, by, now) {
      if (!stmt.get.get(id)) return undefined;
      stmt.revoke.run(now, by, id);
      return toRecord(stmt.get.get(id)!, now);
    },
    use: (text, caSha256, now) => use.immediate(text, caSha256, now),
    check,
  };
}
