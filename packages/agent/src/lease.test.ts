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

describe("reconnect backoff", () => {
  it("grows exponentially to the cap, with jitter in the upper half", () => {
    expect(backoffDelay(0, 500, 30_000, () => 0)).toBe(250);
    expect(backoffDelay(0, 500, 30_000, () => 1)).toBe(500);
    expect(backoffDelay(3, 500, 30_000, () => 1)).toBe(4000);
    expect(backoffDelay(20, 500, 30_000, () => 0)).toBe(15_000);
    expect(backoffDelay(20, 500, 30_000, () => 1)).toBe(30_000);
  });
});
