/**
 * Enrolled agent identities: the id the control plane chose, the current certificate (serial and
 * expiry), the labels of the join token it enrolled with, and whether it was revoked.
 */
import type { SqlDatabase } from "../store/sql/types.js";

/** An enrolled agent's identity. */
export interface AgentIdentity {
  agentId: string;
  hostname: string;
  joinTokenId: string | null;
  /** Labels of the join token: they win over the agent's own. */
  labels: Record<string, string>;
  enrolledAt: number;
  certSerial: string;
  certNotAfter: number;
  renewedAt: number | null;
  revokedAt: number | null;
  revokedBy: string | null;
  revokeReason: string | null;
}

/** The registry of enrolled agents. */
export interface IdentityRegistry {
  enroll(identity: Omit<AgentIdentity, "renewedAt" | "revokedAt" | "revokedBy" | "revokeReason">): void;
  renew(agentId: string, certSerial: string, certNotAfter: number, now: number): void;
  get(agentId: string): AgentIdentity | undefined;
  /** Revokes; returns false when the agent has no identity. Revoking twice keeps the first. */
  revoke(agentId: string, by: string, reason: string, now: number): boolean;
  /** Enrolled identities that are not revoked. */
  countActive(): number;
}

interface Row {
  agent_id: string;
  hostname: string;
  join_token_id: string | null;
  labels: string;
  enrolled_at: number;
  cert_serial: string;
  cert_not_after: number;
  renewed_at: number | null;
  revoked_at: number | null;
  revoked_by: string | null;
  revoke_reason: string | null;
}

/** Labels stored as JSON text; an unreadable value counts as none. */
export function parseStoredLabels(text: string): Record<string, string> {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, string>) : {};
  } catch {
    return {};
  }
}

function toIdentity(row: Row): AgentIdentity {
  const labels = parseStoredLabels(row.labels);
  return {
    agentId: row.agent_id,
    hostname: row.hostname,
    joinTokenId: row.join_token_id,
    labels,
    enrolledAt: row.enrolled_at,
    certSerial: row.cert_serial,
    certNotAfter: row.cert_not_after,
    renewedAt: row.renewed_at,
    revokedAt: row.revoked_at,
    revokedBy: row.revoked_by,
    revokeReason: row.revoke_reason,
  };
}

/** Opens the registry on the control plane's database. */
export function createIdentityRegistry(db: SqlDatabase): IdentityRegistry {
  const stmt = {
    insert: db.prepare(`
      INSERT INTO agent_identities (agent_id, hostname, join_token_id, labels, enrolled_at, cert_serial, cert_not_after)
      VALUES (@agentId, @hostname, @joinTokenId, @labels, @enrolledAt, @certSerial, @certNotAfter)`),
    renew: db.prepare<[string, number, number, string]>(
      "UPDATE agent_identities SET cert_serial = ?, cert_not_after = ?, renewed_at = ? WHERE agent_id = ? AND revoked_at IS NULL",
    ),
    get: db.prepare<[string], Row>("SELECT * FROM agent_identities WHERE agent_id = ?"),
    revoke: db.prepare<[number, string, string, string]>(
      "UPDATE agent_identities SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE agent_id = ? AND revoked_at IS NULL",
    ),
    active: db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM agent_identities WHERE revoked_at IS NULL"),
  };
  return {
    enroll(identity) {
      stmt.insert.run({ ...identity, labels: JSON.stringify(identity.labels) });
    },
    renew: (agentId, certSerial, certNotAfter, now) => void stmt.renew.run(certSerial, certNotAfter, now, agentId),
    get(agentId) {
      const row = stmt.get.get(agentId);
      return row ? toIdentity(row) : undefined;
    },
    revoke(agentId, by, reason, now) {
      if (!stmt.get.get(agentId)) return false;
      stmt.revoke.run(now, by, reason, agentId);
      return true;
    },
    countActive: () => stmt.active.get()?.n ?? 0,
  };
}
