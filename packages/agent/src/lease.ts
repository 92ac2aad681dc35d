/**
 * The lease: the agent's dead-man switch. Every message from the control plane renews it; when
 * nothing has arrived for the lease TTL, `onExpire` runs (the agent reverts every fault). Measured
 * on the monotonic clock, so wall-clock jumps cannot stretch or cut it.
 *
 * One timer, set for the expiry (Node's timers run on the monotonic clock too): an idle agent wakes
 * once per TTL for it, not every check interval. A renewal that pushes the expiry later leaves the
 * timer as it is; when it fires early (renewed meanwhile), it is set again for the new expiry.
 */

/** Options of a lease. */
export interface LeaseOptions {
  /** Runs once each time the lease expires. */
  onExpire: (silentForMs: number) => void;
  /** Monotonic clock in ms. @default performance.now */
  now?: () => number;
}

/** A renewable lease. Not armed until the first renew(). */
export class Lease {
  private ttlMs = 0;
  private lastRenewal = 0;
  private armed = false;
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires, on {@link now}'s clock. */
  private timerAt = Infinity;
  private readonly now: () => number;

  constructor(private readonly opts: LeaseOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** Renews the lease for `ttlMs` from now (the last TTL when omitted). */
  renew(ttlMs?: number): void {
    if (ttlMs !== undefined && ttlMs > 0) this.ttlMs = ttlMs;
    if (this.ttlMs <= 0) return;
    this.lastRenewal = this.now();
    this.armed = true;
    // A later expiry: the timer set for the earlier one sets itself again when it fires. An earlier
    // one (a shorter TTL): set it now.
    if (this.timer === undefined || this.timerAt > this.lastRenewal + this.ttlMs) this.schedule();
  }

  /** Milliseconds until expiry (negative when expired), or undefined before the first renewal. */
  remainingMs(): number | undefined {
    return this.ttlMs > 0 ? this.lastRenewal + this.ttlMs - this.now() : undefined;
  }

  /** Whether the lease is currently valid. */
  get valid(): boolean {
    return this.armed;
  }

  /** Checks for expiry now. */
  check(): void {
    if (!this.armed) return;
    const silentFor = this.now() - this.lastRenewal;
    if (silentFor >= this.ttlMs) {
      this.armed = false;
      this.opts.onExpire(silentFor);
    }
  }

  /** Stops checking. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.armed = false;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    const now = this.now();
    // At least 1 ms: a timer may fire a fraction of a millisecond before the clock reads the expiry.
    const delay = Math.max(1, Math.ceil(this.lastRenewal + this.ttlMs - now));
    this.timerAt = now + delay;
    this.timer = setTimeout(() => this.fire(), delay);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.check();
    // Renewed since the timer was set: wait for the new expiry.
    if (this.armed) this.schedule();
  }
}
