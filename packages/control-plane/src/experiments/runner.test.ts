import { tokenAuthenticator } from "../test-support/test-agent.js";
/**
 * The runner's plan and start under a token scope: a real store (temp dir), run store, hub and
 * fault service; agents known to the store; AWS answered by a stub. Nothing is executed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseScope } from "../auth/scope.js";
import { instance } from "../aws/test-support.js";
import type { AwsInstance, AwsService } from "../aws/types.js";
import { ApiError } from "../errors.js";
import { createFaultService } from "../fault-service.js";
import { createAgentHub } from "../hub/agent-hub.js";
import type { AgentHub } from "../hub/agent-hub.js";
import { createMetrics } from "../metrics.js";
import { createRunStore } from "../store/run-store.js";
import type { RunStore } from "../store/run-store.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { createAlertReceiver } from "../stop-conditions/alert-receiver.js";
import { testAgent } from "../test-support/agent-records.js";
import type { GuardrailVerdict } from "./guardrails.js";
import { DEFAULT_POLICY } from "./policy.js";
import { MAX_SAMPLES_PER_CONDITION, SAMPLE_THINNING, createRunner, keepsSample } from "./runner.js";
import type { Runner } from "./runner.js";

/** Tuesday 2026-03-10, 12:00 UTC. */
const TUESDAY_NOON = new Date("2026-03-10T12:00:00Z");

const WEB_BURN = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: web-burn }
spec:
  hypothesis: checkout stays green while web burns CPU
  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 1m }
`;

const FLEET_BURN = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: fleet-burn }
spec:
  hypothesis: checkout stays green while the fleet burns CPU
  targets:
    fleet: { selector: { aws: { region: eu-west-1, tags: { app: web } } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: fleet, duration: 1m }
`;

/** An AWS stub that knows running instances and nothing else. */
function stubAws(instances: AwsInstance[]): AwsService {
  const unused = (): never => {
    throw new Error("not used by these tests");
  };
  return {
    resolveInstances: async () => instances,
    describeGroups: unused,
    listGroups: unused,
    terminate: unused,
    checkTerminate: unused,
    stop: unused,
    start: unused,
    alarmStates: unused,
  };
}

describe("runner: token scopes", () => {
  let dir: string;
  let store: Store;
  let runs: RunStore;
  let hub: AgentHub;
  let runner: Runner;

  const logger = pino({ level: "silent" });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-runner-"));
    store = createStore({ dataDir: dir });
    runs = createRunStore(store.db);
    hub = createAgentHub({
      store,
      metrics: createMetrics(store),
      logger,
      authenticate: tokenAuthenticator("no agent connects in this test"),
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 200,
      reconcileGraceMs: 300,
    });
    const faults = createFaultService({ store, hub, logger, ackTimeoutMs: 500, leaseTtlMs: 3000, policy: DEFAULT_POLICY });
    const aws = stubAws([
      instance("i-0aaa000000000001", "web-asg", { app: "web", env: "staging" }),
      instance("i-0aaa000000000002", "web-asg", { app: "web", env: "prod" }),
      // Not opted in: never a candidate, so the scope does not care about it.
      { ...instance("i-0aaa000000000003", undefined, { app: "web", env: "prod" }), tags: { app: "web", env: "prod" } },
    ]);
    runner = createRunner({ store, runs, hub, faults, logger, policy: DEFAULT_POLICY, alerts: createAlertReceiver({ log: logger }), ackTimeoutMs: 500, leaseTtlMs: 3000, now: () => TUESDAY_NOON, aws });
    for (const [id, env] of [
      ["web-1", "staging"],
      ["web-2", "prod"],
    ] as const) {
      const a = testAgent(id, { labels: { app: "web", env, "firedrill:opt-in": "true" } });
      store.upsertAgent({ id: a.id, hostname: `${id}.test`, version: a.version, facts: a.facts, labels: a.labels, capabilities: a.capabilities, instanceId: null, availabilityZone: null }, Date.now());
    }
  });

  afterEach(async () => {
    await runner.close();
    hub.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scopeVerdict = (verdicts: GuardrailVerdict[]): GuardrailVerdict => {
    const v = verdicts.find((x) => x.rule === "scope");
    if (!v) throw new Error("no scope verdict");
    return v;
  };

  it("plans a scope that excludes a host the group may pick as a failed scope verdict naming the host and the rule", async () => {
    const { plan } = await runner.plan(WEB_BURN, { scope: parseScope("app=web,env!=prod") });
    expect(plan.allowed).toBe(false);
    expect(plan.guardrails.filter((v) => !v.ok).map((v) => v.rule)).toEqual(["scope"]);
    expect(scopeVerdict(plan.guardrails)).toEqual({
      rule: "scope",
      ok: false,
      message:
        'web: agent web-2 (web-2.test) is outside the token\'s scope: rule "env!=prod" refuses it; narrow the selector to hosts and instances within app=web,env!=prod, or ask an admin for a token whose scope includes them',
    });
  });

  it("refuses to start such a run with the guardrail refusal (422), and records no run", async () => {
    const err = await runner.start(WEB_BURN, "alice", { scope: parseScope("env in (staging)") }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiError);
    const api = err as ApiError;
    expect(api).toMatchObject({ statusCode: 422, code: "guardrail_refused" });
    expect(api.message).toContain('the guardrails refuse this run: scope: web: agent web-2 (web-2.test) is outside the token\'s scope: rule "env in (staging)" refuses it');
    expect(api.issues).toEqual([{ field: "guardrails.scope", message: expect.stringContaining('rule "env in (staging)" refuses it') }]);
    expect(runs.listRuns({ limit: 10, active: false })).toEqual([]);
  });

  it("passes a scope that holds every host the group may pick, and says so without a scope", async () => {
    const { plan } = await runner.plan(WEB_BURN, { scope: parseScope("app=web, env in (staging,prod)") });
    expect(plan.allowed).toBe(true);
    expect(scopeVerdict(plan.guardrails)).toEqual({
      rule: "scope",
      ok: true,
      message: "every target that may be picked (2 hosts) is within the token's scope app=web,env in (staging,prod)",
    });
    const unscoped = await runner.plan(WEB_BURN);
    expect(scopeVerdict(unscoped.plan.guardrails)).toEqual({
      rule: "scope",
      ok: true,
      message: "no token scope applies: any host or instance the other rules allow may be targeted",
    });
  });

  it("checks EC2 instances an aws group may pick by their tags", async () => {
    const refused = await runner.plan(FLEET_BURN, { scope: parseScope("env!=prod") });
    expect(scopeVerdict(refused.plan.guardrails)).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^fleet: instance i-0aaa000000000002 \(web-asg\) is outside the token's scope: rule "env!=prod" refuses its tags; narrow/),
    });
    const allowed = await runner.plan(FLEET_BURN, { scope: parseScope("app=web") });
    expect(scopeVerdict(allowed.plan.guardrails)).toEqual({
      rule: "scope",
      ok: true,
      message: "every target that may be picked (0 hosts and 2 instances) is within the token's scope app=web",
    });
  });
});

describe("runner: stop-condition samples kept", () => {
  it(`keeps the first ${MAX_SAMPLES_PER_CONDITION} observations of a condition, then one in ${SAMPLE_THINNING}`, () => {
    let kept = 0;
    for (let seen = 1; seen <= MAX_SAMPLES_PER_CONDITION + 1000; seen++) if (keepsSample(seen)) kept++;
    expect(kept).toBe(MAX_SAMPLES_PER_CONDITION + 100);
    expect([MAX_SAMPLES_PER_CONDITION, MAX_SAMPLES_PER_CONDITION + 1, MAX_SAMPLES_PER_CONDITION + 10].map(keepsSample)).toEqual([true, false, true]);
  });
});
