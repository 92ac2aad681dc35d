import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { AGENT_BIN, connectedAgentId, killAll, spawnNode, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";

describe("journal: faults left by a killed agent are reverted before new work", () => {
  const dirs: { cleanup: () => void }[] = [];
  afterEach(async () => {
    await killAll();
    for (const d of dirs.splice(0)) d.cleanup();
  });

  async function killedMidBurn(server: ServerHandle, stateDir: string) {
    // Without the guard: this is the journal's own path (restart, recover).
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir, extraArgs: ["--no-guard"] });
    const agentId = await connectedAgentId(server);
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 40 }, duration: "10m" });
    expect(res.status).toBe(201);
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1);
    const journal = readdirSync(join(stateDir, "journal"));
    expect(journal).toEqual([`${res.body.fault.id}.json`]);
    agent.kill("SIGKILL");
    await agent.exited;
    // Kill -9 leaves the record behind: nothing had a chance to clean up.
    expect(readdirSync(join(stateDir, "journal"))).toEqual(journal);
    await waitFor("agent disconnected", async () => !(await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent.connected);
    return { agentId, faultId: res.body.fault.id as string };
  }

  it("is reverted on the next start, and reported with reason recovery", async () => {
    const cp = tempDir("cp");
    const st = tempDir("agent");
    dirs.push(cp, st);
    const server = await startServer({ dataDir: cp.path });
    const { faultId } = await killedMidBurn(server, st.path);

    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    await waitFor("journal emptied", () => readdirSync(join(st.path, "journal")).length === 0);
    const fault = await waitFor("recovery reported", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("recovery");
    expect(agent.output()).toContain("reverted faults left in the journal");
  });

  it("is reverted by firedrill-agent recover, which then exits", async () => {
    const cp = tempDir("cp");
    const st = tempDir("agent");
    dirs.push(cp, st);
    const server = await startServer({ dataDir: cp.path });
    const { faultId } = await killedMidBurn(server, st.path);

    const recover = spawnNode(AGENT_BIN, ["recover", "--state-dir", st.path]);
    expect(await recover.exited).toBe(0);
    expect(recover.output()).toContain(`reverted ${faultId} (cpu-burn)`);
    expect(readdirSync(join(st.path, "journal"))).toEqual([]);

    const again = spawnNode(AGENT_BIN, ["recover", "--state-dir", st.path]);
    expect(await again.exited).toBe(0);
    expect(again.output()).toContain("nothing to revert");

    // The next agent start delivers the recovery report.
    startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    const fault = await waitFor("recovery reported", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("recovery");
  });

  it("recover refuses to run beside a live agent on the same state dir", async () => {
    const cp = tempDir("cp");
    const st = tempDir("agent");
    dirs.push(cp, st);
    const server = await startServer({ dataDir: cp.path });
    startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    await waitFor("agent", async () => (await api(server, "GET", "/api/v1/agents")).body.agents[0]?.connected);
    const recover = spawnNode(AGENT_BIN, ["recover", "--state-dir", st.path]);
    expect(await recover.exited).toBe(1);
    expect(recover.output()).toMatch(/is in use by firedrill-agent pid \d+; stop that agent first/);
  });
});
