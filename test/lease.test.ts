import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { connectedAgentId, killAll, sleep, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";

describe("lease: the agent reverts on its own when the control plane is gone", () => {
  const dirs: { cleanup: () => void }[] = [];
  afterEach(async () => {
    await killAll();
    for (const d of dirs.splice(0)) d.cleanup();
  });

  it("SIGKILL the control plane mid-burn: the burn is gone within TTL + 1 s, reported as lease on return", async () => {
    const cp = tempDir("cp");
    const st = tempDir("agent");
    dirs.push(cp, st);
    let server = await startServer({ dataDir: cp.path, leaseTtl: "3s" });
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    const agentId = await connectedAgentId(server);
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 70, cores: 1 }, duration: "10m" });
    expect(res.status).toBe(201);
    const faultId = res.body.fault.id as string;
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1);

    server.proc.kill("SIGKILL");
    const killedAt = performance.now();
    await waitFor("the burn to stop", () => burnerThreads(agent.pid).length === 0, 10_000, 50);
    const revertMs = performance.now() - killedAt;
    expect(revertMs).toBeLessThan(3000 + 1000);
    // Gone for good: no burner thread comes back (the agent's own CPU use is not the burn's to assert).
    await sleep(1000);
    expect(burnerThreads(agent.pid)).toEqual([]);
    expect(agent.child.exitCode).toBeNull();

    const [grpcPort, httpPort] = [server.grpcAddr, server.httpUrl].map((a) => Number(a.split(":").at(-1)));
    server = await startServer({ dataDir: cp.path, grpcPort: grpcPort!, httpPort: httpPort!, leaseTtl: "3s" });
    const fault = await waitFor("the lease revert to be reported", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("lease");
  });
});
