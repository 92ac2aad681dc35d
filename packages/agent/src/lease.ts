/**
 * The lease: the agent's dead-man switch. Every message from the control plane renews it; when
 * nothing has arrived for the lease TTL, `onExpire` runs (the agent reverts every fault). Measured
 * on the monotonic clock, so wall-clock jumps cannot stretch or cut it.
 */

/** Options of a lease. */
export interface LeaseOptions {
  /** Runs once each time the lease expires. */
  onExpire: (silentForMs: number) => void;
  /** How often expiry is checked. @default 100 */
  checkIntervalMs?: number;
  /** Monotonic clock in ms. @default performance.now */
  now?: () => number;
}

/** A renewable lease. Not armed until the first renew(). */
export class Lease {
  private ttlMs = 0;
  private lastRenewal = 0;
  private armed = false;
  private timer: NodeJS.Timeout | undefined;
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
    this.timer ??= setInterval(() => this.check(), this.opts.checkIntervalMs ?? 100);
    this.timer.unref();
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
    clearInterval(this.timer);
    this.timer = undefined;
    this.armed = false;
  }
}
