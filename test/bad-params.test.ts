import { FAULT_KINDS } from "@firedrill/protocol";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { cliEnv, runCli, startCluster } from "./support/processes.js";
import type { ServerHandle, TestCluster, TestProcess } from "./support/processes.js";

describe("bad fault requests get precise errors and start nothing", () => {
  let cluster: TestCluster;
  let server: ServerHandle;
  let agent: TestProcess;
  let agentId: string;

  beforeAll(async () => {
    cluster = await startCluster();
    ({ server, agent, agentId } = cluster);
  });
  afterAll(() => cluster.close());

  const cases: [string, Record<string, unknown>, { field: string; message: string }][] = [
    ["load 0", { kind: "cpu-burn", params: { load: 0 }, duration: "30s" }, { field: "params.load", message: "0 is below the minimum 1" }],
    ["load 150", { kind: "cpu-burn", params: { load: 150 }, duration: "30s" }, { field: "params.load", message: "150 is above the maximum 100" }],
    ["unknown kind", { kind: "cpu-melt", params: {}, duration: "30s" }, { field: "kind", message: `unknown fault kind "cpu-melt"; use one of: ${FAULT_KINDS.join(", ")}` }],
    ["duration abc", { kind: "cpu-burn", params: { load: 50 }, duration: "abc" }, { field: "duration", message: '"abc" is not a duration; use e.g. 500ms, 30s, 5m, 1h30m' }],
    ["duration 13h", { kind: "cpu-burn", params: { load: 50 }, duration: "13h" }, { field: "duration", message: "13h is longer than the maximum 12h" }],
    ["unknown param", { kind: "cpu-burn", params: { lod: 50 }, duration: "30s" }, { field: "params.lod", message: "unknown parameter for cpu-burn; allowed: load, cores" }],
  ];

  it.each(cases)("HTTP API: %s", async (_name, body, issue) => {
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, body);
    expect(res.status).toBe(400);
    expect(res.body.error.issues).toContainEqual(issue);
    expect(res.body.error.message).toContain(`${issue.field}: ${issue.message}`);
  });

  it("an agent-side check (more cores than the host has) is refused with the agent's reason", async () => {
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { cores: 512 }, duration: "30s" });
    expect(res.status).toBe(422);
    expect(res.body.error.message).toMatch(/^params.cores: 512 is more than the \d+ CPUs of this host/);
  });

  it("CLI: says what is wrong and exits 1", async () => {
    const env = cliEnv(server);
    const bad = await runCli(["fault", "start", "--agent", agentId, "--kind", "cpu-burn", "--param", "load=150", "--duration", "abc"], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("params.load: 150 is above the maximum 100");
    expect(bad.stderr).toContain('duration: "abc" is not a duration');
    const unknownAgent = await runCli(["fault", "start", "--agent", "agt_nope", "--kind", "cpu-burn", "--duration", "30s"], env);
    expect(unknownAgent.code).toBe(1);
    expect(unknownAgent.stderr).toMatch(/agt_nope/);
  });

  it("nothing was started anywhere", async () => {
    expect(burnerThreads(agent.pid)).toEqual([]);
    expect(readdirSync(join(cluster.stateDir, "journal"))).toEqual([]);
    const active = (await api(server, "GET", "/api/v1/faults?state=active")).body.faults;
    expect(active).toEqual([]);
  });
});
