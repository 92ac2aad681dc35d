/** The polling loop shared by the stop conditions that ask an endpoint on an interval. */
import type { Logger } from "pino";
import type { Breach, StopConditionStatus, StopConditionWatcher } from "./types.js";

/** One observation of a polled condition. */
export interface Observation {
  status: StopConditionStatus;
  /** True when this observation makes a breach (the watcher reports only the first). */
  breach: boolean;
}

/** Options of {@link createPollingWatcher}. */
export interface PollingWatcherOptions {
  /** The condition's description, for breaches and logs. */
  condition: string;
  intervalMs: number;
  log: Logger;
  now: () => number;
  /** One stateless check (preflight). Must not throw. */
  check: () => Promise<StopConditionStatus>;
  /** One observation of the watch loop; `signal` aborts when the watcher stops. Must not throw. */
  observe: (signal: AbortSignal) => Promise<Observation>;
}

/**
 * A watcher that observes at once on start(), then every `intervalMs` start to start, never
 * overlapping (a slow observation delays the next one), until stop().
 */
export function createPollingWatcher(options: PollingWatcherOptions): StopConditionWatcher {
  const { condition, log } = options;
  const stopper = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let breached = false;

  const tick = async (onBreach: (breach: Breach) => void, onStatus?: (s: StopConditionStatus) => void) => {
    timer = undefined;
    const startedAt = performance.now();
    const { status, breach } = await options.observe(stopper.signal);
    if (stopper.signal.aborted) return;
    try {
      onStatus?.(status);
      if (breach && !breached) {
        breached = true;
        log.warn({ reason: status.detail }, "stop condition breached");
        onBreach({ condition, reason: status.detail, at: options.now() });
      }
    } catch (err) {
      log.error({ err }, "a stop-condition callback failed");
    }
    if (stopper.signal.aborted) return;
    const wait = Math.max(0, options.intervalMs - (performance.now() - startedAt));
    timer = setTimeout(() => void tick(onBreach, onStatus), wait);
  };

  return {
    check: options.check,
    start(onBreach, onStatus) {
      if (started || stopper.signal.aborted) return;
      started = true;
      void tick(onBreach, onStatus);
    },
    stop() {
      stopper.abort();
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
