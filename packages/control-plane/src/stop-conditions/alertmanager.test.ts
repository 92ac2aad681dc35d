/** The receiver against a real Alertmanager: its webhook, its payload, its fingerprints. */
import { setTimeout as sleep } from "node:timers/promises";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ALERTMANAGER_MISSING, findAlertmanager, startAlertmanager } from "../../../../test/support/prometheus.js";
import type { TestAlertmanager } from "../../../../test/support/prometheus.js";
import { createAlertReceiver, registerAlertRoutes } from "./alert-receiver.js";
import { alertStopCondition } from "./alert.js";
import type { Breach, StopConditionWatcher } from "./types.js";

const log = pino({ level: "silent" });

async function until(what: string, timeoutMs: number, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

if (!findAlertmanager()) console.log(`skipping the real-Alertmanager test: ${ALERTMANAGER_MISSING}`);

describe.skipIf(!findAlertmanager())("alert stop condition (real Alertmanager)", () => {
  let app: FastifyInstance | undefined;
  let am: TestAlertmanager | undefined;
  let watcher: StopConditionWatcher | undefined;
  afterEach(async () => {
    watcher?.stop();
    await am?.stop();
    await app?.close();
    [watcher, am, app] = [undefined, undefined, undefined];
  });

  it("breaches when Alertmanager pushes a matching alert, and forgets it once resolved", async () => {
    const receiver = createAlertReceiver({ log });
    const posts: number[] = [];
    app = Fastify();
    app.addHook("onRequest", async (request) => {
      if (request.url === "/api/v1/alerts/alertmanager") posts.push(Date.now());
    });
    registerAlertRoutes(app, receiver);
    await app.listen({ host: "127.0.0.1", port: 0 });
    const address = app.server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    am = (await startAlertmanager(`http://127.0.0.1:${port}/api/v1/alerts/alertmanager`))!;

    watcher = alertStopCondition.create({ matchLabels: { severity: "page" } }, { log, alerts: receiver });
    const breaches: Breach[] = [];
    watcher.start((b) => breaches.push(b));

    await am.post([{ labels: { alertname: "DiskSlow", severity: "ticket" } }]);
    await until("the ticket alert", 10_000, () => receiver.firing().length === 1);
    expect(breaches).toEqual([]);

    const sent = performance.now();
    const labels = { alertname: "CheckoutErrors", severity: "page", service: "checkout" };
    await am.post([{ labels, annotations: { summary: "checkout 5xx above 1%" } }]);
    await until("a breach", 10_000, () => breaches.length > 0);
    console.log(`real Alertmanager: alert posted → breach after ${Math.round(performance.now() - sent)} ms (group_wait 0s)`);
    expect(breaches[0]!.reason).toMatch(/^1 firing alert matches \{severity="page"\}: CheckoutErrors\{service="checkout",severity="page"\} firing since /);

    // Our fingerprints are Alertmanager's own.
    const amAlerts = (await (await fetch(`${am.url}/api/v2/alerts`)).json()) as { fingerprint: string; labels: Record<string, string> }[];
    const amPage = amAlerts.find((a) => a.labels.alertname === "CheckoutErrors");
    const ours = receiver.firing().find((a) => a.labels.alertname === "CheckoutErrors");
    expect(ours).toMatchObject({ fingerprint: amPage!.fingerprint, labels, annotations: { summary: "checkout 5xx above 1%" } });

    // Prometheus resolves an alert by sending it again with endsAt now.
    await am.post([{ labels, endsAt: new Date().toISOString() }]);
    await until("the resolve", 10_000, () => receiver.firing().every((a) => a.labels.alertname !== "CheckoutErrors"));
    expect(receiver.firing().map((a) => a.labels.alertname)).toEqual(["DiskSlow"]);
    expect(await watcher.check()).toEqual({ healthy: true, detail: 'no firing alert matches {severity="page"}', value: 0 });
    expect(posts.length).toBeGreaterThanOrEqual(3);
  });
});
