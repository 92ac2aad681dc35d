/**
 * The console's side of the control plane, on a real server on loopback: its static files with
 * their security headers, logging in with a token for a session cookie, the CSRF defence of
 * cookie-authenticated changes, the roles applying to the cookie as to the token, revocation and
 * logout ending the session, the login's rate limit, and the self-contained report file.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FaultEventType, RevertReason } from "@firedrill/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";
import { CONSOLE_CSP } from "./routes.js";

const COOKIE_RE = /^firedrill_session=([A-Za-z0-9_-]{43}); HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200$/;

/** A console build stand-in: the five files, with the report's script showing the report's reason. */
function fakeConsole(): string {
  const dir = mkdtempSync(join(tmpdir(), "firedrill-console-"));
  writeFileSync(join(dir, "index.html"), '<!doctype html><html><head><link rel="stylesheet" href="/assets/app.css"><script defer src="/assets/app.js"></script></head><body></body></html>\n');
  writeFileSync(join(dir, "app.js"), 'console.log("console");\n');
  writeFileSync(join(dir, "app.css"), "body{margin:0}\n");
  writeFileSync(
    join(dir, "report.js"),
    'var marker="</script>";var r=JSON.parse(document.getElementById("firedrill-report").textContent);document.getElementById("report-root").textContent=r.run.reason+"|"+r.hypothesis;\n',
  );
  writeFileSync(join(dir, "report.css"), "#report-root{color:black}\n");
  return dir;
}

/** One HTTP(S) request with raw headers (fetch would normalise the path). */
function raw(url: string, options: { method?: string; path?: string; headers?: Record<string, string>; body?: string; ca?: string } = {}) {
  const u = new URL(url);
  const send = u.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>((resolve, reject) => {
    const req = send(
      { host: u.hostname, port: u.port, path: options.path ?? u.pathname, method: options.method ?? "GET", headers: options.headers ?? {}, ...(options.ca ? { ca: options.ca } : {}), agent: false, timeout: 10_000 },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString("utf8")));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** A browser's view of one console login: its cookie and CSRF token. */
interface Browser {
  cookie: string;
  csrf: string;
  origin: string;
}

describe("the console's routes", () => {
  let tcp: TestControlPlane;
  let consoleDir: string;
  let tokens: { viewer: string; operator: string };

  beforeAll(async () => {
    consoleDir = fakeConsole();
    tcp = await startTestControlPlane({ consoleDir, authFailuresPerMinute: 10_000 });
    tokens = { viewer: await tcp.tokenFor("viewer", { name: "vera" }), operator: await tcp.tokenFor("operator", { name: "olga" }) };
  });
  afterAll(async () => {
    await tcp?.cleanup();
    rmSync(consoleDir, { recursive: true, force: true });
  });

  const url = (path: string) => `${tcp.cp.httpUrl}${path}`;
  const login = async (token: string) => {
    const res = await fetch(url("/console/api/login"), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
    return { res, body: (await res.json()) as any };
  };
  const loggedIn = async (token: string): Promise<Browser> => {
    const { res, body } = await login(token);
    expect(res.status, JSON.stringify(body)).toBe(200);
    const id = COOKIE_RE.exec(res.headers.get("set-cookie") ?? "")![1]!;
    return { cookie: `firedrill_session=${id}`, csrf: body.csrf, origin: tcp.cp.httpUrl };
  };
  /** A request as the console makes it: the cookie, and on changes the CSRF header and the page's Origin. */
  const asBrowser = async (b: Browser, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const all: Record<string, string> = {
      cookie: b.cookie,
      ...(method === "GET" ? {} : { "x-firedrill-csrf": b.csrf, origin: b.origin }),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...headers,
    };
    // An empty value leaves the header out.
    for (const [k, v] of Object.entries(all)) if (v === "") delete all[k];
    const res = await fetch(url(path), { method, headers: all, body: body === undefined ? null : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as any) : undefined };
  };

  it("serves index.html and the four assets by exact name, with the CSP, nosniff and an ETag", async () => {
    const index = await fetch(url("/"));
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await index.text()).toBe(readFileSync(join(consoleDir, "index.html"), "utf8"));
    for (const [name, type] of [["app.js", "text/javascript"], ["app.css", "text/css"], ["report.js", "text/javascript"], ["report.css", "text/css"]] as const) {
      const res = await fetch(url(`/assets/${name}`));
      expect(res.status, name).toBe(200);
      expect(res.headers.get("content-type")).toBe(`${type}; charset=utf-8`);
      expect(await res.text()).toBe(readFileSync(join(consoleDir, name), "utf8"));
    }
    const headers = index.headers;
    expect(headers.get("content-security-policy")).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toBe("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    expect(headers.get("x-content-type-options")).toBe("nosniff");
    expect(headers.get("referrer-policy")).toBe("no-referrer");
    expect(headers.get("x-frame-options")).toBe("DENY");
    expect(headers.get("cache-control")).toBe("no-cache");
    const etag = headers.get("etag")!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect((await fetch(url("/"), { headers: { "if-none-match": etag } })).status).toBe(304);

    // A rebuild under the running server is served at once (the cache follows the file's mtime).
    writeFileSync(join(consoleDir, "app.js"), 'console.log("rebuilt, and longer");\n');
    const rebuilt = await fetch(url("/assets/app.js"));
    expect(await rebuilt.text()).toBe('console.log("rebuilt, and longer");\n');
    expect(rebuilt.headers.get("etag")).not.toBe((await fetch(url("/assets/app.css"))).headers.get("etag"));
  });

  it("answers 404 for any other name, and never leaves its directory", async () => {
    for (const path of ["/assets/index.html", "/assets/nope.js", "/assets/..%2f..%2fetc%2fpasswd", "/assets/..%2fapp.js", "/assets/app.js%00", "/assets/APP.JS", "/assets/", "/assets/../../etc/passwd", "/assets/%2e%2e/%2e%2e/etc/passwd"]) {
      const res = await raw(url(""), { path });
      expect(res.status, path).toBe(404);
      expect(res.text, path).not.toContain("root:");
    }
  });

  it("logs in with a token: an HttpOnly, SameSite=Strict, Path=/ cookie and a CSRF token; the login is audited", async () => {
    const { res, body } = await login(tokens.viewer);
    expect(res.status).toBe(200);
    const cookie = res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(COOKIE_RE);
    expect(cookie).not.toContain("Secure");
    expect(body).toEqual({ caller: { name: "vera", role: "viewer", kind: "person", scope: null }, csrf: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    expect(JSON.stringify(body)).not.toContain(tokens.viewer);
    const audit = (await tcp.api("GET", "/api/v1/audit?limit=20")).body.entries as any[];
    expect(audit.find((e) => e.path === "/console/api/login" && e.status === 200)).toMatchObject({ principal: "vera", role: "viewer", outcome: "ok", detail: "console login" });
  });

  it("authenticates reads with the cookie alone, and says who is logged in", async () => {
    const b = await loggedIn(tokens.viewer);
    const agents = await asBrowser(b, "GET", "/api/v1/agents");
    expect(agents.status).toBe(200);
    expect(agents.body.agents).toEqual([]);
    const session = await asBrowser(b, "GET", "/console/api/session");
    expect(session.status).toBe(200);
    expect(session.body).toEqual({ caller: { name: "vera", role: "viewer", kind: "person", scope: null }, csrf: b.csrf });
    expect(session.headers.get("set-cookie")).toMatch(COOKIE_RE);
    // Without the cookie (or with a made-up one) there is no caller.
    expect((await fetch(url("/api/v1/agents"))).status).toBe(401);
    const forged = await asBrowser({ ...b, cookie: `firedrill_session=${"A".repeat(43)}` }, "GET", "/api/v1/agents");
    expect(forged.status).toBe(401);
    expect(forged.body.error.message).toContain("log in to the console again");
    // The console's first "who am I" with no credential at all: 200, no caller, nothing audited;
    // with an ended session: 401.
    const auditBefore = ((await tcp.api("GET", "/api/v1/audit?limit=1000")).body as { entries: unknown[] }).entries.length;
    const anonymous = await fetch(url("/console/api/session"));
    expect(anonymous.status).toBe(200);
    expect(await anonymous.json()).toEqual({ caller: null, csrf: null });
    expect(((await tcp.api("GET", "/api/v1/audit?limit=1000")).body as { entries: unknown[] }).entries.length).toBe(auditBefore);
    expect((await asBrowser({ ...b, cookie: `firedrill_session=${"A".repeat(43)}` }, "GET", "/console/api/session")).status).toBe(401);
  });

  it("refuses a change with the cookie but without the CSRF token, or from another Origin (403 csrf)", async () => {
    const b = await loggedIn(tokens.viewer);
    const noToken = await asBrowser(b, "POST", "/api/v1/halt", { reason: "csrf" }, { "x-firedrill-csrf": "" });
    expect(noToken.status).toBe(403);
    expect(noToken.body.error.code).toBe("csrf");
    expect(noToken.body.error.message).toContain("x-firedrill-csrf");
    const wrong = await asBrowser(b, "POST", "/api/v1/halt", { reason: "csrf" }, { "x-firedrill-csrf": b.csrf.replace(/^./, (c) => (c === "A" ? "B" : "A")) });
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe("csrf");
    const elsewhere = await asBrowser(b, "POST", "/api/v1/halt", { reason: "csrf" }, { origin: "https://attacker.example" });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body).toMatchObject({ error: { code: "csrf", message: expect.stringContaining('Origin "https://attacker.example"') } });
    const nullOrigin = await asBrowser(b, "POST", "/api/v1/halt", { reason: "csrf" }, { origin: "null" });
    expect(nullOrigin.status).toBe(403);
    // None of them halted anything; each refusal is audited under the session's principal.
    expect((await tcp.api("GET", "/api/v1/halt")).body.halt).toBeNull();
    const audit = (await tcp.api("GET", "/api/v1/audit?limit=10")).body.entries as any[];
    expect(audit.filter((e) => e.path === "/api/v1/halt" && e.outcome === "csrf").map((e) => e.principal)).toEqual(["vera", "vera", "vera", "vera"]);
  });

  it("with the CSRF token and its own Origin, applies the role as for a token: a viewer may halt, not abort", async () => {
    const b = await loggedIn(tokens.viewer);
    const abort = await asBrowser(b, "POST", "/api/v1/runs/run_none/abort", { reason: "x" });
    expect(abort.status).toBe(403);
    expect(abort.body.error).toMatchObject({ code: "forbidden", message: expect.stringContaining("vera (viewer) may not POST /api/v1/runs/:id/abort: it needs the run:write permission") });
    const halt = await asBrowser(b, "POST", "/api/v1/halt", { reason: "game day over" });
    expect(halt.status).toBe(200);
    expect(halt.body.halt).toMatchObject({ actor: "vera", reason: "game day over" });
    // No Origin header (some clients send none): the CSRF token alone is enough.
    const again = await asBrowser(b, "POST", "/api/v1/halt", { reason: "again" }, { origin: "" });
    expect(again.status).toBe(200);
    expect((await asBrowser(b, "DELETE", "/api/v1/halt")).status).toBe(403);
    expect((await tcp.api("DELETE", "/api/v1/halt")).status).toBe(200);
  });

  it("revoking the token ends the session at once", async () => {
    const secret = await tcp.tokenFor("operator", { name: "olga" });
    const b = await loggedIn(secret);
    expect((await asBrowser(b, "GET", "/api/v1/runs")).status).toBe(200);
    const id = (await tcp.api("GET", "/api/v1/whoami", undefined, secret)).body.token.id;
    expect((await tcp.api("DELETE", `/api/v1/tokens/${id}`)).status).toBe(200);
    const after = await asBrowser(b, "GET", "/api/v1/runs");
    expect(after.status).toBe(401);
    expect(after.body.error.message).toContain("was revoked: log in to the console again");
    expect(after.headers.get("set-cookie")).toContain("Max-Age=0");
    // The session is gone, not only refused.
    const later = await asBrowser(b, "GET", "/api/v1/runs");
    expect(later.body.error.message).toContain("this console session has ended");
  });

  it("logout ends the session and clears the cookie (a logout needs the CSRF token too)", async () => {
    const b = await loggedIn(tokens.operator);
    expect((await asBrowser(b, "POST", "/console/api/logout", undefined, { "x-firedrill-csrf": "nope" })).status).toBe(403);
    expect((await asBrowser(b, "GET", "/api/v1/agents")).status).toBe(200);
    const out = await asBrowser(b, "POST", "/console/api/logout");
    expect(out.status).toBe(204);
    expect(out.headers.get("set-cookie")).toBe("firedrill_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    expect((await asBrowser(b, "GET", "/api/v1/agents")).status).toBe(401);
  });

  it("refuses a bad token with 401, audited, and a bad body with 400 or 413", async () => {
    const bad = await login("fdt_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    expect(bad.res.status).toBe(401);
    expect(bad.res.headers.get("set-cookie")).toBeNull();
    expect(bad.body.error.message).toContain("not valid for this control plane: log in with a firedrill API token");
    const junk = await login("hunter2");
    expect(junk.res.status).toBe(401);
    expect(junk.body.error.message).toContain("that is not a firedrill API token");
    const audit = (await tcp.api("GET", "/api/v1/audit?limit=10")).body.entries as any[];
    expect(audit.filter((e) => e.path === "/console/api/login" && e.status === 401)).toHaveLength(2);
    expect(audit.find((e) => e.path === "/console/api/login" && e.status === 401)).toMatchObject({ principal: null, outcome: "unauthenticated" });
    expect(JSON.stringify(audit)).not.toContain("hunter2");

    const notJson = await fetch(url("/console/api/login"), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: 42 }) });
    expect(notJson.status).toBe(400);
    const huge = await fetch(url("/console/api/login"), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: "x".repeat(5000) }) });
    expect(huge.status).toBe(413);
  });

  it("serves a run's report as one self-contained file that stays inert whatever its strings hold", async () => {
    const evil = "</script><script>alert(1)</script> <!-- \u2028 \u2029 end";
    const agent: TestAgent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token(), agentId: "web-1" });
    try {
      agent.hello();
      await agent.next("welcome");
      const spec = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: evil-strings }
spec:
  hypothesis: ${JSON.stringify(evil)}
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 10 }, duration: 10m }
`;
      const started = await tcp.api("POST", "/api/v1/runs", { spec }, tokens.operator);
      expect(started.status, JSON.stringify(started.body)).toBe(201);
      const runId: string = started.body.run.id;
      const start = await agent.next("startFault", 10_000);
      agent.event(start.faultId, FaultEventType.ACCEPTED);
      agent.event(start.faultId, FaultEventType.STARTED);
      const aborting = tcp.api("POST", `/api/v1/runs/${runId}/abort`, { reason: evil }, tokens.operator);
      const stop = await agent.next("stopFault", 10_000);
      agent.event(stop.faultId, FaultEventType.REVERTED, { reason: RevertReason.STOPPED });
      expect((await aborting).status).toBe(200);

      const b = await loggedIn(tokens.viewer);
      const res = await fetch(url(`/api/v1/runs/${runId}/report.html`), { headers: { cookie: b.cookie } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(res.headers.get("content-disposition")).toBe(`attachment; filename="firedrill-report-${runId}.html"`);
      expect(res.headers.get("content-security-policy")).toMatch(/^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'/);
      const html = await res.text();
      // Nothing to fetch: no src= or href= at all, no raw line separators; two scripts, whatever the strings.
      expect(html).not.toMatch(/\s(src|href)\s*=/i);
      expect(html).not.toMatch(/[\u2028\u2029]/);
      expect(html.match(/<script/gi)).toHaveLength(2);
      expect(html.toLowerCase().match(/<\/script/g)).toHaveLength(2);
      // The JSON element gives back the report the API serves.
      const open = '<script type="application/json" id="firedrill-report">';
      const at = html.indexOf(open) + open.length;
      const embedded = JSON.parse(html.slice(at, html.toLowerCase().indexOf("</script", at)));
      const api = (await tcp.api("GET", `/api/v1/runs/${runId}/report`)).body.report;
      const { generatedAt: _a, ...embeddedRest } = embedded;
      const { generatedAt: _b, ...apiRest } = api;
      expect(embeddedRest).toEqual(apiRest);
      expect(embedded.hypothesis).toBe(evil);
      expect(embedded.run.reason).toContain(evil);

      // In a real browser, offline: the report's script runs, nothing else does, nothing is fetched.
      if (existsSync("/usr/bin/chromium")) {
        const file = join(consoleDir, "report-test.html");
        writeFileSync(file, html);
        const { chromium } = await import("playwright-core");
        const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"] });
        try {
          const page = await browser.newPage();
          const dialogs: string[] = [];
          const problems: string[] = [];
          const requests: string[] = [];
          page.on("dialog", (d) => {
            dialogs.push(d.message());
            void d.dismiss();
          });
          page.on("console", (m) => {
            if (m.type() === "error" || m.type() === "warning") problems.push(m.text());
          });
          page.on("pageerror", (e) => problems.push(e.message));
          page.on("request", (r) => requests.push(r.url()));
          await page.goto(`file://${file}`);
          expect(await page.locator("#report-root").textContent()).toBe(`${embedded.run.reason}|${evil}`);
          expect(await page.locator("script").count()).toBe(2);
          expect(dialogs).toEqual([]);
          expect(problems).toEqual([]);
          expect(requests.filter((r) => r !== `file://${file}`)).toEqual([]);
        } finally {
          await browser.close();
        }
      }
    } finally {
      agent.cancel();
    }
  }, 60_000);

  it("report.html needs the read permission and names a missing run", async () => {
    expect((await fetch(url("/api/v1/runs/run_nope/report.html"))).status).toBe(401);
    const missing = await tcp.api("GET", "/api/v1/runs/run_nope/report.html");
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("run_not_found");
  });
});

describe("the console's login rate limit", () => {
  let tcp: TestControlPlane;
  beforeAll(async () => {
    tcp = await startTestControlPlane({ authFailuresPerMinute: 3 });
  });
  afterAll(async () => {
    await tcp?.cleanup();
  });

  it("counts failed logins and made-up session cookies with failed tokens (429), while a valid token still logs in", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 2; i += 1) {
      const res = await fetch(`${tcp.cp.httpUrl}/console/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"token":"fdt_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}' });
      statuses.push(res.status);
    }
    for (let i = 0; i < 2; i += 1) {
      const res = await fetch(`${tcp.cp.httpUrl}/api/v1/agents`, { headers: { cookie: `firedrill_session=${"B".repeat(43)}` } });
      statuses.push(res.status);
    }
    const limited = await fetch(`${tcp.cp.httpUrl}/console/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"token":"fdt_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}' });
    statuses.push(limited.status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    const ok = await fetch(`${tcp.cp.httpUrl}/console/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: tcp.adminToken() }) });
    expect(ok.status).toBe(200);
  });
});

describe("the console over HTTPS, and without its files", () => {
  let tcp: TestControlPlane | undefined;
  afterAll(async () => {
    await tcp?.cleanup();
  });

  it("sets the cookie Secure over HTTPS, and accepts changes from its https origin", async () => {
    tcp = await startTestControlPlane({ httpAddr: "0.0.0.0:0", advertise: ["firedrill.test"], consoleDir: "/nonexistent/console" });
    expect(tcp.cp.httpUrl).toMatch(/^https:/);
    const ca = readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8");
    const base = `https://127.0.0.1:${new URL(tcp.cp.httpUrl).port}`;
    const res = await raw(`${base}/console/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: tcp.adminToken() }), ca });
    expect(res.status).toBe(200);
    const cookie = String(res.headers["set-cookie"]);
    expect(cookie).toMatch(/^firedrill_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200; Secure$/);
    const csrf = (JSON.parse(res.text) as { csrf: string }).csrf;
    const headers = { cookie: cookie.split(";")[0]!, "x-firedrill-csrf": csrf, "content-type": "application/json" };
    const plainOrigin = await raw(`${base}/api/v1/halt`, { method: "POST", headers: { ...headers, origin: `http://127.0.0.1:${new URL(base).port}` }, body: '{"reason":"x"}', ca });
    expect(plainOrigin.status).toBe(403);
    const halt = await raw(`${base}/api/v1/halt`, { method: "POST", headers: { ...headers, origin: base }, body: '{"reason":"drill"}', ca });
    expect(halt.status, halt.text).toBe(200);
    const { "content-type": _json, ...bodyless } = headers;
    const logout = await raw(`${base}/console/api/logout`, { method: "POST", headers: { ...bodyless, origin: base }, ca });
    expect(logout.status).toBe(204);
    expect(String(logout.headers["set-cookie"])).toBe("firedrill_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure");

    // No console files in --console-dir: the page says how to build them.
    const page = await raw(`${base}/`, { ca });
    expect(page.status).toBe(503);
    expect(page.text).toContain("pnpm console:build");
    expect(page.text).toContain("/nonexistent/console");
    expect((await raw(`${base}/assets/app.js`, { ca })).status).toBe(503);
  });
});
