import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { guardPid, startAgentProcess, startCluster, waitFor } from "./support/processes.js";
import type { TestCluster } from "./support/processes.js";

function guardOf(stateDir: string): { pid: number } | undefined {
  const pid = guardPid(stateDir);
  return pid === undefined ? undefined : { pid };
}

describe("the guard: an out-of-process watchdog beside the agent", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("starts with the agent in its own session, and stops on a clean agent stop", async () => {
    cluster = await startCluster();
    const guard = await waitFor("the guard", () => guardOf(cluster!.stateDir));
    const stat = readFileSync(`/proc/${guard.pid}/stat`, "utf8").slice(readFileSync(`/proc/${guard.pid}/stat`, "utf8").lastIndexOf(")") + 2).split(" ");
    expect(Number(stat[3])).toBe(guard.pid); // session leader: a signal to the agent's group misses it
    cluster.agent.kill("SIGTERM");
    expect(await cluster.agent.exited).toBe(0);
    await waitFor("the guard to exit", () => !existsSync(`/proc/${guard.pid}`), 5000);
    expect(readFileSync(join(cluster.stateDir, "guard.log"), "utf8")).toContain("guard stopped by the agent");
  });

  it("after SIGKILL of the agent, reverts the journal and leaves the report for the next agent", async () => {
    cluster = await startCluster();
    const { server, agent, agentId, stateDir } = cluster;
    const guard = await waitFor("the guard", () => guardOf(stateDir));
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 20 }, duration: "10m" });
    expect(res.status).toBe(201);
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1);
    agent.kill("SIGKILL");
    const killedAt = performance.now();
    await waitFor("the guard to empty the journal", () => readdirSync(join(stateDir, "journal")).length === 0, 5000, 50);
    const revertMs = performance.now() - killedAt;
    expect(revertMs).toBeLessThan(5000);
    await waitFor("the guard to exit", () => !existsSync(`/proc/${guard.pid}`), 5000);
    expect(readFileSync(join(stateDir, "guard.log"), "utf8")).toContain("guard reverted the journal");
    expect(readdirSync(join(stateDir, "reports"))).toEqual([`${res.body.fault.id}.json`]);

    // The next agent finds nothing to revert and delivers the guard's report.
    const next = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir });
    const fault = await waitFor("the recovery report", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${res.body.fault.id}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("recovery");
    expect(next.output()).not.toContain("reverted faults left in the journal");
  });

  it("a restarted agent takes over from a guard that has not finished", async () => {
    cluster = await startCluster();
    const { server, agent, agentId, stateDir } = cluster;
    const guard = await waitFor("the guard", () => guardOf(stateDir));
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 20 }, duration: "10m" });
    expect(res.status).toBe(201);
    // Freeze the guard so that it is still there, undone, when the new agent starts.
    process.kill(guard.pid, "SIGSTOP");
    agent.kill("SIGKILL");
    await agent.exited;
    expect(readdirSync(join(stateDir, "journal"))).toHaveLength(1);
    const next = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir });
    await waitFor("the takeover", () => next.output().includes("took over from the guard of a previous agent"), 15_000);
    await waitFor("the old guard gone", () => !existsSync(`/proc/${guard.pid}`) || readFileSync(`/proc/${guard.pid}/stat`, "utf8").includes(") Z"), 10_000);
    await waitFor("journal emptied by the new agent", () => readdirSync(join(stateDir, "journal")).length === 0);
    const fault = await waitFor("the recovery report", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${res.body.fault.id}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("recovery");
    expect(guardOf(stateDir)?.pid).not.toBe(guard.pid);
  });
});
