/**
 * The cloud-revert reconciler: carries out every revert the journal (cloud-journal.ts) wants, and
 * retries each until AWS confirms it. It runs at start-up and every `intervalMs`:
 *
 * 1. sweep: entries of ended runs (after a crash: the runs the restart marked failed), and entries
 *    whose step's end is past, become wanted (the runner wants them itself at the step's end or on
 *    abort; this is the same path for everything the runner could not do);
 * 2. attempts: for each wanted entry whose next attempt is due, at most `concurrency` at once:
 *    confirm (already undone? done), else revert, then confirm again. Not confirmed, or an error:
 *    the next attempt after a jittered exponential backoff (from `baseBackoffMs`, capped at
 *    `maxBackoffMs`). It never gives up: an unreverted cloud action is worse than a noisy log. Only
 *    a reverter's "gone" (the instance no longer exists) ends an entry unreverted, as `failed`.
 *
 * Every AWS call is asynchronous and bounded by `attemptTimeoutMs`; the database work per tick is a
 * few small statements: the event loop is never held.
 */
import type { Logger } from "pino";
import { AwsCallError, describeAwsError } from "./errors.js";
import type { CloudJournal, CloudRevertChange, CloudRevertEntry, CloudReverter } from "./cloud-journal.js";

/** Options of {@link createCloudReconciler}. */
export interface CloudReconcilerOptions {
  journal: CloudJournal;
  /** One reverter per journal `kind`. */
  reverters: readonly CloudReverter[];
  log: Logger;
  /** How often the journal is swept and due attempts are made. @default 2000 */
  intervalMs?: number;
  /** Attempts in flight at once. @default 4 */
  concurrency?: number;
  /** Backoff after the first failed attempt; doubles each time. @default 1000 */
  baseBackoffMs?: number;
  /** Longest backoff between two attempts. @default 30000 */
  maxBackoffMs?: number;
  /** One attempt (confirm, revert, confirm) is abandoned after this long and retried. @default 20000 */
  attemptTimeoutMs?: number;
  /**
   * A pending entry whose due time (its step's end) is this far past is reverted by the sweep, in
   * case the runner did not ask (it asks at the step's end). @default 5000
   */
  dueGraceMs?: number;
  /** @default Date.now */
  now?: () => number;
  /** @default Math.random */
  random?: () => number;
}

/** The running reconciler. */
export interface CloudReconciler {
  /** Sweeps and attempts now, then every interval. Idempotent. */
  start(): void;
  /** Sweeps and attempts as soon as possible (e.g. the runner just wanted reverts). */
  kick(): void;
  /** Stops the timer and waits (bounded) for attempts in flight. */
  close(): Promise<void>;
}

/** Backoff before the next attempt after `attempts` failed ones: equal jitter, capped. */
export function revertBackoffMs(attempts: number, baseMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** Creates the reconciler (not started). */
export function createCloudReconciler(options: CloudReconcilerOptions): CloudReconciler {
  const { journal } = options;
  const log = options.log.child({ component: "cloud-reconciler" });
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const intervalMs = options.intervalMs ?? 2000;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const baseBackoffMs = options.baseBackoffMs ?? 1000;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 20_000;
  const dueGraceMs = options.dueGraceMs ?? 5000;
  const reverters = new Map(options.reverters.map((r) => [r.kind, r]));
  const busy = new Map<number, Promise<void>>();
  const closing = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let kicked: NodeJS.Immediate | undefined;
  let started = false;

  const backoff = (attempts: number) => revertBackoffMs(attempts, baseBackoffMs, maxBackoffMs, random);

  function tick(): void {
    if (closing.signal.aborted) return;
    try {
      const wanted = journal.sweep(now(), dueGraceMs);
      for (const e of wanted) log.warn({ id: e.id, kind: e.kind, resource: e.resource, runId: e.runId, reason: e.revertReason }, "cloud revert wanted");
      const free = concurrency - busy.size;
      for (const entry of journal.due(now(), free, new Set(busy.keys()))) {
        const attempt = run(entry).finally(() => {
          busy.delete(entry.id);
          // A slot is free: more may be waiting.
          if (!closing.signal.aborted) kick();
        });
        busy.set(entry.id, attempt);
      }
    } catch (err) {
      log.error({ err }, "cloud revert journal: could not read or update the journal; trying again at the next tick");
    }
  }

  async function run(entry: CloudRevertEntry): Promise<void> {
    const reverter = reverters.get(entry.kind);
    const attemptNo = entry.attempts + 1;
    journal.markAttempt(entry.id, now());
    if (!reverter) {
      // A newer firedrill wrote it, or a kind was removed: keep it visible, retry slowly.
      const error = `no reverter for kind ${JSON.stringify(entry.kind)} in this firedrill; run a version that knows it, or undo ${entry.resource} by hand`;
      log.error({ id: entry.id, kind: entry.kind }, error);
      journal.markRetry(entry.id, error, null, now() + maxBackoffMs, now());
      return;
    }
    const signal = AbortSignal.any([closing.signal, AbortSignal.timeout(attemptTimeoutMs)]);
    const ctx = { entry, signal };
    const what = reverter.describe(entry);
    try {
      const before = await reverter.confirm(ctx);
      if (before.confirmed) return done(entry, before.detail, attemptNo);
      if (before.gone) return gone(entry, before.detail);
      await reverter.revert(ctx);
      const after = await reverter.confirm(ctx);
      if (after.confirmed) return done(entry, after.detail, attemptNo);
      if (after.gone) return gone(entry, after.detail);
      const delay = backoff(attemptNo);
      journal.markRetry(entry.id, null, after.detail, now() + delay, now());
      log.info({ id: entry.id, resource: entry.resource, detail: after.detail, attempt: attemptNo, delayMs: delay }, `${reverter.call} made; not confirmed yet`);
    } catch (err) {
      if (closing.signal.aborted) return;
      const delay = backoff(attemptNo);
      const error = signal.aborted
        ? `${reverter.call}: no answer from AWS within ${attemptTimeoutMs} ms`
        : err instanceof AwsCallError
          ? err.message
          : `${reverter.call}: ${describeAwsError(err)}`;
      journal.markRetry(entry.id, error, null, now() + delay, now());
      log.warn({ id: entry.id, resource: entry.resource, runId: entry.runId, attempt: attemptNo, delayMs: delay, error }, `cloud revert not confirmed (${what}); retrying`);
    }
  }

  function done(entry: CloudRevertEntry, detail: string, attempts: number): void {
    journal.markConfirmed(entry.id, detail, now());
    const since = entry.revertRequestedAt ?? entry.createdAt;
    log.info({ id: entry.id, resource: entry.resource, runId: entry.runId, attempts, ms: now() - since, detail }, "cloud revert confirmed");
  }

  function gone(entry: CloudRevertEntry, detail: string): void {
    journal.markFailed(entry.id, detail, now());
    log.error({ id: entry.id, resource: entry.resource, runId: entry.runId, detail }, "cloud revert can never be made");
  }

  function kick(): void {
    if (kicked !== undefined || closing.signal.aborted || !started) return;
    kicked = setImmediate(() => {
      kicked = undefined;
      tick();
    });
  }

  // An action whose call just returned may have a revert waiting for it (an abort mid-call).
  const onChange = ({ entry, cause }: CloudRevertChange) => {
    if (cause === "acted" && entry.state === "reverting") kick();
  };

  return {
    start() {
      if (started) return;
      started = true;
      // Calls in flight when the previous process died: their outcome is whatever AWS did; the
      // reverts read AWS first, so they may go ahead.
      try {
        const released = journal.releaseInFlight(now());
        if (released > 0) log.warn({ released }, "cloud actions whose call a crash cut short: their reverts may go ahead");
      } catch (err) {
        log.error({ err }, "cloud revert journal: could not release the calls a crash cut short");
      }
      journal.events.on("change", onChange);
      timer = setInterval(tick, intervalMs);
      timer.unref();
      tick();
    },
    kick,
    async close() {
      closing.abort();
      journal.events.off("change", onChange);
      if (timer) clearInterval(timer);
      if (kicked) clearImmediate(kicked);
      await Promise.race([Promise.allSettled([...busy.values()]), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    },
  };
}
