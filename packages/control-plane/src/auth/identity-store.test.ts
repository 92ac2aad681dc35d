/** Principals and API tokens in the store, on both engines. */
import { beforeEach, expect, it } from "vitest";
import type { SqlDatabase } from "../store/sql/types.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createIdentityStore } from "./identity-store.js";

describeEachEngine("identity store", (engine) => {
  let db: SqlDatabase;
  beforeEach(async () => {
    db = await engine.openDatabase();
  });

  it("creates principals with their tokens, authenticates, records the last use, expires and revokes", () => {
    const store = createIdentityStore(db);
    const t0 = 1_800_000_000_000;
    expect(store.hasPrincipals()).toBe(false);
    const admin = store.createToken({ name: "root", role: "admin", createdBy: "bootstrap", bootstrap: true }, t0 - 1);
    const alice = store.createToken({ name: "alice", role: "operator", createdBy: "root", expiresAt: t0 + 60_000, scope: "team=web" }, t0);
    const again = store.createToken({ name: "alice", role: "operator", createdBy: "root" }, t0 + 1);
    expect(store.hasPrincipals()).toBe(true);
    expect(again.token.principalId).toBe(alice.token.principalId);
    expect(() => store.createToken({ name: "alice", role: "admin", createdBy: "root" }, t0)).toThrow(/already exists with role operator/);

    const ok = store.authenticate(alice.text, t0 + 1000, "10.0.0.1");
    expect(ok).toMatchObject({ ok: true, caller: { name: "alice", role: "operator", scope: "team=web", tokenId: alice.token.id } });
    expect(store.getToken(alice.token.id, t0 + 1000)).toMatchObject({ lastUsedAt: t0 + 1000, lastUsedFrom: "10.0.0.1", state: "active" });
    expect(store.authenticate(alice.text, t0 + 61_000, "10.0.0.1")).toEqual({ ok: false, failure: "expired", tokenId: alice.token.id });
    expect(store.authenticate(`${alice.text}x`, t0, "10.0.0.1")).toMatchObject({ ok: false });

    expect(store.revokeToken(again.token.id, "root", t0 + 2000)).toMatchObject({ revokedAt: t0 + 2000, revokedBy: "root", state: "revoked" });
    expect(store.revokeToken(again.token.id, "other", t0 + 3000)).toMatchObject({ revokedAt: t0 + 2000, revokedBy: "root" });
    expect(store.authenticate(again.text, t0 + 3000, "x")).toEqual({ ok: false, failure: "revoked", tokenId: again.token.id });
    expect(store.listTokens({ includeInactive: false }, t0 + 3000).map((t) => t.id)).toEqual([admin.token.id, alice.token.id]);
    expect(store.listTokens({ includeInactive: true }, t0 + 61_000).map((t) => [t.principal, t.state, t.bootstrap])).toEqual([
      ["root", "active", true],
      ["alice", "expired", false],
      ["alice", "revoked", false],
    ]);
    expect(store.revokeBootstrapTokens("root", t0 + 4000)).toBe(1);
    expect(store.getToken(admin.token.id, t0 + 4000)?.state).toBe("revoked");
    // Only the hash of a secret is stored.
    const rawId = alice.token.id.slice("tok_".length);
    const secret = alice.text.slice(alice.text.indexOf(`${rawId}_`) + rawId.length + 1);
    expect(secret.length).toBeGreaterThan(20);
    expect(JSON.stringify(db.prepare("SELECT * FROM api_tokens").all())).not.toContain(secret);
  });
});
