import type { AgentJson } from "@firedrill/control-plane";
import { describe, expect, it } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess, useFakeApi } from "../testing/fake-api.js";

/** A stand-in control plane that checks the bearer token and records requests; FIREDRILL_* point at it. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-agents-" });
const cli = runCliInProcess;

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
    capabilities: { faultKinds: ["cpu-burn"], root: true, netem: false, nftables: false, tc: false, systemd: false },
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
    fake.api.answer("GET", "/api/v1/agents", 200, { agents: [WEB, STALE, REVOKED, LEGACY] });
    const run = await cli("agents");
    expect(fake.asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`GET /api/v1/agents?limit=1000 Bearer ${TOKEN}`]);
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
    fake.api.answer("GET", "/api/v1/agents", 200, { agents: [WEB, STALE] });
    expect(JSON.parse((await cli("agents", "--json")).out)).toEqual([WEB, STALE]);
    fake.api.answer("GET", "/api/v1/agents", 200, { agents: [WEB] });
    expect((await cli("agents")).err).toBe("");
    fake.api.answer("GET", "/api/v1/agents", 200, { agents: [] });
    expect(await cli("agents")).toEqual({
      code: 0,
      err: "",
      out: "no agents have connected yet: create a join token with firedrill join-token create and start firedrill-agent on a host with this control plane's address and that token\n",
    });
  });
});

describe("firedrill agents: pages", () => {
  const page = (agents: AgentJson[], nextCursor: string | null, total = 5) => ({ agents, nextCursor, total, connected: 1 });
  const ids = (out: string) => out.split("\n").slice(1, -1).map((l) => l.split(" ")[0]);

  it("follows nextCursor to the last page and lists every agent, in the compact view", async () => {
    fake.api.answer("GET", "/api/v1/agents?limit=1000", 200, page([WEB, STALE], "c2"));
    fake.api.answer("GET", "/api/v1/agents?limit=1000&cursor=c2", 200, page([REVOKED, LEGACY], "c3"));
    fake.api.answer("GET", "/api/v1/agents?limit=1000&cursor=c3", 200, page([agent("zz-1")], null));
    const run = await cli("agents");
    expect(fake.asked.map((a) => a.url)).toEqual(["/api/v1/agents?limit=1000", "/api/v1/agents?limit=1000&cursor=c2", "/api/v1/agents?limit=1000&cursor=c3"]);
    expect(run.code).toBe(0);
    expect(ids(run.out)).toEqual(["web-1", "db-1", "old-1", "legacy-1", "zz-1"]);
    expect(run.err).not.toContain("showing");
  });

  it("--limit stops early and says how many there are; --full asks for the host facts", async () => {
    fake.api.answer("GET", "/api/v1/agents?limit=3", 200, page([WEB, STALE], "c2"));
    fake.api.answer("GET", "/api/v1/agents?limit=1&cursor=c2", 200, page([REVOKED], "c3"));
    const run = await cli("agents", "--limit", "3");
    expect(fake.asked.map((a) => a.url)).toEqual(["/api/v1/agents?limit=3", "/api/v1/agents?limit=1&cursor=c2"]);
    expect(ids(run.out)).toEqual(["web-1", "db-1", "old-1"]);
    expect(run.err).toContain("showing 3 of 5 agents (the first by id): raise --limit, or leave it out to list them all\n");

    const full = { ...WEB, facts: { osPlatform: "linux" } as AgentJson["facts"] };
    fake.api.answer("GET", "/api/v1/agents?limit=1000&view=full", 200, page([full], null, 1));
    expect(JSON.parse((await cli("agents", "--full", "--json")).out)).toEqual([full]);
    expect(fake.asked.at(-1)?.url).toBe("/api/v1/agents?limit=1000&view=full");

    expect(await cli("agents", "--limit", "0")).toEqual({ code: 1, out: "", err: 'error: --limit "0" is not valid; use a whole number of at least 1, or leave it out to list every agent\n' });
  });

  it("a control plane from before pagination (every agent, no nextCursor) is read in one request", async () => {
    fake.api.answer("GET", "/api/v1/agents", 200, { agents: [WEB, STALE] });
    const run = await cli("agents");
    expect(fake.asked).toHaveLength(1);
    expect(ids(run.out)).toEqual(["web-1", "db-1"]);
  });
});

describe("firedrill agents revoke", () => {
  const revoked = { ...WEB, connected: false, revokedAt: iso(0) };

  it("posts the reason and says the faults were reverted and confirmed", async () => {
    fake.api.answer("POST", "/api/v1/agents/web-1/revoke", 200, { agent: revoked, faultsReverted: 2, confirmed: true });
    const run = await cli("agents", "revoke", "web-1", "--reason", "host decommissioned");
    expect(fake.asked).toEqual([{ method: "POST", url: "/api/v1/agents/web-1/revoke", authorization: `Bearer ${TOKEN}`, body: { reason: "host decommissioned" } }]);
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
    fake.api.answer("POST", "/api/v1/agents/web-1/revoke", 200, { agent: revoked, faultsReverted: 1, confirmed: false });
    const run = await cli("agents", "revoke", "web-1");
    expect(fake.asked[0]?.body).toEqual({});
    expect(run.code).toBe(0);
    expect(run.out).toBe(
      "agent web-1 (web-1.example) is revoked: it can never connect again with its certificate.\n" +
        "It did not confirm stopping its faults in time (1 fault): its lease reverts them when it runs out.\n" +
        "If the host is gone, forget it with firedrill agents rm web-1\n",
    );
  });

  it("--json prints the answer, after the subcommand or before it", async () => {
    const body = { agent: revoked, faultsReverted: 0, confirmed: true };
    fake.api.answer("POST", "/api/v1/agents/web-1/revoke", 200, body);
    expect(JSON.parse((await cli("agents", "revoke", "web-1", "--json")).out)).toEqual(body);
    expect(JSON.parse((await cli("agents", "--json", "revoke", "web-1")).out)).toEqual(body);
    expect(fake.asked.map((a) => a.url)).toEqual(["/api/v1/agents/web-1/revoke", "/api/v1/agents/web-1/revoke"]);
  });

  it("an unknown agent is a 404, shown as the server words it", async () => {
    fake.api.answer("POST", "/api/v1/agents/nope/revoke", 404, { error: { code: "not_found", message: 'agent "nope" does not exist; list agents with firedrill agents' } });
    expect(await cli("agents", "revoke", "nope")).toEqual({ code: 1, out: "", err: 'error: agent "nope" does not exist; list agents with firedrill agents\n' });
  });
});

describe("firedrill agents rm", () => {
  it("deletes the agent and says so", async () => {
    fake.api.answer("DELETE", "/api/v1/agents/db-1", 200, { removed: { id: "db-1", hostname: "db-1.example" } });
    const run = await cli("agents", "rm", "db-1");
    expect(fake.asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`DELETE /api/v1/agents/db-1 Bearer ${TOKEN}`]);
    expect(run).toEqual({ code: 0, err: "", out: "removed agent db-1 (db-1.example): the control plane has forgotten it\n" });
    expect(JSON.parse((await cli("agents", "rm", "db-1", "--json")).out)).toEqual({ removed: { id: "db-1", hostname: "db-1.example" } });
  });

  it("refuses a connected agent (409) with the way out: revoke it first", async () => {
    fake.api.answer("DELETE", "/api/v1/agents/web-1", 409, { error: { code: "agent_connected", message: "agent web-1 is connected" } });
    expect(await cli("agents", "rm", "web-1")).toEqual({
      code: 1,
      out: "",
      err: "error: agent web-1 is connected; revoke it first: firedrill agents revoke web-1\n",
    });
    // A message that already names the way out is kept as it is.
    const message = "agent web-1 is still connected: revoke it first with firedrill agents revoke web-1";
    fake.api.answer("DELETE", "/api/v1/agents/web-1", 409, { error: { code: "agent_connected", message } });
    expect((await cli("agents", "rm", "web-1")).err).toBe(`error: ${message}\n`);
  });

  it("an unknown agent is a 404; ids are one path segment", async () => {
    expect(await cli("agents", "rm", "nope")).toEqual({ code: 1, out: "", err: "error: no route DELETE /api/v1/agents/nope\n" });
    await cli("agents", "rm", "a/b");
    expect(fake.asked.at(-1)?.url).toBe("/api/v1/agents/a%2Fb");
  });
});
