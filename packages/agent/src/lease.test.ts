import { describe, expect, it } from "vitest";
import { Lease } from "./lease.js";
import { backoffDelay } from "./link.js";

describe("lease", () => {
  it("expires once after the TTL of silence, and re-arms on renewal", () => {
    let now = 0;
    const expiries: number[] = [];
    const lease = new Lease({ onExpire: (silent) => expiries.push(silent), now: () => now });
    lease.check();
    expect(expiries).toEqual([]); // not armed before the first renewal
    lease.renew(3000);
    now = 2999;
    lease.check();
    expect(expiries).toEqual([]);
    lease.renew(); // keeps the TTL
    now = 5998;
    lease.check();
    expect(expiries).toEqual([]);
    now = 6000;
    lease.check();
    lease.check();
    expect(expiries).toEqual([3001]);
    expect(lease.valid).toBe(false);
    lease.renew();
    expect(lease.valid).toBe(true);
    lease.close();
  });
});

describe("lease timer", () => {
  it("fires at the expiry on its own (no polling), later after a renewal, sooner after a shorter TTL", async () => {
    const expiries: number[] = [];
    const lease = new Lease({ onExpire: () => expiries.push(performance.now()) });
    const t0 = performance.now();
    lease.renew(150);
    await new Promise((resolve) => setTimeout(resolve, 100));
    lease.renew(); // expiry moves to ~250 ms
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(expiries).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(expiries.length).toBe(1);
    expect(expiries[0]! - t0).toBeGreaterThanOrEqual(245);
    lease.renew(5000);
    lease.renew(50); // shorter: the timer set for 5 s is moved
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(expiries.length).toBe(2);
    lease.close();
  });
});

describe("reconnect backoff", () => {
  it("grows exponentially to the cap, with jitter in the upper half", () => {
    expect(backoffDelay(0, 500, 30_000, () => 0)).toBe(250);
    expect(backoffDelay(0, 500, 30_000, () => 1)).toBe(500);
    expect(backoffDelay(3, 500, 30_000, () => 1)).toBe(4000);
    expect(backoffDelay(20, 500, 30_000, () => 0)).toBe(15_000);
    expect(backoffDelay(20, 500, 30_000, () => 1)).toBe(30_000);
  });
});
