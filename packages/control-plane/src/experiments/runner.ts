/**
 * The experiment runner: pending → preflight → running → completed | aborted | failed.
 *
 * Preflight checks every stop condition once (steady state); a breach there refuses the run. While
 * running, steps start per their DAG, faults fan out to agents in parallel with bounded waits for
 * acks, and the stop conditions are watched. Abort (breach, operator, halt, agent lost, a refused
 * or failed fault): no new steps, every fault of the run is told to revert, revert acks are awaited
 * (bounded), and whatever could not be confirmed is recorded. Every transition, ack, measurement and
 * breach is a timestamped event on the run.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { RevertReason, formatDuration } from "@firedrill/protocol";
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
import type { FaultRecord } from "../store/types.js";
import { createWatcher, describeStopCondition } from "../stop-conditions/index.js";
import type { AlertSource, StopConditionWatcher } from "../stop-conditions/types.js";
import { isCloudFaultKind } from "../aws/faults.js";
import type { AwsInstance, AwsService, InstanceActionResult } from "../aws/types.js";
import { planAws } from "./aws-plan.js";
import { mergeGuardrails } from "./guardrails.js";
import { createPlan } from "./plan.js";
import { awsGuardrailsFrom } from "./policy.js";
import type { PlannedStep, RunPlan } from "./plan.js";
import { ExperimentSpecError, parseExperiment } from "./spec.js";
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
  /** Every new run event, as it is stored. */
  readonly events: EventEmitter<{ event: [RunEvent] }>;
  /** Resolves when the run has ended (immediately if it has). */
  settled(runId: string): Promise<RunRecord | undefined>;
  /** Aborts active runs (reason: shutdown) and stops their watchers. */
  close(): Promise<void>;
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
  const events = new EventEmitter<{ event: [RunEvent] }>();
  events.setMaxListeners(0);
  const active = new Map<string, ActiveRun>();

  const interrupted = runs.failInterruptedRuns(
    `the control plane restarted during the run; its faults are reverted by the agents' leases (TTL ${formatDuration(options.leaseTtlMs)})`,
  );
  for (const run of interrupted) log.warn({ runId: run.id, name: run.name }, "marked a run interrupted by a restart as failed");

  const record = (runId: string, event: NewRunEvent): RunEvent => {
    const stored = runs.addEvent(runId, event);
    events.emit("event", stored);
    return stored;
  };
  const transition = (runId: string, state: RunRecord["state"], reason: string | null): void => {
    events.emit("event", runs.transition(runId, state, reason));
  };

  function parse(specYaml: string): Experiment {
    if (typeof specYaml !== "string" || specYaml.trim() === "") {
      throw new ApiError(400, "invalid_request", "the body needs `spec`: the experiment YAML as a string (firedrill run FILE sends it)");
    }
    try {
      return parseExperiment(specYaml);
    } catch (err) {
      if (err instanceof ExperimentSpecError) {
        throw new ApiError(
          400,
          "invalid_experiment",
          `invalid experiment: ${err.issues.map((i) => `${i.line !== undefined ? `line ${i.line}: ` : ""}${i.path}: ${i.message}`).join("; ")}`,
          err.issues.map((i) => ({ field: i.path, message: i.message, ...(i.line !== undefined ? { line: i.line } : {}) })),
        );
      }
      throw err;
    }
  }

  function hostFaults(): Map<string, string[]> {
    const map = new Map<string, string[]>();
    for (const fault of store.listFaults({ state: "active", limit: 10_000 })) {
      map.set(fault.agentId, [...(map.get(fault.agentId) ?? []), fault.kind]);
    }
    return map;
  }

  async function plan(specYaml: string, planOptions: RunScopeOptions = {}): Promise<{ experiment: Experiment; plan: RunPlan }> {
    const experiment = parse(specYaml);
    const agents = store.listAgents();
    const aws = await planAws({ experiment, agents, policy: options.policy, aws: options.aws });
    const hostPlan = createPlan({
      experiment: aws.hostView,
      agents,
      policy: options.policy,
      activeRuns: runs.countActiveRuns(),
      hostFaults: hostFaults(),
      now: now(),
      scope: planOptions.scope ?? null,
      awsCandidates: aws.candidates,
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
      message: `${planned.plan.steps.length} steps on ${new Set(planned.plan.steps.flatMap((s) => s.hosts.map((h) => h.id))).size} hosts; guardrails passed`,
      data: planned.plan,
    });
    const activeRun = new ActiveRun(run, planned.experiment, planned.plan, scope);
    active.set(id, activeRun);
    void activeRun.execute().finally(() => active.delete(id));
    return runs.getRun(id)!;
  }

  class ActiveRun {
    private aborting: { reason: string; kind: "breach" | "operator" | "halt" | "failure" } | undefined;
    private readonly watchers: { desc: string; watcher: StopConditionWatcher }[] = [];
    /** Every fault this run started, by id, with the step that started it. */
    private readonly stepByFault = new Map<string, string>();
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
      return isTerminalRunState(runs.getRun(this.run.id)!.state);
    }

    private async preflight(): Promise<void> {
      transition(this.run.id, "preflight", "checking the steady state: every stop condition must be healthy");
      const ctx = {
        log: this.log.child({ component: "stop-condition" }),
        alerts: options.alerts,
        ...(options.aws ? { aws: options.aws } : {}),
      };
      for (const spec of this.experiment.spec.stopConditions) {
        this.watchers.push({ desc: describeStopCondition(spec), watcher: createWatcher(spec, ctx) });
      }
      const results = await Promise.all(this.watchers.map(async (w) => ({ ...w, status: await w.watcher.check() })));
      const unhealthy = results.filter((r) => !r.status.healthy);
      for (const r of results) {
        this.event({ type: "stop-condition", message: `preflight ${r.desc}: ${r.status.healthy ? "healthy" : "NOT healthy"} (${r.status.detail})`, data: { condition: r.desc, ...r.status } });
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
      for (const { desc, watcher } of this.watchers) {
        let lastHealthy = true;
        watcher.start(
          (breach) => {
            this.event({ type: "breach", message: `${breach.condition}: ${breach.reason}`, data: breach });
            void this.abort(`stop condition breached: ${breach.condition}: ${breach.reason}`, "breach");
          },
          (status) => {
            // Record changes, not every probe.
            if (status.healthy !== lastHealthy) {
              lastHealthy = status.healthy;
              this.event({ type: "stop-condition", message: `${desc}: ${status.healthy ? "healthy again" : "unhealthy"} (${status.detail})`, data: { condition: desc, ...status } });
            }
          },
        );
      }
      const onFault = (update: FaultUpdate) => this.onFault(update);
      hub.events.on("fault", onFault);
      this.unsubscribe.push(() => hub.events.off("fault", onFault));
      const onDisconnected = (agentId: string) => {
        const holds = [...this.stepByFault.keys()].some((id) => {
          const f = store.getFault(id);
          return f && f.agentId === agentId && f.endedAt === null;
        });
        if (holds && !this.aborting) {
          this.event({ type: "agent-lost", agentId, message: `agent ${agentId} lost its link while holding faults of this run` });
          void this.abort(`agent lost: ${agentId} disconnected while holding faults of this run (its lease reverts them)`, "failure");
        }
      };
      hub.events.on("disconnected", onDisconnected);
      this.unsubscribe.push(() => hub.events.off("disconnected", onDisconnected));
    }

    private onFault({ fault, cause }: FaultUpdate): void {
      if (!this.stepByFault.has(fault.id)) return;
      const base = { step: this.stepByFault.get(fault.id) ?? null, agentId: fault.agentId, faultId: fault.id };
      if (cause === "progress" && fault.measurements) {
        this.event({ ...base, type: "measurement", message: formatMeasurements(fault.measurements), data: fault.measurements });
      } else if (cause === "started") {
        this.event({ ...base, type: "fault-started", message: `${fault.kind} running on ${fault.agentId}` });
      } else if (fault.state === "reverted" && (cause === "reverted" || cause === "reconciled")) {
        this.event({ ...base, type: "fault-reverted", message: `${fault.kind} reverted on ${fault.agentId} (${fault.reason ?? "unknown"})`, data: { reason: fault.reason } });
      } else if (fault.state === "failed") {
        this.event({ ...base, type: "fault-failed", message: `${fault.kind} failed on ${fault.agentId}: ${fault.error ?? "unknown error"}` });
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
      this.event({ type: "step-started", step: step.name, message: step.type === "wait" ? `wait ${formatDuration(step.durationMs)}` : `${step.fault} on ${step.hosts.length} hosts for ${formatDuration(step.durationMs)}`, data: { hosts: step.hosts } });
      if (step.type === "wait") {
        await this.sleep(step.durationMs);
        if (!this.aborting) this.event({ type: "step-ended", step: step.name, message: "wait over" });
        return;
      }
      if (step.fault && isCloudFaultKind(step.fault)) return this.runCloudStep(step);
      const ids = await Promise.all(step.hosts.map((host) => this.startFault(step, host.id)));
      const faultIds = ids.filter((id): id is string => id !== undefined);
      if (this.aborting) return;
      // The agents end their faults at the duration; wait for every revert ack (bounded).
      const deadline = step.durationMs + options.ackTimeoutMs + 15_000;
      const ended = await this.waitForEnd(faultIds, deadline);
      if (this.aborting) return;
      const faultsNow = faultIds.map((id) => store.getFault(id)!);
      const bad = faultsNow.filter((f) => f.state === "failed" || (f.state === "reverted" && f.reason !== "duration"));
      if (!ended) {
        await this.abort(`step ${step.name}: faults did not end within ${formatDuration(deadline)} of starting`, "failure");
      } else if (bad.length > 0) {
        await this.abort(
          `step ${step.name}: ${bad.map((f) => `${f.id} on ${f.agentId} ${f.state === "failed" ? `failed: ${f.error}` : `ended early (${f.reason})`}`).join("; ")}`,
          "failure",
        );
      } else {
        this.event({ type: "step-ended", step: step.name, message: `${step.fault} ended on ${faultIds.length} hosts; all reverted` });
      }
    }

    /** Instances this run stopped and has not started again. */
    private readonly stopped: AwsInstance[] = [];
    /** Instances this run terminated: nothing can undo that. */
    private readonly terminated: AwsInstance[] = [];

    private recordCloud(step: PlannedStep, results: InstanceActionResult[]): InstanceActionResult[] {
      for (const r of results) {
        this.event({
          type: "cloud-action",
          step: step.name,
          message: `${r.call ?? r.action} ${r.instanceId}${r.autoScalingGroup ? ` (${r.autoScalingGroup})` : ""}: ${r.ok ? "done" : `${r.refusedBy === "guardrail" ? "refused by a guardrail" : "failed"}: ${r.error ?? "unknown error"}`}`,
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
        this.event({ type: "step-ended", step: step.name, message: `terminated ${results.length} instances; their Auto Scaling groups replace them` });
        return;
      }
      // ec2-stop: stop, hold for the duration, start again (also on abort).
      const results = await aws.stop(instances, ctx);
      for (const r of results) if (r.ok && byId.has(r.instanceId)) this.stopped.push(byId.get(r.instanceId)!);
      const failed = this.recordCloud(step, results);
      if (failed.length > 0) {
        return void (await this.abort(`step ${step.name}: ${failed.map((r) => `${r.instanceId}: ${r.error ?? "failed"}`).join("; ")}`, "failure"));
      }
      await this.sleep(step.durationMs);
      if (this.aborting) return; // the abort starts them
      await this.startStopped(step.name);
      this.event({ type: "step-ended", step: step.name, message: `stopped ${results.length} instances for ${formatDuration(step.durationMs)} and started them again` });
    }

    private async startStopped(stepName: string | null): Promise<void> {
      const aws = options.aws;
      const instances = this.stopped.splice(0);
      if (!aws || instances.length === 0) return;
      const results = await aws.start(instances, { actor: `${this.run.actor} (run ${this.run.id})`, runId: this.run.id });
      for (const r of results) {
        this.event({
          type: r.ok ? "cloud-action" : "unconfirmed",
          step: stepName,
          message: r.ok ? `StartInstances ${r.instanceId}: started again` : `could not start ${r.instanceId} again: ${r.error ?? "unknown error"}; start it by hand`,
          data: r,
        });
      }
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
        this.event({
          type: acknowledged ? "fault-acked" : "fault-sent",
          step: step.name,
          agentId,
          faultId: fault.id,
          message: acknowledged ? `${step.fault} ${fault.state} on ${agentId}` : `${step.fault} sent to ${agentId}; no ack within ${formatDuration(options.ackTimeoutMs)}`,
        });
        if (this.aborting) this.stopFault(fault);
        return fault.id;
      } catch (err) {
        const message = err instanceof ApiError ? err.message : (err as Error).message;
        const refused = err instanceof ApiError ? (err.details?.fault as FaultRecord | undefined) : undefined;
        if (refused) {
          this.stepByFault.set(refused.id, step.name);
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
      const allEnded = () => faultIds.every((id) => store.getFault(id)?.endedAt !== null);
      if (allEnded()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const finish = (value: boolean) => {
          clearTimeout(timer);
          hub.events.off("fault", onFault);
          this.abortWaiters.delete(onAbort);
          resolve(value);
        };
        const onFault = () => allEnded() && finish(true);
        const onAbort = () => finish(allEnded());
        const timer = setTimeout(() => finish(allEnded()), timeoutMs);
        hub.events.on("fault", onFault);
        if (!interruptOnAbort) return;
        if (this.aborting) onAbort();
        else this.abortWaiters.add(onAbort);
      });
    }

    private stopFault(fault: FaultRecord): void {
      if (fault.endedAt !== null) return;
      const reason = this.aborting?.kind === "halt" ? RevertReason.HALT : RevertReason.ABORTED;
      hub.send(fault.agentId, { case: "stopFault", value: { faultId: fault.id, reason } });
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
        for (const fault of pending) this.stopFault(fault);
        const ended = await this.waitForEnd(pending.map((f) => f.id), revertWaitMs, false);
        if (!ended) {
          for (const fault of pending.map((f) => store.getFault(f.id)!).filter((f) => f.endedAt === null)) {
            const connected = hub.isConnected(fault.agentId);
            this.event({
              type: "unconfirmed",
              step: this.stepByFault.get(fault.id) ?? null,
              agentId: fault.agentId,
              faultId: fault.id,
              message: `revert of ${fault.kind} on ${fault.agentId} not confirmed within ${formatDuration(revertWaitMs)}${connected ? "" : ` (agent disconnected: its lease reverts it within ${formatDuration(options.leaseTtlMs)})`}`,
            });
          }
        }
        await this.startStopped(null);
        for (const i of this.terminated) {
          this.event({ type: "irreversible", message: `${i.instanceId} was terminated and cannot be brought back${i.autoScalingGroup ? ` (${i.autoScalingGroup} replaces it)` : ""}`, data: i });
        }
        transition(this.run.id, "aborted", reason);
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
    if (!activeRun) throw new ApiError(409, "run_not_active", `run ${runId} is not being executed by this control plane`);
    await activeRun.abort(`aborted by ${actor}: ${reason}`, "operator");
    await activeRun.done;
    return runs.getRun(runId)!;
  }

  async function halt(reason: string, actor: string): Promise<HaltState> {
    const state: HaltState = haltState() ?? { reason, actor, at: Date.now() };
    writeHalt(store, state);
    log.warn({ reason, actor }, "global halt: aborting every run and reverting every fault");
    // Every connected agent reverts everything it holds, in or out of a run.
    for (const agent of store.listAgents()) {
      if (hub.isConnected(agent.id)) hub.send(agent.id, { case: "stopAll", value: { reason: RevertReason.HALT, message: `halt by ${actor}: ${reason}` } });
    }
    await Promise.all([...active.values()].map((r) => r.abort(`halted by ${actor}: ${reason}`, "halt").then(() => r.done)));
    return state;
  }

  function unhalt(actor: string): LiftedHalt | undefined {
    const lifted = liftHalt(store, actor, now().getTime());
    if (lifted) log.warn({ actor, halt: lifted }, "halt lifted");
    return lifted;
  }

  return {
    plan,
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
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function formatMeasurements(m: Record<string, number>): string {
  return Object.entries(m)
    .slice(0, 6)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}
