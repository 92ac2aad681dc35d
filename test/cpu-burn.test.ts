import { cpus } from "node:os";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads, machineCpu, processCpu } from "./support/cpu.js";
import { sleep, startCluster, waitFor } from "./support/processes.js";
import type { ServerHandle, TestCluster, TestProcess } from "./support/processes.js";

describe("cpu-burn end to end: measured load appears and disappears on every revert path", () => {
  let cluster: TestCluster;
  let server: ServerHandle;
  let agent: TestProcess;
  let agentId: string;

  beforeAll(async () => {
    cluster = await startCluster();
    ({ server, agent, agentId } = cluster);
  });
  // A failed test must not leave its burn running into the next one.
  afterEach(async () => {
    await api(server, "DELETE", `/api/v1/agents/${agentId}/faults`);
  });
  afterAll(() => cluster.close());

  /** Starts a burn as the admin; `overridePolicy` (a reason) lets a second burn past the one-per-kind rule. */
  const start = async (params: Record<string, unknown>, duration: string, overridePolicy?: string) => {
    const body = { kind: "cpu-burn", params, duration, ...(overridePolicy ? { overridePolicy } : {}) };
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, body);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.fault.id as string;
  };
  const fault = async (id: string) => (await api(server, "GET", `/api/v1/faults/${id}`)).body.fault;
  const waitReverted = (id: string, ms = 10_000) => waitFor(`fault ${id} reverted`, async () => ((await fault(id)).state === "reverted" ? fault(id) : undefined), ms);

  it("raises machine CPU by about what was asked, and it is gone when the duration ends", async () => {
    // Baseline once the agent has settled (its start-up compiles TypeScript).
    await waitFor("the agent to be idle", async () => (await processCpu(agent.pid, 500)) < 5, 20_000);
    const baseline = await machineCpu(2000);
    const id = await start({ load: 60, cores: 1 }, "6s");
    await sleep(500);
    const [machine, proc] = await Promise.all([machineCpu(3000), processCpu(agent.pid, 3000)]);
    // One core at 60% on an N-core machine raises the machine by 60/N points.
    const expectedRise = 60 / cpus().length;
    expect(machine - baseline).toBeGreaterThan(expectedRise * 0.5);
    expect(machine - baseline).toBeLessThan(expectedRise * 1.7);
    expect(proc).toBeGreaterThan(45);
    expect(proc).toBeLessThan(80);
    const reverted = await waitReverted(id);
    expect(reverted.reason).toBe("duration");
    expect(burnerThreads(agent.pid)).toEqual([]);
    // Gone for good: no burner thread comes back (the agent's own CPU use is not the burn's to assert).
    await sleep(1000);
    expect(burnerThreads(agent.pid)).toEqual([]);
    // The agent reported what it measured while burning.
    const events = (await api(server, "GET", `/api/v1/faults/${id}`)).body.events as any[];
    const measured = events.filter((e) => e.type === "progress").map((e) => e.measurements.burner_percent);
    expect(measured.length).toBeGreaterThan(0);
    expect(Math.max(...measured)).toBeGreaterThan(45);
  });

  it("is gone on stop", async () => {
    const id = await start({ load: 80, cores: 1 }, "5m");
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1);
    expect(await processCpu(agent.pid, 1000)).toBeGreaterThan(50);
    const res = await api(server, "DELETE", `/api/v1/agents/${agentId}/faults/${id}`);
    expect(res.status).toBe(200);
    expect(res.body.fault.state).toBe("reverted");
    expect(res.body.fault.reason).toBe("stopped");
    expect(burnerThreads(agent.pid)).toEqual([]);
    // Gone for good: no burner thread comes back (the agent's own CPU use is not the burn's to assert).
    await sleep(1000);
    expect(burnerThreads(agent.pid)).toEqual([]);
  });

  it("is gone on stop-all, on every core", async () => {
    const first = await start({ load: 50, cores: 1 }, "5m");
    await waitFor("the first burn", () => burnerThreads(agent.pid).length === 1);
    // The server policy allows one cpu-burn per host at a time: a second is refused, naming the rule...
    const refused = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 30, cores: "all" }, duration: "5m" });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe("policy_refused");
    expect(refused.body.error.message).toContain("one-fault-per-kind-per-host");
    expect(burnerThreads(agent.pid)).toHaveLength(1);
    // ...unless an admin overrides the policy, saying why.
    const ids = [first, await start({ load: 30, cores: "all" }, "5m", "test: two burns at once for stop-all")];
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1 + cpus().length);
    const res = await api(server, "DELETE", `/api/v1/agents/${agentId}/faults`);
    expect(res.status).toBe(200);
    for (const id of ids) expect(await fault(id)).toMatchObject({ state: "reverted", reason: "stopped" });
    expect(burnerThreads(agent.pid)).toEqual([]);
    // Gone for good: no burner thread comes back (the agent's own CPU use is not the burn's to assert).
    await sleep(1000);
    expect(burnerThreads(agent.pid)).toEqual([]);
  });
});
