/**
 * Remembers when this process's event loop was stalled (a tick that came much later than asked),
 * so that silence measured across a stall is not blamed on the other side: messages that arrived
 * meanwhile sit unread in socket buffers until the loop runs again.
 */

/** Options of {@link createStallTracker}. */
export interface StallTrackerOptions {
  /** How often the loop is sampled. @default 200 */
  everyMs?: number;
  /** A tick later than this counts as a stall. @default 500 */
  thresholdMs?: number;
  /** How many recent stalls are kept. @default 64 */
  keep?: number;
}

/** The stall tracker. */
export interface StallTracker {
  /** Milliseconds of stall between `since` and `now` (stalls overlapping the window are clipped to it). */
  stalledSince(since: number, now?: number): number;
  /** Records a stall by hand (tests), from `start` to `end` (epoch ms). */
  record(start: number, end: number): void;
  close(): void;
}

/** Starts sampling the event loop (an unref'd interval). */
export function createStallTracker(options: StallTrackerOptions = {}): StallTracker {
  const everyMs = options.everyMs ?? 200;
  const thresholdMs = options.thresholdMs ?? 500;
  const keep = options.keep ?? 64;
  const stalls: { start: number; end: number }[] = [];
  let last = Date.now();

  function record(start: number, end: number): void {
    stalls.push({ start, end });
    if (stalls.length > keep) stalls.shift();
  }

  const timer = setInterval(() => {
    const now = Date.now();
    const late = now - last - everyMs;
    if (late > thresholdMs) record(last + everyMs, now);
    last = now;
  }, everyMs);
  timer.unref();

  return {
    stalledSince(since, now = Date.now()) {
      let total = 0;
      for (const s of stalls) {
        const start = Math.max(s.start, since);
        const end = Math.min(s.end, now);
        if (end > start) total += end - start;
      }
      // The stall in progress (this very tick may be running late).
      const current = now - last - everyMs;
      if (current > thresholdMs) total += Math.max(0, now - Math.max(last + everyMs, since));
      return total;
    },
    record,
    close: () => clearInterval(timer),
  };
}
