/** Bounded retry with jittered exponential backoff, for AWS calls. */
import { describeAwsError, isRetryable } from "./errors.js";

/** Retry settings. */
export interface RetryOptions {
  /** Attempts in all, the first included. @default 5 */
  attempts?: number;
  /** Backoff before the 2nd attempt; doubles each time. @default 250 */
  baseDelayMs?: number;
  /** Longest backoff. @default 8000 */
  maxDelayMs?: number;
}

/** What {@link withRetry} needs besides the call. */
export interface RetryContext {
  sleep: (ms: number) => Promise<void>;
  random: () => number;
  options: RetryOptions;
  /** Called before each backoff (for logs). */
  onRetry?: (info: { attempt: number; delayMs: number; error: string }) => void;
  /** Extra errors worth another attempt (besides throttling, 5xx, timeouts, network errors). */
  alsoRetry?: (err: unknown) => boolean;
}

/** Backoff before attempt `attempt + 1`: half of the exponential cap plus a random half (equal jitter). */
export function backoffMs(attempt: number, options: RetryOptions, random: () => number): number {
  const base = options.baseDelayMs ?? 250;
  const cap = Math.min(options.maxDelayMs ?? 8000, base * 2 ** (attempt - 1));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/**
 * Runs `fn` until it succeeds, fails with an error that is not worth retrying, or the attempts are
 * used up; then throws the last error.
 */
export async function withRetry<T>(fn: () => Promise<T>, ctx: RetryContext): Promise<T> {
  const attempts = Math.max(1, ctx.options.attempts ?? 5);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const retryable = isRetryable(err) || (ctx.alsoRetry?.(err) ?? false);
      if (!retryable || attempt >= attempts) throw err;
      const delayMs = backoffMs(attempt, ctx.options, ctx.random);
      ctx.onRetry?.({ attempt, delayMs, error: describeAwsError(err) });
      await ctx.sleep(delayMs);
    }
  }
}
