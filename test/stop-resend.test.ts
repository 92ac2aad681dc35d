/**
 * A stop is never lost (issue 10): a real control plane and a real agent process on loopback; the
 * link between them is broken for real (a TCP proxy that drops every connection, or SIGSTOP of the
 * agent) while the control plane wants a cpu-burn ended. The agent comes back within its lease
 * still burning; the stop is sent again right after its Welcome and the burner thread is gone.
 */
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { cliEnv, killAll, runCli, sleep, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle, TestProcess } from "./support/processes.js";
import { startTcpProxy } from "./support/tcp-proxy.js";
import type { TcpProxy } from "./support/tcp-proxy.js";

const LABELS = "app=web,firedrill:opt-in=true";

const BURN = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: link-blink }
spec:
  hypothesis: "web keeps answering while its host burns CPU"
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 10m }
`;

/** Polls every 10 ms until the agent has no burner thread; returns Date.now() at that moment. */
async function burnGone(pid: number, timeoutMs = 10_000): Promise<number> {
  return waitFor("the burner thread to be gone", () => (burnerThreads(pid).length === 0 ? Date.now() : undefined), timeoutMs, 10);
}

describe("a stop is never lost (real agent, real link breaks)", () => {
  const dirs: { cleanup: () => void }[] = [];
  let proxy: TcpProxy | undefined;
  let frozen: TestProcess | undefined;
  afterEach(async () => {
    frozen?.kill("SIGCONT");
    frozen = undefined;
    await proxy?.close();
    proxy = undefined;
    await killAll();
    for (const d of dirs.splice(0)) d.cleanup();
  });
  const dir = (name: string) => {
    const d = tempDir(name);
    dirs.push(d);
    return d.path;
  };
  const agentOf = async (server: ServerHandle) =>
    waitFor("the agent to connect", async () => {
      const agents = (await api(server, "GET", "/api/v1/agents")).body.agents as { id: string; connected: boolean; connectedAt: string }[];
      return agents.find((a) => a.connected);
    }, 30_000);
  const disconnected = (server: ServerHandle, agentId: string) =>
    waitFor("the control plane to see the link gone", async () => ((await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent.connected ? undefined : true), 10_000, 20);
  /** The agent's connectedAt (epoch ms) once it is connected again after `after`. */
  const reconnectedAt = (server: ServerHandle, agentId: string, after: number) =>
    waitFor("the agent to reconnect", async () => {
      const a = (await api(server, "GET", `/api/v1/agents/${agentId}`)).body.agent;
      const at = a.connectedAt ? Date.parse(a.connectedAt) : 0;
      return a.connected && at > after ? at : undefined;
    }, 15_000, 20);

  it("a run aborted while its agent's link is down: the burn is stopped within 1 s of the reconnect; the run says it was confirmed after it ended", async () => {
    // Lease 15 s: the agent keeps its fault across a 3 s outage. Revert wait 1 s: the abort gives
    // up waiting during the outage, so the confirmation arrives after the run has ended.
    const server = await startServer({ dataDir: dir("cp"), leaseTtl: "15s", extraArgs: ["--revert-wait", "1s"] });
    proxy = await startTcpProxy(server.grpcAddr);
    const agent = startAgentProcess({ server: proxy.address, token: server.joinToken, stateDir: dir("agent"), labels: LABELS });
    const { id: agentId } = await agentOf(server);
    const started = await api(server, "POST", "/api/v1/runs", { spec: BURN });
    expect(started.status).toBe(201);
    const runId = started.body.run.id as string;
    await waitFor("the burn to run", () => burnerThreads(agent.pid).length === 1, 20_000);
    await waitFor("the control plane to know it runs", async () =>
      (await api(server, "GET", "/api/v1/faults?state=active")).body.faults.some((f: any) => f.runId === runId && f.state === "running"),
    );

    // The link breaks: the control plane sees its agent lost and aborts the run; its StopFault
    // cannot be delivered.
    proxy.cut();
    const cutAt = Date.now();
    await disconnected(server, agentId);
    const run = await waitFor("the run to be aborted", async () => {
      const r = (await api(server, "GET", `/api/v1/runs/${runId}`)).body.run;
      return r.state === "aborted" ? r : undefined;
    }, 20_000);
    expect(run.reason).toMatch(/agent lost: .*; 0 of 1 reverts confirmed, 1 not confirmed yet \(the stop is sent again until the agent confirms or its lease must have ended the fault\)/);
    const [fault] = (await api(server, "GET", "/api/v1/faults?state=all")).body.faults.filter((f: any) => f.runId === runId);
    expect(fault).toMatchObject({ state: "running", stopReason: "aborted" });
    // The stop was lost with the link: the burn still runs on the host.
    expect(burnerThreads(agent.pid)).toHaveLength(1);
    await sleep(Math.max(0, 3000 - (Date.now() - cutAt)));
    expect(burnerThreads(agent.pid)).toHaveLength(1);

    proxy.restore();
    const restoredAt = Date.now();
    const goneAt = await burnGone(agent.pid);
    const connectedAt = await reconnectedAt(server, agentId, restoredAt - 1);
    const accepted = proxy.acceptedAfterRestore()!;
    console.log(
      `run abort during a link drop: burn gone ${goneAt - connectedAt} ms after the agent's Hello was accepted ` +
        `(${goneAt - accepted} ms after its TCP reconnect, ${goneAt - restoredAt} ms after the link came back; outage ${restoredAt - cutAt} ms, lease 15 s)`,
    );
    expect(goneAt - connectedAt).toBeLessThan(1000);
    // Nothing else ended it: the lease was far from over.
    expect(goneAt - cutAt).toBeLessThan(15_000);

    const ended = await waitFor("the revert to be recorded", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${fault.id}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(ended).toMatchObject({ reason: "aborted" });
    const { events } = (await api(server, "GET", `/api/v1/runs/${runId}`)).body;
    expect(events.map((e: any) => e.type)).toEqual(expect.arrayContaining(["agent-lost", "abort", "unconfirmed", "fault-reverted"]));
    expect(events.find((e: any) => e.type === "fault-reverted").message).toMatch(/cpu-burn reverted on .* \(aborted, confirmed by the agent\) \(after the run ended\)/);
    const report = (await api(server, "GET", `/api/v1/runs/${runId}/report`)).body.report;
    expect(report.reverts).toMatchObject({ started: 1, confirmed: 1, pending: 0, assumedByLease: 0, revertFailed: 0 });
    expect(report.unconfirmed).toEqual([]);
    expect(report.hits).toEqual([expect.objectContaining({ step: "burn", state: "reverted", reason: "aborted" })]);
    const shown = await runCli(["fault", "show", fault.id], cliEnv(server));
    expect(shown.stdout).toMatch(/Stop +wanted since .* \(aborted: run run_\w+ aborting: agent lost: .*\); confirmed by the agent/);
  });

  it("an operator stop while the agent is frozen (SIGSTOP, the control plane drops its link): reverted within 1 s of the reconnect after SIGCONT", async () => {
    // Heartbeat 300 ms: the control plane drops a silent link after 0.9 s, long before the lease.
    const server = await startServer({ dataDir: dir("cp"), leaseTtl: "15s", heartbeatInterval: "300ms" });
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: dir("agent") });
    const { id: agentId } = await agentOf(server);
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 5, cores: 1 }, duration: "10m" });
    expect(res.status).toBe(201);
    const faultId = res.body.fault.id as string;
    await waitFor("the burn to run", () => burnerThreads(agent.pid).length === 1, 10_000);
    await waitFor("the control plane to know it runs", async () => (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault.state === "running");

    frozen = agent;
    agent.kill("SIGSTOP");
    const stoppedAt = Date.now();
    await disconnected(server, agentId);
    const stop = await api(server, "DELETE", `/api/v1/agents/${agentId}/faults/${faultId}`);
    expect(stop.status).toBe(202);
    expect(stop.body.fault).toMatchObject({ state: "running", stopReason: "stopped", stopRequestedBy: expect.stringMatching(/^stopped by /) });
    await sleep(Math.max(0, 2000 - (Date.now() - stoppedAt)));
    agent.kill("SIGCONT");
    frozen = undefined;
    const resumedAt = Date.now();
    const goneAt = await burnGone(agent.pid);
    const connectedAt = await reconnectedAt(server, agentId, stoppedAt);
    console.log(
      `operator stop during SIGSTOP: burn gone ${goneAt - connectedAt} ms after the agent's Hello was accepted ` +
        `(${goneAt - resumedAt} ms after SIGCONT; frozen ${resumedAt - stoppedAt} ms, lease 15 s)`,
    );
    expect(goneAt - connectedAt).toBeLessThan(1000);
    const fault = await waitFor("the revert to be recorded", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    // Stopped by the re-sent stop, not by the lease.
    expect(fault.reason).toBe("stopped");
    const metrics = await (await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
    expect(metrics).toMatch(/^firedrill_fault_stops_resent_total\{when="reconnect"\} 1$/m);
  });
});
