/**
 * Stop-condition samples over the API, on an in-process control plane with a real HTTP endpoint
 * as the stop condition: GET /runs/:id/samples, the run's event stream with `samples=1` (stored
 * samples in chunks, then live ones, none lost or repeated), the states, the report's stop
 * conditions; and the fleet's measurements (GET /agents/:id/measurements) fed by a test agent.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { FaultEventType } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RunSamplesJson } from "../experiments/run-samples.js";
import { DATABASE_FILE } from "../store/store.js";
import { healthEndpoint } from "../test-support/health-endpoint.js";
import type { HealthEndpoint } from "../test-support/health-endpoint.js";
import { readSse } from "../test-support/sse-reader.js";
import { connectListedAgent, connectTestAgent, startTestControlPlane } from "../test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "../test-support/test-agent.js";
import type { ReportJson } from "./report-json.js";
import { SSE_SAMPLES_CHUNK } from "./run-routes.js";

const spec = (url: string, wait: string, failuresToAbort = 3) => `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: hold }
spec:
  hypothesis: web answers while we hold
  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: hold, wait: ${wait} }
  stopConditions:
    - { http: { url: "${url}", intervalMs: 100, timeoutMs: 1500, failuresToAbort: ${failuresToAbort} } }
`;

describe("stop-condition samples over the API", () => {
  let tcp: TestControlPlane;
  let endpoint: HealthEndpoint;
  let agent: TestAgent;

  beforeEach(async () => {
    tcp = await startTestControlPlane();
    endpoint = await healthEndpoint();
    // The target group must match a host, though the run only waits.
    agent = await connectListedAgent(tcp);
  });
  afterEach(async () => {
    agent.cancel();
    await endpoint.close();
    await tcp.cleanup();
  });

  const startRun = async (text: string): Promise<string> => {
    const res = await tcp.api("POST", "/api/v1/runs", { spec: text });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.run.id as string;
  };
  const samplesOf = async (id: string) => (await tcp.api<RunSamplesJson>("GET", `/api/v1/runs/${id}/samples`)).body;
  const until = async <T>(what: string, check: () => Promise<T | undefined>, ms = 15_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await check();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it("stores every probe with its latency; the stream gives the stored ones in chunks, then each new one, none lost or twice", async () => {
    const id = await startRun(spec(endpoint.url, "4s"));
    const first = await until("3 samples", async () => {
      const s = await samplesOf(id);
      return s.samples.length >= 3 ? s : undefined;
    });
    expect(first.conditions).toEqual([
      { index: 0, condition: `http GET ${endpoint.url}`, kind: "http", unit: "ms", threshold: 1500, thresholdLabel: "timeout 1500 ms", state: "healthy" },
    ]);
    for (const s of first.samples) {
      expect(s).toMatchObject({ c: 0, ok: true });
      expect(s.v).toBeGreaterThanOrEqual(0);
      expect(s.v).toBeLessThan(1500);
    }

    // More stored samples than one chunk holds (as a long run would have), written straight into the database.
    const db = new Database(join(tcp.dataDir, DATABASE_FILE));
    const insert = db.prepare("INSERT INTO run_samples (run_id, condition, at, value, healthy) VALUES (?, 0, ?, ?, 1)");
    const old = Date.now() - 3_600_000;
    db.transaction(() => {
      for (let i = 0; i < 2 * SSE_SAMPLES_CHUNK + 100; i++) insert.run(id, old + i, i % 50);
    })();
    db.close();

    const seen: string[] = [];
    const events = await readSse(`${tcp.cp.httpUrl}/api/v1/runs/${id}/events?samples=1`, tcp.adminToken(), (e) => seen.push(e.event), 30_000);
    const kinds = [...new Set(seen)];
    expect(kinds).toEqual(["run-event", "samples", "sample", "end"]);
    // In order: the timeline so far, the stored samples (chunked), then live ones, and the end last.
    const firstSamples = seen.indexOf("samples");
    const lastSamples = seen.lastIndexOf("samples");
    expect(seen.slice(0, firstSamples).every((k) => k === "run-event")).toBe(true);
    expect(seen.slice(firstSamples, lastSamples + 1).every((k) => k === "samples")).toBe(true);
    expect(seen.slice(lastSamples + 1).includes("samples")).toBe(false);
    expect(seen.at(-1)).toBe("end");
    const chunks = events.filter((e) => e.event === "samples");
    expect(chunks.length).toBe(3);
    for (const c of chunks) {
      expect(c.data.samples.length).toBeLessThanOrEqual(SSE_SAMPLES_CHUNK);
      expect(c.data.conditions).toMatchObject([{ index: 0, kind: "http", unit: "ms" }]);
    }
    const live = events.filter((e) => e.event === "sample").map((e) => e.data);
    expect(live.length).toBeGreaterThanOrEqual(2);
    expect(live[0]).toEqual({ c: 0, at: expect.any(Number), v: expect.any(Number), ok: true });

    // Everything stored, exactly once: the chunks and the live ones are the run's samples.
    const streamed = [...chunks.flatMap((c) => c.data.samples), ...live].map((s) => `${s.c}/${s.at}/${s.v}/${s.ok}`).sort();
    const stored = (await samplesOf(id)).samples.map((s) => `${s.c}/${s.at}/${s.v}/${s.ok}`).sort();
    expect(streamed.length).toBe(stored.length);
    expect(streamed).toEqual(stored);

    // The stream the CLI reads has none of this.
    const plain = await readSse(`${tcp.cp.httpUrl}/api/v1/runs/${id}/events`, tcp.adminToken(), () => {}, 30_000);
    expect(new Set(plain.map((e) => e.event))).toEqual(new Set(["run-event", "end"]));
    // An ended run: its stored samples, then the end.
    const after = await readSse(`${tcp.cp.httpUrl}/api/v1/runs/${id}/events?samples=1&after=999999`, tcp.adminToken(), () => {}, 30_000);
    expect(after.map((e) => e.event)).toEqual(["samples", "samples", "samples", "end"]);
  });

  it("marks the condition breached in the samples and the report of a run a breach aborted", async () => {
    const id = await startRun(spec(endpoint.url, "30s", 2));
    await until("running with samples", async () => ((await samplesOf(id)).samples.length >= 2 ? true : undefined));
    endpoint.setStatus(500);
    await until("the abort", async () => (["aborted", "failed", "completed"].includes((await tcp.api("GET", `/api/v1/runs/${id}`)).body.run.state) ? true : undefined));
    const { conditions, samples } = await samplesOf(id);
    expect(conditions[0]!.state).toBe("breached");
    // The failed probes are stored as unhealthy, with the latency of the 500s.
    const bad = samples.filter((s) => !s.ok);
    expect(bad.length).toBeGreaterThanOrEqual(2);
    for (const s of bad) expect(s.v).toEqual(expect.any(Number));

    const report = (await tcp.api<{ report: ReportJson }>("GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("rejected");
    expect(report.stopConditions).toHaveLength(1);
    const sc = report.stopConditions[0]!;
    expect(sc).toMatchObject({ index: 0, kind: "http", unit: "ms", threshold: 1500, state: "breached" });
    expect(sc.breach).toEqual({ at: expect.any(Number), reason: expect.stringMatching(/^HTTP 500 in \d+ ms \(expected 200\) \(2nd consecutive failure\)$/) });
    expect(sc.samples.length).toBe(samples.length);
    expect(report.faultWindows).toEqual([]);
    expect(report.hosts).toEqual([]);
    expect(report.generatedAt).toBeGreaterThanOrEqual(Date.parse(report.timeline.at(-1)!.time));
    expect((await tcp.api("GET", "/api/v1/runs/run_000000000000/samples")).status).toBe(404);
    expect((await tcp.api("GET", "/api/v1/runs/run_000000000000/report")).status).toBe(404);
  });
});

describe("fleet measurements (GET /api/v1/agents/:id/measurements)", () => {
  let tcp: TestControlPlane;
  let agent: TestAgent;
  beforeEach(async () => {
    tcp = await startTestControlPlane();
    agent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token() });
    agent.hello();
    await agent.next("welcome");
  });
  afterEach(async () => {
    agent.cancel();
    await tcp.cleanup();
  });

  it("lists an agent's recent faults with the measurements of their PROGRESS, at most one a second", async () => {
    const response = tcp.api("POST", "/api/v1/agents/agent-1/faults", { kind: "cpu-burn", params: { load: 50 }, duration: "1m" });
    const start = await agent.next("startFault");
    agent.event(start.faultId, FaultEventType.ACCEPTED);
    expect((await response).status).toBe(201);
    agent.event(start.faultId, FaultEventType.STARTED);
    for (let i = 0; i < 3; i++) {
      agent.event(start.faultId, FaultEventType.PROGRESS, { measurements: { load_asked: 50, cpu_percent_selected: 40 + i } });
      agent.event(start.faultId, FaultEventType.PROGRESS, { measurements: { load_asked: 50, cpu_percent_selected: -1 } }); // too soon: dropped
      await new Promise((r) => setTimeout(r, 1100));
    }
    const res = await tcp.api("GET", "/api/v1/agents/agent-1/measurements");
    expect(res.status).toBe(200);
    expect(res.body.faults).toHaveLength(1);
    const [f] = res.body.faults;
    expect(f).toMatchObject({ faultId: start.faultId, kind: "cpu-burn", runId: null, state: "running", endedAt: null });
    expect(f.startedAt).toEqual(expect.any(Number));
    expect(f.samples.map((s: any) => s.m.cpu_percent_selected)).toEqual([40, 41, 42]);
    expect(f.samples[0]).toEqual({ at: expect.any(Number), m: { load_asked: 50, cpu_percent_selected: 40 } });

    const unknown = await tcp.api("GET", "/api/v1/agents/nobody/measurements");
    expect(unknown.status).toBe(404);
    const viewer = await tcp.tokenFor("viewer");
    expect((await tcp.api("GET", "/api/v1/agents/agent-1/measurements", undefined, viewer)).status).toBe(200);
  });
});
