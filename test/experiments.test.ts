import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { alertmanagerPayload } from "./support/alerts.js";
import { api, createToken } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { cliEnv, runCli, startCluster, startServer, tempDir, waitFor } from "./support/processes.js";
import type { TestCluster } from "./support/processes.js";
import { ALERTMANAGER_MISSING, PROMETHEUS_MISSING, findAlertmanager, findPrometheus, startAlertmanager, startPrometheus } from "./support/prometheus.js";

const prometheusMissing = findPrometheus() === undefined;
if (prometheusMissing) console.log(`skipping the Prometheus abort test: ${PROMETHEUS_MISSING}`);
const alertmanagerMissing = findAlertmanager() === undefined;
if (alertmanagerMissing) console.log(`skipping the real-Alertmanager abort test: ${ALERTMANAGER_MISSING}`);

const WEBHOOK = "/api/v1/alerts/alertmanager";
/** The caller's address as the control plane records it (IPv4, or IPv4-mapped IPv6). */
const LOOPBACK = /^(::ffff:)?127\.0\.0\.1$/;

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
  /** Principals of their own, so that who did what can be checked: */
  let alertmanagerToken: string; // role alertmanager: the only one that may push alerts
  let oncallToken: string; // a viewer: may halt, not unhalt
  let sreToken: string; // an operator: runs and aborts
  const secrets = tempDir("secrets");

  beforeAll(async () => {
    cluster = await startCluster({ agents: 3, labels: LABELS, serverArgs: ["--revert-wait", "10s"] });
    health = await flippableHealth();
    alertmanagerToken = await createToken(cluster.server, { name: "alertmanager", role: "alertmanager", kind: "service" });
    oncallToken = await createToken(cluster.server, { name: "oncall", role: "viewer" });
    sreToken = await createToken(cluster.server, { name: "sre", role: "operator" });
  });
  afterAll(async () => {
    await health?.close();
    await cluster?.close();
    secrets.cleanup();
  });
  afterEach(async () => {
    health.setStatus(200);
    await api(cluster.server, "DELETE", "/api/v1/halt");
    for (const a of cluster.agents) await api(cluster.server, "DELETE", `/api/v1/agents/${a.id}/faults`);
  });

  const server = () => cluster.server;
  const startRun = async (spec: string) => {
    const res = await api(server(), "POST", "/api/v1/runs", { spec });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.run.id as string;
  };
  const settled = (id: string, ms = 60_000) =>
    waitFor(`run ${id} to end`, async () => {
      const { body } = await api(server(), "GET", `/api/v1/runs/${id}`);
      return ["completed", "aborted", "failed"].includes(body.run.state) ? body : undefined;
    }, ms, 200);
  const runFaults = async (id: string) =>
    (await api(server(), "GET", "/api/v1/faults?state=all&limit=1000")).body.faults.filter((f: any) => f.runId === id);
  const noBurnAnywhere = () => cluster.agents.every((a) => burnerThreads(a.proc.pid).length === 0);
  const burnsRunning = (id: string) =>
    waitFor("3 burns running", async () => (await runFaults(id)).filter((f: any) => f.state === "running").length === 3, 20_000);
  /** The id of the newest audit row. */
  const lastAuditId = async () => ((await api(server(), "GET", "/api/v1/audit?limit=1")).body.entries[0]?.id as number | undefined) ?? 0;
  /** Audit rows of the webhook route after row `afterId`, newest first. */
  const webhookAudit = async (afterId: number) =>
    ((await api(server(), "GET", "/api/v1/audit?since=1h&limit=1000")).body.entries as any[]).filter((e) => e.route === WEBHOOK && e.id > afterId);

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

    expect(run.actor).toBe("admin"); // the principal of the token that started it
    const report = (await api(server(), "GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("held");
    expect(report.hits).toHaveLength(6);
  });

  it("an HTTP probe the test flips to 500 aborts the run; every host reverted", async () => {
    const id = await startRun(
      experiment({ steps: LONG_BURN, stopConditions: `    - { http: { url: "${health.url}", intervalMs: 200, failuresToAbort: 2 } }` }),
    );
    await burnsRunning(id);
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
    const report = (await api(server(), "GET", `/api/v1/runs/${id}/report`)).body.report;
    expect(report.verdict).toBe("rejected");
    expect(report.broke[0].type).toBe("breach");
  });

  it("an Alertmanager webhook alert aborts the run at once; the webhook takes only an alertmanager token", async () => {
    const id = await startRun(experiment({ steps: LONG_BURN, stopConditions: `    - { alert: { matchLabels: { severity: page } } }` }));
    await burnsRunning(id);
    const payload = (status: "firing" | "resolved") =>
      alertmanagerPayload(status, { alertname: "CheckoutErrors", labels: { severity: "page" }, fingerprint: "c0ffee0000000001", summary: "checkout 5xx above 1%" });
    // Nobody else can fire a stop condition: no token is 401, even the admin's is 403.
    const anonymous = await api(server(), "POST", WEBHOOK, payload("firing"), null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe("unauthenticated");
    const admin = await api(server(), "POST", WEBHOOK, payload("firing"));
    expect(admin.status).toBe(403);
    expect(admin.body.error.message).toMatch(/^admin \(admin\) may not POST \/api\/v1\/alerts\/alertmanager/);
    expect((await api(server(), "GET", "/api/v1/alerts")).body.alerts).toEqual([]);
    expect((await api(server(), "GET", `/api/v1/runs/${id}`)).body.run.state).toBe("running");

    const sentAt = Date.now();
    const res = await api(server(), "POST", WEBHOOK, payload("firing"), alertmanagerToken);
    expect(res.status).toBe(200);
    const { run, events } = await settled(id);
    expect(run.state).toBe("aborted");
    expect(run.reason).toMatch(/CheckoutErrors|severity/);
    for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
    expect(noBurnAnywhere()).toBe(true);
    const lastRevert = Math.max(...(events as any[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time)));
    console.log(`[measure] webhook breach: POST→last revert ack ${lastRevert - sentAt} ms`);
    expect((await api(server(), "POST", WEBHOOK, payload("resolved"), alertmanagerToken)).status).toBe(200);
  });

  it.skipIf(alertmanagerMissing)(
    "a real Alertmanager with an alertmanager token aborts the run; one without a token is refused (401) and aborts nothing",
    { timeout: 90_000 },
    async () => {
      const webhookUrl = `${server().httpUrl}${WEBHOOK}`;
      const tokenFile = join(secrets.path, "alertmanager-token");
      writeFileSync(tokenFile, `${alertmanagerToken}\n`, { mode: 0o600 });
      const id = await startRun(experiment({ steps: LONG_BURN, stopConditions: `    - { alert: { matchLabels: { severity: page } } }` }));
      await burnsRunning(id);
      const labels = { alertname: "CheckoutLatency", severity: "page", service: "checkout" };
      const before = await lastAuditId();

      // An Alertmanager without credentials: each push is refused and audited; the run goes on.
      const tokenless = await startAlertmanager(webhookUrl);
      if (!tokenless) throw new Error(ALERTMANAGER_MISSING);
      try {
        await tokenless.post([{ labels, annotations: { summary: "checkout p99 above 2 s" } }]);
        const refused = await waitFor("two refused pushes in the audit log", async () => {
          const rows = (await webhookAudit(before)).filter((e) => e.status === 401);
          return rows.length >= 2 ? rows : undefined;
        }, 20_000, 200);
        for (const row of refused) {
          expect(row).toMatchObject({ principal: null, role: null, method: "POST", path: WEBHOOK, outcome: "unauthenticated" });
          expect(row.source).toMatch(LOOPBACK);
        }
        console.log(`tokenless Alertmanager: ${refused.length} pushes refused with 401 so far`);
      } finally {
        await tokenless.stop();
      }
      expect((await api(server(), "GET", `/api/v1/runs/${id}`)).body.run.state).toBe("running");
      expect((await runFaults(id)).filter((f: any) => f.state === "running")).toHaveLength(3);
      expect((await api(server(), "GET", "/api/v1/alerts")).body.alerts).toEqual([]);
      expect((await webhookAudit(before)).filter((e) => e.status === 200)).toEqual([]);

      // The same alert through an Alertmanager whose receiver sends the token: the run aborts.
      const am = await startAlertmanager(webhookUrl, { bearerTokenFile: tokenFile });
      if (!am) throw new Error(ALERTMANAGER_MISSING);
      try {
        const sentAt = Date.now();
        await am.post([{ labels, annotations: { summary: "checkout p99 above 2 s" } }]);
        const { run, events } = await settled(id);
        expect(run.state).toBe("aborted");
        expect(run.reason).toMatch(/CheckoutLatency/);
        for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
        expect(noBurnAnywhere()).toBe(true);
        const lastRevert = Math.max(...(events as any[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time)));
        console.log(`[measure] real Alertmanager breach: alert posted to Alertmanager → last revert ack ${lastRevert - sentAt} ms`);
        const accepted = (await webhookAudit(before)).filter((e) => e.status === 200);
        expect(accepted.length).toBeGreaterThanOrEqual(1);
        expect(accepted[0]).toMatchObject({ principal: "alertmanager", role: "alertmanager", outcome: "ok" });
        expect(accepted[0].source).toMatch(LOOPBACK);

        // Resolve it (as Prometheus would), so later runs start with nothing firing.
        await am.post([{ labels, endsAt: new Date().toISOString() }]);
        await waitFor("the resolve to arrive", async () => (await api(server(), "GET", "/api/v1/alerts")).body.alerts.length === 0, 20_000, 200);
      } finally {
        await am.stop();
      }
    },
  );

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
      await burnsRunning(id);
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
    await burnsRunning(id);
    // A viewer may halt (anyone who can see can stop); the actor is the token's principal.
    const halt = await api(server(), "POST", "/api/v1/halt", { reason: "incident INC-42" }, oncallToken);
    expect(halt.status).toBe(200);
    expect(halt.body.halt).toMatchObject({ actor: "oncall", reason: "incident INC-42" });
    const { run } = await settled(id);
    expect(run.state).toBe("aborted");
    expect(run.reason).toContain("halted by oncall: incident INC-42");
    for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "halt" });
    expect(noBurnAnywhere()).toBe(true);

    const refused = await api(server(), "POST", "/api/v1/runs", { spec: experiment({ steps: LONG_BURN }) });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("incident INC-42");
    const adHoc = await api(server(), "POST", `/api/v1/agents/${cluster.agentId}/faults`, { kind: "cpu-burn", params: { load: 5 }, duration: "5s" });
    expect(adHoc.status).toBe(409);

    // ...but only an admin may lift it.
    const viewerUnhalt = await api(server(), "DELETE", "/api/v1/halt", undefined, oncallToken);
    expect(viewerUnhalt.status).toBe(403);
    expect((await api(server(), "GET", "/api/v1/halt")).body.halt.reason).toBe("incident INC-42");
    expect((await api(server(), "DELETE", "/api/v1/halt")).body.lifted.reason).toBe("incident INC-42");
    const again = await startRun(experiment({ steps: `    - { name: short, fault: cpu-burn, target: web, params: { load: 5 }, duration: 1s }` }));
    expect((await settled(again)).run.state).toBe("completed");
  });

  it("an operator abort reverts every host; the CLI follows the run and exits 2; both are the operator's", async () => {
    const env = cliEnv(server(), sreToken);
    const file = join(secrets.path, "burn.yaml");
    writeFileSync(file, experiment({ steps: LONG_BURN }));
    const follow = runCli(["run", file, "--follow"], env);
    const id = await waitFor("the run", async () => (await api(server(), "GET", "/api/v1/runs?state=active")).body.runs[0]?.id as string | undefined);
    await burnsRunning(id);
    const aborted = await runCli(["abort", id, "--reason", "enough"], env);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.stdout).toContain("aborted");
    const followed = await follow;
    expect(followed.code).toBe(2);
    expect(followed.stdout).toMatch(/step-started\s+\[burn\]/);
    expect(followed.stdout).toMatch(/aborted by sre: enough/);
    expect((await api(server(), "GET", `/api/v1/runs/${id}`)).body.run.actor).toBe("sre");
    for (const f of await runFaults(id)) expect(f).toMatchObject({ state: "reverted", reason: "aborted" });
    const report = await runCli(["report", id], env);
    expect(report.stdout).toContain("Verdict     INCONCLUSIVE");
  });

  it("guardrails refuse a run on hosts without the opt-in label, saying which rule", async () => {
    const spec = experiment({ steps: LONG_BURN }).replace("labels: { app: web }", "labels: { app: db }");
    const res = await api(server(), "POST", "/api/v1/runs", { spec });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("guardrail_refused");
  });
});

describe("a control plane restart mid-run", () => {
  it("marks the run failed with the reason at start-up, and the agents' leases clean the hosts", async () => {
    const cluster = await startCluster({ agents: 1, labels: LABELS, leaseTtl: "3s" });
    try {
      const { server } = cluster;
      const res = await api(server, "POST", "/api/v1/runs", { spec: experiment({ steps: LONG_BURN }) });
      expect(res.status).toBe(201);
      const id = res.body.run.id as string;
      await waitFor("the burn to run", () => burnerThreads(cluster.agent.pid).length === 1, 20_000);
      server.proc.kill("SIGKILL");
      await server.proc.exited;
      await waitFor("the lease to clean the host", () => burnerThreads(cluster.agent.pid).length === 0, 10_000);
      const [grpcPort, httpPort] = [server.grpcAddr, server.httpUrl].map((a) => Number(a.split(":").at(-1)));
      const again = await startServer({ dataDir: server.dataDir, grpcPort: grpcPort!, httpPort: httpPort!, leaseTtl: "3s" });
      const { body } = await api(again, "GET", `/api/v1/runs/${id}`);
      expect(body.run.state).toBe("failed");
      expect(body.run.reason).toMatch(/the control plane restarted during the run/);
      const fault = await waitFor("the agent's lease report", async () => {
        const f = (await api(again, "GET", "/api/v1/faults?state=all")).body.faults.find((x: any) => x.runId === id);
        return f?.state === "reverted" ? f : undefined;
      });
      expect(fault.reason).toBe("lease");
    } finally {
      await cluster.close();
    }
  });
});
