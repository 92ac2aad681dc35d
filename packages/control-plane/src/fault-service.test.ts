/**
 * The fault service against a real store (temp dir), hub and gRPC server, with a real test agent
 * on the stream: the token scope and the server policy are checked before anything is sent.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FaultEventType } from "@firedrill/protocol";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { parseScope } from "./auth/scope.js";
import { ApiError } from "./errors.js";
import { parsePolicy } from "./experiments/policy.js";
import { createFaultService } from "./fault-service.js";
import type { FaultOutcome, FaultService, StartFaultOptions } from "./fault-service.js";
import { startGrpcServer } from "./grpc-server.js";
import type { GrpcServer } from "./grpc-server.js";
import { createAgentHub } from "./hub/agent-hub.js";
import type { AgentHub } from "./hub/agent-hub.js";
import { createMetrics } from "./metrics.js";
import { createStore } from "./store/store.js";
import type { Store } from "./store/store.js";
import { connectTestAgent, tokenAuthenticator } from "./test-support/test-agent.js";
import type { TestAgent } from "./test-support/test-agent.js";

const TOKEN = "test-join-token-0123456789";
const OPT_IN = { "firedrill:opt-in": "true" };
/** Tuesday 2026-03-10, 12:00 UTC (13:00 in Berlin). */
const TUESDAY_NOON = new Date("2026-03-10T12:00:00Z");
/** Saturday 2026-03-14, 12:00 UTC. */
const SATURDAY_NOON = new Date("2026-03-14T12:00:00Z");
const CAPABILITIES = { faultKinds: ["cpu-burn", "network-delay", "network-loss"], root: true, netem: true, nftables: true, tc: true };
const BURN = { kind: "cpu-burn", params: { load: 10 }, duration: "30s" };
const ALICE: StartFaultOptions = { actor: "alice" };

interface Harness {
  store: Store;
  faults: FaultService;
  /** Connects a test agent with these labels and waits for its Welcome. */
  agent(id: string, labels: Record<string, string>): Promise<TestAgent>;
  clock: { now: Date };
}

describe("FaultService.start: scope and server policy", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function harness(policyYaml = ""): Promise<Harness> {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-faults-"));
    const logger = pino({ level: process.env.FIREDRILL_TEST_LOG ?? "silent" });
    const store = createStore({ dataDir: dir });
    const hub: AgentHub = createAgentHub({
      store,
      metrics: createMetrics(store),
      logger,
      authenticate: tokenAuthenticator(TOKEN),
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 200,
      reconcileGraceMs: 300,
    });
    const grpc: GrpcServer = await startGrpcServer({ addr: "127.0.0.1:0", hub, logger });
    const clock = { now: TUESDAY_NOON };
    const faults = createFaultService({ store, hub, logger, ackTimeoutMs: 1500, leaseTtlMs: 3000, policy: parsePolicy(policyYaml), now: () => clock.now });
    const agents: TestAgent[] = [];
    cleanups.push(async () => {
      for (const a of agents) a.cancel();
      hub.close();
      await grpc.close(200);
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return {
      store,
      faults,
      clock,
      async agent(id, labels) {
        const agent = connectTestAgent({ address: grpc.address, token: TOKEN, agentId: id });
        agents.push(agent);
        agent.hello({ labels, capabilities: CAPABILITIES, facts: { hostname: `${id}.test` } });
        await agent.next("welcome");
        return agent;
      },
    };
  }

  /** Starts a fault and lets the agent accept it. */
  async function accepted(h: Harness, agent: TestAgent, body: unknown, options: StartFaultOptions = ALICE): Promise<FaultOutcome> {
    const outcome = h.faults.start(agent.agentId, body, options);
    const sent = await agent.next("startFault");
    agent.event(sent.faultId, FaultEventType.ACCEPTED);
    return outcome;
  }

  /** The ApiError a start is refused with. */
  async function refusal(promise: Promise<unknown>): Promise<ApiError> {
    const err = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(err)}`);
    return err;
  }

  const startFaults = (agent: TestAgent) => agent.received.filter((m) => m.message.case === "startFault");

  it("refuses a host without the opt-in label (422 naming opt-in) and sends nothing; an admin's override sends it and records why", async () => {
    const h = await harness();
    const agent = await h.agent("agt_1", { app: "web" });

    const err = await refusal(h.faults.start("agt_1", BURN, ALICE));
    expect(err.statusCode).toBe(422);
    expect(err.code).toBe("policy_refused");
    expect(err.message).toBe(
      'the server policy refuses this fault: opt-in: agent agt_1 (agt_1.test) lacks the label firedrill:opt-in=true; label the host if it may take faults (firedrill-agent --labels firedrill:opt-in=true); fix the host\'s labels or the policy, or (admins only) retry with --override-policy "why"',
    );
    expect(err.issues).toEqual([{ field: "opt-in", message: expect.stringContaining("lacks the label firedrill:opt-in=true") }]);
    const verdicts = err.details?.verdicts as { rule: string; ok: boolean }[];
    expect(verdicts.map((v) => [v.rule, v.ok])).toEqual([
      ["opt-in", false],
      ["exclusion-labels", true],
      ["windows", true],
      ["blackout-dates", true],
      ["one-network-fault-per-host", true],
      ["one-fault-per-kind-per-host", true],
      ["max-duration", true],
    ]);
    expect(h.store.listFaults({ state: "all" })).toEqual([]);

    const { fault, acknowledged } = await accepted(h, agent, BURN, { actor: "root-admin", overridePolicy: "  INC-42: reproduce on the unlabelled canary  " });
    expect(acknowledged).toBe(true);
    // The override's StartFault is the only one the agent ever got: the refused start sent nothing.
    expect(startFaults(agent).map((m) => (m.message.value as { faultId: string }).faultId)).toEqual([fault.id]);
    expect(h.store.getFault(fault.id)).toMatchObject({ state: "accepted", actor: "root-admin", policyOverride: "INC-42: reproduce on the unlabelled canary" });

    const empty = await refusal(h.faults.start("agt_1", BURN, { actor: "root-admin", overridePolicy: "   " }));
    expect(empty).toMatchObject({ statusCode: 400, code: "invalid_request", issues: [{ field: "overridePolicy", message: "is empty; give the reason" }] });
  });

  it("records the actor, and no override, on a fault the policy allows", async () => {
    const h = await harness();
    const agent = await h.agent("agt_1", { ...OPT_IN, app: "web" });
    const { fault } = await accepted(h, agent, BURN, { actor: "alice@example.com" });
    expect(h.store.getFault(fault.id)).toMatchObject({ actor: "alice@example.com", policyOverride: null, kind: "cpu-burn" });
  });

  it("refuses a host carrying an exclusion label", async () => {
    const h = await harness('excludeLabels: ["tier=db", pci]\n');
    await h.agent("db-1", { ...OPT_IN, tier: "db" });
    const err = await refusal(h.faults.start("db-1", BURN, ALICE));
    expect(err).toMatchObject({ statusCode: 422, code: "policy_refused" });
    expect(err.issues).toEqual([{ field: "exclusion-labels", message: "agent db-1 (db-1.test) carries the exclusion label tier=db: the policy keeps faults off it" }]);
    expect(h.store.listFaults({ state: "all" })).toEqual([]);
  });

  it("refuses outside the policy's windows (in their time zone) and on blackout dates", async () => {
    const h = await harness('windows:\n  - { days: mon-fri, hours: "10:00-16:00", tz: Europe/Berlin }\nblackoutDates: ["2026-03-10"]\n');
    await h.agent("agt_1", OPT_IN);
    h.clock.now = SATURDAY_NOON;
    const weekend = await refusal(h.faults.start("agt_1", BURN, ALICE));
    expect(weekend.issues).toEqual([
      {
        field: "windows",
        message: "now is Sat 2026-03-14 13:00 Europe/Berlin, outside the policy's window mon-fri 10:00-16:00 Europe/Berlin; the next one opens Mon 2026-03-16 10:00 Europe/Berlin",
      },
    ]);
    h.clock.now = TUESDAY_NOON; // inside the window, but a blackout date in Berlin
    const blackout = await refusal(h.faults.start("agt_1", BURN, ALICE));
    expect(blackout.issues).toEqual([
      { field: "blackout-dates", message: "today is 2026-03-10 in Europe/Berlin, a blackout date: no fault may start until the day is over there" },
    ]);
    expect(h.store.listFaults({ state: "all" })).toEqual([]);
  });

  it("refuses a fault longer than the policy's maxDuration", async () => {
    const h = await harness("maxDuration: 10m\n");
    await h.agent("agt_1", OPT_IN);
    const err = await refusal(h.faults.start("agt_1", { ...BURN, duration: "30m" }, ALICE));
    expect(err.issues).toEqual([{ field: "max-duration", message: "the fault lasts 30m, longer than the policy's maxDuration 10m; ask for at most 10m" }]);
  });

  it("refuses a second network fault, and a second fault of one kind, on a host (ad-hoc and run faults alike)", async () => {
    const h = await harness();
    const agent = await h.agent("agt_1", OPT_IN);
    const { fault: delay } = await accepted(h, agent, { kind: "network-delay", params: { delayMs: 100 }, duration: "5m" });

    const loss = await refusal(h.faults.start("agt_1", { kind: "network-loss", params: { percent: 10 }, duration: "1m" }, ALICE));
    expect(loss.issues).toEqual([
      {
        field: "one-network-fault-per-host",
        message: `agent agt_1 (agt_1.test) already has network-delay (${delay.id}, ad-hoc) active, and a host takes one network fault at a time; stop it first (firedrill fault stop --agent agt_1 ${delay.id}) or wait for it to end`,
      },
    ]);
    // A run's step is checked the same way (its plan ran before this fault existed).
    const fromRun = await refusal(h.faults.start("agt_1", { kind: "network-delay", params: { delayMs: 5 }, duration: "1m", runId: "run_1" }, { actor: "bob", fromRun: "run_1" }));
    expect(fromRun.issues?.map((i) => i.field)).toEqual(["one-network-fault-per-host", "one-fault-per-kind-per-host"]);
    expect(fromRun.message).toContain("wait for the other fault to end or stop it");

    // A cpu-burn is no network fault: allowed next to it.
    const { fault: burn } = await accepted(h, agent, BURN);
    expect(burn.state).toBe("accepted");
    expect(startFaults(agent)).toHaveLength(2);
  });

  it("lets a run's step start outside the window its run started in, but never outside the scope", async () => {
    const h = await harness('windows:\n  - { days: mon-fri, hours: "10:00-16:00", tz: Europe/Berlin }\n');
    const agent = await h.agent("agt_1", { ...OPT_IN, env: "staging" });
    h.clock.now = SATURDAY_NOON;
    const { fault } = await accepted(h, agent, { ...BURN, runId: "run_1" }, { actor: "carol", fromRun: "run_1" });
    expect(h.store.getFault(fault.id)).toMatchObject({ runId: "run_1", actor: "carol", policyOverride: null });
    const scoped = await refusal(h.faults.start("agt_1", { ...BURN, runId: "run_1" }, { actor: "carol", fromRun: "run_1", scope: parseScope("env=prod") }));
    expect(scoped).toMatchObject({ statusCode: 403, code: "out_of_scope" });
  });

  it("refuses an agent outside the token's scope (403 naming the rule) before anything else, even with an override", async () => {
    const h = await harness();
    const agent = await h.agent("web-2", { ...OPT_IN, env: "prod", app: "web" });
    const scope = parseScope("app=web,env!=prod");

    const err = await refusal(h.faults.start("web-2", BURN, { actor: "dave", scope }));
    expect(err.statusCode).toBe(403);
    expect(err.code).toBe("out_of_scope");
    expect(err.message).toBe(
      'agent web-2 (web-2.test) is outside your token\'s scope: rule "env!=prod" refuses it (labels app=web, env=prod, firedrill:opt-in=true); ask an admin for a token whose scope includes it',
    );
    expect(err.details).toEqual({ scope: "app=web,env!=prod", rule: "env!=prod" });
    const overridden = await refusal(h.faults.start("web-2", BURN, { actor: "root-admin", scope, overridePolicy: "INC-1" }));
    expect(overridden.code).toBe("out_of_scope");
    expect(h.store.listFaults({ state: "all" })).toEqual([]);

    const { fault } = await accepted(h, agent, BURN, { actor: "dave", scope: parseScope("app=web,env in (prod,staging)") });
    expect(startFaults(agent)).toHaveLength(1);
    expect(h.store.getFault(fault.id)?.actor).toBe("dave");
  });
});
