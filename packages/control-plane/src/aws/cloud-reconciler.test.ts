/**
 * The cloud-revert journal and its reconciler against the stateful fake AWS (real SDK clients, real
 * HTTP on loopback, the EC2 Query wire protocol): a stop is journaled before its call, its revert
 * is made and confirmed by DescribeInstances, retried through an outage, swept in for ended runs
 * and past steps, and given up only when the instance no longer exists.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, expect, it } from "vitest";
import { fakeInstance, startFakeAws } from "../../../../test/support/fake-aws.js";
import type { FakeAws } from "../../../../test/support/fake-aws.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createAwsClients } from "./clients.js";
import type { AwsClients } from "./clients.js";
import { createCloudJournal } from "./cloud-journal.js";
import type { CloudJournal, CloudReverter } from "./cloud-journal.js";
import { createCloudReconciler, revertBackoffMs } from "./cloud-reconciler.js";
import type { CloudReconciler } from "./cloud-reconciler.js";
import { createEc2StartReverter } from "./cloud-reverters.js";
import { createAwsService } from "./service.js";
import type { AwsServiceWithLedger } from "./service.js";
import { GUARDRAILS } from "./test-support.js";
import type { AwsInstance } from "./types.js";

const log = pino({ level: "silent" });
const REGION = "eu-west-1";

async function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeEachEngine("cloud-revert journal and reconciler (fake AWS over HTTP)", (engine) => {
  let dir: string;
  let store: Store;
  let fake: FakeAws;
  let clients: AwsClients;
  let journal: CloudJournal;
  let aws: AwsServiceWithLedger;
  let reconciler: CloudReconciler | undefined;
  const env: Record<string, string | undefined> = {};

  const target = (id: string): AwsInstance => ({ instanceId: id, region: REGION, availabilityZone: `${REGION}a`, state: "running", tags: { "firedrill:opt-in": "true" } });
  const startReconciler = (opts: { baseBackoffMs?: number; maxBackoffMs?: number } = {}) => {
    reconciler = createCloudReconciler({
      journal,
      reverters: [createEc2StartReverter({ clients, ledger: aws.ledger, log })],
      log,
      intervalMs: 100,
      baseBackoffMs: opts.baseBackoffMs ?? 100,
      maxBackoffMs: opts.maxBackoffMs ?? 400,
      dueGraceMs: 0,
    });
    reconciler.start();
    return reconciler;
  };
  const insertRun = (id: string, state: string) =>
    store.db
      .prepare("INSERT INTO runs (id, name, spec_yaml, experiment, plan, state, actor, created_at, updated_at) VALUES (?, 'n', '', '{}', '{}', ?, 'alice', 1, 1)")
      .run(id, state);

  beforeEach(async () => {
    for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"]) env[k] = process.env[k];
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: "AKIAFAKE", AWS_SECRET_ACCESS_KEY: "fake", AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null" });
    dir = mkdtempSync(join(tmpdir(), "firedrill-cloud-revert-"));
    store = createStore(engine.engine === "sqlite" ? { dataDir: dir } : { ...(await engine.freshStoreOptions()), dataDir: dir });
    fake = await startFakeAws({ transitionMs: 200, state: { instances: { "i-01": fakeInstance("i-01"), "i-02": fakeInstance("i-02"), "i-03": fakeInstance("i-03") } } });
    clients = createAwsClients({ endpoint: fake.url, region: REGION, maxAttempts: 1 });
    journal = createCloudJournal(store.db);
    aws = createAwsService({ clients, db: store.db, log, journal, sleep: async () => {}, retry: { attempts: 2 } });
  });

  afterEach(async () => {
    await reconciler?.close();
    reconciler = undefined;
    clients.destroy();
    await fake.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it("journals each stop with its revert before the call, then starts the instance again until AWS shows it running", async () => {
    insertRun("run_a", "running");
    const [result] = await aws.stop([target("i-01")], { actor: "alice", runId: "run_a", step: "stop-db", revertDueAt: Date.now() + 60_000, guardrails: GUARDRAILS });
    expect(result).toMatchObject({ ok: true, call: "StopInstances" });
    expect(fake.state.instances["i-01"]!.state).toBe("stopping");
    const [entry] = journal.list({ runId: "run_a" });
    expect(entry).toMatchObject({ action: "ec2-stop", kind: "ec2-start", resource: "i-01", region: REGION, step: "stop-db", state: "pending", payload: { instanceIds: ["i-01"] } });
    // The ledger row and the journal entry were written before the StopInstances call.
    const stopCall = fake.calls.find((c) => c.action === "StopInstances")!;
    expect(entry!.createdAt).toBeLessThanOrEqual(stopCall.time);

    startReconciler();
    // Pending and not due: the step still holds it.
    await new Promise((r) => setTimeout(r, 400));
    expect(journal.get(entry!.id)!.state).toBe("pending");

    const wanted = journal.requestRevert({ runId: "run_a", step: "stop-db" }, "step stop-db ended", Date.now());
    expect(wanted.map((e) => e.state)).toEqual(["reverting"]);
    reconciler!.kick();
    const [done] = await journal.waitEnded([entry!.id], 10_000);
    expect(done).toMatchObject({ state: "confirmed", detail: expect.stringMatching(/^i-01 is (pending|running)$/) });
    expect(["pending", "running"]).toContain(fake.state.instances["i-01"]!.state);
    // The start is in the ledger too: the stop is no longer alone there.
    expect(aws.ledger.list({ runId: "run_a" }).map((l) => [l.action, l.outcome])).toEqual([
      ["start", "ok"],
      ["stop", "ok"],
    ]);
    expect(journal.countUnconfirmed()).toEqual({ reverting: 0, failed: 0 });
  });

  it("retries through an AWS outage with backoff, records the last error, and confirms once AWS answers", async () => {
    insertRun("run_b", "running");
    await aws.stop([target("i-02")], { actor: "alice", runId: "run_b", step: "s", guardrails: GUARDRAILS });
    await until("i-02 stopped", () => (fake.state.instances["i-02"]!.state === "stopping" || fake.state.instances["i-02"]!.state === "stopped") && true);
    fake.outage(1500);
    startReconciler();
    const [entry] = journal.requestRevert({ runId: "run_b" }, "run aborting", Date.now());
    reconciler!.kick();
    const failing = await until("a failed attempt", () => {
      const e = journal.get(entry!.id)!;
      return e.lastError !== null && e;
    });
    expect(failing).toMatchObject({ state: "reverting", lastError: expect.stringContaining("Unavailable") });
    expect(journal.countUnconfirmed()).toEqual({ reverting: 1, failed: 0 });
    expect(journal.unconfirmed({ runId: "run_b" }).map((e) => e.id)).toEqual([entry!.id]);
    const [done] = await journal.waitEnded([entry!.id], 10_000);
    expect(done!.state).toBe("confirmed");
    expect(done!.attempts).toBeGreaterThan(1);
    expect(fake.calls.filter((c) => c.status === 503).length).toBeGreaterThan(0);
  });

  it("sweeps in the stops of ended runs and of steps whose end is past, and fails only an instance that is gone", async () => {
    insertRun("run_c", "running");
    await aws.stop([target("i-01"), target("i-02")], { actor: "alice", runId: "run_c", step: "s", guardrails: GUARDRAILS });
    await aws.stop([target("i-03")], { actor: "alice", step: "adhoc", revertDueAt: Date.now() - 1, guardrails: GUARDRAILS });
    // i-02 is terminated behind firedrill's back: nothing can start it again.
    fake.state.instances["i-02"]!.state = "terminated";
    // The run ended (e.g. marked failed by a restart): its stops are reverted without anyone asking.
    store.db.prepare("UPDATE runs SET state = 'failed' WHERE id = 'run_c'").run();
    expect(journal.countUnconfirmedByRun(["run_c"]).get("run_c")).toBe(2);
    startReconciler();
    const ids = journal.list().map((e) => e.id);
    const ended = await journal.waitEnded(ids, 10_000);
    const byResource = Object.fromEntries(ended.map((e) => [e.resource, e]));
    expect(byResource["i-01"]).toMatchObject({ state: "confirmed", revertReason: "run run_c failed" });
    // The same words on either engine: the due time in ISO 8601 UTC, to the millisecond.
    expect(byResource["i-03"]).toMatchObject({ state: "confirmed", revertReason: `its step adhoc was due to end at ${new Date(byResource["i-03"]!.dueAt!).toISOString()}` });
    expect(byResource["i-02"]).toMatchObject({ state: "failed", lastError: expect.stringContaining("i-02 is terminated") });
    expect(journal.countUnconfirmed()).toEqual({ reverting: 0, failed: 1 });
  });

  it("cancels the revert when AWS refuses the stop itself (nothing was stopped), and keeps it when the outcome is unknown", async () => {
    fake.fail("StopInstances", "UnauthorizedOperation", 403);
    const [refused] = await aws.stop([target("i-01")], { actor: "alice", runId: "run_d", step: "s", guardrails: GUARDRAILS });
    expect(refused).toMatchObject({ ok: false, refusedBy: "aws" });
    expect(journal.list({ runId: "run_d" })).toMatchObject([{ resource: "i-01", state: "cancelled", detail: expect.stringContaining("AWS refused StopInstances") }]);
    // A 5xx after the retries: AWS may have stopped it; the revert stays wanted-to-be.
    fake.fail("StopInstances", "InternalError", 500, 5);
    const [unknown] = await aws.stop([target("i-02")], { actor: "alice", runId: "run_d", step: "s", guardrails: GUARDRAILS });
    expect(unknown).toMatchObject({ ok: false, refusedBy: "aws" });
    expect(journal.list({ runId: "run_d" }).map((e) => [e.resource, e.state])).toEqual([
      ["i-01", "cancelled"],
      ["i-02", "pending"],
    ]);
  });

  it("never reverts an action whose own call is still in flight (an abort mid-stop), and releases those a crash cut short", async () => {
    const made: string[] = [];
    const stub: CloudReverter = {
      kind: "stub",
      call: "Stub",
      describe: (e) => e.resource,
      confirm: async ({ entry }) => ({ confirmed: made.includes(entry.resource), detail: made.includes(entry.resource) ? "undone" : "in effect" }),
      revert: async ({ entry }) => void made.push(entry.resource),
    };
    // Recorded by a process that died mid-call: released when the reconciler starts.
    const orphan = journal.record({ runId: "run_x", action: "x", kind: "stub", region: REGION, resource: "orphan", payload: {}, actor: "t", now: Date.now() });
    reconciler = createCloudReconciler({ journal, reverters: [stub], log, intervalMs: 50 });
    reconciler.start();
    expect(journal.get(orphan)!.actedAt).not.toBeNull();
    // This process's call in flight: wanted (an abort), but not attempted until the call returns.
    const dueAt = Date.now() + 60_000;
    const inFlight = journal.record({ runId: "run_x", action: "x", kind: "stub", region: REGION, resource: "in-flight", payload: {}, actor: "t", now: Date.now() - 1000, dueAt });
    journal.requestRevert({ runId: "run_x" }, "run aborting", Date.now());
    await journal.waitEnded([orphan], 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(journal.get(inFlight)).toMatchObject({ state: "reverting", attempts: 0, actedAt: null });
    journal.markActed(inFlight, Date.now());
    // The call took ~1 s: the step's end moves by as much.
    expect(journal.get(inFlight)!.dueAt).toBeGreaterThanOrEqual(dueAt + 1000);
    const [done] = await journal.waitEnded([inFlight], 5000);
    expect(done).toMatchObject({ state: "confirmed", attempts: 1 });
    expect(made).toEqual(["orphan", "in-flight"]);
  });

  it("never holds more attempts at once than its concurrency, and backs off up to the cap", async () => {
    let inFlight = 0;
    let most = 0;
    const slow: CloudReverter = {
      kind: "slow",
      call: "Slow",
      describe: (e) => e.resource,
      confirm: async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 100));
        inFlight--;
        return { confirmed: true, detail: "done" };
      },
      revert: async () => {},
    };
    const ids = Array.from({ length: 10 }, (_, i) => journal.record({ action: "x", kind: "slow", region: REGION, resource: `r${i}`, payload: {}, actor: "t", now: Date.now() }));
    journal.requestRevert({ ids }, "test", Date.now());
    reconciler = createCloudReconciler({ journal, reverters: [slow], log, concurrency: 3, intervalMs: 50 });
    reconciler.start();
    const ended = await journal.waitEnded(ids, 10_000);
    expect(ended.every((e) => e.state === "confirmed")).toBe(true);
    expect(most).toBe(3);
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => revertBackoffMs(n, 1000, 30_000, () => 1));
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(revertBackoffMs(3, 1000, 30_000, () => 0)).toBe(2000);
  });
});
