import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TokenJson } from "@firedrill/control-plane";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { runCli } from "../program.js";

const TOKEN = "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const SECRET = "fdt_feedfacecafe_SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS";

/** A stand-in control plane: checks the bearer token, records requests, answers from `answers`. */
let server: Server;
let url: string;
const asked: { method: string; url: string; authorization: string | undefined; body: unknown }[] = [];
let answers: Record<string, { status: number; body: unknown }>;

async function bodyOf(req: IncomingMessage): Promise<unknown> {
  let text = "";
  for await (const chunk of req) text += (chunk as Buffer).toString();
  return text === "" ? undefined : JSON.parse(text);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    void bodyOf(req).then((body) => {
      asked.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body });
      const reply = (status: number, json: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(json));
      };
      if (req.headers.authorization === undefined) {
        return reply(401, { error: { code: "unauthenticated", message: "this endpoint needs an API token: send Authorization: Bearer <token>" } });
      }
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        // Echoes what it got, to prove the CLI never shows a token even when a server does.
        return reply(401, { error: { code: "unauthenticated", message: `the API token is not valid for this control plane (got ${req.headers.authorization})` } });
      }
      const answer = answers[`${req.method} ${(req.url ?? "").split("?")[0]}`];
      if (!answer) return reply(404, { error: { code: "not_found", message: `no route ${req.method} ${req.url}` } });
      reply(answer.status, answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

let dir: string;
beforeEach(() => {
  asked.length = 0;
  answers = {};
  dir = mkdtempSync(join(tmpdir(), "firedrill-cli-token-"));
  vi.stubEnv("FIREDRILL_CONFIG", join(dir, "config.json"));
  vi.stubEnv("FIREDRILL_SERVER", url);
  vi.stubEnv("FIREDRILL_TOKEN", TOKEN);
});
afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(["node", "firedrill", ...args], { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const NOW = Date.now();
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const TOKEN_JSON: TokenJson = {
  id: "tok_feedfacecafe",
  principal: "alice",
  kind: "person",
  role: "operator",
  scope: "env!=prod",
  createdAt: iso(0),
  createdBy: "admin",
  expiresAt: iso(90 * 86_400_000 + 60_000),
  lastUsedAt: null,
  lastUsedFrom: null,
  revokedAt: null,
  revokedBy: null,
  state: "active",
};

describe("firedrill whoami", () => {
  beforeEach(() => {
    answers["GET /api/v1/whoami"] = {
      status: 200,
      body: { principal: { name: "alice", kind: "person", role: "operator" }, token: { id: "tok_0123456789ab", scope: "env!=prod", expiresAt: iso(3 * 86_400_000 + 60_000) } },
    };
  });

  it("shows name, role, kind, token, scope, expiry and server, sending the token", async () => {
    const run = await cli("whoami");
    expect(asked).toEqual([{ method: "GET", url: "/api/v1/whoami", authorization: `Bearer ${TOKEN}`, body: undefined }]);
    expect(run.err).toBe("");
    expect(run.code).toBe(0);
    expect(run.out).toBe(
      [
        "Name     alice",
        "Role     operator",
        "Kind     person",
        "Token    tok_0123456789ab (from FIREDRILL_TOKEN)",
        "Scope    env!=prod",
        `Expires  ${iso(3 * 86_400_000 + 60_000)} (in 3d)`,
        `Server   ${url}`,
        "",
      ].join("\n"),
    );
    const json = await cli("whoami", "--json");
    expect(JSON.parse(json.out)).toEqual({ ...(answers["GET /api/v1/whoami"]!.body as object), server: url });
    expect(json.out).not.toContain(TOKEN);
  });

  it("reads the token from --token-file, over FIREDRILL_TOKEN", async () => {
    const file = join(dir, "token");
    writeFileSync(file, `${TOKEN}\n`);
    vi.stubEnv("FIREDRILL_TOKEN", "fdt_000000000000_wrong");
    const run = await cli("--token-file", file, "whoami");
    expect(run.code).toBe(0);
    expect(run.out).toContain(`Token    tok_0123456789ab (from --token-file ${file})\n`);
  });

  it("without a token, says how to log in", async () => {
    vi.stubEnv("FIREDRILL_TOKEN", "");
    const run = await cli("whoami");
    expect(asked[0]?.authorization).toBeUndefined();
    expect(run).toEqual({
      code: 1,
      out: "",
      err: `error: the control plane at ${url} needs an API token and none is set: run firedrill login --server ${url} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN\n`,
    });
  });

  it("with a refused token, shows the server's reason and where the token came from, never the token", async () => {
    const wrong = "fdt_000000000000_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";
    vi.stubEnv("FIREDRILL_TOKEN", wrong);
    const run = await cli("whoami");
    expect(run).toEqual({
      code: 1,
      out: "",
      err: "error: the API token is not valid for this control plane (got Bearer <token>) (the token came from FIREDRILL_TOKEN)\n",
    });
  });
});

describe("firedrill token", () => {
  it("create posts the request and prints the secret once, alone on stdout", async () => {
    answers["POST /api/v1/tokens"] = { status: 201, body: { token: TOKEN_JSON, secret: SECRET } };
    const run = await cli("token", "create", "--name", "alice", "--role", "operator", "--expires", "90d", "--scope", "env!=prod");
    expect(asked).toEqual([
      { method: "POST", url: "/api/v1/tokens", authorization: `Bearer ${TOKEN}`, body: { name: "alice", role: "operator", expires: "90d", scope: "env!=prod" } },
    ]);
    expect(run.code).toBe(0);
    expect(run.out).toBe(`${SECRET}\n`);
    expect(run.err).toBe(
      `created token tok_feedfacecafe for alice (person, operator, scope env!=prod, expires ${TOKEN_JSON.expiresAt} (in 90d)).\n` +
        "It is shown only this time; the control plane keeps only its hash. Store it now:\n\n" +
        `\nlog in with it: firedrill login --server ${url} --token-file FILE\n`,
    );
    expect(`${run.out}${run.err}`).not.toContain(TOKEN);

    const json = await cli("token", "create", "--name", "ci", "--role", "operator", "--kind", "service", "--json");
    expect(asked[1]?.body).toEqual({ name: "ci", role: "operator", kind: "service" });
    expect(JSON.parse(json.out)).toEqual({ token: TOKEN_JSON, secret: SECRET });
    expect(json.err).toBe("");
  });

  it("create refuses an unknown role before asking, and names the flags in the server's refusal", async () => {
    const bad = await cli("token", "create", "--name", "alice", "--role", "root");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^error: option '--role <role>' argument 'root' is invalid. Allowed choices are viewer, operator, admin, alertmanager./);
    expect(asked).toEqual([]);

    answers["POST /api/v1/tokens"] = {
      status: 400,
      body: {
        error: {
          code: "invalid_request",
          message: 'invalid token request: expires: "90x" is not a lifetime; use e.g. 30m, 12h, 90d, 1y (at most 5y)',
          issues: [{ field: "expires", message: '"90x" is not a lifetime; use e.g. 30m, 12h, 90d, 1y (at most 5y)' }],
        },
      },
    };
    const refused = await cli("token", "create", "--name", "alice", "--role", "viewer", "--expires", "90x");
    expect(refused).toEqual({
      code: 1,
      out: "",
      err: 'error: the control plane refused the token (1 problem)\n  --expires: "90x" is not a lifetime; use e.g. 30m, 12h, 90d, 1y (at most 5y)\n',
    });
  });

  it("list shows a table of tokens without secrets; --all asks for inactive ones", async () => {
    const revoked: TokenJson = {
      ...TOKEN_JSON,
      id: "tok_0123456789ab",
      principal: "ci",
      kind: "service",
      scope: null,
      expiresAt: null,
      lastUsedAt: iso(-5 * 60_000 - 1000),
      lastUsedFrom: "10.0.0.9",
      revokedAt: iso(-60_000),
      revokedBy: "admin",
      state: "revoked",
    };
    answers["GET /api/v1/tokens"] = { status: 200, body: { tokens: [TOKEN_JSON, revoked] } };
    const run = await cli("token", "list", "--all");
    expect(asked.map((a) => a.url)).toEqual(["/api/v1/tokens?all=1"]);
    expect(run.out).toBe(
      [
        "ID                PRINCIPAL     ROLE      SCOPE      EXPIRES  LAST USED             STATE",
        "tok_feedfacecafe  alice         operator  env!=prod  in 90d   never                 active",
        "tok_0123456789ab  ci (service)  operator  -          never    5m ago from 10.0.0.9  revoked by admin",
        "",
      ].join("\n"),
    );
    answers["GET /api/v1/tokens"] = { status: 200, body: { tokens: [] } };
    expect((await cli("token", "list")).out).toBe("no active tokens (--all shows revoked and expired ones)\n");
    expect(asked[1]?.url).toBe("/api/v1/tokens");
  });

  it("revoke deletes the token and says so", async () => {
    answers["DELETE /api/v1/tokens/tok_feedfacecafe"] = {
      status: 200,
      body: { token: { ...TOKEN_JSON, state: "revoked", revokedAt: "2026-11-27T10:00:00.000Z", revokedBy: "admin" } },
    };
    const run = await cli("token", "revoke", "tok_feedfacecafe");
    expect(asked.map((a) => `${a.method} ${a.url}`)).toEqual(["DELETE /api/v1/tokens/tok_feedfacecafe"]);
    expect(run).toEqual({ code: 0, err: "", out: "token tok_feedfacecafe of alice (operator) is revoked (by admin at 2026-11-27T10:00:00.000Z)\n" });
    const missing = await cli("token", "revoke", "tok_nope");
    expect(missing).toEqual({ code: 1, out: "", err: "error: no route DELETE /api/v1/tokens/tok_nope\n" });
  });

  it("a conflict keeps the server's words, with the flag named", async () => {
    answers["POST /api/v1/tokens"] = {
      status: 409,
      body: {
        error: {
          code: "principal_role_mismatch",
          message: "alice already exists with role operator; a principal has one role: create the token with --role operator, or use another --name for the viewer role",
          issues: [{ field: "role", message: "alice is operator" }],
        },
      },
    };
    expect(await cli("token", "create", "--name", "alice", "--role", "viewer")).toEqual({
      code: 1,
      out: "",
      err: "error: alice already exists with role operator; a principal has one role: create the token with --role operator, or use another --name for the viewer role\n  --role: alice is operator\n",
    });
  });

  it("a viewer's refusal (403) is shown as the server words it", async () => {
    answers["GET /api/v1/tokens"] = {
      status: 403,
      body: { error: { code: "forbidden", message: "bob (viewer) may not GET /api/v1/tokens: it needs the admin permission, which admin have; ask an admin for such a token" } },
    };
    expect(await cli("token", "list")).toEqual({
      code: 1,
      out: "",
      err: "error: bob (viewer) may not GET /api/v1/tokens: it needs the admin permission, which admin have; ask an admin for such a token\n",
    });
  });
});
