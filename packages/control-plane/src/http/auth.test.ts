/**
 * Authentication and authorization of the whole HTTP API, on a real control plane: every route
 * the app registers declares a permission, and each route × role is allowed, 401 or 403.
 */
import { readFileSync, statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROLES, roleAllows } from "../auth/types.js";
import type { Role } from "../auth/types.js";
import type { RouteEntry } from "../auth/http.js";
import { startTestControlPlane } from "../test-support/test-agent.js";
import type { TestControlPlane } from "../test-support/test-agent.js";

/** A path for a route pattern, with made-up ids. */
const pathOf = (url: string): string => url.replace(/:(\w+)/g, (_, name: string) => `no-such-${name}`);

describe("HTTP API authentication and authorization", () => {
  let tcp: TestControlPlane;
  const tokens = {} as Record<Role, string>;

  beforeAll(async () => {
    tcp = await startTestControlPlane({ authFailuresPerMinute: 10_000 });
    for (const role of ROLES) tokens[role] = await tcp.tokenFor(role, { name: `${role}-user` });
  });
  afterAll(async () => {
    await tcp?.cleanup();
  });

  const call = async (method: string, path: string, token?: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${tcp.cp.httpUrl}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...headers,
      },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: res.status, body: json };
  };

  it("wrote the bootstrap admin token once, 0600 in a 0700 data dir, and printed only its path", () => {
    const file = join(tcp.dataDir, "admin-token");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(tcp.dataDir).mode & 0o777).toBe(0o700);
    const token = readFileSync(file, "utf8").trim();
    expect(token).toMatch(/^fdt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(tcp.output()).toContain(file);
    expect(tcp.output()).not.toContain(token);
  });

  it("declares a permission on every route it serves", () => {
    const routes = tcp.cp.httpRoutes();
    expect(routes.length).toBeGreaterThan(30);
    for (const route of routes) expect(route.permission, `${route.method} ${route.url}`).toBeDefined();
    const byKey = new Map(routes.map((r) => [`${r.method} ${r.url}`, r.permission]));
    expect(byKey.get("GET /healthz")).toBe("public");
    expect(byKey.get("POST /api/v1/halt")).toBe("halt");
    expect(byKey.get("DELETE /api/v1/halt")).toBe("admin");
    expect(byKey.get("POST /api/v1/alerts/alertmanager")).toBe("alerts:push");
    expect(byKey.get("POST /api/v1/agents/:id/faults")).toBe("fault:write");
    expect(byKey.get("POST /api/v1/runs")).toBe("run:write");
    expect(byKey.get("POST /api/v1/tokens")).toBe("admin");
    // The console: its page, files and login are public (the secret is the token); the rest is read.
    expect(byKey.get("GET /")).toBe("public");
    expect(byKey.get("GET /assets/:file")).toBe("public");
    expect(byKey.get("POST /console/api/login")).toBe("public");
    expect(byKey.get("GET /console/api/session")).toBe("read");
    expect(byKey.get("POST /console/api/logout")).toBe("read");
    expect(byKey.get("GET /api/v1/runs/:id/report.html")).toBe("read");
  });

  it("answers each route × role with allowed, 401 or 403", async () => {
    const routes: RouteEntry[] = tcp.cp.httpRoutes().filter((r) => r.method !== "HEAD" && r.permission !== "public");
    const failures: string[] = [];
    for (const route of routes) {
      const path = pathOf(route.url);
      const body = ["POST", "PUT", "PATCH"].includes(route.method) ? {} : undefined;
      // The unhalt would lift nothing; the alertmanager body is invalid: no call changes state.
      const anonymous = await call(route.method, path, undefined, body);
      // A route that answers the uncredentialed (the console's "who am I") says so, and answers 200 with no caller.
      const expected = route.anonymous ? 200 : 401;
      if (anonymous.status !== expected) failures.push(`${route.method} ${route.url} without a token: ${anonymous.status}, expected ${expected}`);
      for (const role of ROLES) {
        const res = await call(route.method, path, tokens[role], body);
        const allowed = roleAllows(role, route.permission);
        if (allowed && (res.status === 401 || res.status === 403)) failures.push(`${route.method} ${route.url} as ${role}: ${res.status}, expected allowed`);
        if (!allowed && res.status !== 403) failures.push(`${route.method} ${route.url} as ${role}: ${res.status}, expected 403`);
        if (!allowed) expect(res.body.error.message).toContain(`needs the ${route.permission} permission`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("lets everyone read /healthz, and refuses bad, revoked and expired tokens with 401", async () => {
    expect((await call("GET", "/healthz")).status).toBe(200);
    const bogus = await call("GET", "/api/v1/agents", "fdt_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    expect(bogus.status).toBe(401);
    expect(bogus.body.error.message).toContain("firedrill login");
    expect((await call("GET", "/api/v1/agents", undefined, undefined, { authorization: "Basic abc" })).status).toBe(401);

    const secret = await tcp.tokenFor("viewer", { name: "short-lived" });
    expect((await call("GET", "/api/v1/agents", secret)).status).toBe(200);
    const id = (await tcp.api("GET", "/api/v1/whoami", undefined, secret)).body.token.id;
    const revoked = await tcp.api("DELETE", `/api/v1/tokens/${id}`);
    expect(revoked.body.token).toMatchObject({ id, state: "revoked", revokedBy: "admin" });
    const after = await call("GET", "/api/v1/agents", secret);
    expect(after.status).toBe(401);
    expect(after.body.error.message).toContain("revoked");
  });

  it("says who the caller is, and lists tokens without their secrets", async () => {
    const who = await call("GET", "/api/v1/whoami", tokens.operator);
    expect(who.body).toMatchObject({ principal: { name: "operator-user", role: "operator", kind: "person" } });
    const list = await tcp.api("GET", "/api/v1/tokens");
    expect(list.status).toBe(200);
    const text = JSON.stringify(list.body);
    for (const secret of Object.values(tokens)) expect(text).not.toContain(secret.slice(17));
    expect(list.body.tokens.map((t: { principal: string }) => t.principal)).toEqual(expect.arrayContaining(["admin", "viewer-user", "operator-user"]));
  });

  it("creates tokens with an expiry and a scope, and names what is wrong in a bad request", async () => {
    const made = await tcp.api("POST", "/api/v1/tokens", { name: "ci-bot", role: "operator", kind: "service", expires: "90d", scope: "env!=prod" });
    expect(made.status).toBe(201);
    expect(made.body.token).toMatchObject({ principal: "ci-bot", kind: "service", role: "operator", scope: "env!=prod", state: "active" });
    const days = (Date.parse(made.body.token.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);

    const bad = await tcp.api("POST", "/api/v1/tokens", { name: "", role: "root", expires: "forever", scope: "env=(" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.issues.map((i: { field: string }) => i.field)).toEqual(["name", "role", "expires", "scope"]);

    const clash = await tcp.api("POST", "/api/v1/tokens", { name: "ci-bot", role: "admin" });
    expect(clash.status).toBe(409);
    expect(clash.body.error.message).toContain("already exists with role operator");
  });

  it("records the unhalt with who lifted it", async () => {
    expect((await call("POST", "/api/v1/halt", tokens.viewer, { reason: "drill" })).status).toBe(200);
    expect((await call("DELETE", "/api/v1/halt", tokens.operator)).status).toBe(403);
    expect((await call("DELETE", "/api/v1/halt", tokens.admin)).status).toBe(200);
    const audit = await tcp.api("GET", "/api/v1/audit?limit=5");
    const unhalt = audit.body.entries.find((e: { method: string; path: string; status: number }) => e.method === "DELETE" && e.path === "/api/v1/halt" && e.status === 200);
    expect(unhalt).toMatchObject({ principal: "admin-user", role: "admin", outcome: "ok" });
    expect(unhalt.detail).toContain("lifted the halt set by viewer-user (drill)");
  });

  it("refuses a Host that is not one of the server's names (DNS rebinding)", async () => {
    const port = new URL(tcp.cp.httpUrl).port;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        { host: "127.0.0.1", port, path: "/api/v1/agents", headers: { host: "attacker.example", authorization: `Bearer ${tokens.admin}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(421);
    expect((await call("GET", "/api/v1/agents", tokens.viewer, undefined, { host: `localhost:${port}` })).status).toBe(200);
  });

  it("sends no CORS headers", async () => {
    const res = await fetch(`${tcp.cp.httpUrl}/api/v1/agents`, { headers: { origin: "https://attacker.example", authorization: `Bearer ${tokens.viewer}` } });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("keeps the audit chain verifiable, and finds a row edited in the database file", async () => {
    const ok = await tcp.api("GET", "/api/v1/audit/verify");
    expect(ok.body).toMatchObject({ ok: true, firstBad: null });
    const rows = (await tcp.api("GET", "/api/v1/audit?limit=10000")).body.entries as { id: number }[];
    const victim = rows[Math.floor(rows.length / 2)]!.id;
    const raw = new Database(join(tcp.dataDir, "firedrill.db"));
    raw.exec("DROP TRIGGER audit_log_no_update");
    raw.prepare("UPDATE audit_log SET principal = 'nobody' WHERE id = ?").run(victim);
    raw.close();
    const bad = await tcp.api("GET", "/api/v1/audit/verify");
    expect(bad.body.ok).toBe(false);
    expect(bad.body.firstBad.id).toBe(victim);
    expect(bad.body.message).toContain(`row ${victim}`);
  });
});

describe("failed authentications", () => {
  let tcp: TestControlPlane;
  beforeAll(async () => {
    tcp = await startTestControlPlane({ authFailuresPerMinute: 3 });
  });
  afterAll(async () => {
    await tcp?.cleanup();
  });

  it("are rate-limited per source address (429, audited once), while valid tokens still pass", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      const res = await fetch(`${tcp.cp.httpUrl}/api/v1/agents`, { headers: { authorization: "Bearer nope" } });
      statuses.push(res.status);
      if (res.status === 429) expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429]);
    // Halt must never be locked out: a valid token from the same address still works.
    expect((await tcp.api("GET", "/api/v1/agents")).status).toBe(200);
    const audit = (await tcp.api("GET", "/api/v1/audit?limit=100")).body.entries as { status: number; source: string; principal: string | null }[];
    expect(audit.filter((e) => e.status === 401)).toHaveLength(3);
    expect(audit.filter((e) => e.status === 429)).toHaveLength(1);
    expect(audit.find((e) => e.status === 429)).toMatchObject({ principal: null, source: expect.stringMatching(/127\.0\.0\.1/) });
  });
});
