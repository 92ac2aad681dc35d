import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentJson } from "@firedrill/control-plane";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { runCli } from "../program.js";

const TOKEN = "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

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
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        return reply(401, { error: { code: "unauthenticated", message: "this endpoint needs an API token: send Authorization: Bearer <token>" } });
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
  dir = mkdtempSync(join(tmpdir(), "firedrill-cli-agents-"));
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
const DAY = 86_400_000;

function agent(id: string, fields: Partial<AgentJson> = {}): AgentJson {
  return {
    id,
    hostname: `${id}.example`,
    version: "0.1.0",
    labels: { app: "web" },
    connected: true,
    firstSeenAt: iso(-10 * DAY),
    lastSeenAt: iso(-500),
    connectedAt: iso(-3_600_000),
    instanceId: null,
    availabilityZone: null,
    facts: {} as AgentJson["facts"],
    capabilities: { faultKinds: ["cpu-burn"], root: true, netem: false, nftables: false, tc: false },
    activeFaults: 0,
    enrolled: true,
    certificateNotAfter: iso(364 * DAY + 60_000),
    revokedAt: null,
    stale: false,
    ...fields,
  };
}

const WEB = agent("web-1", { activeFaults: 2 });
const STALE = agent("db-1", { connected: false, lastSeenAt: iso(-9 * DAY - 1000), stale: true, certificateNotAfter: iso(-2 * DAY - 1000) });
const REVOKED = agent("old-1", { connected: false, lastSeenAt: iso(-3 * 60_000 - 1000), revokedAt: iso(-3 * 60_000), labels: {} });
const LEGACY = agent("legacy-1", { hostname: "", enrolled: false, certificateNotAfter: null });

describe("firedrill agents", () => {
  it("marks stale and revoked agents, shows certificate expiry, and says what to do about them on stderr", async () => {
    answers["GET /api/v1/agents"] = { status: 200, body: { agents: [WEB, STALE, REVOKED, LEGACY] } };
    const run = await cli("agents");
    expect(asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`GET /api/v1/agents Bearer ${TOKEN}`]);
    expect(run.code).toBe(0);
    expect(run.out).toBe(
      [
        "ID        HOSTNAME       CONNECTED     LAST SEEN  CERT EXPIRES    LABELS   FAULTS",
        "web-1     web-1.example  yes           now        in 364d         app=web  2",
        "db-1      db-1.example   no (stale)    9d ago     expired 2d ago  app=web  0",
        "old-1     old-1.example  no (revoked)  3m ago     in 364d         -        0",
        "legacy-1  -              yes           now        -               app=web  0",
        "",
      ].join("\n"),
    );
    expect(run.err).toBe(
      "1 stale agent is unseen for longer than the server's --agent-stale-after and never targeted: if a host is gone, forget its agent with firedrill agents rm ID\n" +
        "1 revoked agent can never connect again with its certificate: forget it with firedrill agents rm ID\n",
    );
  });

  it("--json prints the records; no hint when nothing is stale or revoked; an empty list says how to enroll", async () => {
    answers["GET /api/v1/agents"] = { status: 200, body: { agents: [WEB, STALE] } };
    expect(JSON.parse((await cli("agents", "--json")).out)).toEqual([WEB, STALE]);
    answers["GET /api/v1/agents"] = { status: 200, body: { agents: [WEB] } };
    expect((await cli("agents")).err).toBe("");
    answers["GET /api/v1/agents"] = { status: 200, body: { agents: [] } };
    expect(await cli("agents")).toEqual({
      code: 0,
      err: "",
      out: "no agents have connected yet: create a join token with firedrill join-token create and start firedrill-agent on a host with this control plane's address and that token\n",
    });
  });
});

describe("firedrill agents revoke", () => {
  const revoked = { ...WEB, connected: false, revokedAt: iso(0) };

  it("posts the reason and says the faults were reverted and confirmed", async () => {
    answers["POST /api/v1/agents/web-1/revoke"] = { status: 200, body: { agent: revoked, faultsReverted: 2, confirmed: true } };
    const run = await cli("agents", "revoke", "web-1", "--reason", "host decommissioned");
    expect(asked).toEqual([{ method: "POST", url: "/api/v1/agents/web-1/revoke", authorization: `Bearer ${TOKEN}`, body: { reason: "host decommissioned" } }]);
    expect(run).toEqual({
      code: 0,
      err: "",
      out:
        "agent web-1 (web-1.example) is revoked: it can never connect again with its certificate.\n" +
        "It stopped all its faults and confirmed: 2 faults reverted.\n" +
        "If the host is gone, forget it with firedrill agents rm web-1\n",
    });
  });

  it("says the lease reverts the faults when the agent did not confirm; sends {} without --reason", async () => {
    answers["POST /api/v1/agents/web-1/revoke"] = { status: 200, body: { agent: revoked, faultsReverted: 1, confirmed: false } };
    const run = await cli("agents", "revoke", "web-1");
    expect(asked[0]?.body).toEqual({});
    expect(run.code).toBe(0);
    expect(run.out).toBe(
      "agent web-1 (web-1.example) is revoked: it can never connect again with its certificate.\n" +
        "It did not confirm stopping its faults in time (1 fault): its lease reverts them when it runs out.\n" +
        "If the host is gone, forget it with firedrill agents rm web-1\n",
    );
  });

  it("--json prints the answer, after the subcommand or before it", async () => {
    const body = { agent: revoked, faultsReverted: 0, confirmed: true };
    answers["POST /api/v1/agents/web-1/revoke"] = { status: 200, body };
    expect(JSON.parse((await cli("agents", "revoke", "web-1", "--json")).out)).toEqual(body);
    expect(JSON.parse((await cli("agents", "--json", "revoke", "web-1")).out)).toEqual(body);
    expect(asked.map((a) => a.url)).toEqual(["/api/v1/agents/web-1/revoke", "/api/v1/agents/web-1/revoke"]);
  });

  it("an unknown agent is a 404, shown as the server words it", async () => {
    answers["POST /api/v1/agents/nope/revoke"] = { status: 404, body: { error: { code: "not_found", message: 'agent "nope" does not exist; list agents with firedrill agents' } } };
    expect(await cli("agents", "revoke", "nope")).toEqual({ code: 1, out: "", err: 'error: agent "nope" does not exist; list agents with firedrill agents\n' });
  });
});

describe("firedrill agents rm", () => {
  it("deletes the agent and says so", async () => {
    answers["DELETE /api/v1/agents/db-1"] = { status: 200, body: { removed: { id: "db-1", hostname: "db-1.example" } } };
    const run = await cli("agents", "rm", "db-1");
    expect(asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`DELETE /api/v1/agents/db-1 Bearer ${TOKEN}`]);
    expect(run).toEqual({ code: 0, err: "", out: "removed agent db-1 (db-1.example): the control plane has forgotten it\n" });
    expect(JSON.parse((await cli("agents", "rm", "db-1", "--json")).out)).toEqual({ removed: { id: "db-1", hostname: "db-1.example" } });
  });

  it("refuses a connected agent (409) with the way out: revoke it first", async () => {
    answers["DELETE /api/v1/agents/web-1"] = { status: 409, body: { error: { code: "agent_connected", message: "agent web-1 is connected" } } };
    expect(await cli("agents", "rm", "web-1")).toEqual({
      code: 1,
      out: "",
      err: "error: agent web-1 is connected; revoke it first: firedrill agents revoke web-1\n",
    });
    // A message that already names the way out is kept as it is.
    const message = "agent web-1 is still connected: revoke it first with firedrill agents revoke web-1";
    answers["DELETE /api/v1/agents/web-1"] = { status: 409, body: { error: { code: "agent_connected", message } } };
    expect((await cli("agents", "rm", "web-1")).err).toBe(`error: ${message}\n`);
  });

  it("an unknown agent is a 404; ids are one path segment", async () => {
    expect(await cli("agents", "rm", "nope")).toEqual({ code: 1, out: "", err: "error: no route DELETE /api/v1/agents/nope\n" });
    await cli("agents", "rm", "a/b");
    expect(asked.at(-1)?.url).toBe("/api/v1/agents/a%2Fb");
  });
});
