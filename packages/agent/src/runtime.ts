/**
 * The fault runtime: starts faults from the registry, journals them before they touch the host,
 * ends them at their hard duration, reports progress, and reverts them idempotently on every path
 * (duration, stop, stop-all, lease, halt, shutdown).
 */
import { create } from "@bufbuild/protobuf";
import {
  FaultEventSchema,
  FaultEventType,
  FaultState,
  HeldFaultSchema,
  InvalidFaultRequestError,
  MAX_FAULT_DURATION_MS,
  MIN_FAULT_DURATION_MS,
  RevertReason,
  durationToMs,
  formatDuration,
  revertReasonName,
  timestampFromMs,
} from "@firedrill/protocol";
import type { FaultEvent, HeldFault, JsonObject, StartFault } from "@firedrill/protocol";
import { FaultPreviewSchema, PreviewProcessSchema, plural } from "@firedrill/protocol";
import type { FaultPreview, PreviewFault } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { FaultContext, FaultKindDefinition, FaultRegistry, HostInfo, RunningFault } from "./faults/index.js";
import type { Journal, JournalRecord } from "./journal.js";

/** Options of the fault runtime. */
export interface FaultRuntimeOptions {
  registry: FaultRegistry;
  journal: Journal;
  host: HostInfo;
  log: Logger;
  /** This process, recorded as the holder of every journal record. */
  holder: { pid: number; startTime: number };
  /** Receives every fault event, in order. */
  emit: (event: FaultEvent) => void;
  /** How often running faults report measurements. @default 2000 */
  progressIntervalMs?: number;
  /** How long to wait between attempts when a revert fails. @default 5000 */
  revertRetryMs?: number;
  /** How many times a failing revert is retried before it is reported as revert_failed. @default 60 */
  revertAttempts?: number;
  /**
   * Most faults held at once (starting, running or reverting); one more is refused.
   * @default 4 ({@link DEFAULT_MAX_FAULTS})
   */
  maxFaults?: number;
  /**
   * Runs right after a fault's journal record is written, before the fault acts: the agent writes
   * its heartbeat then, so the guard knows the lease of every fault it may have to revert even
   * when the heartbeat's timer has not had a turn since (a busy event loop, then a stall).
   */
  onJournaled?: () => void;
}

/** Default cap on concurrent faults per host (`--max-faults`). */
export const DEFAULT_MAX_FAULTS = 4;

type ActiveState = "starting" | "running" | "reverting";

interface ActiveFault {
  id: string;
  kind: string;
  def: FaultKindDefinition;
  state: ActiveState;
  startedAt: number;
  endsAt: number;
  record: JournalRecord;
  running?: RunningFault;
  /** A stop that arrived while the fault was starting. */
  pendingStop?: RevertReason;
  /** The journal record has been written (and so is removed only by a revert). */
  journaled?: boolean;
  /** Another process (the guard) reverted it from the journal while this agent was stalled. */
  recovered?: boolean;
  /** Its last revert was given up (REVERT_FAILED): a new stop tries again. */
  gaveUp?: boolean;
  started: Promise<void>;
  reverted?: Promise<void>;
  durationTimer?: NodeJS.Timeout;
  progressTimer?: NodeJS.Timeout;
}

const RECOVERED_MESSAGE = "reverted by the guard from the journal while the agent was stalled (recovery)";

/** Remembered ids of ended faults, so a re-sent StartFault never runs a fault twice. */
const ENDED_MEMORY = 10_000;

/** Runs faults on this host. */
export class FaultRuntime {
  private readonly active = new Map<string, ActiveFault>();
  private readonly ended = new Set<string>();
  private readonly progressIntervalMs: number;
  private readonly revertRetryMs: number;
  private readonly revertAttempts: number;
  private readonly maxFaults: number;

  constructor(private readonly opts: FaultRuntimeOptions) {
    this.progressIntervalMs = opts.progressIntervalMs ?? 2000;
    this.revertRetryMs = opts.revertRetryMs ?? 5000;
    this.revertAttempts = opts.revertAttempts ?? 60;
    this.maxFaults = opts.maxFaults ?? DEFAULT_MAX_FAULTS;
  }

  /** How many faults are starting, running or reverting. */
  get activeCount(): number {
    return this.active.size;
  }

  /** The faults this agent holds, for the Hello. */
  held(): HeldFault[] {
    return [...this.active.values()].map((f) =>
      create(HeldFaultSchema, {
        faultId: f.id,
        kind: f.kind,
        state:
          f.state === "starting" ? FaultState.STARTING : f.state === "running" ? FaultState.RUNNING : FaultState.REVERTING,
        startedAt: timestampFromMs(f.startedAt),
        endsAt: timestampFromMs(f.endsAt),
      }),
    );
  }

  private event(
    faultId: string,
    kind: string,
    type: FaultEventType,
    extra: {
      reason?: RevertReason;
      error?: string;
      message?: string;
      measurements?: Record<string, number>;
      details?: string[];
    } = {},
  ): void {
    this.opts.emit(
      create(FaultEventSchema, {
        faultId,
        kind,
        type,
        time: timestampFromMs(Date.now()),
        reason: extra.reason ?? RevertReason.UNSPECIFIED,
        error: extra.error ?? "",
        message: extra.message ?? "",
        measurements: extra.measurements ?? {},
        details: boundedDetails(extra.details),
      }),
    );
  }

  private rememberEnded(id: string): void {
    this.ended.add(id);
    if (this.ended.size > ENDED_MEMORY) {
      const oldest = this.ended.values().next().value;
      if (oldest !== undefined) this.ended.delete(oldest);
    }
  }

  /**
   * Starts a fault. Never throws: a refused or failed start is reported as a FAILED event, and
   * leaves nothing on the host. Resolves once the fault runs (or failed).
   */
  async start(request: StartFault): Promise<void> {
    const { faultId: id, kind } = request;
    const log = this.opts.log.child({ faultId: id, kind });
    if (this.active.has(id) || this.ended.has(id)) {
      log.info("fault already known; ignoring the repeated start");
      return;
    }
    const fail = (error: string) => {
      log.warn({ error }, "fault refused");
      this.event(id, kind, FaultEventType.FAILED, { error });
    };
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(id)) return fail(`fault_id ${JSON.stringify(id)} is not a valid id`);
    const def = this.opts.registry.get(kind);
    if (!def) {
      return fail(`kind: unknown fault kind ${JSON.stringify(kind)}; this agent runs: ${[...this.opts.registry.keys()].join(", ")}`);
    }
    const durationMs = durationToMs(request.duration);
    if (durationMs < MIN_FAULT_DURATION_MS || durationMs > MAX_FAULT_DURATION_MS) {
      return fail(`duration: ${formatDuration(durationMs)} is outside the allowed 1s-12h`);
    }
    if (this.active.size >= this.maxFaults) {
      const held = [...this.active.values()].map((f) => `${f.id} ${f.kind} ${f.state}`).join(", ");
      return fail(
        `this host already holds ${plural(this.active.size, "fault")} (${held}), the most this agent allows (--max-faults ${this.maxFaults}); ` +
          `stop one of them first, or raise --max-faults on the agent`,
      );
    }
    if (def.exclusiveGroup) {
      const clash = [...this.active.values()].find((f) => f.def.exclusiveGroup === def.exclusiveGroup);
      if (clash) {
        return fail(
          `kind: a ${def.exclusiveGroup} fault is already running on this host (${clash.id}, ${clash.kind}); ` +
            `only one ${def.exclusiveGroup} fault at a time: stop it first`,
        );
      }
    }
    let plan: unknown;
    try {
      plan = def.validate(request.params ?? {}, this.opts.host);
    } catch (err) {
      return fail(err instanceof InvalidFaultRequestError ? err.message : `invalid parameters: ${(err as Error).message}`);
    }

    const startedAt = Date.now();
    const fault: ActiveFault = {
      id,
      kind,
      def,
      state: "starting",
      startedAt,
      endsAt: startedAt + durationMs,
      record: undefined as unknown as JournalRecord,
      started: Promise.resolve(),
    };
    const ctx = this.context(fault, log);
    fault.record = {
      faultId: id,
      kind,
      params: request.params ?? {},
      revert: {},
      holder: this.opts.holder,
      ...(request.runId ? { runId: request.runId } : {}),
      startedAt: new Date(startedAt).toISOString(),
      endsAt: new Date(fault.endsAt).toISOString(),
    };
    try {
      fault.record.revert = def.planRevert(plan, ctx);
      // Write-ahead: the record is on disk before the fault touches anything.
      this.opts.journal.write(fault.record);
      fault.journaled = true;
      this.opts.onJournaled?.();
    } catch (err) {
      return fail(`could not journal the fault, nothing was started: ${(err as Error).message}`);
    }
    this.active.set(id, fault);
    this.event(id, kind, FaultEventType.ACCEPTED, { message: `accepted for ${formatDuration(durationMs)}` });

    fault.started = (async () => {
      try {
        fault.running = await def.start(plan, ctx);
      } catch (err) {
        const error = (err as Error).message;
        const recovered = fault.recovered === true || !this.opts.journal.has(id);
        if (recovered) log.warn("the guard reverted this fault while the agent was stalled starting it; undoing what the start did since");
        else log.error({ err }, "fault failed to start; undoing what it did");
        try {
          await def.revertRecord(fault.record.revert, { log, holderAlive: false });
          this.opts.journal.remove(id);
          this.active.delete(id);
          this.rememberEnded(id);
          if (recovered) {
            this.event(id, kind, FaultEventType.REVERTED, { reason: RevertReason.RECOVERY, message: RECOVERED_MESSAGE });
          } else {
            this.event(id, kind, FaultEventType.FAILED, { error: `could not start: ${error}` });
          }
        } catch (revertErr) {
          // Keep the record: recovery (restart, `recover`, the guard) will retry the revert.
          fault.state = "reverting";
          this.event(id, kind, FaultEventType.REVERT_FAILED, {
            error: `could not start: ${error}; undoing it also failed: ${(revertErr as Error).message} (the journal keeps the record; run firedrill-agent recover)`,
          });
        }
        return;
      }
      fault.state = "running";
      this.event(id, kind, FaultEventType.STARTED, {
        message: `running until ${new Date(fault.endsAt).toISOString()}`,
        ...(fault.running.details ? { details: fault.running.details } : {}),
      });
      fault.durationTimer = setTimeout(() => void this.stop(id, RevertReason.DURATION), fault.endsAt - Date.now());
      if (fault.running.measure) {
        const measure = fault.running.measure.bind(fault.running);
        fault.progressTimer = setInterval(() => {
          if (fault.state !== "running") return;
          try {
            this.event(id, kind, FaultEventType.PROGRESS, { measurements: measure() });
          } catch (err) {
            log.warn({ err }, "measurement failed");
          }
        }, this.progressIntervalMs);
      }
    })();
    await fault.started;
    if (fault.pendingStop !== undefined) await this.stop(id, fault.pendingStop);
  }

  private context(fault: ActiveFault, log: Logger): FaultContext {
    return {
      faultId: fault.id,
      log,
      host: this.opts.host,
      updateRevert: (revert: JsonObject) => {
        // A record gone from the journal was reverted by the guard while this agent was stalled:
        // writing it again would bring back a fault the control plane was told is reverted.
        if (fault.recovered || (fault.journaled && !this.opts.journal.has(fault.id))) {
          fault.recovered = true;
          throw new Error("the guard reverted this fault from the journal while the agent was stalled");
        }
        fault.record.revert = revert;
        this.opts.journal.write(fault.record);
      },
    };
  }

  /**
   * Reverts one fault. Idempotent: stopping a fault that is reverting waits for that revert;
   * stopping an unknown or ended fault does nothing. Resolves when the effect is gone (or the
   * revert has been given up and reported as failed).
   */
  async stop(id: string, reason: RevertReason): Promise<void> {
    const fault = this.active.get(id);
    if (!fault) return;
    if (fault.state === "starting") {
      fault.pendingStop ??= reason;
      await fault.started;
      return this.stop(id, fault.pendingStop);
    }
    if (fault.reverted && !fault.gaveUp) return fault.reverted;
    if (!this.opts.journal.has(id)) return this.endRecovered(fault);
    fault.gaveUp = false;
    fault.state = "reverting";
    clearTimeout(fault.durationTimer);
    clearInterval(fault.progressTimer);
    const log = this.opts.log.child({ faultId: id, kind: fault.kind });
    fault.reverted = (async () => {
      const measurements = safeMeasure(fault.running);
      for (let attempt = 1; ; attempt++) {
        try {
          if (fault.running) await fault.running.revert();
          else await fault.def.revertRecord(fault.record.revert, { log, holderAlive: false });
          break;
        } catch (err) {
          const error = (err as Error).message;
          if (attempt >= this.revertAttempts) {
            log.error({ err, attempt }, "revert failed; giving up, the journal keeps the record");
            fault.gaveUp = true;
            this.event(id, fault.kind, FaultEventType.REVERT_FAILED, {
              error: `revert failed after ${attempt} attempts: ${error}; the effect may still be on the host and the journal keeps the record (fix the cause, then run firedrill-agent recover)`,
            });
            return;
          }
          log.error({ err, attempt }, "revert failed; retrying");
          this.event(id, fault.kind, FaultEventType.PROGRESS, { message: `revert attempt ${attempt} failed: ${error}` });
          await new Promise((resolve) => setTimeout(resolve, this.revertRetryMs));
          // The guard may have done it meanwhile (this agent stalled): then it is over.
          if (!this.opts.journal.has(id)) {
            fault.recovered = true;
            break;
          }
        }
      }
      if (fault.recovered) {
        this.active.delete(id);
        this.rememberEnded(id);
        log.warn("the guard reverted this fault from the journal while its revert was being retried");
        this.event(id, fault.kind, FaultEventType.REVERTED, { reason: RevertReason.RECOVERY, message: RECOVERED_MESSAGE });
        return;
      }
      this.opts.journal.remove(id);
      this.active.delete(id);
      this.rememberEnded(id);
      log.info({ reason: revertReasonName(reason) }, "fault reverted");
      this.event(id, fault.kind, FaultEventType.REVERTED, {
        reason,
        message: `reverted (${revertReasonName(reason)})`,
        ...(measurements ? { measurements } : {}),
      });
    })();
    return fault.reverted;
  }

  /**
   * Ends, in this process, every fault whose journal record another process removed: the guard
   * reverted it while this agent was stalled (SIGSTOP, a blocked event loop). Its in-process part
   * (cpu-burn threads, a repeat-kill loop) is stopped — the external part was reverted already,
   * and reverting it again is harmless — and it is reported REVERTED with reason recovery (the
   * guard's stored report for it is the same final event: it is replaced, not sent twice).
   * A fault still starting is ended once its start returns. Cheap: one stat per held fault.
   * Returns the ids it ended.
   */
  reconcileWithJournal(): string[] {
    const ended: string[] = [];
    for (const fault of this.active.values()) {
      if (!fault.journaled || fault.recovered || this.opts.journal.has(fault.id)) continue;
      if (fault.state === "starting") {
        fault.recovered = true;
        fault.pendingStop ??= RevertReason.RECOVERY;
      } else if (!fault.reverted || fault.gaveUp) {
        void this.endRecovered(fault);
      } else {
        // Its own revert is being retried: the retry loop sees the record gone and ends it.
        continue;
      }
      ended.push(fault.id);
    }
    return ended;
  }

  /** Ends a fault the guard reverted from the journal: stops its in-process part, reports it. */
  private endRecovered(fault: ActiveFault): Promise<void> {
    if (fault.reverted && !fault.gaveUp) return fault.reverted;
    fault.gaveUp = false;
    fault.recovered = true;
    fault.state = "reverting";
    clearTimeout(fault.durationTimer);
    clearInterval(fault.progressTimer);
    const log = this.opts.log.child({ faultId: fault.id, kind: fault.kind });
    fault.reverted = (async () => {
      const measurements = safeMeasure(fault.running);
      try {
        // Idempotent: the external effect is gone already; this stops what lives in this process.
        if (fault.running) await fault.running.revert();
      } catch (err) {
        // The guard's revert of the external part succeeded; what is left is this process's own.
        log.error({ err }, "could not stop the in-process part of a fault the guard reverted");
      }
      this.active.delete(fault.id);
      this.rememberEnded(fault.id);
      log.warn("the guard reverted this fault while the agent was stalled; ended it here too");
      this.event(fault.id, fault.kind, FaultEventType.REVERTED, {
        reason: RevertReason.RECOVERY,
        message: RECOVERED_MESSAGE,
        ...(measurements ? { measurements } : {}),
      });
    })();
    return fault.reverted;
  }

  /** Reverts every fault, in parallel. Resolves when all are reverted (or given up). */
  async stopAll(reason: RevertReason): Promise<void> {
    await Promise.all([...this.active.keys()].map((id) => this.stop(id, reason)));
  }

  /**
   * A dry run of a fault on this host (PreviewFault): the same parameter validation as start(),
   * then the kind's own preview (e.g. the processes a process fault would hit). Nothing is
   * journaled or touched. Never throws: a refusal is the answer's `error`.
   */
  async preview(request: PreviewFault): Promise<FaultPreview> {
    const answer = (init: { error?: string; details?: string[]; processes?: FaultPreview["processes"]; matched?: number }) =>
      create(FaultPreviewSchema, {
        requestId: request.requestId,
        error: init.error ?? "",
        details: boundedDetails(init.details),
        processes: (init.processes ?? []).slice(0, PREVIEW_MAX_PROCESSES),
        matched: init.matched ?? 0,
      });
    const def = this.opts.registry.get(request.kind);
    if (!def) {
      return answer({ error: `kind: unknown fault kind ${JSON.stringify(request.kind)}; this agent runs: ${[...this.opts.registry.keys()].join(", ")}` });
    }
    try {
      const plan = def.validate(request.params ?? {}, this.opts.host);
      const result = def.preview ? await def.preview(plan, this.opts.host) : { details: [] };
      const notes: string[] = [];
      const clash = def.exclusiveGroup ? [...this.active.values()].find((f) => f.def.exclusiveGroup === def.exclusiveGroup) : undefined;
      if (clash) {
        notes.push(`a ${def.exclusiveGroup} fault runs on this host now (${clash.id}, ${clash.kind}): a start would be refused until it ends`);
      }
      return answer({
        details: [...result.details, ...notes],
        ...(result.processes ? { processes: result.processes.map((p) => create(PreviewProcessSchema, p)) } : {}),
        ...(result.matched !== undefined ? { matched: result.matched } : {}),
      });
    } catch (err) {
      return answer({ error: err instanceof InvalidFaultRequestError ? err.message : `invalid parameters: ${(err as Error).message}` });
    }
  }
}

/** Bounds of a preview answer (the control plane bounds what it accepts too). */
const PREVIEW_MAX_DETAILS = 50;
const PREVIEW_MAX_TEXT = 500;
const PREVIEW_MAX_PROCESSES = 50;

function safeMeasure(running: RunningFault | undefined): Record<string, number> | undefined {
  try {
    return running?.measure?.();
  } catch {
    return undefined;
  }
}

/** Detail lines as sent to the control plane: at most 50, each at most 300 characters. */
function boundedDetails(details: string[] | undefined): string[] {
  return (details ?? [])
    .slice(0, PREVIEW_MAX_DETAILS)
    .map((d) => (d.length > PREVIEW_MAX_TEXT ? `${d.slice(0, PREVIEW_MAX_TEXT - 1)}…` : d));
}
