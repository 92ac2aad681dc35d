/**
 * The zero-trust agent link with real processes and real TLS on loopback: an agent given one
 * control plane's join token refuses another control plane (which never sees the token), and a
 * revoked agent reverts its faults and exits 3, never to come back.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseJoinToken } from "@firedrill/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { connectedAgentId, killAll, runCli, sleep, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";

describe("agent identity on real processes", () => {
  const dirs: { cleanup: () => void }[] = [];
  const dir = (name: string) => {
    const d = tempDir(name);
    dirs.push(d);
    return d.path;
  };
  afterEach(async () => {
    await killAll();
    for (const d of dirs.splice(0)) d.cleanup();
  });

  it("a rogue control plane with another CA: the agent refuses it, sends it nothing, and keeps trying", async () => {
    const real = await startServer({ dataDir: dir("real-cp") });
    const rogue = await startServer({ dataDir: dir("rogue-cp") });
    // The real control plane's token, pointed at the rogue's address (a DNS hijack, a wrong --server).
    const agent = startAgentProcess({ server: rogue.grpcAddr, token: real.joinToken, stateDir: dir("agent") });
    await waitFor("the pinning refusal in the agent's log", () => /expected|pinned|not your control plane|fingerprint/i.test(agent.output()), 20_000);
    await sleep(1500);
    expect(agent.child.exitCode).toBeNull();
    // The rogue saw no enrollment and no agent: the TLS handshake failed before any call.
    const audit = (await api(rogue, "GET", "/api/v1/audit?limit=1000")).body.entries as { route: string }[];
    expect(audit.filter((e) => e.route.includes("AgentService"))).toEqual([]);
    expect((await api(rogue, "GET", "/api/v1/agents")).body.agents).toEqual([]);
    expect(readFileSync(join(rogue.dataDir, "firedrill.db")).includes(parseJoinToken(real.joinToken)!.secret)).toBe(false);
  });

  it("revoke: the host's faults are reverted, the agent exits 3 and cannot come back", async () => {
    const server = await startServer({ dataDir: dir("cp") });
    const stateDir = dir("agent");
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir });
    const agentId = await connectedAgentId(server);
    expect(agentId).toMatch(/^agt_[0-9a-f]{16}$/);
    expect((await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent).toMatchObject({ enrolled: true });
    const started = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 30, cores: 1 }, duration: "10m" });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    await waitFor("the burner thread", () => burnerThreads(agent.pid).length === 1);

    const revoked = await runCli(["agents", "revoke", agentId, "--reason", "host decommissioned", "--json"], {
      FIREDRILL_SERVER: server.httpUrl,
      FIREDRILL_TOKEN: server.adminToken,
    });
    expect(revoked.code, revoked.stderr).toBe(0);
    const answer = JSON.parse(revoked.stdout) as { faultsReverted: number; confirmed: boolean };
    expect(answer.faultsReverted).toBe(1);
    expect(await agent.exited).toBe(3);
    expect(burnerThreads(agent.pid)).toEqual([]);
    const fault = (await api(server, "GET", `/api/v1/faults/${started.body.fault.id}`)).body.fault;
    expect(fault.state).toBe("reverted");

    // The same state dir (its certificate) cannot come back, and exits 3 again.
    const again = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir });
    expect(await again.exited).toBe(3);
    expect(again.output()).toMatch(/revoked/);
    const listed = (await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent;
    expect(listed).toMatchObject({ connected: false, revokedAt: expect.any(String) });
  });

  it("renews its certificate over the link before it expires (a 30 s lifetime), keeping its id and its link", async () => {
    const server = await startServer({ dataDir: dir("cp-renew"), extraArgs: ["--agent-cert-ttl", "30s"] });
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: dir("agent-renew") });
    const agentId = await connectedAgentId(server);
    const first = (await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent.certificateNotAfter as string;
    // Two thirds of 30 s: the agent renews about 20 s after enrolling.
    const renewed = await waitFor(
      "a renewed certificate",
      async () => {
        const now = (await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent;
        return now.certificateNotAfter !== first ? now : undefined;
      },
      40_000,
      500,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; agent output:\n${agent.output().slice(-3000)}`);
    });
    expect(Date.parse(renewed.certificateNotAfter)).toBeGreaterThan(Date.parse(first));
    expect(renewed.connected).toBe(true);
    expect(agent.child.exitCode).toBeNull();
    const audit = (await api(server, "GET", "/api/v1/agents")).body.agents as { id: string }[];
    expect(audit.map((a) => a.id)).toEqual([agentId]);
  }, 90_000);
});
