/** Console sessions in the store, on both engines: shared by replicas, kept across restarts. */
import { createHash } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createStore, type Store, type StoreOptions } from "../store/store.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createIdentityStore, type IdentityStore } from "./identity-store.js";
import {
  MAX_COOKIE_HEADER,
  SESSION_IDLE_MS,
  SESSION_TOUCH_MS,
  clearedSessionCookie,
  createSessionStore,
  csrfMatches,
  readCookie,
  sessionCookie,
  type SessionStoreOptions,
} from "./session.js";

const T0 = 1_800_000_000_000;
const TOKEN = { tokenId: "tok_0123456789ab", tokenExpiresAt: null };
const MINUTE = 60_000;

describeEachEngine("console sessions", (engine) => {
  let options: StoreOptions;
  let store: Store;
  let identities: IdentityStore;
  const opened: Store[] = [];
  /** Another connection to the same store: another replica (or the same one after a restart). */
  const connect = (): Store => {
    const s = createStore(options);
    opened.push(s);
    return s;
  };
  const sessionsOn = (s: Store, extra: Partial<SessionStoreOptions> = {}) => createSessionStore({ db: s.db, identities: createIdentityStore(s.db), ...extra });
  beforeEach(async () => {
    options = await engine.freshStoreOptions();
    store = connect();
    identities = createIdentityStore(store.db);
  });
  afterEach(() => {
    for (const s of opened.splice(0)) if (s.db.open) s.close();
  });

  it("ids and CSRF tokens are 32 random bytes in base64url, different each time; only the id's SHA-256 is stored", () => {
    const sessions = sessionsOn(store);
    const a = sessions.create(TOKEN, T0);
    const b = sessions.create(TOKEN, T0);
    for (const v of [a.id, a.csrf, b.id, b.csrf]) expect(v).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set([a.id, a.csrf, b.id, b.csrf]).size).toBe(4);
    expect(sessions.get(a.id, T0 + 1)?.csrf).toBe(a.csrf);
    expect(sessions.get("x".repeat(43), T0 + 1)).toBeUndefined();
    expect(sessions.get("../../etc/passwd", T0 + 1)).toBeUndefined();

    const rows = store.db.prepare<[], Record<string, unknown>>("SELECT * FROM console_sessions ORDER BY id_hash").all();
    expect(rows.map((r) => r["id_hash"]).sort()).toEqual([a.id, b.id].map((id) => createHash("sha256").update(id).digest("base64url")).sort());
    const stored = JSON.stringify(rows);
    for (const id of [a.id, b.id]) expect(stored).not.toContain(id);
    expect(rows[0]).toMatchObject({ token_id: TOKEN.tokenId, created_at: T0, last_used_at: T0, token_expires_at: null });
  });

  it("end after 12 h unused, each use moving the deadline; never past the token's expiry", () => {
    const sessions = sessionsOn(store);
    const s = sessions.create(TOKEN, T0);
    expect(sessions.get(s.id, T0 + SESSION_IDLE_MS - 1)).toBeDefined();
    expect(sessions.get(s.id, T0 + 2 * SESSION_IDLE_MS - 2)).toBeDefined();
    expect(sessions.get(s.id, T0 + 3 * SESSION_IDLE_MS)).toBeUndefined();
    expect(sessions.size()).toBe(0);

    const short = sessions.create({ ...TOKEN, tokenExpiresAt: T0 + 60_000 }, T0);
    expect(sessions.maxAgeS(short.session, T0)).toBe(60);
    expect(sessions.maxAgeS(sessions.create(TOKEN, T0).session, T0)).toBe(43_200);
    expect(sessions.get(short.id, T0 + 59_999)).toBeDefined();
    expect(sessions.get(short.id, T0 + 60_000)).toBeUndefined();
  });

  it("write their last use at most once a minute", () => {
    const sessions = sessionsOn(store);
    const s = sessions.create(TOKEN, T0);
    const lastUsed = () => store.db.prepare<[], { t: number }>("SELECT last_used_at AS t FROM console_sessions").get()?.t;
    for (let t = T0 + 1000; t < T0 + SESSION_TOUCH_MS; t += 10_000) expect(sessions.get(s.id, t)?.lastUsedAt).toBe(T0);
    expect(lastUsed()).toBe(T0);
    expect(sessions.get(s.id, T0 + SESSION_TOUCH_MS)?.lastUsedAt).toBe(T0 + SESSION_TOUCH_MS);
    expect(lastUsed()).toBe(T0 + SESSION_TOUCH_MS);
    expect(sessions.get(s.id, T0 + SESSION_TOUCH_MS + 5000)?.lastUsedAt).toBe(T0 + SESSION_TOUCH_MS);
    expect(lastUsed()).toBe(T0 + SESSION_TOUCH_MS);
  });

  it("are bounded: past the limit the least recently used goes; ended ones go first", () => {
    const sessions = sessionsOn(store, { max: 3 });
    const [a, b, c] = [sessions.create(TOKEN, T0), sessions.create(TOKEN, T0 + MINUTE), sessions.create(TOKEN, T0 + 2 * MINUTE)];
    expect(sessions.get(a.id, T0 + 3 * MINUTE)).toBeDefined();
    const d = sessions.create(TOKEN, T0 + 4 * MINUTE);
    expect(sessions.size()).toBe(3);
    expect(sessions.get(b.id, T0 + 5 * MINUTE)).toBeUndefined();
    for (const s of [a, c, d]) expect(sessions.get(s.id, T0 + 5 * MINUTE)).toBeDefined();
    expect(sessions.delete(a.id)).toBe(true);
    expect(sessions.delete(a.id)).toBe(false);
    expect(sessions.delete("not an id")).toBe(false);
    // Ended sessions are removed before a live one is evicted.
    const e = sessions.create({ ...TOKEN, tokenExpiresAt: T0 + 6 * MINUTE }, T0 + 5 * MINUTE);
    const f = sessions.create(TOKEN, T0 + 7 * MINUTE);
    expect(sessions.size()).toBe(3);
    expect(sessions.get(e.id, T0 + 7 * MINUTE)).toBeUndefined();
    for (const s of [c, d, f]) expect(sessions.get(s.id, T0 + 7 * MINUTE)).toBeDefined();
  });

  it("compare CSRF tokens exactly", () => {
    const s = sessionsOn(store).create(TOKEN, T0);
    expect(csrfMatches(s.csrf, s.session)).toBe(true);
    expect(csrfMatches(`${s.csrf}x`, s.session)).toBe(false);
    expect(csrfMatches(s.csrf.slice(1), s.session)).toBe(false);
    expect(csrfMatches(undefined, s.session)).toBe(false);
    expect(csrfMatches([s.csrf, s.csrf], s.session)).toBe(false);
  });

  it("re-check their token by id on every use: revoked, expired or unknown ends the session at once", () => {
    const sessions = sessionsOn(store);
    const alice = identities.createToken({ name: "alice", role: "operator", createdBy: "root", scope: "team=web" }, T0);
    const bob = identities.createToken({ name: "bob", role: "viewer", createdBy: "root", expiresAt: T0 + 10 * MINUTE }, T0);
    const a = sessions.create({ tokenId: alice.token.id, tokenExpiresAt: null }, T0);
    // The session's cookie outlives the token's expiry here: the token check still ends it.
    const b = sessions.create({ tokenId: bob.token.id, tokenExpiresAt: null }, T0);
    const ghost = sessions.create({ tokenId: "tok_000000000000", tokenExpiresAt: null }, T0);

    expect(sessions.authenticate(a.id, T0 + 1, "10.0.0.1")).toMatchObject({
      ok: true,
      session: { tokenId: alice.token.id, csrf: a.csrf },
      caller: { name: "alice", role: "operator", scope: "team=web", tokenId: alice.token.id },
    });
    expect(sessions.authenticate(b.id, T0 + 10 * MINUTE, "x")).toEqual({ ok: false, failure: "expired", tokenId: bob.token.id });
    expect(sessions.authenticate(ghost.id, T0 + 1, "x")).toEqual({ ok: false, failure: "unknown", tokenId: "tok_000000000000" });
    expect(sessions.authenticate("y".repeat(43), T0 + 1, "x")).toEqual({ ok: false, failure: "missing" });

    identities.revokeToken(alice.token.id, "root", T0 + 2);
    expect(sessions.authenticate(a.id, T0 + 3, "x")).toEqual({ ok: false, failure: "revoked", tokenId: alice.token.id });
    // Each refused session is gone.
    expect(sessions.size()).toBe(0);
    expect(sessions.authenticate(a.id, T0 + 4, "x")).toEqual({ ok: false, failure: "missing" });
  });

  it("are shared by every connection to the store (replicas) and survive a restart", () => {
    const replicaA = sessionsOn(store);
    const other = connect();
    const replicaB = sessionsOn(other);
    const alice = identities.createToken({ name: "alice", role: "admin", createdBy: "root" }, T0);
    const s = replicaA.create({ tokenId: alice.token.id, tokenExpiresAt: null }, T0);

    // Logged in through A, the next request answered by B.
    const onB = replicaB.authenticate(s.id, T0 + MINUTE, "10.0.0.2");
    expect(onB).toMatchObject({ ok: true, session: { csrf: s.csrf }, caller: { name: "alice" } });
    expect(onB.ok && csrfMatches(s.csrf, onB.session)).toBe(true);
    // A use through B moves the idle deadline seen by A.
    expect(replicaA.get(s.id, T0 + MINUTE + SESSION_IDLE_MS - 1)).toBeDefined();

    // A restart of A: the session is still there.
    store.close();
    const restarted = connect();
    const replicaA2 = sessionsOn(restarted);
    expect(replicaA2.authenticate(s.id, T0 + 2 * MINUTE, "x")).toMatchObject({ ok: true });

    // Revoked through B: refused through A at its very next request.
    createIdentityStore(other.db).revokeToken(alice.token.id, "root", T0 + 3 * MINUTE);
    expect(replicaA2.authenticate(s.id, T0 + 3 * MINUTE + 1, "x")).toMatchObject({ ok: false, failure: "revoked" });

    // Logout through one replica ends the session on the other.
    const t = createIdentityStore(restarted.db).createToken({ name: "carol", role: "viewer", createdBy: "root" }, T0);
    const s2 = replicaA2.create({ tokenId: t.token.id, tokenExpiresAt: null }, T0 + 4 * MINUTE);
    expect(replicaB.get(s2.id, T0 + 4 * MINUTE)).toBeDefined();
    expect(replicaB.delete(s2.id)).toBe(true);
    expect(replicaA2.authenticate(s2.id, T0 + 4 * MINUTE, "x")).toEqual({ ok: false, failure: "missing" });
  });
});

describe("the Cookie header", () => {
  it("is read by hand: the first pair of that name, quotes removed", () => {
    expect(readCookie("a=1; firedrill_session=abc; b=2", "firedrill_session")).toBe("abc");
    expect(readCookie("firedrill_session=\"abc\"", "firedrill_session")).toBe("abc");
    expect(readCookie("firedrill_session=one;firedrill_session=two", "firedrill_session")).toBe("one");
    expect(readCookie("xfiredrill_session=abc; junk; =; a=b", "firedrill_session")).toBeUndefined();
    expect(readCookie(undefined, "firedrill_session")).toBeUndefined();
  });

  it("is bounded: a header over 8 KiB is ignored, and only its first 50 pairs are read", () => {
    const pad = (n: number) => Array.from({ length: n }, (_, i) => `c${i}=v`).join("; ");
    expect(readCookie(`${pad(49)}; firedrill_session=abc`, "firedrill_session")).toBe("abc");
    expect(readCookie(`${pad(50)}; firedrill_session=abc`, "firedrill_session")).toBeUndefined();
    const long = `firedrill_session=abc; pad=${"x".repeat(MAX_COOKIE_HEADER)}`;
    expect(readCookie(long, "firedrill_session")).toBeUndefined();
  });

  it("is set HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS, and cleared the same way", () => {
    expect(sessionCookie("ID", 43_200, false)).toBe("firedrill_session=ID; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    expect(sessionCookie("ID", 10, true)).toBe("firedrill_session=ID; HttpOnly; SameSite=Strict; Path=/; Max-Age=10; Secure");
    expect(clearedSessionCookie(true)).toBe("firedrill_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure");
  });
});
