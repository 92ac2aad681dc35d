import { createServer } from "node:http";
import type { Server } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { alertmanagerPayload } from "./support/alerts.js";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { runCli, startCluster, startServer, waitFor } from "./support/processes.js";
import type { TestCluster } from "./support/processes.js";
import { PROMETHEUS_MISSING, findPrometheus, startPrometheus } from "./support/prometheus.js";

const prometheusMissing = findPrometheus() === undefined;
if (prometheusMissing) console.log(`skipping the Prometheus abort test: ${PROMETHEUS_MISSING}`);

/** A health endpoint the test flips between healthy (200) and broken (500). */
async function flippableHealth(): Promise<{ url: string; setStatus: (s: number) => void; close: () => Promise<void> }> {
  let status = 200;
  const server: Server = createServer((_req, res) => {
    res.statusCode = status;
    res.end(status === 200 ? "ok" : "broken");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/health`,
    setStatus: (s) => (status = s),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const LABELS = "app=web,firedrill:opt-in=true";

function experiment(opts: { steps: string; stopConditions?: string; guardrails?: string; name?: string }): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: ${opts.name ?? "web-burn"}
spec:
  hypothesis: "web keeps answering while its hosts burn CPU"
  targets:
    web:
      selector: { labels: { app: web } }
      mode: { all: true }
  steps:
${opts.steps}
  stopConditions:
${opts.stopConditions ?? "    []"}
${opts.guardrails ? `  guardrails:\n${opts.guardrails}` : ""}
`;
}

const LONG_BURN = `    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 2m }`;

describe("experiment runs on three real agents", () => {
  let cluster: TestCluster;
  let health: Awaited<ReturnType<typeof flippableHealth>>;

  beforeAll(async () => {
    cluster = await startCluster({ agents: 3, labels: LABELS, serverArgs: ["--revert-wait", "10s"] });
    health = await flippableHealth();
  });
  afterAll(async () => {
    await health.close();
    await cluster.close();
  });
  afterEach(async () => {
    health.setStatus(200);
    await api(cluster.server.httpUrl, "DELETE", "/api/v1/halt");
    for (const a of cluster.agents) await api(cluster.server.httpUrl, "DELETE", `/api/v1/agents/${a.id}/faults`);
  });

  const url = () => cluster.server.httpUrl;
  const startRun = async (spec: string) => {
    const res = await api(url(), "POST", "/api/v1/runs", { spec, actor: "test" });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.run.id as string;
  };
  const settled = (id: string, ms = 60_000) =>
    waitFor(`run ${id} to end`, async () => {
      const { body } = await api(url(), "GET", `/api/v1/runs/${id}`);
      return ["completed", "aborted", "failed"].includes(body.run.state) ? body : undefined;
    }, ms, 200);
  const runFaults = async (id: string) =>
    (await api(url(), "GET", "/api/v1/faults?state=all&limit=1000")).body.faults.filter((f: any) => f.runId === id);
  const noBurnAnywhere = () => cluster.agents.every((a) => burnerThreads(a.proc.pid).length === 0);

  it("a two-step run completes; timeline in order; every fault reverted on every host", async () => {
    const id = await startRun(
      experiment({
        steps: `    - { name: warm, fault: cpu-burn, target: web, params: { load: 5 }, duration: 2s }
    - { name: settle, wait: 1s, startAfter: [warm] }
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5, cores: 1 }, duration: 2s, startAfter: [settle] }`,
        stopConditions: `    - { http: { url: "${health.url}", intervalMs: 500 } }`,
      }),
    );
    const { run, events } = await settled(id);
    expect(run.state).toBe("completed");
    const types = (events as any[]).filter((e) => e.type !== "measurement").map((e) => `${e.type}${e.step ? `:${e.step}` : ""}`);
    const order = (t: string) => types.indexOf(t);
    expect(types[0]).toBe("state");
    expect(order("plan")).toBeLessThan(order("step-started:warm"));
    expect(types).toContain("stop-condition");
    expect(order("step-started:warm")).toBeLessThan(order("step-ended:warm"));
    expect(order("step-ended:warm")).toBeLessThan(order("step-started:settle"));
    expect(order("step-ended:settle")).toBeLessThan(order("step-started:burn"));
    expect(types.filter((t) => t === "fault-acked:warm")).toHaveLength(3);
    expect(types.filter((t) => t === "fault-reverted:burn")).toHaveLength(3);
    expect(types.at(-1)).toBe("state");
    const states = (events as any[]).filter((e) => e.type === "state").map((e) => e.data.state);
    expect(states).toEqual(["pending", "preflight", "running", "completed"]);
    const faults = await runFaults(id);
    expect(faults).toHaveLength(6);
    expect(new Set(faults.map((f: any) => f.agentId)).size).toBe(3);
    for (const f of faults) expect(f).toMatchObject({ state: "reverted", reason: "duration" });
    expect(noBurnAnywhere()).toBe(true);

    const report = (await api(url(), "GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("held");
    expect(report.hits).toHaveLength(6);
  });

  it("an HTTP probe the test flips to 500 aborts the run; every host reverted", async () => {
    const id = await startRun(
      experiment({ steps: LONG_BURN, stopConditions: `    - { http: { url: "${health.url}", intervalMs: 200, failuresToAbort: 2 } }` }),
    );
    await waitFor("3 burns running", async () => (await runFaults(id)).filter((f: any) => f.state === "running").length === 3, 20_000);
    const flippedAt = Date.now();
    health.setStatus(500);
    const { run, events } = await settled(id);
    expect(run.state).toBe("aborted");
    expect(run.reason).toMatch(/stop condition breached: http/);
    const faults = await runFaults(id);
    for (const f of faults) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
    expect(noBurnAnywhere()).toBe(true);
    const lastRevert = Math.max(...(events as any[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time)));
    const breach = (events as any[]).find((e) => e.type === "breach");
    console.log(`[measure] http breach: flip→breach ${Date.parse(breach.time) - flippedAt} ms, breach→last revert ack ${lastRevert - Date.parse(breach.time)} ms`);
    const report = (await api(url(), "GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("rejected");
    expect(report.broke[0].type).toBe("breach");
  });

  it("an Alertmanager webhook alert aborts the run at once", async () => {
    const id = await startRun(experiment({ steps: LONG_BURN, stopConditions: `    - { alert: { matchLabels: { severity: page } } }` }));
    await waitFor("3 burns running", async () => (await runFaults(id)).filter((f: any) => f.state === "running").length === 3, 20_000);
    const payload = (status: "firing" | "resolved") =>
      alertmanagerPayload(status, { alertname: "CheckoutErrors", labels: { severity: "page" }, fingerprint: "c0ffee0000000001", summary: "checkout 5xx above 1%" });
    const sentAt = Date.now();
    const res = await api(url(), "POST", "/api/v1/alerts/alertmanager", payload("firing"));
    expect(res.status).toBe(200);
    const { run, events } = await settled(id);
    expect(run.state).toBe("aborted");
    expect(run.reason).toMatch(/CheckoutErrors|severity/);
    for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
    expect(noBurnAnywhere()).toBe(true);
    const lastRevert = Math.max(...(events as any[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time)));
    console.log(`[measure] webhook breach: POST→last revert ack ${lastRevert - sentAt} ms`);
    await api(url(), "POST", "/api/v1/alerts/alertmanager", payload("resolved"));
  });

  it.skipIf(prometheusMissing)("a real Prometheus query returning a sample aborts the run; every host reverted", async () => {
    const prom = await startPrometheus({ metrics: { checkout_errors_ratio: 0 } });
    if (!prom) throw new Error(PROMETHEUS_MISSING);
    try {
      const id = await startRun(
        experiment({
          steps: LONG_BURN,
          stopConditions: `    - { prometheus: { url: "${prom.url}", query: "checkout_errors_ratio > 0.01", intervalMs: 200 } }`,
        }),
      );
      await waitFor("3 burns running", async () => (await runFaults(id)).filter((f: any) => f.state === "running").length === 3, 20_000);
      const flippedAt = Date.now();
      prom.target.set("checkout_errors_ratio", 0.05);
      const { run, events } = await settled(id);
      expect(run.state).toBe("aborted");
      expect(run.reason).toMatch(/stop condition breached: prometheus/);
      expect(run.reason).toContain("checkout_errors_ratio");
      for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
      expect(noBurnAnywhere()).toBe(true);
      const breach = (events as any[]).find((e) => e.type === "breach");
      const lastRevert = Math.max(...(events as any[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time)));
      console.log(`[measure] prometheus breach: flip→breach ${Date.parse(breach.time) - flippedAt} ms (1 s scrape), breach→last revert ack ${lastRevert - Date.parse(breach.time)} ms`);
    } finally {
      await prom.stop();
    }
  });

  it("preflight refuses to start when a stop condition is already breached", async () => {
    health.setStatus(500);
    const id = await startRun(experiment({ steps: LONG_BURN, stopConditions: `    - { http: { url: "${health.url}" } }` }));
    const { run, events } = await settled(id);
    expect(run.state).toBe("failed");
    expect(run.reason).toMatch(/^preflight: steady state not reached, nothing was started/);
    expect((events as any[]).some((e) => e.type === "step-started")).toBe(false);
    expect(await runFaults(id)).toEqual([]);
  });

  it("halt during a run: reverted everywhere, new runs and faults refused until unhalt", async () => {
    const id = await startRun(experiment({ steps: LONG_BURN }));
    await waitFor("3 burns running", async () => (await runFaults(id)).filter((f: any) => f.state === "running").length === 3, 20_000);
    const halt = await api(url(), "POST", "/api/v1/halt", { reason: "incident INC-42", actor: "oncall" });
    expect(halt.status).toBe(200);
    const { run } = await settled(id);
    expect(run.state).toBe("aborted");
    expect(run.reason).toContain("halted by oncall: incident INC-42");
    for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "halt" });
    expect(noBurnAnywhere()).toBe(true);

    const refused = await api(url(), "POST", "/api/v1/runs", { spec: experiment({ steps: LONG_BURN }) });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("incident INC-42");
    const adHoc = await api(url(), "POST", `/api/v1/agents/${cluster.agentId}/faults`, { kind: "cpu-burn", params: { load: 5 }, duration: "5s" });
    expect(adHoc.status).toBe(409);

    expect((await api(url(), "DELETE", "/api/v1/halt")).body.lifted.reason).toBe("incident INC-42");
    const again = await startRun(experiment({ steps: `    - { name: short, fault: cpu-burn, target: web, params: { load: 5 }, duration: 1s }` }));
    expect((await settled(again)).run.state).toBe("completed");
  });

  it("an operator abort reverts every host; the CLI follows the run and exits 2", async () => {
    const env = { FIREDRILL_SERVER: url(), FIREDRILL_ACTOR: "tester" };
    const { writeFileSync, mkdtempSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "firedrill-exp-"));
    try {
      const file = join(dir, "burn.yaml");
      writeFileSync(file, experiment({ steps: LONG_BURN }));
      const follow = runCli(["run", file, "--follow"], env);
      const id = await waitFor("the run", async () => (await api(url(), "GET", "/api/v1/runs?state=active")).body.runs[0]?.id as string | undefined);
      await waitFor("3 burns running", async () => (await runFaults(id)).filter((f: any) => f.state === "running").length === 3, 20_000);
      const aborted = await runCli(["abort", id, "--reason", "enough"], env);
      expect(aborted.code, aborted.stderr).toBe(0);
      expect(aborted.stdout).toContain("aborted");
      const followed = await follow;
      expect(followed.code).toBe(2);
      expect(followed.stdout).toMatch(/step-started\s+\[burn\]/);
      expect(followed.stdout).toMatch(/aborted by tester: enough/);
      for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
      const report = await runCli(["report", id], env);
      expect(report.stdout).toContain("Verdict     INCONCLUSIVE");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("guardrails refuse a run on hosts without the opt-in label, saying which rule", async () => {
    const spec = experiment({ steps: LONG_BURN }).replace("labels: { app: web }", "labels: { app: db }");
    const res = await api(url(), "POST", "/api/v1/runs", { spec });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("guardrail_refused");
  });
});

describe("a control plane restart mid-run", () => {
  it("marks the run failed with the reason at start-up, and the agents' leases clean the hosts", async () => {
    const cluster = await startCluster({ agents: 1, labels: LABELS, leaseTtl: "3s" });
    try {
      const { server } = cluster;
      const res = await api(server.httpUrl, "POST", "/api/v1/runs", { spec: experiment({ steps: LONG_BURN }), actor: "test" });
      expect(res.status).toBe(201);
      const id = res.body.run.id as string;
      await waitFor("the burn to run", () => burnerThreads(cluster.agent.pid).length === 1, 20_000);
      server.proc.kill("SIGKILL");
      await server.proc.exited;
      await waitFor("the lease to clean the host", () => burnerThreads(cluster.agent.pid).length === 0, 10_000);
      const [grpcPort, httpPort] = [server.grpcAddr, server.httpUrl].map((a) => Number(a.split(":").at(-1)));
      const again = await startServer({ dataDir: server.dataDir, grpcPort: grpcPort!, httpPort: httpPort!, leaseTtl: "3s" });
      const { body } = await api(again.httpUrl, "GET", `/api/v1/runs/${id}`);
      expect(body.run.state).toBe("failed");
      expect(body.run.reason).toMatch(/the control plane restarted during the run/);
      const fault = await waitFor("the agent's lease report", async () => {
        const f = (await api(again.httpUrl, "GET", "/api/v1/faults?state=all")).body.faults.find((x: any) => x.runId === id);
        return f?.state === "reverted" ? f : undefined;
      });
      expect(fault.reason).toBe("lease");
    } finally {
      await cluster.close();
    }
  });
});
