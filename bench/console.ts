/**
 * Console latency: the time from a run event on the server to its appearance in the page.
 *
 * A `firedrill server` process (`--insecure-agents`, warn logs), 1,000 simulated agents connected
 * (test/support/sim-fleet.ts: the real protocol, PROGRESS every 2 s per running fault), and a run
 * on 200 of them (`mode: { count: 200 }`): a 5 s wait step, then a cpu-burn on the 200, with an
 * http stop condition probing a local endpoint every 500 ms (its samples stream to the page too).
 * The run page is open in chromium (test/support/browser.ts) from the start, logged in through the
 * form. The run is held HOLD_MS (measurement events: one per fault every 10 s), then aborted (a
 * revert event per fault) and followed to its end.
 *
 * In the page, a MutationObserver installed before any script of the page (page.addInitScript)
 * records Date.now() when each `li[data-event-id]` is added (or takes a new id); the event's
 * server time is its `data-time` (epoch ms, the same machine clock). Only events whose server time
 * is after the page had shown its timeline count (the earlier ones are a replay, not live). Prints
 * p50/p95/p99/max per event type and in all against the goal (issue 14): p99 < 500 ms.
 */
import type { Browser } from "playwright-core";
import { healthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import { api } from "../test/support/api.js";
import { BrowserWatch, chromiumMissing, launchChromium } from "../test/support/browser.js";
import { startSimFleet } from "../test/support/sim-fleet.js";
import type { SimFleet } from "../test/support/sim-fleet.js";
import { killAll, sleep, startServer, tempDir, waitFor } from "../test/support/processes.js";
import type { ServerHandle } from "../test/support/processes.js";
import { printTable } from "./table.js";

/** Agents connected. */
const AGENTS = 1000;
/** Agents the run targets. */
const TARGETS = 200;
/** The goal of issue 14: p99 of server event → DOM, in ms. */
const GOAL_P99_MS = 500;
/** How long the run holds its faults before the abort (two rounds of measurement events). */
const HOLD_MS = 25_000;
/** Longest wait for the fleet to connect. */
const CONNECT_TIMEOUT_MS = 120_000;
/** After the run ended: time for the page to render what is still on its way. */
const SETTLE_MS = 3000;

const spec = (healthUrl: string) => `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: bench-console }
spec:
  hypothesis: "the fleet keeps answering while 200 hosts burn"
  targets:
    some: { selector: { labels: { app: sim } }, mode: { count: ${TARGETS} } }
  steps:
    - { name: settle, wait: 5s }
    - { name: burn, fault: cpu-burn, target: some, params: { load: 5 }, duration: 30m, startAfter: [settle] }
  stopConditions:
    - { http: { url: "${healthUrl}", intervalMs: 500, failuresToAbort: 1000 } }
`;

/** Installed in the page before its own scripts: [event id, data-time, seen at] per event, first sighting. */
const OBSERVER = `(() => {
  const seen = new Map();
  window.__firedrillSeen = seen;
  const note = (el, now) => {
    const id = el.getAttribute("data-event-id");
    if (id === null || seen.has(id)) return;
    seen.set(id, [Number(el.getAttribute("data-time")), now]);
  };
  new MutationObserver((records) => {
    const now = Date.now();
    for (const r of records) {
      if (r.type === "attributes") {
        if (r.target.matches && r.target.matches("li[data-event-id]")) note(r.target, now);
        continue;
      }
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        if (n.matches("li[data-event-id]")) note(n, now);
        for (const el of n.querySelectorAll("li[data-event-id]")) note(el, now);
      }
    }
  }).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-event-id"] });
})();`;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export async function benchConsole(): Promise<void> {
  const why = chromiumMissing();
  if (why) {
    console.log(`\nconsole latency: skipped: ${why}`);
    return;
  }
  const dir = tempDir("bench-console");
  const health = await healthEndpoint();
  let server: ServerHandle | undefined;
  let fleet: SimFleet | undefined;
  let browser: Browser | undefined;
  let watch: BrowserWatch | undefined;
  try {
    server = await startServer({ dataDir: dir.path, extraArgs: ["--insecure-agents", "--log-level", "warn"] });
    const s = server;
    const t0 = performance.now();
    fleet = await startSimFleet({ address: s.grpcAddr, joinToken: s.joinToken, agents: AGENTS });
    await fleet.waitConnected(AGENTS, CONNECT_TIMEOUT_MS);
    await waitFor(`${AGENTS} agents connected on the server`, async () => (await api(s, "GET", "/api/v1/agents?limit=1")).body.connected >= AGENTS, 60_000, 500);
    console.log(`console latency: ${AGENTS} simulated agents connected in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    browser = await launchChromium();
    // Console errors, page errors, failed requests: printed below.
    watch = new BrowserWatch(browser, "bench");
    const { page } = await watch.open();
    page.setDefaultTimeout(30_000);
    const pageProblems = watch.problems;
    await page.addInitScript(OBSERVER);
    await page.goto(`${s.httpUrl}/`);
    await page.locator("input[name=token]").fill(s.adminToken);
    await page.locator("form[data-testid=login]").getByRole("button", { name: "Log in" }).click();
    await page.locator("[data-testid=whoami]").waitFor();

    const started = await api(s, "POST", "/api/v1/runs", { spec: spec(health.url) });
    if (started.status !== 201) throw new Error(`POST /api/v1/runs: HTTP ${started.status} ${JSON.stringify(started.body).slice(0, 500)}`);
    const runId = started.body.run.id as string;
    await page.goto(`${s.httpUrl}/#/runs/${runId}`);
    await page.locator("ol[data-testid=timeline] li[data-event-id]").first().waitFor();
    const readyAt = await page.evaluate<number>("Date.now()");

    await waitFor(`${TARGETS} faults running`, async () => {
      const { run } = (await api(s, "GET", `/api/v1/runs/${runId}`)).body;
      return (run.faultCounts?.running ?? 0) >= TARGETS;
    }, 60_000, 500);
    await sleep(HOLD_MS);
    const aborted = await api(s, "POST", `/api/v1/runs/${runId}/abort`, { reason: "bench console: abort" });
    if (aborted.status !== 200) throw new Error(`abort: HTTP ${aborted.status} ${JSON.stringify(aborted.body).slice(0, 500)}`);
    await waitFor("the page to show the run aborted", async () => /aborted/.test((await page.locator("[data-testid=run-state]").textContent()) ?? ""), 60_000, 200);
    await sleep(SETTLE_MS);

    const seen = new Map((await page.evaluate<[string, [number, number]][]>("[...window.__firedrillSeen.entries()]")).map(([id, v]) => [id, v]));
    const events = (await api(s, "GET", `/api/v1/runs/${runId}`)).body.events as { id: number; type: string; time: string }[];
    const live = events.filter((e) => Date.parse(e.time) >= readyAt);
    const byType = new Map<string, number[]>();
    let missing = 0;
    for (const e of live) {
      const at = seen.get(String(e.id));
      if (!at) {
        missing++;
        continue;
      }
      const ms = at[1] - at[0];
      const type = ["fault-acked", "fault-started", "measurement", "fault-reverted", "stop-condition"].includes(e.type) ? e.type : "other";
      byType.set(type, [...(byType.get(type) ?? []), ms]);
    }
    const all = [...byType.values()].flat();
    const row = (name: string, values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted.length === 0
        ? [name, 0, "-", "-", "-", "-"]
        : [name, sorted.length, quantile(sorted, 0.5), quantile(sorted, 0.95), quantile(sorted, 0.99), sorted[sorted.length - 1]!];
    };
    printTable(
      `console latency: server event time → li[data-event-id] in the page (ms), ${AGENTS} agents connected, a run on ${TARGETS}`,
      ["events", "count", "p50", "p95", "p99", "max"],
      [...[...byType.keys()].sort().map((k) => row(k, byType.get(k)!)), row("all", all)],
    );
    const p99 = all.length ? quantile([...all].sort((a, b) => a - b), 0.99) : NaN;
    printTable("console latency against the goal", ["measure", "value", "goal", "met"], [
      ["p99 event → DOM (ms)", Number.isNaN(p99) ? "-" : p99, `< ${GOAL_P99_MS}`, p99 < GOAL_P99_MS ? "yes" : "NO"],
      ["live events shown / on the server", `${live.length - missing} / ${live.length}`, "all", missing === 0 ? "yes" : "NO"],
      ["events replayed before the page was ready (not counted)", events.length - live.length, "", ""],
      ["problems in the page (console errors, page errors, failed requests)", pageProblems.length, "0", pageProblems.length === 0 ? "yes" : "NO"],
    ]);
    for (const p of pageProblems.slice(0, 10)) console.log(`  ${p}`);
  } finally {
    await watch?.finish().catch(() => {});
    await browser?.close().catch(() => {});
    await fleet?.close();
    await killAll();
    await health.close();
    dir.cleanup();
  }
}
