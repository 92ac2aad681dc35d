import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { sleep, startCluster, waitFor } from "./support/processes.js";
import type { ServerHandle, TestCluster, TestProcess } from "./support/processes.js";

/** A thread's scheduler times (ns on a CPU, ns runnable waiting for one) and its voluntary sleeps. */
function threadSched(pid: number, tid: number): { wantedNs: number; onCpuNs: number; slept: number } {
  const [onCpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
  const slept = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"))?.[1]);
  return { wantedNs: onCpu! + wait!, onCpuNs: onCpu!, slept };
}

/**
 * What a burner thread does over `ms`, measured by the kernel: its duty cycle (percent of the time
 * it ran or waited to run), how much CPU it got (ns) and how many times it went to sleep on its own.
 */
async function burnerDuty(pid: number, tid: number, ms: number): Promise<{ duty: number; gotNs: number; slept: number }> {
  const before = threadSched(pid, tid);
  const t0 = performance.now();
  await sleep(ms);
  const after = threadSched(pid, tid);
  const wall = (performance.now() - t0) * 1e6;
  return { duty: ((after.wantedNs - before.wantedNs) / wall) * 100, gotNs: after.onCpuNs - before.onCpuNs, slept: after.slept - before.slept };
}

// The assertions are about what the agent controls — burner threads that exist, on their cores,
// applying the asked duty cycle, and gone on every path — never about the CPU share the machine
// gives them (other work competes for it). Accuracy on a quiet machine: `pnpm bench burn`.
describe("cpu-burn end to end: the burn appears and disappears on every revert path", () => {
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

  it("runs a burner at the asked duty cycle, and it is gone when the duration ends", async () => {
    const id = await start({ load: 60, cores: 1 }, "6s");
    const [tid] = await waitFor("the burner thread", () => (burnerThreads(agent.pid).length === 1 ? burnerThreads(agent.pid) : undefined));
    await sleep(300);
    const burn = await burnerDuty(agent.pid, tid!, 3000);
    // It wants a CPU at least 60% of the time (a busy machine can only raise that: late wake-ups
    // count as wanting), sleeps in its periods (about 30 times in 3 s), and does get CPU.
    expect(burn.duty).toBeGreaterThan(50);
    expect(burn.slept).toBeGreaterThanOrEqual(8);
    expect(burn.gotNs).toBeGreaterThan(0);
    const reverted = await waitReverted(id);
    expect(reverted.reason).toBe("duration");
    expect(burnerThreads(agent.pid)).toEqual([]);
    // Gone for good: no burner thread comes back (the agent's own CPU use is not the burn's to assert).
    await sleep(1000);
    expect(burnerThreads(agent.pid)).toEqual([]);
    // The agent reported what it measured while burning.
    const events = (await api(server, "GET", `/api/v1/faults/${id}`)).body.events as any[];
    const progress = events.filter((e) => e.type === "progress").map((e) => e.measurements);
    expect(progress.length).toBeGreaterThan(0);
    expect(Math.max(...progress.map((m) => m.duty_percent))).toBeGreaterThan(50);
    expect(Math.max(...progress.map((m) => m.burner_percent))).toBeGreaterThan(0);
    expect(progress.every((m) => m.pinned === 1 && m.load_asked === 60)).toBe(true);
  });

  it("is gone on stop", async () => {
    const id = await start({ load: 80, cores: 1 }, "5m");
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1);
    expect((await burnerDuty(agent.pid, burnerThreads(agent.pid)[0]!, 1000)).duty).toBeGreaterThan(70);
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
