import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TokenJson } from "@firedrill/control-plane";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess, useFakeApi } from "../testing/fake-api.js";

const SECRET = "fdt_feedfacecafe_SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS";

/** A stand-in control plane that checks the bearer token and records requests; FIREDRILL_* point at it. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-token-" });
const cli = runCliInProcess;

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
  const WHOAMI = { principal: { name: "alice", kind: "person", role: "operator" }, token: { id: "tok_0123456789ab", scope: "env!=prod", expiresAt: iso(3 * 86_400_000 + 60_000) } };
  beforeEach(() => {
    fake.api.answer("GET", "/api/v1/whoami", 200, WHOAMI);
  });

  it("shows name, role, kind, token, scope, expiry and server, sending the token", async () => {
    const run = await cli("whoami");
    expect(fake.asked).toEqual([{ method: "GET", url: "/api/v1/whoami", authorization: `Bearer ${TOKEN}`, body: undefined }]);
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
        `Server   ${fake.url}`,
        "",
      ].join("\n"),
    );
    const json = await cli("whoami", "--json");
    expect(JSON.parse(json.out)).toEqual({ ...WHOAMI, server: fake.url });
    expect(json.out).not.toContain(TOKEN);
  });

  it("reads the token from --token-file, over FIREDRILL_TOKEN", async () => {
    const file = join(fake.dir, "token");
    writeFileSync(file, `${TOKEN}\n`);
    vi.stubEnv("FIREDRILL_TOKEN", "fdt_000000000000_wrong");
    const run = await cli("--token-file", file, "whoami");
    expect(run.code).toBe(0);
    expect(run.out).toContain(`Token    tok_0123456789ab (from --token-file ${file})\n`);
  });

  it("without a token, says how to log in", async () => {
    vi.stubEnv("FIREDRILL_TOKEN", "");
    const run = await cli("whoami");
    expect(fake.asked[0]?.authorization).toBeUndefined();
    expect(run).toEqual({
      code: 1,
      out: "",
      err: `error: the control plane at ${fake.url} needs an API token and none is set: run firedrill login --server ${fake.url} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN\n`,
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
    fake.api.answer("POST", "/api/v1/tokens", 201, { token: TOKEN_JSON, secret: SECRET });
    const run = await cli("token", "create", "--name", "alice", "--role", "operator", "--expires", "90d", "--scope", "env!=prod");
    expect(fake.asked).toEqual([
      { method: "POST", url: "/api/v1/tokens", authorization: `Bearer ${TOKEN}`, body: { name: "alice", role: "operator", expires: "90d", scope: "env!=prod" } },
    ]);
    expect(run.code).toBe(0);
    expect(run.out).toBe(`${SECRET}\n`);
    expect(run.err).toBe(
      `created token tok_feedfacecafe for alice (person, operator, scope env!=prod, expires ${TOKEN_JSON.expiresAt} (in 90d)).\n` +
        "It is shown only this time; the control plane keeps only its hash. Store it now:\n\n" +
        `\nlog in with it: firedrill login --server ${fake.url} --token-file FILE\n`,
    );
    expect(`${run.out}${run.err}`).not.toContain(TOKEN);

    const json = await cli("token", "create", "--name", "ci", "--role", "operator", "--kind", "service", "--json");
    expect(fake.asked[1]?.body).toEqual({ name: "ci", role: "operator", kind: "service" });
    expect(JSON.parse(json.out)).toEqual({ token: TOKEN_JSON, secret: SECRET });
    expect(json.err).toBe("");
  });

  it("create refuses an unknown role before asking, and names the flags in the server's refusal", async () => {
    const bad = await cli("token", "create", "--name", "alice", "--role", "root");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^error: option '--role <role>' argument 'root' is invalid. Allowed choices are viewer, operator, admin, alertmanager./);
    expect(fake.asked).toEqual([]);

    fake.api.answer("POST", "/api/v1/tokens", 400, {
      error: {
        code: "invalid_request",
        message: 'invalid token request: expires: "90x" is not a lifetime; use e.g. 30m, 12h, 90d, 1y (at most 5y)',
        issues: [{ field: "expires", message: '"90x" is not a lifetime; use e.g. 30m, 12h, 90d, 1y (at most 5y)' }],
      },
    });
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
    fake.api.answer("GET", "/api/v1/tokens", 200, { tokens: [TOKEN_JSON, revoked] });
    const run = await cli("token", "list", "--all");
    expect(fake.asked.map((a) => a.url)).toEqual(["/api/v1/tokens?all=1"]);
    expect(run.out).toBe(
      [
        "ID                PRINCIPAL     ROLE      SCOPE      EXPIRES  LAST USED             STATE",
        "tok_feedfacecafe  alice         operator  env!=prod  in 90d   never                 active",
        "tok_0123456789ab  ci (service)  operator  -          never    5m ago from 10.0.0.9  revoked by admin",
        "",
      ].join("\n"),
    );
    fake.api.answer("GET", "/api/v1/tokens", 200, { tokens: [] });
    expect((await cli("token", "list")).out).toBe("no active tokens (--all shows revoked and expired ones)\n");
    expect(fake.asked[1]?.url).toBe("/api/v1/tokens");
  });

  it("revoke deletes the token and says so", async () => {
    fake.api.answer("DELETE", "/api/v1/tokens/tok_feedfacecafe", 200, { token: { ...TOKEN_JSON, state: "revoked", revokedAt: "2026-11-27T10:00:00.000Z", revokedBy: "admin" } });
    const run = await cli("token", "revoke", "tok_feedfacecafe");
    expect(fake.asked.map((a) => `${a.method} ${a.url}`)).toEqual(["DELETE /api/v1/tokens/tok_feedfacecafe"]);
    expect(run).toEqual({ code: 0, err: "", out: "token tok_feedfacecafe of alice (operator) is revoked (by admin at 2026-11-27T10:00:00.000Z)\n" });
    const missing = await cli("token", "revoke", "tok_nope");
    expect(missing).toEqual({ code: 1, out: "", err: "error: no route DELETE /api/v1/tokens/tok_nope\n" });
  });

  it("a conflict keeps the server's words, with the flag named", async () => {
    fake.api.answer("POST", "/api/v1/tokens", 409, {
      error: {
        code: "principal_role_mismatch",
        message: "alice already exists with role operator; a principal has one role: create the token with --role operator, or use another --name for the viewer role",
        issues: [{ field: "role", message: "alice is operator" }],
      },
    });
    expect(await cli("token", "create", "--name", "alice", "--role", "viewer")).toEqual({
      code: 1,
      out: "",
      err: "error: alice already exists with role operator; a principal has one role: create the token with --role operator, or use another --name for the viewer role\n  --role: alice is operator\n",
    });
  });

  it("a viewer's refusal (403) is shown as the server words it", async () => {
    fake.api.answer("GET", "/api/v1/tokens", 403, { error: { code: "forbidden", message: "bob (viewer) may not GET /api/v1/tokens: it needs the admin permission, which admin have; ask an admin for such a token" } });
    expect(await cli("token", "list")).toEqual({
      code: 1,
      out: "",
      err: "error: bob (viewer) may not GET /api/v1/tokens: it needs the admin permission, which admin have; ask an admin for such a token\n",
    });
  });
});
