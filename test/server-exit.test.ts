/**
 * `firedrill server` exits on SIGTERM, with real processes (docs/cli/server.md: "SIGINT/SIGTERM
 * close cleanly (exit 0); a second signal, a second or more after the first, exits at once").
 * Regression: once an experiment had been checked, the spec-check worker thread held the event
 * loop and the server logged "control plane stopped" but never exited.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { killAll, ROOT, sleep, startCluster, startServer, tempDir, waitFor } from "./support/processes.js";
import type { TestCluster, TestProcess } from "./support/processes.js";

/** The exit code, or "still running" after `ms`. */
function exitWithin(proc: TestProcess, ms: number): Promise<number | null | "still running"> {
  return Promise.race([proc.exited, sleep(ms).then(() => "still running" as const)]);
}

describe("firedrill server exits on SIGTERM (real processes)", () => {
  let cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    await killAll();
    for (const c of cleanup.splice(0)) await c();
  });

  it("after checking experiments (valid, invalid, a run refused): exit 0 within 5 s", async () => {
    const dir = tempDir("cp-exit");
    cleanup.push(dir.cleanup);
    const server = await startServer({ dataDir: dir.path });
    const spec = readFileSync(join(ROOT, "examples/cpu-burn-web.yaml"), "utf8");
    // Each goes through the spec-check worker threads.
    expect((await api(server, "POST", "/api/v1/plan", { spec })).status).toBe(200);
    expect((await api(server, "POST", "/api/v1/plan", { spec: "apiVersion: firedrill/v1\nkind: Experiment\n" })).status).toBe(400);
    expect((await api(server, "POST", "/api/v1/runs", { spec })).status).not.toBe(201); // no agent: nothing to target

    const t0 = performance.now();
    server.proc.kill("SIGTERM");
    const code = await exitWithin(server.proc, 5000);
    const ms = performance.now() - t0;
    console.log(`[measure] server exited (${String(code)}) ${ms.toFixed(0)} ms after SIGTERM, having checked 3 experiments`);
    expect(code, server.proc.output().slice(-2000)).toBe(0);
    expect(server.proc.output()).toContain('"msg":"control plane stopped"');
  }, 60_000);

  it("a second SIGTERM during a shutdown that waits (an agent that does not answer) exits at once (exit 1)", async () => {
    // A run in progress on a stopped agent: shutdown aborts it and waits for the revert ack (--revert-wait 30s).
    const cluster: TestCluster = await startCluster({ labels: "app=web,firedrill:opt-in=true", serverArgs: ["--revert-wait", "30s"] });
    let agentStopped = false;
    cleanup.push(async () => {
      if (agentStopped) cluster.agent.kill("SIGCONT");
      await cluster.close();
    });
    const { server } = cluster;
    const spec = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: exit-burn }
spec:
  hypothesis: "the server exits on a second signal"
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 5m }
`;
    expect((await api(server, "POST", "/api/v1/runs", { spec })).status).toBe(201);
    await waitFor("the burn running", () => burnerThreads(cluster.agent.pid).length > 0, 20_000);
    cluster.agent.kill("SIGSTOP");
    agentStopped = true;

    server.proc.kill("SIGTERM");
    await waitFor("the shutdown to start", () => server.proc.output().includes('"msg":"shutting down"'), 5000);
    await sleep(1500); // a second signal within 1 s of the first is ignored (pnpm passes Ctrl-C on twice)
    expect(server.proc.child.exitCode, "the shutdown waits for the stopped agent's revert ack").toBeNull();
    const t0 = performance.now();
    server.proc.kill("SIGTERM");
    const code = await exitWithin(server.proc, 3000);
    console.log(`[measure] second SIGTERM: server exited (${String(code)}) ${(performance.now() - t0).toFixed(0)} ms after it`);
    expect(code, server.proc.output().slice(-2000)).toBe(1);
    expect(server.proc.output()).toContain("received SIGTERM again during shutdown; exiting now");
  }, 90_000);
});
