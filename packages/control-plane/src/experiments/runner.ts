/**
 * The experiment runner: pending → preflight → running → completed | aborted | failed.
 *
 * Preflight checks every stop condition once (steady state); a breach there refuses the run. While
 * running, steps start per their DAG, faults fan out to agents in parallel with bounded waits for
 * acks, and the stop conditions are watched. Abort (breach, operator, halt, agent lost, a refused
 * or failed fault): no new steps, every fault of the run is told to revert (the stop is recorded:
 * the hub sends it again on every reconnect until the agent confirms, or its lease must have ended
 * the fault), revert acks are awaited (bounded), and whatever could not be confirmed is recorded.
 * Outcomes that arrive after the run has ended (a late confirmation, a revert assumed by lease, a
 * revert given up) are recorded on the run too. Every transition, ack, measurement and breach is a
 * timestamped event on the run.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { RevertReason, formatDuration, plural } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { Scope } from "../auth/scope.js";
import { ApiError } from "../errors.js";
import { describeHalt, liftHalt, readHalt, writeHalt } from "../halt.js";
import type { HaltState, LiftedHalt } from "../halt.js";
import type { FaultService } from "../fault-service.js";
import type { AgentHub, FaultUpdate } from "../hub/agent-hub.js";
import type { RunEvent, RunRecord, RunStore, NewRunEvent } from "../store/run-store.js";
import { isTerminalRunState } from "../store/run-store.js";
import type { Store } from "../store/store.js";
import { LEASE_ASSUMED_REASON } from "../store/types.js";
import type { FaultRecord } from "../store/types.js";
import { createWatcher, describeStopCondition } from "../stop-conditions/index.js";
import type { AlertSource, StopConditionStatus, StopConditionWatcher } from "../stop-conditions/types.js";
import { isCloudFaultKind } from "../aws/faults.js";
import type { AwsGuardrails, AwsInstance, AwsService, InstanceActionResult } from "../aws/types.js";
import { NETWORK_DISRUPT_KIND, parseNetworkDisruptParams } from "../aws/network-disrupt.js";
import type { CloudJournal, CloudRevertChange, CloudRevertEntry } from "../aws/cloud-journal.js";
import type { CloudReconciler } from "../aws/cloud-reconciler.js";
import { planAws } from "./aws-plan.js";
import { describeCloudAction, describeTerminations } from "./cloud-actions.js";
import { mergeGuardrails } from "./guardrails.js";
import { createPlan, previewPlan } from "./plan.js";
import { describeAllReverts, describeCloudReverts, summarizeReverts } from "./report.js";
import { awsGuardrailsFrom } from "./policy.js";
import type { PlannedStep, RunPlan } from "./plan.js";
import { parseExperimentForApi } from "./spec-pool.js";
import type { Experiment, GuardrailsSpec } from "./types.js";

/** Options of {@link createRunner}. */
export interface RunnerOptions {
  store: Store;
  runs: RunStore;
  hub: AgentHub;
  faults: FaultService;
  logger: Logger;
  /** The server's guardrail policy. */
  policy: GuardrailsSpec;
  alerts: AlertSource;
  ackTimeoutMs: number;
  leaseTtlMs: number;
  /** How long an abort waits for revert acks before recording them unconfirmed. @default 20000 */
  revertWaitMs?: number;
  /** Clock, injectable for tests of windows. @default () => new Date() */
  now?: () => Date;
  /** AWS, for aws targets, ec2-terminate / ec2-stop and cloudwatchAlarm stop conditions. */
  aws?: AwsService;
  /**
   * The cloud-revert journal (ec2-stop writes each stop there with its revert before the call) and
   * its reconciler, which makes the reverts. The runner wants a step's reverts at its end and a
   * run's on abort, then waits (bounded) for AWS to confirm them. Needed for ec2-stop.
   */
  cloud?: { journal: CloudJournal; reconciler: Pick<CloudReconciler, "kick"> };
  /**
   * Replicas on a shared store (docs/ha.md): which replica drives each run. Absent (one server):
   * every run left active at start-up was interrupted by a restart.
   */
  ownership?: RunOwnership;
  /** The other replicas: aborts of runs they drive, and halts. Absent: there are none. */
  peers?: RunnerPeers;
}

/** Run ownership among replicas (ha/run-owners.ts behind it). */
export interface RunOwnership {
  /** Of these active runs, those no replica ever claimed (failed at start-up as interrupted); the others are the leader's to take over. */
  unclaimed(runIds: string[]): string[];
  /** This replica drives the run from now on. */
  claim(runId: string): void;
  /** The run has ended. */
  release(runId: string): void;
}

/** What the runner asks of the other replicas. */
export interface RunnerPeers {
  /** Asks the replica driving `runId` to abort it; false when no live replica does. */
  abortRemote(runId: string, reason: string, actor: string): boolean;
  /** Tells every other replica of the halt: they abort the runs they drive (their agents are stopped by the hub's broadcast). */
  halted(reason: string, actor: string): void;
}

/** Options of {@link Runner.plan} and {@link Runner.start}. */
export interface RunScopeOptions {
  /**
   * The caller's token scope. Every host the plan may pick (by its labels) and every EC2 instance
   * (by its tags) must be within it, else the `scope` guardrail refuses. Null or absent: unscoped.
   */
  scope?: Scope | null;
}

/** Runs experiments. */
export interface Runner {
  /** Parses and plans an experiment without acting. Thrown: ApiError 400 with the spec's issues. */
  plan(specYaml: string, options?: RunScopeOptions): Promise<{ experiment: Experiment; plan: RunPlan }>;
  /**
   * Adds to a plan what each host fault step would do on each host, asked of the agents (a dry
   * run, a few seconds at most; see previewPlan).
   */
  previewPlan(plan: RunPlan): Promise<RunPlan>;
  /**
   * Starts a run and returns it (pending); it proceeds in the background. Its faults are started
   * with `actor` and the scope (a host whose labels left the scope mid-run refuses its fault, which
   * aborts the run).
   * Thrown: ApiError 400 (spec), 409 (halted), 422 (a guardrail refused, the scope included; the
   * verdicts are attached).
   */
  start(specYaml: string, actor: string, options?: RunScopeOptions): Promise<RunRecord>;
  /** Aborts a run; resolves when it has ended. Thrown: ApiError 404/409. */
  abort(runId: string, reason: string, actor: string): Promise<RunRecord>;
  /** Sets the global halt: aborts every run, reverts every fault everywhere, refuses new runs. */
  halt(reason: string, actor: string): Promise<HaltState>;
  /** Lifts the halt. Returns the halt that was lifted, if any. */
  unhalt(actor: string): LiftedHalt | undefined;
  haltState(): HaltState | undefined;
  /**
   * Every new run event, as it is stored; and every stop-condition sample stored (`sample`), as the
   * console's live charts take them.
   */
  readonly events: EventEmitter<RunnerEvents>;
  /** Resolves when the run has ended (immediately if it has). */
  settled(runId: string): Promise<RunRecord | undefined>;
  /** Aborts active runs (reason: shutdown) and stops their watchers. */
  close(): Promise<void>;
  /**
   * Drives a run another replica drove until it died (its ownership already taken over): the
   * faults it started keep running to their end under its stop conditions (a breach, an abort or a
   * halt stops them), steps it had not started are not run. False when the run has ended.
   */
  adopt(runId: string, previousReplica: string): boolean;
  /** Another replica's halt: aborts every run driven here (the halt state is in the store already). */
  haltFromPeer(reason: string, actor: string): Promise<void>;
  /** Another replica asks to abort a run driven here; false when it is not driven here. */
  abortFromPeer(runId: string, reason: string, actor: string): boolean;
  /** Ids of the runs this process drives now. */
  drivenHere(): string[];
}

/** One stop-condition observation of a run, as stored and announced (SampleJson plus the run). */
export interface RunSampleEvent {
  runId: string;
  /** The condition's index in `spec.stopConditions`. */
  c: number;
  /** Epoch ms. */
  at: number;
  /** What the chart plots; null: nothing (e.g. no answer). */
  v: number | null;
  /** Healthy. */
  ok: boolean;
}

/** Events of {@link Runner.events}. */
export interface RunnerEvents {
  event: [RunEvent];
  sample: [RunSampleEvent];
}

/** Samples kept per stop condition per run; past that, one observation in {@link SAMPLE_THINNING}. */
export const MAX_SAMPLES_PER_CONDITION = 20_000;
/** Past {@link MAX_SAMPLES_PER_CONDITION}, one observation in this many is kept. */
export const SAMPLE_THINNING = 10;

/**
 * Whether the `seen`-th observation of a stop condition (1-based) is stored: the first
 * {@link MAX_SAMPLES_PER_CONDITION}, then one in {@link SAMPLE_THINNING}.
 */
export function keepsSample(seen: number): boolean {
  return seen <= MAX_SAMPLES_PER_CONDITION || (seen - MAX_SAMPLES_PER_CONDITION) % SAMPLE_THINNING === 0;
}

/** Creates a run id: `run_` and 12 hex characters. */
export function newRunId(): string {
  return `run_${randomBytes(6).toString("hex")}`;
}

/** Creates the runner. On creation, runs left active by a previous process are marked failed. */
export function createRunner(options: RunnerOptions): Runner {
  const { store, runs, hub, faults } = options;
  const log = options.logger;
  const now = options.now ?? (() => new Date());
  const revertWaitMs = options.revertWaitMs ?? 20_000;
  const events = new EventEmitter<RunnerEvents>();
  events.setMaxListeners(0);
  const active = new Map<string, ActiveRun>();

  // Each says what is left and what undoes it: agents' leases end host faults, never cloud actions.
  const activeAtStart = runs.listRuns({ active: true });
  const unclaimed = new Set(options.ownership ? options.ownership.unclaimed(activeAtStart.map((r) => r.id)) : activeAtStart.map((r) => r.id));
  const interrupted = activeAtStart.filter((r) => unclaimed.has(r.id));
  for (const run of interrupted) {
    runs.transition(run.id, "failed", interruptedReason(run.id));
    log.warn({ runId: run.id, name: run.name }, "marked a run interrupted by a restart as failed");
  }

  function interruptedReason(runId: string): string {
    const parts: string[] = [];
    const hostFaults = store.countUnendedFaultsOfRun(runId);
    if (hostFaults > 0) {
      parts.push(`its ${plural(hostFaults, "fault")} on hosts ${hostFaults === 1 ? "is" : "are"} stopped as their agents reconnect, or reverted by the agents' leases (TTL ${formatDuration(options.leaseTtlMs)})`);
    }
    const cloud = options.cloud?.journal.list({ runId, states: ["pending", "reverting"] }) ?? [];
    if (cloud.length > 0) {
      parts.push(
        `its ${plural(cloud.length, "cloud action")} (${cloud.map((e) => `${e.action} ${e.resource}`).join(", ")}) ${cloud.length === 1 ? "is" : "are"} reverted from the cloud-revert journal, retried until AWS confirms (see firedrill run show ${runId})`,
      );
    }
    return `the control plane restarted during the run; ${parts.length > 0 ? parts.join("; ") : "nothing of it was left to revert"}`;
  }

  // Run events are written behind, all those of one turn of the event loop in one transaction (a
  // step on 10,000 hosts makes tens of thousands), then announced in order. A state change writes
  // what is queued first, so the timeline's order is the order things happened. Stop-condition
  // samples ride along in the same transaction.
  let queued: { runId: string; event: NewRunEvent }[] = [];
  let queuedSamples: RunSampleEvent[] = [];
  const writeQueued = store.db.transaction((batch: { runId: string; event: NewRunEvent }[], samples: RunSampleEvent[]) => {
    for (const s of samples) runs.addSamples(s.runId, [{ condition: s.c, at: s.at, value: s.v, healthy: s.ok }]);
    return batch.map(({ runId, event }) => runs.addEvent(runId, event));
  });
  const flushEvents = (): void => {
    if (queued.length === 0 && queuedSamples.length === 0) return;
    const batch = queued;
    const samples = queuedSamples;
    queued = [];
    queuedSamples = [];
    let stored: RunEvent[];
    try {
      stored = writeQueued(batch, samples);
    } catch (err) {
      log.error({ err, events: batch.length, samples: samples.length }, "could not record run events");
      return;
    }
    for (const s of samples) events.emit("sample", s);
    for (const e of stored) events.emit("event", e);
  };
  const record = (runId: string, event: NewRunEvent): void => {
    if (queued.length === 0 && queuedSamples.length === 0) setImmediate(flushEvents);
    queued.push({ runId, event: { ...event, time: event.time ?? Date.now() } });
  };
  const recordSample = (sample: RunSampleEvent): void => {
    if (queued.length === 0 && queuedSamples.length === 0) setImmediate(flushEvents);
    queuedSamples.push(sample);
  };
  const transition = (runId: string, state: RunRecord["state"], reason: string | null): void => {
    flushEvents();
    events.emit("event", runs.transition(runId, state, reason));
  };

  // How faults of runs that have ended end: a confirmation after the abort gave up waiting, a
  // revert assumed by lease, a revert given up. Runs being executed record their own (ActiveRun).
  const onLateOutcome = ({ fault, cause }: FaultUpdate): void => {
    if (fault.runId === null || fault.endedAt === null || active.has(fault.runId)) return;
    const event = faultOutcomeEvent(fault, cause, true);
    if (!event || !runs.runState(fault.runId)) return;
    record(fault.runId, { ...event, agentId: fault.agentId, faultId: fault.id });
  };
  hub.events.on("fault", onLateOutcome);

  // Every cloud revert's progress goes on its run's timeline (a run that has ended included).
  const onCloudChange = ({ entry, cause }: CloudRevertChange): void => {
    if (entry.runId === null || !runs.runState(entry.runId)) return;
    const event = cloudRevertEvent(entry, cause, !active.has(entry.runId));
    if (event) record(entry.runId, { ...event, step: entry.step });
  };
  options.cloud?.journal.events.on("change", onCloudChange);

  // Parsed in a worker thread (spec-pool.ts): a maximal experiment costs the event loop nothing.
  async function parse(specYaml: string): Promise<Experiment> {
    if (typeof specYaml !== "string" || specYaml.trim() === "") {
      throw new ApiError(400, "invalid_request", "the body needs `spec`: the experiment YAML as a string (firedrill run FILE sends it)");
    }
    return parseExperimentForApi(specYaml);
  }


  async function plan(specYaml: string, planOptions: RunScopeOptions = {}): Promise<{ experiment: Experiment; plan: RunPlan }> {
    const experiment = await parse(specYaml);
    const agents = store.listAgents();
    const aws = await planAws({ experiment, agents, policy: options.policy, aws: options.aws });
    const hostPlan = createPlan({
      experiment: aws.hostView,
      agents,
      policy: options.policy,
      activeRuns: runs.countActiveRuns(),
      hostFaults: store.activeFaultKindsByAgent(),
      now: now(),
      scope: planOptions.scope ?? null,
      awsCandidates: aws.candidates,
      halt: readHalt(store),
    });
    // Put the cloud steps back where the host half saw waits of the same length.
    const steps = hostPlan.steps.map((planned) => {
      const step = experiment.spec.steps.find((s) => s.name === planned.name);
      if (!step || step.type !== "fault" || !isCloudFaultKind(step.fault)) return planned;
      const instances = aws.instances[step.target] ?? [];
      return {
        ...planned,
        type: "fault" as const,
        fault: step.fault,
        target: step.target,
        params: step.params,
        hosts: instances.map((i) => ({ id: i.instanceId, hostname: `${i.instanceId} (${i.availabilityZone}${i.autoScalingGroup ? `, ${i.autoScalingGroup}` : ""})` })),
        instances,
      };
    });
    const guardrails = [...hostPlan.guardrails, ...aws.verdicts];
    return {
      experiment,
      plan: {
        ...hostPlan,
        steps,
        guardrails,
        allowed: guardrails.every((v) => v.ok),
        ...(Object.keys(aws.instances).length > 0 ? { awsInstances: aws.instances } : {}),
      },
    };
  }

  const haltState = (): HaltState | undefined => readHalt(store);

  async function start(specYaml: string, actor: string, startOptions: RunScopeOptions = {}): Promise<RunRecord> {
    const halted = haltState();
    if (halted) {
      throw new ApiError(
        409,
        "halted",
        `${describeHalt(halted)}; no run can start until the halt is lifted (firedrill unhalt)`,
      );
    }
    const scope = startOptions.scope ?? null;
    const planned = await plan(specYaml, { scope });
    if (!planned.plan.allowed) {
      const refused = planned.plan.guardrails.filter((v) => !v.ok);
      throw new ApiError(
        422,
        "guardrail_refused",
        `the guardrails refuse this run: ${refused.map((v) => `${v.rule}: ${v.message}`).join("; ")}`,
        refused.map((v) => ({ field: `guardrails.${v.rule}`, message: v.message })),
        { plan: planned.plan },
      );
    }
    const id = newRunId();
    const run = runs.insertRun({
      id,
      name: planned.experiment.metadata.name,
      specYaml,
      experiment: planned.experiment,
      plan: planned.plan,
      state: "pending",
      actor,
      createdAt: Date.now(),
    });
    record(id, { type: "state", message: `pending: started by ${actor}`, data: { state: "pending" } });
    record(id, {
      type: "plan",
      message: `${plural(planned.plan.steps.length, "step")} on ${plural(new Set(planned.plan.steps.flatMap((s) => s.hosts.map((h) => h.id))).size, "host")}; guardrails passed`,
      data: planned.plan,
    });
    const activeRun = new ActiveRun(run, planned.experiment, planned.plan, scope);
    active.set(id, activeRun);
    options.ownership?.claim(id);
    void activeRun.execute().finally(() => {
      active.delete(id);
      options.ownership?.release(id);
    });
    return runs.getRun(id)!;
  }

  class ActiveRun {
    private aborting: { reason: string; kind: "breach" | "operator" | "halt" | "failure" } | undefined;
    private readonly watchers: { desc: string; watcher: StopConditionWatcher }[] = [];
    /** Observations of each stop condition so far (see {@link keepsSample}). */
    private readonly observed: number[] = [];
    /** Every fault this run started, by id, with the step that started it. */
    private readonly stepByFault = new Map<string, string>();
    /**
     * Updates of this run's faults that arrived before their start call returned (an agent that
     * acks and starts at once): replayed in order as soon as the fault's step is known, so the
     * timeline misses no `fault-started`. At most {@link EARLY_UPDATES_PER_FAULT} per fault.
     */
    private readonly early = new Map<string, FaultUpdate[]>();
    /** The run's faults not ended yet, per agent (so a disconnect is checked without a scan). */
    private readonly liveByAgent = new Map<string, Set<string>>();
    /** When each fault's last measurement went on the timeline (they are throttled per fault). */
    private readonly measuredAt = new Map<string, number>();
    private readonly inFlight = new Set<Promise<unknown>>();
    private readonly abortWaiters = new Set<() => void>();
    private readonly log: Logger;
    readonly done: Promise<void>;
    private resolveDone: () => void = () => {};
    private unsubscribe: (() => void)[] = [];
    private abortPromise: Promise<void> | undefined;

    constructor(
      readonly run: RunRecord,
      readonly experiment: Experiment,
      readonly plan: RunPlan,
      readonly scope: Scope | null,
    ) {
      this.log = log.child({ runId: run.id, experiment: run.name });
      this.done = new Promise((resolve) => {
        this.resolveDone = resolve;
      });
    }

    private event(e: NewRunEvent): void {
      record(this.run.id, e);
    }

    /** Stores an observation of stop condition `index` (all of them up to the cap, then one in ten) and announces it. */
    private sample(index: number, status: StopConditionStatus): void {
      const seen = (this.observed[index] = (this.observed[index] ?? 0) + 1);
      if (!keepsSample(seen)) return;
      const v = typeof status.value === "number" && Number.isFinite(status.value) ? status.value : null;
      recordSample({ runId: this.run.id, c: index, at: Date.now(), v, ok: status.healthy });
    }

    async execute(): Promise<void> {
      try {
        await this.preflight();
        if (!this.aborting && !this.ended()) await this.runSteps();
        if (this.aborting) await this.abortPromise;
        else if (!this.ended()) transition(this.run.id, "completed", "every step ran; every fault reverted");
      } catch (err) {
        this.log.error({ err }, "run failed");
        if (!this.ended()) {
          await this.abort(`internal error: ${(err as Error).message}`, "failure");
        }
      } finally {
        for (const w of this.watchers) w.watcher.stop();
        for (const off of this.unsubscribe) off();
        this.resolveDone();
      }
    }

    private ended(): boolean {
      return isTerminalRunState(runs.runState(this.run.id)!);
    }

    /**
     * Drives the run from where a dead replica left it: its faults still running are watched (and
     * stopped on a breach, an abort or a halt) until they end; the steps it had not started are
     * not run. Then the run ends: completed when every step had started and nothing broke,
     * failed otherwise (saying which steps did not run).
     */
    async resume(previousReplica: string): Promise<void> {
      try {
        const history = runs.listEvents(this.run.id);
        for (const e of history) if (e.faultId && e.step) this.stepByFault.set(e.faultId, e.step);
        const startedSteps = new Set(history.filter((e) => e.type === "step-started" && e.step).map((e) => e.step!));
        const live = store.listFaults({ runId: this.run.id, state: "active", limit: 100_000 });
        for (const fault of live) {
          if (!this.stepByFault.has(fault.id)) this.stepByFault.set(fault.id, fault.runId === this.run.id ? "(unknown step)" : "");
          this.track(fault);
        }
        const notRun = this.plan.steps.map((s) => s.name).filter((n) => !startedSteps.has(n));
        this.event({
          type: "state",
          message: `taken over: replica ${previousReplica}, which drove this run, stopped heartbeating; this replica watches the stop conditions while the ${plural(live.length, "fault")} it started run to their end${notRun.length > 0 ? `; ${plural(notRun.length, "step")} it had not started (${notRun.join(", ")}) will not run` : ""}`,
          data: { takeover: { from: previousReplica, faults: live.length, notRun } },
        });
        if (this.run.state === "pending" || this.run.state === "preflight") {
          transition(this.run.id, "failed", `the replica driving it (${previousReplica}) died before its faults started; nothing was started by it${live.length > 0 ? `; its ${plural(live.length, "fault")} are stopped` : ""}`);
          await hub.requestStopMany(live.map((f) => f.id), "aborted", `run ${this.run.id}: its driver died before it started`);
          return;
        }
        this.createWatchers();
        this.watch();
        // (2^31 - 1 ms: the longest a Node timer waits; a longer one would fire at once.)
        await this.waitForEnd(live.map((f) => f.id), 2_147_483_647);
        if (this.aborting) await this.abortPromise;
        else if (!this.ended()) {
          const faultsNow = live.map((f) => store.getFault(f.id)).filter((f): f is FaultRecord => f !== undefined);
          const reverts = faultsNow.length > 0 ? `; ${describeAllReverts(summarizeReverts(faultsNow), [], true)}` : "";
          if (notRun.length > 0) {
            transition(this.run.id, "failed", `the replica driving it (${previousReplica}) died; ${plural(notRun.length, "step")} never ran (${notRun.join(", ")})${reverts}`);
          } else {
            transition(this.run.id, "completed", `every step ran (finished under a new replica after ${previousReplica} died)${reverts}`);
          }
        }
      } catch (err) {
        this.log.error({ err }, "taken-over run failed");
        if (!this.ended()) await this.abort(`internal error after the takeover: ${(err as Error).message}`, "failure");
      } finally {
        for (const w of this.watchers) w.watcher.stop();
        for (const off of this.unsubscribe) off();
        this.resolveDone();
      }
    }

    /** One watcher per stop condition of the experiment (not started). */
    private createWatchers(): void {
      const ctx = {
        log: this.log.child({ component: "stop-condition" }),
        alerts: options.alerts,
        ...(options.aws ? { aws: options.aws } : {}),
      };
      for (const spec of this.experiment.spec.stopConditions) {
        this.watchers.push({ desc: describeStopCondition(spec), watcher: createWatcher(spec, ctx) });
      }
    }

    private async preflight(): Promise<void> {
      transition(this.run.id, "preflight", "checking the steady state: every stop condition must be healthy");
      this.createWatchers();
      const results = await Promise.all(
        this.watchers.map(async (w, index) => {
          const status = await w.watcher.check();
          this.sample(index, status);
          return { ...w, index, status };
        }),
      );
      const unhealthy = results.filter((r) => !r.status.healthy);
      for (const r of results) {
        this.event({ type: "stop-condition", message: `preflight ${r.desc}: ${r.status.healthy ? "healthy" : "NOT healthy"} (${r.status.detail})`, data: { condition: r.desc, index: r.index, ...r.status } });
      }
      if (this.aborting) return;
      if (unhealthy.length > 0) {
        transition(
          this.run.id,
          "failed",
          `preflight: steady state not reached, nothing was started: ${unhealthy.map((u) => `${u.desc} is not healthy (${u.status.detail})`).join("; ")}`,
        );
        return;
      }
      transition(this.run.id, "running", null);
      this.watch();
    }

    /** Starts the stop-condition watchers and follows the run's faults and agents. */
    private watch(): void {
      this.watchers.forEach(({ desc, watcher }, index) => {
        let lastHealthy = true;
        watcher.start(
          (breach) => {
            this.event({ type: "breach", message: `${breach.condition}: ${breach.reason}`, data: { ...breach, index } });
            void this.abort(`stop condition breached: ${breach.condition}: ${breach.reason}`, "breach");
          },
          (status) => {
            // Every observation is a sample of the condition's chart; the timeline records changes.
            this.sample(index, status);
            if (status.healthy !== lastHealthy) {
              lastHealthy = status.healthy;
              this.event({ type: "stop-condition", message: `${desc}: ${status.healthy ? "healthy again" : "unhealthy"} (${status.detail})`, data: { condition: desc, index, ...status } });
            }
          },
        );
      });
      const onFault = (update: FaultUpdate) => this.onFault(update);
      hub.events.on("fault", onFault);
      this.unsubscribe.push(() => hub.events.off("fault", onFault));
      const onDisconnected = (agentId: string) => {
        const holds = (this.liveByAgent.get(agentId)?.size ?? 0) > 0;
        // An agent that moved to another replica is not lost.
        if (holds && !this.aborting && !hub.isConnected(agentId)) {
          this.event({ type: "agent-lost", agentId, message: `agent ${agentId} lost its link while holding faults of this run` });
          void this.abort(`agent lost: ${agentId} disconnected while holding faults of this run (its lease reverts them)`, "failure");
        }
      };
      hub.events.on("disconnected", onDisconnected);
      this.unsubscribe.push(() => hub.events.off("disconnected", onDisconnected));
    }

    private track(fault: FaultRecord): void {
      if (fault.endedAt !== null) return;
      let live = this.liveByAgent.get(fault.agentId);
      if (!live) this.liveByAgent.set(fault.agentId, (live = new Set()));
      live.add(fault.id);
    }

    private onFault(update: FaultUpdate): void {
      const { fault, cause } = update;
      if (!this.stepByFault.has(fault.id)) {
        if (fault.runId === this.run.id) {
          const list = this.early.get(fault.id) ?? [];
          // Only the newest measurement is worth keeping; a state change always is.
          const progress = cause === "progress" ? list.findIndex((u) => u.cause === "progress") : -1;
          if (progress >= 0) list[progress] = update;
          else if (list.length < EARLY_UPDATES_PER_FAULT) list.push(update);
          this.early.set(fault.id, list);
        }
        return;
      }
      if (fault.endedAt !== null) this.liveByAgent.get(fault.agentId)?.delete(fault.id);
      const base = { step: this.stepByFault.get(fault.id) ?? null, agentId: fault.agentId, faultId: fault.id };
      if (cause === "progress" && fault.measurements) {
        // The fault record keeps the latest measurements; the timeline gets at most one per fault every MEASUREMENT_EVERY_MS.
        const now = Date.now();
        if (now - (this.measuredAt.get(fault.id) ?? -Infinity) < MEASUREMENT_EVERY_MS) return;
        this.measuredAt.set(fault.id, now);
        this.event({ ...base, type: "measurement", message: formatMeasurements(fault.measurements), data: fault.measurements });
      } else if (cause === "started") {
        this.event({ ...base, type: "fault-started", message: `${fault.kind} running on ${fault.agentId}` });
      } else {
        const outcome = faultOutcomeEvent(fault, cause, false);
        if (outcome) this.event({ ...base, ...outcome });
      }
    }

    private async runSteps(): Promise<void> {
      const steps = this.plan.steps;
      const done = new Set<string>();
      const started = new Set<string>();
      const running = new Map<string, Promise<void>>();
      while (done.size < steps.length && !this.aborting) {
        for (const step of steps) {
          if (started.has(step.name) || !step.startAfter.every((n) => done.has(n))) continue;
          started.add(step.name);
          running.set(
            step.name,
            this.runStep(step).then(() => {
              done.add(step.name);
              running.delete(step.name);
            }),
          );
        }
        if (running.size === 0) break;
        await Promise.race([...running.values(), this.abortedSignal()]);
      }
      // Let steps that are mid-flight settle (they return promptly once aborting).
      await Promise.allSettled(running.values());
    }

    private abortedSignal(): Promise<void> {
      if (this.aborting) return Promise.resolve();
      return new Promise((resolve) => this.abortWaiters.add(resolve));
    }

    private async sleep(ms: number): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, ms))), this.abortedSignal()]);
      clearTimeout(timer);
    }

    private async runStep(step: PlannedStep): Promise<void> {
      if (this.aborting) return;
      this.event({ type: "step-started", step: step.name, message: step.type === "wait" ? `wait ${formatDuration(step.durationMs)}` : `${step.fault} on ${plural(step.hosts.length, "host")} for ${formatDuration(step.durationMs)}`, data: { hosts: step.hosts } });
      if (step.type === "wait") {
        await this.sleep(step.durationMs);
        if (!this.aborting) this.event({ type: "step-ended", step: step.name, message: "wait over" });
        return;
      }
      if (step.fault && isCloudFaultKind(step.fault)) return this.runCloudStep(step);
      // Sent in chunks, yielding between them: on a 10,000-host step, lease renewals and the acks
      // coming back keep flowing while the rest is sent.
      const starting: Promise<string | undefined>[] = [];
      for (let i = 0; i < step.hosts.length && !this.aborting; i += START_CHUNK) {
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        // A chunk's faults are recorded in one transaction, then sent (the hub holds the writes until it commits).
        hub.batch(() => {
          for (const host of step.hosts.slice(i, i + START_CHUNK)) starting.push(this.startFault(step, host.id));
        });
      }
      const ids = await Promise.all(starting);
      const faultIds = ids.filter((id): id is string => id !== undefined);
      if (this.aborting) return;
      // The agents end their faults at the duration; wait for every revert ack (bounded).
      const deadline = step.durationMs + options.ackTimeoutMs + 15_000;
      const ended = await this.waitForEnd(faultIds, deadline);
      if (this.aborting) return;
      const faultsNow = faultIds.map((id) => store.getFault(id)!);
      const bad = faultsNow.filter((f) => f.state === "failed" || f.state === "revert_failed" || (f.state === "reverted" && f.reason !== "duration"));
      if (!ended) {
        await this.abort(`step ${step.name}: faults did not end within ${formatDuration(deadline)} of starting`, "failure");
      } else if (bad.length > 0) {
        await this.abort(
          `step ${step.name}: ${bad.map((f) => `${f.id} on ${f.agentId} ${f.state === "failed" ? `failed: ${f.error}` : f.state === "revert_failed" ? `REVERT FAILED: ${f.error}` : `ended early (${f.reason})`}`).join("; ")}`,
          "failure",
        );
      } else {
        this.event({ type: "step-ended", step: step.name, message: `${step.fault} ended on ${plural(faultIds.length, "host")}; all reverted` });
      }
    }

    /** Instances this run terminated: nothing can undo that. */
    private readonly terminated: AwsInstance[] = [];

    private recordCloud(step: PlannedStep, results: InstanceActionResult[]): InstanceActionResult[] {
      for (const r of results) {
        this.event({
          type: "cloud-action",
          step: step.name,
          message: describeCloudAction(r),
          data: r,
        });
      }
      return results.filter((r) => !r.ok);
    }

    private async runCloudStep(step: PlannedStep): Promise<void> {
      const aws = options.aws;
      const instances = step.instances ?? [];
      if (!aws) return void (await this.abort(`step ${step.name}: the control plane has no AWS access configured`, "failure"));
      const ctx = {
        actor: `${this.run.actor} (run ${this.run.id})`,
        runId: this.run.id,
        guardrails: awsGuardrailsFrom(mergeGuardrails(options.policy, this.experiment.spec.guardrails)),
      };
      const byId = new Map(instances.map((i) => [i.instanceId, i]));
      if (step.fault === "ec2-terminate") {
        const results = await aws.terminate(instances, ctx);
        for (const r of results) if (r.ok && byId.has(r.instanceId)) this.terminated.push(byId.get(r.instanceId)!);
        const failed = this.recordCloud(step, results);
        if (failed.length > 0) {
          return void (await this.abort(`step ${step.name}: ${failed.map((r) => `${r.instanceId}: ${r.error ?? "failed"}`).join("; ")}`, "failure"));
        }
        // A duration keeps the step (and the stop conditions' watch) open while the groups replace them.
        if (step.durationMs > 0) await this.sleep(step.durationMs);
        if (this.aborting) return;
        this.event({ type: "step-ended", step: step.name, message: describeTerminations(results) });
        return;
      }
      if (step.fault === NETWORK_DISRUPT_KIND) return this.runNetworkDisrupt(step, aws, ctx);
      if (step.fault === "ec2-reboot") {
        // Nothing to revert: each instance comes back by itself. Checked and recorded at the moment of each reboot.
        if (!aws.reboot) return void (await this.abort(`step ${step.name}: this control plane's AWS service cannot reboot instances`, "failure"));
        const results = await aws.reboot(instances, { ...ctx, step: step.name });
        const failed = this.recordCloud(step, results);
        if (failed.length > 0) {
          return void (await this.abort(`step ${step.name}: ${failed.map((r) => `${r.instanceId}: ${r.error ?? "failed"}`).join("; ")}`, "failure"));
        }
        if (step.durationMs > 0) await this.sleep(step.durationMs);
        if (this.aborting) return;
        this.event({ type: "step-ended", step: step.name, message: `rebooted ${plural(results.length, "instance")}` });
        return;
      }
      // ec2-stop: each stop is journaled with its revert (StartInstances) before the call; at the
      // end of the duration (or on abort) the journal's reconciler starts them again, until AWS confirms.
      if (!options.cloud) return void (await this.abort(`step ${step.name}: the control plane has no cloud-revert journal configured, so it can't stop instances it could not start again`, "failure"));
      const results = await aws.stop(instances, { ...ctx, step: step.name, revertDueAt: Date.now() + step.durationMs });
      await this.holdThenRevertCloud(step, results, `stopped ${plural(results.length, "instance")} for ${formatDuration(step.durationMs)}; started again (confirmed by AWS)`);
    }

    /**
     * The rest of a reversible cloud step once its actions are made: records them, holds the step
     * for its duration, then wants its reverts and waits for AWS to confirm them (an abort on the
     * way reverts them instead; a failed action or an unconfirmed revert aborts the run).
     */
    private async holdThenRevertCloud(step: PlannedStep, results: InstanceActionResult[], endedMessage: string): Promise<void> {
      const cloud = options.cloud!;
      if (this.aborting) {
        // Actions made after the abort wanted this run's reverts: want theirs too (the sweep would, once the run ends).
        cloud.journal.requestRevert({ runId: this.run.id, step: step.name }, `run ${this.run.id} aborting`, Date.now());
        cloud.reconciler.kick();
      }
      const failed = this.recordCloud(step, results);
      if (failed.length > 0) {
        return void (await this.abort(`step ${step.name}: ${failed.map((r) => `${r.instanceId}: ${r.error ?? "failed"}`).join("; ")}`, "failure"));
      }
      await this.sleep(step.durationMs);
      if (this.aborting) return; // the abort reverts them
      const unconfirmed = await this.revertCloud(step.name, `step ${step.name} ended (${formatDuration(step.durationMs)})`);
      if (this.aborting) return;
      if (unconfirmed.length > 0) {
        return void (await this.abort(`step ${step.name}: ${describeCloudReverts(unconfirmed)}`, "failure"));
      }
      this.event({ type: "step-ended", step: step.name, message: endedMessage });
    }

    /**
     * aws-network-disrupt: the run's deny-all NACL and each subnet's move onto it are journaled with
     * their reverts before each call; the end of the duration (or an abort, or the reconciler after
     * a crash) restores the original associations and deletes the NACL, until AWS confirms.
     */
    private async runNetworkDisrupt(step: PlannedStep, aws: AwsService, ctx: { actor: string; runId: string; guardrails: AwsGuardrails }): Promise<void> {
      const network = aws.network;
      if (!network) return void (await this.abort(`step ${step.name}: this control plane's AWS service cannot disrupt networks`, "failure"));
      if (!options.cloud) return void (await this.abort(`step ${step.name}: the control plane has no cloud-revert journal configured, so it can't disrupt a network it could not restore`, "failure"));
      const parsed = parseNetworkDisruptParams(step.params ?? {});
      if (!parsed.ok) return void (await this.abort(`step ${step.name}: ${parsed.issues.map((i) => `params${i.path.length ? `.${i.path.join(".")}` : ""}: ${i.message}`).join("; ")}`, "failure"));
      let results: InstanceActionResult[];
      try {
        const region = parsed.value.region ?? step.instances?.[0]?.region ?? (aws.region ? await aws.region() : undefined);
        if (!region) throw new Error("no region: give params.region or --aws-region");
        const selection = await network.select(parsed.value, region, ctx.guardrails);
        results = await network.disrupt(selection, { ...ctx, step: step.name, revertDueAt: Date.now() + step.durationMs });
      } catch (err) {
        results = [{ instanceId: "-", action: "disrupt", ok: false, refusedBy: "aws", error: (err as Error).message }];
      }
      await this.holdThenRevertCloud(
        step,
        results,
        `cut off ${plural(results.length, "subnet")} for ${formatDuration(step.durationMs)}; original network ACLs restored and the run's deleted (confirmed by AWS)`,
      );
    }

    /**
     * Wants the reverts of this run's cloud actions (of one step, or all) and waits, at most
     * `revertWaitMs`, for AWS to confirm them; returns those not confirmed (the reconciler keeps
     * retrying them after).
     */
    private async revertCloud(stepName: string | null, reason: string): Promise<CloudRevertEntry[]> {
      const cloud = options.cloud;
      if (!cloud) return [];
      let wanted: CloudRevertEntry[];
      try {
        wanted = cloud.journal.requestRevert({ runId: this.run.id, ...(stepName !== null ? { step: stepName } : {}) }, reason, Date.now());
      } catch (err) {
        // The reconciler's sweep wants them once the run has ended (or the step's due time is past).
        this.log.error({ err }, "could not want the cloud reverts in the journal; the reconciler's sweep will");
        return [];
      }
      if (wanted.length === 0) return [];
      cloud.reconciler.kick();
      const after = await cloud.journal.waitEnded(wanted.map((e) => e.id), revertWaitMs);
      return after.filter((e) => e.state !== "confirmed" && e.state !== "cancelled");
    }

    private async startFault(step: PlannedStep, agentId: string): Promise<string | undefined> {
      const attempt = faults.start(
        agentId,
        { kind: step.fault, params: step.params ?? {}, duration: step.durationMs, runId: this.run.id },
        { actor: this.run.actor, scope: this.scope, fromRun: this.run.id },
      );
      this.inFlight.add(attempt);
      try {
        const { fault, acknowledged } = await attempt;
        this.stepByFault.set(fault.id, step.name);
        this.track(fault);
        this.event({
          type: acknowledged ? "fault-acked" : "fault-sent",
          step: step.name,
          agentId,
          faultId: fault.id,
          message: acknowledged ? `${step.fault} ${fault.state} on ${agentId}` : `${step.fault} sent to ${agentId}; no ack within ${formatDuration(options.ackTimeoutMs)}`,
        });
        const early = this.early.get(fault.id);
        this.early.delete(fault.id);
        for (const update of early ?? []) this.onFault(update);
        if (this.aborting) this.stopFault(fault);
        return fault.id;
      } catch (err) {
        const message = err instanceof ApiError ? err.message : (err as Error).message;
        const refused = err instanceof ApiError ? (err.details?.fault as FaultRecord | undefined) : undefined;
        if (refused) {
          this.stepByFault.set(refused.id, step.name);
          this.early.delete(refused.id);
        }
        this.event({ type: "fault-refused", step: step.name, agentId, ...(refused ? { faultId: refused.id } : {}), message: `${step.fault} refused by ${agentId}: ${message}` });
        void this.abort(`step ${step.name}: ${step.fault} refused by ${agentId}: ${message}`, "failure");
        return undefined;
      } finally {
        this.inFlight.delete(attempt);
      }
    }

    /**
     * Resolves true when every fault has ended, false at the deadline — or, with
     * `interruptOnAbort`, as soon as the run starts aborting.
     */
    private waitForEnd(faultIds: string[], timeoutMs: number, interruptOnAbort = true): Promise<boolean> {
      // Checked once here, then kept up to date from each fault update: O(1) per event.
      const remaining = new Set(faultIds.filter((id) => store.getFault(id)?.endedAt === null));
      if (remaining.size === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const finish = (value: boolean) => {
          clearTimeout(timer);
          hub.events.off("fault", onFault);
          this.abortWaiters.delete(onAbort);
          resolve(value);
        };
        const onFault = ({ fault }: FaultUpdate) => {
          if (fault.endedAt !== null && remaining.delete(fault.id) && remaining.size === 0) finish(true);
        };
        const onAbort = () => finish(remaining.size === 0);
        const timer = setTimeout(() => finish(remaining.size === 0), timeoutMs);
        hub.events.on("fault", onFault);
        if (!interruptOnAbort) return;
        if (this.aborting) onAbort();
        else this.abortWaiters.add(onAbort);
      });
    }

    /** Records that the fault is wanted ended (the hub re-sends the stop until it is confirmed) and sends it. */
    private stopFault(fault: FaultRecord): void {
      if (fault.endedAt !== null) return;
      const halt = this.aborting?.kind === "halt";
      hub.requestStop(fault.id, halt ? "halt" : "aborted", `run ${this.run.id} ${halt ? "halted" : "aborting"}: ${clip(this.aborting?.reason ?? "", 300)}`);
    }

    abort(reason: string, kind: "breach" | "operator" | "halt" | "failure"): Promise<void> {
      if (this.abortPromise) return this.abortPromise;
      if (this.ended()) return Promise.resolve();
      this.aborting = { reason, kind };
      for (const wake of [...this.abortWaiters]) wake();
      this.abortWaiters.clear();
      this.abortPromise = (async () => {
        this.log.warn({ reason }, "aborting the run");
        this.event({ type: "abort", message: reason, data: { kind } });
        for (const w of this.watchers) w.watcher.stop();
        // Starts still waiting for their ack are stopped as soon as they are known.
        await Promise.race([Promise.allSettled([...this.inFlight]), sleep(options.ackTimeoutMs + 1000)]);
        const pending = [...this.stepByFault.keys()].map((id) => store.getFault(id)).filter((f): f is FaultRecord => f !== undefined && f.endedAt === null);
        const halt = this.aborting?.kind === "halt";
        await hub.requestStopMany(
          pending.map((f) => f.id),
          halt ? "halt" : "aborted",
          `run ${this.run.id} ${halt ? "halted" : "aborting"}: ${clip(reason, 300)}`,
        );
        // Cloud actions are reverted at the same time, through the journal (retried until AWS confirms).
        const cloudReverts = this.revertCloud(null, `run ${this.run.id} aborting: ${clip(reason, 300)}`);
        const ended = await this.waitForEnd(pending.map((f) => f.id), revertWaitMs, false);
        if (!ended) {
          for (const fault of pending.map((f) => store.getFault(f.id)!).filter((f) => f.endedAt === null)) {
            const connected = hub.isConnected(fault.agentId);
            this.event({
              type: "unconfirmed",
              step: this.stepByFault.get(fault.id) ?? null,
              agentId: fault.agentId,
              faultId: fault.id,
              message:
                `revert of ${fault.kind} on ${fault.agentId} not confirmed within ${formatDuration(revertWaitMs)}: ` +
                (connected
                  ? "the stop is sent again every few seconds until the agent confirms"
                  : `the agent is disconnected; the stop is sent again when it reconnects, and its lease reverts the fault within ${formatDuration(options.leaseTtlMs)} of losing the link`),
            });
          }
        }
        const cloudUnconfirmed = await cloudReverts;
        for (const e of cloudUnconfirmed) {
          this.event({ type: "unconfirmed", step: e.step, message: `cloud revert #${e.id} (${e.action} ${e.resource}) not confirmed within ${formatDuration(revertWaitMs)}: the journal's reconciler keeps retrying until AWS confirms`, data: { cloudRevert: e.id } });
        }
        for (const i of this.terminated) {
          this.event({ type: "irreversible", message: `${i.instanceId} was terminated and cannot be brought back${i.autoScalingGroup ? ` (${i.autoScalingGroup} replaces it)` : " (it is in no Auto Scaling group: nothing replaces it)"}`, data: i });
        }
        const faultsNow = [...this.stepByFault.keys()].map((id) => store.getFault(id)).filter((f): f is FaultRecord => f !== undefined);
        const cloudAll = options.cloud?.journal.list({ runId: this.run.id }) ?? [];
        const reverts = faultsNow.length > 0 || cloudAll.length > 0 ? `; ${describeAllReverts(summarizeReverts(faultsNow), cloudAll, true)}` : "";
        transition(this.run.id, "aborted", `${reason}${reverts}`);
      })();
      return this.abortPromise;
    }
  }


  async function abort(runId: string, reason: string, actor: string): Promise<RunRecord> {
    const run = runs.getRun(runId);
    if (!run) throw new ApiError(404, "run_not_found", `run ${JSON.stringify(runId)} does not exist; list runs with firedrill runs`);
    if (isTerminalRunState(run.state)) {
      throw new ApiError(409, "run_ended", `run ${runId} has already ended (${run.state}${run.reason ? `: ${run.reason}` : ""})`);
    }
    const activeRun = active.get(runId);
    if (!activeRun) {
      if (options.peers?.abortRemote(runId, reason, actor)) return waitRunEnded(runId, revertWaitMs + options.ackTimeoutMs + 15_000);
      throw new ApiError(409, "run_not_active", `run ${runId} is not being executed by this control plane${options.peers ? " nor by a live replica (its driver died: the leader takes it over within seconds; try again)" : ""}`);
    }
    await activeRun.abort(`aborted by ${actor}: ${reason}`, "operator");
    await activeRun.done;
    return runs.getRun(runId)!;
  }

  /** Polls the store until the run has ended (another replica drives it); the run as it is at the deadline. */
  async function waitRunEnded(runId: string, timeoutMs: number): Promise<RunRecord> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const state = runs.runState(runId);
      if (state === undefined || isTerminalRunState(state)) break;
      await sleep(200);
    }
    return runs.getRun(runId)!;
  }

  async function halt(reason: string, actor: string): Promise<HaltState> {
    const state: HaltState = haltState() ?? { reason, actor, at: Date.now() };
    writeHalt(store, state);
    log.warn({ reason, actor }, "global halt: aborting every run and reverting every fault");
    // Every connected agent reverts everything it holds, in or out of a run: first, since the halt
    // is stored (an agent that reconnects to a restarted control plane is stopped by it).
    hub.broadcast({ case: "stopAll", value: { reason: RevertReason.HALT, message: `halt by ${actor}: ${reason}` } });
    // Then recorded per fault, so that agents not connected now get the stop when they reconnect.
    hub.requestStops({}, "halt", clip(`halt by ${actor}: ${reason}`, 500));
    // Every cloud action still in effect, in a run or not, is reverted too (the journal retries until AWS confirms).
    if (options.cloud) {
      try {
        options.cloud.journal.requestRevert({}, clip(`halt by ${actor}: ${reason}`, 500), Date.now());
        options.cloud.reconciler.kick();
      } catch (err) {
        log.error({ err }, "halt: could not want the cloud reverts in the journal; the reconciler's sweep reverts those of ended runs");
      }
    }
    try {
      options.peers?.halted(reason, actor);
    } catch (err) {
      log.error({ err }, "halt: could not tell the other replicas; their runs abort when their agents report the stops");
    }
    await Promise.all([...active.values()].map((r) => r.abort(`halted by ${actor}: ${reason}`, "halt").then(() => r.done)));
    return state;
  }

  function adopt(runId: string, previousReplica: string): boolean {
    if (active.has(runId)) return true;
    const run = runs.getRun(runId);
    if (!run || isTerminalRunState(run.state)) {
      options.ownership?.release(runId);
      return false;
    }
    const adopted = new ActiveRun(run, run.experiment as Experiment, run.plan as RunPlan, null);
    active.set(runId, adopted);
    void adopted.resume(previousReplica).finally(() => {
      active.delete(runId);
      options.ownership?.release(runId);
    });
    return true;
  }

  function unhalt(actor: string): LiftedHalt | undefined {
    const lifted = liftHalt(store, actor, now().getTime());
    if (lifted) log.warn({ actor, halt: lifted }, "halt lifted");
    return lifted;
  }

  return {
    adopt,
    async haltFromPeer(reason, actor) {
      await Promise.all([...active.values()].map((r) => r.abort(`halted by ${actor} (on another replica): ${reason}`, "halt").then(() => r.done)));
    },
    abortFromPeer(runId, reason, actor) {
      const r = active.get(runId);
      if (!r) return false;
      void r.abort(`aborted by ${actor} (on another replica): ${reason}`, "operator");
      return true;
    },
    drivenHere: () => [...active.keys()],
    plan,
    previewPlan: (planned) => previewPlan(planned, hub),
    start,
    abort,
    halt,
    unhalt,
    haltState,
    events,
    async settled(runId) {
      const activeRun = active.get(runId);
      if (activeRun) await activeRun.done;
      return runs.getRun(runId);
    },
    async close() {
      await Promise.all([...active.values()].map((r) => r.abort("the control plane is shutting down", "operator").then(() => r.done)));
      hub.events.off("fault", onLateOutcome);
      options.cloud?.journal.events.off("change", onCloudChange);
      flushEvents();
    },
  };
}

/** Faults of a step sent per turn of the event loop. */
const START_CHUNK = 250;
/** At most one measurement per fault on the timeline this often (the fault keeps its latest). */
export const MEASUREMENT_EVERY_MS = 10_000;

/** Updates kept per fault while its start call has not returned (accepted, started, a few PROGRESS). */
const EARLY_UPDATES_PER_FAULT = 8;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The run event for how a fault ended, or undefined when the update is not an end. `late`: the run
 * had ended already (its abort stopped waiting), so the event says so.
 */
export function faultOutcomeEvent(fault: FaultRecord, cause: FaultUpdate["cause"], late: boolean): Omit<NewRunEvent, "step" | "agentId" | "faultId"> | undefined {
  const after = late ? " (after the run ended)" : "";
  if (fault.state === "reverted" && fault.reason === LEASE_ASSUMED_REASON) {
    return {
      type: "revert-assumed",
      message: `${fault.kind} on ${fault.agentId}: revert NOT confirmed by the agent; assumed done by its lease (it was not heard for longer than the lease TTL)${after}`,
      data: { reason: fault.reason, confirmed: false },
    };
  }
  if (fault.state === "reverted" && (cause === "reverted" || cause === "reconciled")) {
    const how = cause === "reconciled" ? "the agent no longer holds it" : `${fault.reason ?? "unknown"}, confirmed by the agent`;
    return { type: "fault-reverted", message: `${fault.kind} reverted on ${fault.agentId} (${how})${after}`, data: { reason: fault.reason, confirmed: true } };
  }
  if (fault.state === "revert_failed") {
    return {
      type: "revert-failed",
      message: `REVERT FAILED: ${fault.kind} on ${fault.agentId}: ${fault.error ?? "no reason given"}; its effect may still be on the host (fix the cause, then firedrill fault stop ${fault.id} to have the agent try again)${after}`,
      data: { error: fault.error },
    };
  }
  if (fault.state === "failed" && cause === "failed") {
    return { type: "fault-failed", message: `${fault.kind} failed on ${fault.agentId}: ${fault.error ?? "unknown error"}${after}` };
  }
  return undefined;
}

/**
 * The run event for a cloud revert's progress: wanted (only when no runner of the run asked, e.g.
 * after a restart), an attempt failed (the first of a series), confirmed, or failed for good.
 * `late`: the run is not executed by this process (it has ended).
 */
export function cloudRevertEvent(entry: CloudRevertEntry, cause: CloudRevertChange["cause"], late: boolean): Omit<NewRunEvent, "step"> | undefined {
  const after = late ? " (after the run ended)" : "";
  const what = `${entry.action} ${entry.resource}`;
  const data = { cloudRevert: entry.id, state: entry.state, attempts: entry.attempts };
  switch (cause) {
    case "requested":
      return late ? { type: "unconfirmed", message: `${what}: revert wanted (${entry.revertReason ?? "its run ended"}); the reconciler retries it until AWS confirms${after}`, data } : undefined;
    case "attempt-failed":
      // The first failure says so; the ones after are in the journal (run show, report).
      return entry.attempts === 1 ? { type: "unconfirmed", message: `${what}: revert not confirmed yet: ${entry.lastError ?? entry.detail ?? "unknown error"}; retrying with backoff${after}`, data } : undefined;
    case "confirmed":
      return { type: "cloud-reverted", message: `${what} reverted: ${entry.detail ?? "confirmed by AWS"} (${plural(entry.attempts, "attempt")})${after}`, data };
    case "failed":
      return { type: "revert-failed", message: `REVERT FAILED: ${what}: ${entry.lastError ?? "it can't be reverted"}${after}`, data };
    default:
      return undefined;
  }
}

function formatMeasurements(m: Record<string, number>): string {
  return Object.entries(m)
    .slice(0, 6)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}
