/**
 * Abort latency: a run burns CPU on three agents; a stop condition breaches; we measure the time
 * from the breach (as the run recorded it) to the last revert ack, and from the moment the test
 * broke the system to the breach. One row per breach kind and trial.
 */
import { createServer } from "node:http";
import { alertmanagerPayload } from "../test/support/alerts.js";
import { api, createToken } from "../test/support/api.js";
import { startCluster, waitFor } from "../test/support/processes.js";
import { startPrometheus } from "../test/support/prometheus.js";
import { printTable } from "./table.js";

const LABELS = "app=web,firedrill:opt-in=true";

function spec(stopCondition: string): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: abort-latency }
spec:
  hypothesis: "web survives a CPU burn"
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 5m }
  stopConditions:
    - ${stopCondition}
`;
}

export async function benchAbortLatency(trials = 3): Promise<void> {
  const cluster = await startCluster({ agents: 3, labels: LABELS });
  let status = 200;
  const health = createServer((_req, res) => {
    res.statusCode = status;
    res.end();
  });
  await new Promise<void>((resolve) => health.listen(0, "127.0.0.1", resolve));
  const healthUrl = `http://127.0.0.1:${(health.address() as { port: number }).port}/health`;
  const prom = await startPrometheus({ metrics: { errors_ratio: 0 } });
  const rows: (string | number)[][] = [];
  const cp = cluster.server;
  try {
    // The webhook takes only a token of the alertmanager role.
    const alertmanagerToken = await createToken(cp, { name: "alertmanager", role: "alertmanager", kind: "service" });
    const kinds: { kind: string; condition: string; breakIt: () => Promise<void>; heal: () => Promise<void> }[] = [
      {
        kind: "http (200 ms probes, 2 failures)",
        condition: `{ http: { url: "${healthUrl}", intervalMs: 200, failuresToAbort: 2 } }`,
        breakIt: async () => void (status = 500),
        heal: async () => void (status = 200),
      },
      {
        kind: "alertmanager webhook",
        condition: "{ alert: { matchLabels: { severity: page } } }",
        breakIt: async () => void (await api(cp, "POST", "/api/v1/alerts/alertmanager", alert("firing"), alertmanagerToken)),
        heal: async () => void (await api(cp, "POST", "/api/v1/alerts/alertmanager", alert("resolved"), alertmanagerToken)),
      },
    ];
    if (prom) {
      kinds.push({
        kind: "prometheus (1 s scrape, 200 ms query)",
        condition: `{ prometheus: { url: "${prom.url}", query: "errors_ratio > 0.01", intervalMs: 200 } }`,
        breakIt: async () => prom.target.set("errors_ratio", 0.05),
        heal: async () => {
          prom.target.set("errors_ratio", 0);
          // Prometheus keeps the breaching sample until its next scrape: wait for the steady state.
          await waitFor("prometheus to see the fix", async () => {
            const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent("errors_ratio > 0.01")}`);
            return ((await res.json()) as { data: { result: unknown[] } }).data.result.length === 0;
          }, 15_000, 200);
        },
      });
    } else {
      console.log("prometheus is not installed: its row is skipped (scripts/setup.sh installs it)");
    }
    for (const k of kinds) {
      for (let trial = 1; trial <= trials; trial++) {
        const res = await api(cp, "POST", "/api/v1/runs", { spec: spec(k.condition) });
        if (res.status !== 201) throw new Error(JSON.stringify(res.body));
        const id = res.body.run.id as string;
        await waitFor("3 burns running", async () => {
          const { body } = await api(cp, "GET", `/api/v1/runs/${id}`);
          if (["aborted", "completed", "failed"].includes(body.run.state)) throw new Error(`${k.kind} trial ${trial}: run ended ${body.run.state}: ${body.run.reason}`);
          const faults = (await api(cp, "GET", "/api/v1/faults?state=active")).body.faults as { runId: string; state: string }[];
          return faults.filter((f) => f.runId === id && f.state === "running").length === 3;
        }, 30_000);
        const brokeAt = Date.now();
        await k.breakIt();
        const { events, run } = await waitFor("the abort", async () => {
          const { body } = await api(cp, "GET", `/api/v1/runs/${id}`);
          return ["aborted", "completed", "failed"].includes(body.run.state) ? body : undefined;
        }, 60_000, 50);
        await k.heal();
        if (run.state !== "aborted") throw new Error(`run ${id} ended ${run.state}: ${run.reason}`);
        const breach = Date.parse((events as { type: string; time: string }[]).find((e) => e.type === "breach")!.time);
        const reverts = (events as { type: string; time: string }[]).filter((e) => e.type === "fault-reverted").map((e) => Date.parse(e.time));
        rows.push([k.kind, trial, `${breach - brokeAt} ms`, `${Math.max(...reverts) - breach} ms`, `${reverts.length}/3`]);
      }
    }
  } finally {
    await prom?.stop();
    health.close();
    await cluster.close();
  }
  printTable(
    "abort latency on a run of 3 agents (cpu-burn); breach → last revert ack is what firedrill controls",
    ["breach kind", "trial", "broken → breach", "breach → last revert ack", "reverted"],
    rows,
  );
}

function alert(status: "firing" | "resolved") {
  return alertmanagerPayload(status, { alertname: "Errors", labels: { severity: "page" }, fingerprint: "bench000000000001" });
}
