/**
 * `firedrill-agent --server a,b`: the agent fails over between the addresses of one control plane
 * (issue 16). A real control plane and a real agent process on loopback; the control plane is
 * reached through two TCP proxies given as the agent's two addresses, and one of them dies for
 * real. The agent's fault keeps running across the failover (the lease is renewed by the new
 * stream well within its TTL) and is still the control plane's to stop.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { AGENT_BIN, freePort, killAll, spawnNode, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";
import { startTcpProxy } from "./support/tcp-proxy.js";
import type { TcpProxy } from "./support/tcp-proxy.js";

describe("agent failover between control plane addresses (real processes, real TCP)", () => {
  const dirs: { cleanup: () => void }[] = [];
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    for (const p of proxies.splice(0)) await p.close();
    await killAll();
    for (const d of dirs.splice(0)) d.cleanup();
  });
  const dir = (name: string) => {
    const d = tempDir(name);
    dirs.push(d);
    return d.path;
  };
  const proxy = async (server: ServerHandle) => {
    const p = await startTcpProxy(server.grpcAddr);
    proxies.push(p);
    return p;
  };
  const statusOf = (stateDir: string) => JSON.parse(readFileSync(join(stateDir, "status.json"), "utf8")) as { connected: boolean; server: string; servers?: string[] };
  /** The agent, once connected (after `after`, epoch ms, when given). */
  const connected = (server: ServerHandle, after = 0, timeoutMs = 30_000) =>
    waitFor("the agent to connect", async () => {
      const agents = (await api(server, "GET", "/api/v1/agents")).body.agents as { id: string; connected: boolean; connectedAt: string }[];
      return agents.find((a) => a.connected && Date.parse(a.connectedAt) > after);
    }, timeoutMs, 20);
  const agentStatus = async (stateDir: string) => {
    const proc = spawnNode(AGENT_BIN, ["status", "--state-dir", stateDir]);
    const code = await proc.exited;
    return { code, output: proc.output() };
  };

  it("the address in use dies mid-fault: connected again via the next one within seconds, the fault still running, then stopped through the API", async () => {
    // Lease 15 s: a failover that took longer would end the burn (reason lease); it must not.
    const server = await startServer({ dataDir: dir("cp"), leaseTtl: "15s" });
    const [p1, p2] = [await proxy(server), await proxy(server)];
    const stateDir = dir("agent");
    const agent = startAgentProcess({ server: `${p1.address},${p2.address}`, token: server.joinToken, stateDir });
    const { id: agentId } = await connected(server);
    // status.json is written on the Welcome, a moment after the control plane lists the agent.
    await waitFor("status.json to say connected", () => statusOf(stateDir).connected, 5000);
    expect(statusOf(stateDir)).toMatchObject({ connected: true, server: p1.address, servers: [p1.address, p2.address] });

    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 5, cores: 1 }, duration: "10m" });
    expect(res.status).toBe(201);
    const faultId = res.body.fault.id as string;
    await waitFor("the burn to run", () => burnerThreads(agent.pid).length === 1, 10_000);
    await waitFor("the control plane to know it runs", async () => (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault.state === "running");

    // p1 dies: its connections are cut and nothing listens there any more.
    const killedAt = Date.now();
    await p1.close();
    proxies.splice(proxies.indexOf(p1), 1);
    const again = await connected(server, killedAt, 10_000);
    const failoverMs = Date.parse(again.connectedAt) - killedAt;
    console.log(`agent failover: connected via the second address ${failoverMs} ms after the first died (lease 15 s)`);
    expect(again.id).toBe(agentId);
    expect(failoverMs).toBeLessThan(5000);
    await waitFor("status.json to name the second address", () => {
      const s = statusOf(stateDir);
      return s.connected && s.server === p2.address;
    }, 5000);
    const shown = await agentStatus(stateDir);
    expect(shown.code).toBe(0);
    expect(shown.output).toContain(`connected to ${p2.address} since`);
    expect(shown.output).toContain(`fails over to ${p1.address}`);
    expect(agent.output()).toMatch(new RegExp(`"server":"${p2.address}".*"msg":"connected to the control plane"`));

    // The burn was never reverted: the same thread, the fault still running on both sides.
    expect(burnerThreads(agent.pid)).toHaveLength(1);
    expect((await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault.state).toBe("running");
    expect(agent.output()).not.toMatch(/lease expired/);

    // Still the control plane's to stop, over the new stream.
    const stop = await api(server, "DELETE", `/api/v1/agents/${agentId}/faults/${faultId}`);
    // 200 once the agent confirmed within the API's wait, 202 if not yet.
    expect([200, 202]).toContain(stop.status);
    const fault = await waitFor("the revert to be recorded", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("stopped");
    expect(burnerThreads(agent.pid)).toHaveLength(0);
    expect(agent.child.exitCode).toBeNull();
  });

  it("the first address is dead from the start: the agent enrolls and connects via the second, and says why the first failed", async () => {
    const server = await startServer({ dataDir: dir("cp") });
    const p2 = await proxy(server);
    const dead = `127.0.0.1:${await freePort()}`;
    const stateDir = dir("agent");
    const agent = startAgentProcess({ server: `${dead},${p2.address}`, token: server.joinToken, stateDir });
    const startedAt = Date.now();
    await connected(server, 0, 20_000);
    await waitFor("status.json to say connected", () => statusOf(stateDir).connected, 5000);
    console.log(`agent with a dead first address: connected via the second ${Date.now() - startedAt} ms after start (enrollment included)`);
    expect(statusOf(stateDir)).toMatchObject({ connected: true, server: p2.address });
    expect(agent.output()).toContain("could not verify the control plane's certificate");
    expect(agent.output()).toContain(`cannot connect to the control plane at ${dead}: connection refused`);
  });
});
