import type { JoinTokenJson } from "@firedrill/control-plane";
import { describe, expect, it } from "vitest";
import { runCli } from "../program.js";
import { TEST_TOKEN as TOKEN, runCliInProcess, useFakeApi } from "../testing/fake-api.js";
import { installInstructions } from "./join-token.js";

const JOIN = "fdj_Sm9pbiB0b2tlbiB0ZXh0IGZvciB0ZXN0cyBvbmx5IQ";

/** A stand-in control plane that checks the bearer token and records requests; FIREDRILL_* point at it. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-join-token-" });
const cli = runCliInProcess;

const NOW = Date.now();
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const FINGERPRINT = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const JOIN_JSON: JoinTokenJson = {
  id: "jt_feedfacecafe",
  createdAt: iso(0),
  createdBy: "admin",
  expiresAt: iso(24 * 3_600_000 - 60_000),
  usesAllowed: 100,
  uses: 0,
  labels: { env: "prod", app: "web" },
  caFingerprint: FINGERPRINT,
  revokedAt: null,
  revokedBy: null,
  state: "active",
};

describe("firedrill join-token create", () => {
  it("posts ttl, uses and labels, prints the token alone on stdout and how to install it on stderr", async () => {
    fake.api.answer("POST", "/api/v1/join-tokens", 201, { joinToken: JOIN_JSON, token: JOIN });
    const run = await cli("join-token", "create", "--ttl", "24h", "--uses", "100", "--labels", "env=prod, app=web");
    expect(fake.asked).toEqual([
      {
        method: "POST",
        url: "/api/v1/join-tokens",
        authorization: `Bearer ${TOKEN}`,
        body: { ttl: "24h", uses: 100, labels: { env: "prod", app: "web" } },
      },
    ]);
    expect(run.code).toBe(0);
    expect(run.out).toBe(`${JOIN}\n`);
    expect(run.err).toBe(
      `created join token jt_feedfacecafe (100 agents, expires ${JOIN_JSON.expiresAt} (in 23h), labels app=web,env=prod).\n` +
        "It is shown only this time and can't be shown again. Store it now:\n\n" +
        "\ninstall the agent on a host (as root: it downloads the agent from this control plane, enrolls it and waits until it is connected):\n" +
        `  curl -fsSL ${fake.url}/install/agent.sh | sudo sh -s -- --join-token TOKEN\n` +
        "(this control plane's API is plain HTTP: only a host that reaches it on a trusted network, or this host, should install from it)\n" +
        "(TOKEN: the join token written to stdout above)\n" +
        "\nor run the agent yourself with the token in its token file (mode 0600):\n" +
        "  firedrill-agent --server HOST:PORT --token-file FILE --state-dir DIR\n" +
        `It pins this control plane's CA (${FINGERPRINT}): an agent sends it only to this control plane, never to another server.\n`,
    );
    expect(run.err).not.toContain(JOIN);
    expect(`${run.out}${run.err}`).not.toContain(TOKEN);
  });

  it("on a terminal, prints the one-line install with the token on stderr; over HTTPS also the variant that checks ca.pem against the token's pin", async () => {
    fake.api.answer("POST", "/api/v1/join-tokens", 201, { joinToken: JOIN_JSON, token: JOIN });
    let out = "";
    let err = "";
    const code = await runCli(["node", "firedrill", "join-token", "create"], { out: (t) => (out += t), err: (t) => (err += t), outIsTerminal: true });
    expect(code).toBe(0);
    expect(out).toBe(`${JOIN}\n`);
    expect(err).toContain(`  curl -fsSL ${fake.url}/install/agent.sh | sudo sh -s -- --join-token ${JOIN}\n`);
    expect(err).not.toContain("TOKEN");

    const https = installInstructions("https://cp.example.internal:7080/", JOIN, FINGERPRINT);
    const pin = FINGERPRINT.replace("sha256:", "");
    expect(https).toContain(`  curl -fsSL --cacert ca.pem https://cp.example.internal:7080/install/agent.sh | sudo sh -s -- --join-token ${JOIN}\n`);
    expect(https).toContain(
      `  curl -fsSLk -o ca.pem https://cp.example.internal:7080/install/ca.pem && { [ "$(tail -n +2 ca.pem | head -n -1 | base64 -d | sha256sum | cut -d' ' -f1)" = ${pin} ] || ` +
        `{ echo 'ca.pem is not the CA the join token pins: not installing' >&2; false; }; } && ` +
        `curl -fsSL --cacert ca.pem https://cp.example.internal:7080/install/agent.sh | sudo sh -s -- --cacert ca.pem --join-token ${JOIN}\n`,
    );
  });

  it("sends only the flags given; unlimited uses and no expiry read as such", async () => {
    fake.api.answer("POST", "/api/v1/join-tokens", 201, { joinToken: { ...JOIN_JSON, usesAllowed: null, expiresAt: null, labels: {} }, token: JOIN });
    const run = await cli("join-token", "create");
    expect(fake.asked[0]?.body).toEqual({});
    expect(run.out).toBe(`${JOIN}\n`);
    expect(run.err).toMatch(/^created join token jt_feedfacecafe \(any number of agents, expires never\)\.\n/);
  });

  it("--json prints { joinToken, token } and nothing on stderr", async () => {
    fake.api.answer("POST", "/api/v1/join-tokens", 201, { joinToken: JOIN_JSON, token: JOIN });
    const run = await cli("join-token", "create", "--uses", "1", "--json");
    expect(fake.asked[0]?.body).toEqual({ uses: 1 });
    expect(JSON.parse(run.out)).toEqual({ joinToken: JOIN_JSON, token: JOIN });
    expect(run.err).toBe("");
  });

  it("refuses a bad --uses or --labels before asking", async () => {
    for (const uses of ["0", "-3", "1.5", "many"]) {
      expect(await cli("join-token", "create", "--uses", uses)).toEqual({
        code: 1,
        out: "",
        err: `error: --uses ${JSON.stringify(uses)} is not valid; use a whole number of agents, at least 1\n`,
      });
    }
    expect(await cli("join-token", "create", "--labels", "env=prod,web")).toEqual({
      code: 1,
      out: "",
      err: 'error: --labels: "web" is not key=value; use e.g. --labels env=prod,app=web\n',
    });
    expect(fake.asked).toEqual([]);
  });

  it("names the flags in the server's refusal", async () => {
    fake.api.answer("POST", "/api/v1/join-tokens", 400, {
      error: {
        code: "invalid_request",
        message: 'invalid join token request: ttl: "2x" is not a duration; use e.g. 1h, 24h, 7d',
        issues: [{ field: "ttl", message: '"2x" is not a duration; use e.g. 1h, 24h, 7d' }],
      },
    });
    expect(await cli("join-token", "create", "--ttl", "2x")).toEqual({
      code: 1,
      out: "",
      err: 'error: the control plane refused the join token (1 problem)\n  --ttl: "2x" is not a duration; use e.g. 1h, 24h, 7d\n',
    });
  });

  it("a viewer's refusal (403) is shown as the server words it", async () => {
    fake.api.answer("POST", "/api/v1/join-tokens", 403, { error: { code: "forbidden", message: "bob (viewer) may not POST /api/v1/join-tokens: it needs the admin permission" } });
    expect(await cli("join-token", "create")).toEqual({
      code: 1,
      out: "",
      err: "error: bob (viewer) may not POST /api/v1/join-tokens: it needs the admin permission\n",
    });
  });
});

describe("firedrill join-token list and revoke", () => {
  const usedUp: JoinTokenJson = { ...JOIN_JSON, id: "jt_0123456789ab", usesAllowed: 1, uses: 1, labels: {}, state: "used-up", createdBy: "alice" };
  const revoked: JoinTokenJson = {
    ...JOIN_JSON,
    id: "jt_aaaabbbbcccc",
    expiresAt: null,
    usesAllowed: null,
    uses: 7,
    labels: {},
    revokedAt: iso(-60_000),
    revokedBy: "admin",
    state: "revoked",
  };
  const expired: JoinTokenJson = { ...JOIN_JSON, id: "jt_ddddeeeeffff", expiresAt: iso(-2 * 3_600_000 - 1000), uses: 3, state: "expired" };

  it("list shows a table (uses as n/max or n/∞) without token texts; --all asks for inactive ones", async () => {
    fake.api.answer("GET", "/api/v1/join-tokens", 200, { joinTokens: [JOIN_JSON, usedUp, revoked, expired] });
    const run = await cli("join-token", "list", "--all");
    expect(fake.asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`GET /api/v1/join-tokens?all=1 Bearer ${TOKEN}`]);
    expect(run).toEqual({
      code: 0,
      err: "",
      out: [
        "ID               STATE             EXPIRES  USES   LABELS            CREATED BY",
        "jt_feedfacecafe  active            in 23h   0/100  app=web,env=prod  admin",
        "jt_0123456789ab  used-up           in 23h   1/1    -                 alice",
        "jt_aaaabbbbcccc  revoked by admin  never    7/∞    -                 admin",
        "jt_ddddeeeeffff  expired           2h ago   3/100  app=web,env=prod  admin",
        "",
      ].join("\n"),
    });
    expect(run.out).not.toContain("fdj_");

    const json = await cli("join-token", "list", "--json");
    expect(fake.asked[1]?.url).toBe("/api/v1/join-tokens");
    expect(JSON.parse(json.out)).toEqual([JOIN_JSON, usedUp, revoked, expired]);

    fake.api.answer("GET", "/api/v1/join-tokens", 200, { joinTokens: [] });
    expect((await cli("join-token", "list")).out).toBe("no active join tokens (--all shows expired, used-up and revoked ones)\n");
    expect((await cli("join-token", "list", "--all")).out).toBe("no join tokens\n");
  });

  it("revoke deletes the join token and says so; an unknown one is a 404", async () => {
    fake.api.answer("DELETE", "/api/v1/join-tokens/jt_aaaabbbbcccc", 200, { joinToken: { ...revoked, revokedAt: "2026-11-27T10:00:00.000Z" } });
    const run = await cli("join-token", "revoke", "jt_aaaabbbbcccc");
    expect(fake.asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`DELETE /api/v1/join-tokens/jt_aaaabbbbcccc Bearer ${TOKEN}`]);
    expect(run).toEqual({
      code: 0,
      err: "",
      out:
        "join token jt_aaaabbbbcccc is revoked (by admin at 2026-11-27T10:00:00.000Z): no agent can enroll with it any more " +
        "(7 enrolled with it; revoke one with firedrill agents revoke AGENT_ID)\n",
    });
    expect(JSON.parse((await cli("join-token", "revoke", "jt_aaaabbbbcccc", "--json")).out)).toEqual({ ...revoked, revokedAt: "2026-11-27T10:00:00.000Z" });

    fake.api.answer("DELETE", "/api/v1/join-tokens/jt_nope", 404, { error: { code: "not_found", message: 'join token "jt_nope" does not exist; list them with firedrill join-token list --all' } });
    expect(await cli("join-token", "revoke", "jt_nope")).toEqual({
      code: 1,
      out: "",
      err: 'error: join token "jt_nope" does not exist; list them with firedrill join-token list --all\n',
    });
    // An id is one path segment, whatever it holds.
    await cli("join-token", "revoke", "../agents/x");
    expect(fake.asked.at(-1)?.url).toBe("/api/v1/join-tokens/..%2Fagents%2Fx");
  });

  it("only create prints a join token", async () => {
    fake.api.answer("GET", "/api/v1/join-tokens", 200, { joinTokens: [JOIN_JSON] });
    fake.api.answer("DELETE", "/api/v1/join-tokens/jt_feedfacecafe", 200, { joinToken: { ...JOIN_JSON, state: "revoked", revokedBy: "admin" } });
    for (const args of [["list"], ["list", "--all"], ["list", "--json"], ["revoke", "jt_feedfacecafe"], ["revoke", "jt_feedfacecafe", "--json"]]) {
      const run = await cli("join-token", ...args);
      expect(run.code).toBe(0);
      expect(`${run.out}${run.err}`).not.toMatch(/fdj_/);
    }
  });
});
