import { describe, expect, it } from "vitest";
import { MAX_COOKIE_HEADER, SESSION_IDLE_MS, clearedSessionCookie, createSessionStore, csrfMatches, readCookie, sessionCookie } from "./session.js";

const TOKEN = { token: "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", tokenId: "tok_0123456789ab", tokenExpiresAt: null };

describe("console sessions", () => {
  it("ids and CSRF tokens are 32 random bytes in base64url, different each time", () => {
    const store = createSessionStore();
    const a = store.create(TOKEN, 0);
    const b = store.create(TOKEN, 0);
    for (const v of [a.id, a.csrf, b.id, b.csrf]) expect(v).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set([a.id, a.csrf, b.id, b.csrf]).size).toBe(4);
    expect(store.get(a.id, 1)?.csrf).toBe(a.csrf);
    expect(store.get("x".repeat(43), 1)).toBeUndefined();
    expect(store.get("../../etc/passwd", 1)).toBeUndefined();
  });

  it("end after 12 h unused, each use moving the deadline; never past the token's expiry", () => {
    const store = createSessionStore();
    const s = store.create(TOKEN, 0);
    expect(store.get(s.id, SESSION_IDLE_MS - 1)).toBeDefined();
    expect(store.get(s.id, 2 * SESSION_IDLE_MS - 2)).toBeDefined();
    expect(store.get(s.id, 3 * SESSION_IDLE_MS)).toBeUndefined();
    expect(store.size()).toBe(0);

    const short = store.create({ ...TOKEN, tokenExpiresAt: 60_000 }, 0);
    expect(store.maxAgeS(short.session, 0)).toBe(60);
    expect(store.maxAgeS(store.create(TOKEN, 0).session, 0)).toBe(43_200);
    expect(store.get(short.id, 59_999)).toBeDefined();
    expect(store.get(short.id, 60_000)).toBeUndefined();
  });

  it("are bounded: past the limit the least recently used goes", () => {
    const store = createSessionStore({ max: 3 });
    const [a, b, c] = [store.create(TOKEN, 0), store.create(TOKEN, 1), store.create(TOKEN, 2)];
    expect(store.get(a.id, 3)).toBeDefined();
    const d = store.create(TOKEN, 4);
    expect(store.size()).toBe(3);
    expect(store.get(b.id, 5)).toBeUndefined();
    for (const s of [a, c, d]) expect(store.get(s.id, 5)).toBeDefined();
    expect(store.delete(a.id)).toBe(true);
    expect(store.delete(a.id)).toBe(false);
  });

  it("compare CSRF tokens exactly", () => {
    const s = createSessionStore().create(TOKEN, 0);
    expect(csrfMatches(s.csrf, s.session)).toBe(true);
    expect(csrfMatches(`${s.csrf}x`, s.session)).toBe(false);
    expect(csrfMatches(s.csrf.slice(1), s.session)).toBe(false);
    expect(csrfMatches(undefined, s.session)).toBe(false);
    expect(csrfMatches([s.csrf, s.csrf], s.session)).toBe(false);
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
