/**
 * One server per data dir, with real processes: a second `firedrill server` on a data dir a
 * running server holds is refused (naming the holder's pid and what to do) and touches nothing:
 * the first server's live run keeps running and its fault keeps burning on the agent. A server
 * SIGKILLed leaves no stale lock behind.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { CLI_BIN, freePort, spawnNode, startCluster, startServer, waitFor } from "./support/processes.js";
import type { TestCluster } from "./support/processes.js";

const EXPERIMENT = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: lock-burn }
spec:
  hypothesis: "a second server on the same data dir changes nothing"
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 5m }
`;

describe("one server per data dir (real processes)", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster({ labels: "app=web,firedrill:opt-in=true" });
  }, 60_000);

  afterAll(async () => {
    await cluster?.close();
  });

  it("a second server on the same data dir is refused, naming the holder; the first server's run is untouched", async () => {
    const { server } = cluster;
    const started = await api(server, "POST", "/api/v1/runs", { spec: EXPERIMENT });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const runId = started.body.run.id as string;
    await waitFor("the burn running", async () => {
      const { body } = await api(server, "GET", "/api/v1/faults?state=active");
      return (body.faults as { runId: string; state: string }[]).some((f) => f.runId === runId && f.state === "running");
    }, 20_000);
    expect(burnerThreads(cluster.agent.pid).length).toBeGreaterThan(0);

    const t0 = performance.now();
    const second = spawnNode(CLI_BIN, ["server", "--data-dir", server.dataDir, "--grpc-addr", `127.0.0.1:${await freePort()}`, "--http-addr", `127.0.0.1:${await freePort()}`]);
    const code = await Promise.race([second.exited, new Promise((r) => setTimeout(() => r("still running"), 20_000))]);
    const refusedMs = performance.now() - t0;
    second.kill("SIGKILL");
    console.log(`[measure] second server refused (exit ${String(code)}) ${refusedMs.toFixed(0)} ms after spawn:\n${second.output().trim()}`);
    expect(code).toBe(1);
    expect(second.output()).toContain(`error: the data dir ${server.dataDir} is in use by another firedrill server: pid ${server.proc.pid}, started `);
    expect(second.output()).toContain(`stop it first (kill ${server.proc.pid}), or give this one another --data-dir`);

    // Untouched: the run is running, its fault burns, nothing in its timeline speaks of a restart.
    const { body } = await api(server, "GET", `/api/v1/runs/${runId}`);
    expect(body.run.state).toBe("running");
    expect(JSON.stringify(body.events)).not.toContain("restarted");
    expect(burnerThreads(cluster.agent.pid).length).toBeGreaterThan(0);
    const faults = (await api(server, "GET", "/api/v1/faults?state=active")).body.faults as { runId: string; state: string }[];
    expect(faults.filter((f) => f.runId === runId).map((f) => f.state)).toEqual(["running"]);

    // The first server still works: it aborts its run and the agent reverts the fault.
    expect((await api(server, "POST", `/api/v1/runs/${runId}/abort`, { reason: "test done" })).status).toBe(200);
    await waitFor("the burn reverted", () => burnerThreads(cluster.agent.pid).length === 0, 20_000);
  }, 90_000);

  it("a SIGKILLed server leaves no stale lock: a new one starts on the same data dir at once", async () => {
    const { server } = cluster;
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    const t0 = performance.now();
    const next = await startServer({ dataDir: server.dataDir });
    console.log(`[measure] a new server on the data dir of a SIGKILLed one was serving ${(performance.now() - t0).toFixed(0)} ms after spawn (server.pid left behind named pid ${server.proc.pid})`);
    // The same state: the run the first server aborted is there.
    const runs = (await api(next, "GET", "/api/v1/runs")).body.runs as { name: string; state: string }[];
    expect(runs.map((r) => [r.name, r.state])).toEqual([["lock-burn", "aborted"]]);
  }, 60_000);
});
