import type { FaultJson } from "@firedrill/control-plane";
import { describe, expect, it } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess, useFakeApi } from "../testing/fake-api.js";

/** A stand-in control plane that checks the bearer token and records requests; FIREDRILL_* point at it. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-fault-list-" });
const cli = runCliInProcess;

function fault(n: number, fields: Partial<FaultJson> = {}): FaultJson {
  const now = new Date().toISOString();
  return {
    id: `flt_${n.toString(16).padStart(16, "0")}`,
    agentId: "web-1",
    runId: null,
    kind: "cpu-burn",
    params: {},
    durationMs: 60_000,
    state: "running",
    reason: null,
    error: null,
    createdAt: now,
    startedAt: now,
    endedAt: null,
    measurements: null,
    actor: "alice",
    policyOverride: null,
    details: [],
    stopRequestedAt: null,
    stopReason: null,
    stopRequestedBy: null,
    ...fields,
  };
}

const faults = (from: number, count: number) => Array.from({ length: count }, (_, i) => fault(from + i));
const ids = (out: string) => out.split("\n").slice(1, -1).map((l) => l.split(" ")[0]);

describe("firedrill fault list", () => {
  it("asks for one page of 100 active faults by default; no more note when it was the last page", async () => {
    fake.api.answer("GET", "/api/v1/faults", 200, { faults: faults(1, 2), nextCursor: null });
    const run = await cli("fault", "list");
    expect(fake.asked.map((a) => `${a.method} ${a.url} ${a.authorization}`)).toEqual([`GET /api/v1/faults?state=active&limit=100 Bearer ${TOKEN}`]);
    expect(run.code).toBe(0);
    expect(ids(run.out)).toEqual([fault(1).id, fault(2).id]);
    expect(run.err).toBe("");
  });

  it("follows nextCursor up to --limit (pages of at most 1000) and says when more faults match", async () => {
    fake.api.answer("GET", "/api/v1/faults?state=all&runId=run_1&limit=1000", 200, { faults: faults(0, 1000), nextCursor: "c2" });
    fake.api.answer("GET", "/api/v1/faults?state=all&runId=run_1&limit=500&cursor=c2", 200, { faults: faults(1000, 500), nextCursor: "c3" });
    const run = await cli("fault", "list", "--all", "--run", "run_1", "--limit", "1500", "--json");
    expect(fake.asked.map((a) => a.url)).toEqual(["/api/v1/faults?state=all&runId=run_1&limit=1000", "/api/v1/faults?state=all&runId=run_1&limit=500&cursor=c2"]);
    expect((JSON.parse(run.out) as FaultJson[]).map((f) => f.id)).toEqual(faults(0, 1500).map((f) => f.id));

    fake.api.reset();
    fake.api.answer("GET", "/api/v1/faults?state=active&agent=web-1&limit=3", 200, { faults: faults(0, 3), nextCursor: "c2" });
    const table = await cli("fault", "list", "--agent", "web-1", "--limit", "3");
    expect(fake.asked).toHaveLength(1);
    expect(ids(table.out)).toHaveLength(3);
    expect(table.err).toBe("showing the newest 3: more faults match; raise --limit to see more\n");
  });

  it("reads a control plane from before pagination (no nextCursor) in one request", async () => {
    fake.api.answer("GET", "/api/v1/faults?state=active&limit=1000", 200, { faults: faults(0, 2) });
    const run = await cli("fault", "list", "--limit", "5000");
    expect(fake.asked).toHaveLength(1);
    expect(ids(run.out)).toHaveLength(2);
  });

  it("checks --limit, and says when nothing matched", async () => {
    expect(await cli("fault", "list", "--limit", "0")).toEqual({ code: 1, out: "", err: 'error: --limit "0" is not valid; use a whole number of at least 1\n' });
    fake.api.answer("GET", "/api/v1/faults", 200, { faults: [], nextCursor: null });
    expect((await cli("fault", "list", "--run", "run_9")).out).toBe("no active faults of run run_9 (--all shows ended ones)\n");
  });
});
