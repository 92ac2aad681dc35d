/**
 * What the console and the report show of a run, with a real agent burning CPU and a real HTTP
 * endpoint as the stop condition: the probes' latencies stored and streamed live, the report's
 * stop conditions, fault windows and per-host effect, the agent's measurements, and a breach.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { healthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import type { HealthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import { readSse } from "../packages/control-plane/src/test-support/sse-reader.js";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { startCluster, waitFor } from "./support/processes.js";
import type { TestCluster } from "./support/processes.js";

const experiment = (url: string, burn: string, failuresToAbort = 3) => `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: web-burn-charted }
spec:
  hypothesis: web keeps answering while its host burns CPU
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 50, cores: 1 }, duration: ${burn} }
  stopConditions:
    - { http: { url: "${url}", intervalMs: 200, failuresToAbort: ${failuresToAbort} } }
`;

describe("a run's samples, report and measurements, with a real agent", () => {
  let cluster: TestCluster;
  let health: HealthEndpoint;

  beforeAll(async () => {
    cluster = await startCluster({ agents: 1, labels: "app=web,firedrill:opt-in=true", serverArgs: ["--revert-wait", "10s"] });
    health = await healthEndpoint();
  });
  afterAll(async () => {
    await health?.close();
    await cluster?.close();
  });
  afterEach(async () => {
    health.setStatus(200);
    await api(cluster.server, "DELETE", `/api/v1/agents/${cluster.agentId}/faults`);
  });

  const startRun = async (spec: string) => {
    const res = await api(cluster.server, "POST", "/api/v1/runs", { spec });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.run.id as string;
  };
  const runState = async (id: string) => (await api(cluster.server, "GET", `/api/v1/runs/${id}`)).body.run.state as string;

  it("stores and streams every probe's latency; the report charts them with the burn's window and its measured effect", async () => {
    const id = await startRun(experiment(health.url, "5s"));
    // Follow it as the console does, from the start.
    const sse = readSse(`${cluster.server.httpUrl}/api/v1/runs/${id}/events?samples=1`, cluster.server.adminToken);
    await waitFor("the burn running", () => burnerThreads(cluster.agent.pid).length > 0, 20_000);
    const fleet = await waitFor(
      "measurements of the burn in the hub",
      async () => {
        const { body } = await api(cluster.server, "GET", `/api/v1/agents/${cluster.agentId}/measurements`);
        const f = body.faults.find((x: any) => x.runId === id);
        return f && f.samples.length >= 2 ? f : undefined;
      },
      20_000,
    );
    expect(fleet).toMatchObject({ kind: "cpu-burn", runId: id, state: "running", endedAt: null });
    expect(fleet.samples.at(-1).m).toMatchObject({ load_asked: 50, cpu_percent_selected: expect.any(Number) });

    const events = await sse;
    expect(await runState(id)).toBe("completed");
    const kinds = events.map((e) => e.event);
    const samplesAt = kinds.indexOf("samples");
    expect(samplesAt).toBeGreaterThan(0); // the replayed timeline first
    expect(kinds.lastIndexOf("samples")).toBe(samplesAt); // one chunk: few samples
    expect(kinds.slice(0, samplesAt).every((k) => k === "run-event")).toBe(true);
    expect(kinds.at(-1)).toBe("end");
    const live = events.filter((e) => e.event === "sample").map((e) => e.data);
    expect(live.length).toBeGreaterThanOrEqual(10); // 5 s of probes every 200 ms
    for (const s of live) {
      expect(s).toEqual({ c: 0, at: expect.any(Number), v: expect.any(Number), ok: true });
      expect(s.v).toBeGreaterThanOrEqual(0);
    }

    const stored = (await api(cluster.server, "GET", `/api/v1/runs/${id}/samples`)).body;
    expect(stored.conditions).toEqual([
      { index: 0, condition: `http GET ${health.url}`, kind: "http", unit: "ms", threshold: 1000, thresholdLabel: "timeout 1000 ms", state: "healthy" },
    ]);
    const streamed = [...events.filter((e) => e.event === "samples").flatMap((e) => e.data.samples), ...live];
    expect(streamed.map((s) => s.at).sort()).toEqual(stored.samples.map((s: any) => s.at).sort());
    // The first sample is the preflight probe.
    const preflight = (await api(cluster.server, "GET", `/api/v1/runs/${id}`)).body.events.find((e: any) => e.type === "stop-condition");
    expect(Math.min(...stored.samples.map((s: any) => s.at))).toBeLessThanOrEqual(Date.parse(preflight.time));

    const report = (await api(cluster.server, "GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("held");
    expect(report.stopConditions).toHaveLength(1);
    expect(report.stopConditions[0]).toMatchObject({ kind: "http", unit: "ms", threshold: 1000, state: "healthy", breach: null });
    expect(report.stopConditions[0].samples).toHaveLength(stored.samples.length);
    const agent = (await api(cluster.server, "GET", `/api/v1/agents/${cluster.agentId}`)).body.agent;
    expect(report.faultWindows).toHaveLength(1);
    const window = report.faultWindows[0];
    expect(window).toMatchObject({ agentId: cluster.agentId, hostname: agent.hostname, step: "burn", kind: "cpu-burn", state: "reverted" });
    expect(window.endedAt - window.startedAt).toBeGreaterThanOrEqual(4000);
    // Probes ran all through the burn: the chart has samples inside the shaded window.
    expect(report.stopConditions[0].samples.filter((s: any) => s.at >= window.startedAt && s.at <= window.endedAt).length).toBeGreaterThanOrEqual(5);
    expect(report.hosts).toHaveLength(1);
    expect(report.hosts[0]).toMatchObject({ agentId: cluster.agentId, hostname: agent.hostname });
    const burn = report.hosts[0].faults[0];
    expect(burn).toMatchObject({ faultId: window.faultId, kind: "cpu-burn", state: "reverted", step: "burn" });
    expect(burn.effect).toMatch(/^cpu busy \d+(\.\d)? % \(asked 50 %\)$/);
    expect(burn.series.length).toBeGreaterThanOrEqual(1);
    expect(burn.series.at(-1).m).toMatchObject({ load_asked: 50 });
    console.log(`[measure] report effect: ${burn.effect}; ${stored.samples.length} samples, latency ${Math.min(...stored.samples.map((s: any) => s.v))}-${Math.max(...stored.samples.map((s: any) => s.v))} ms`);
    expect(report.generatedAt).toBeGreaterThan(window.endedAt);
    expect(burnerThreads(cluster.agent.pid)).toEqual([]);
  });

  it("marks the breach of a run a probe aborted, in the samples and the report", async () => {
    const id = await startRun(experiment(health.url, "2m", 2));
    await waitFor("the burn running", () => burnerThreads(cluster.agent.pid).length > 0, 20_000);
    health.setStatus(500);
    await waitFor("the abort", async () => ((await runState(id)) === "aborted" ? true : undefined), 30_000);
    const { conditions, samples } = (await api(cluster.server, "GET", `/api/v1/runs/${id}/samples`)).body;
    expect(conditions[0].state).toBe("breached");
    expect(samples.filter((s: any) => !s.ok).length).toBeGreaterThanOrEqual(2);
    const report = (await api(cluster.server, "GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("rejected");
    const sc = report.stopConditions[0];
    expect(sc.state).toBe("breached");
    expect(sc.breach.reason).toMatch(/^HTTP 500 in \d+ ms \(expected 200\) \(2nd consecutive failure\)$/);
    const window = report.faultWindows[0];
    // The breach falls inside the burn's window, which ended with the abort.
    expect(sc.breach.at).toBeGreaterThanOrEqual(window.startedAt);
    expect(sc.breach.at).toBeLessThanOrEqual(window.endedAt);
    expect(window.state).toBe("reverted");
    expect(report.hosts[0].faults[0].effect).toMatch(/^cpu busy /);
    expect(burnerThreads(cluster.agent.pid)).toEqual([]);
  });
});
