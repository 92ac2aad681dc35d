import { describe, expect, it } from "vitest";
import { ServerRotation, backoffDelay } from "./link.js";

describe("server rotation (--server a,b,c)", () => {
  const rotation = (servers: string[], random = () => 0.5) =>
    new ServerRotation(servers, { backoffInitialMs: 500, backoffMaxMs: 30_000, hopDelayMaxMs: 250, random });

  it("tries the next address after a short jittered pause, and backs off only after a full round", () => {
    const r = rotation(["a:1", "b:2", "c:3"]);
    expect(r.current).toBe("a:1");
    expect(r.failed()).toBe(125); // a failed: b next, hop jitter 0.5 * 250
    expect(r.current).toBe("b:2");
    expect(r.failed()).toBe(125);
    expect(r.current).toBe("c:3");
    // c failed too: every address failed in turn, so the backoff of round 0, then a again.
    expect(r.failed()).toBe(backoffDelay(0, 500, 30_000, () => 0.5));
    expect(r.current).toBe("a:1");
    r.failed();
    r.failed();
    // The second full round backs off longer.
    expect(r.failed()).toBe(backoffDelay(1, 500, 30_000, () => 0.5));
  });

  it("after a broken stream, starts from the address after the one that failed; a success resets the backoff", () => {
    const r = rotation(["a:1", "b:2"]);
    r.failed(); // a failed
    expect(r.current).toBe("b:2");
    r.succeeded(); // connected via b
    // b's stream breaks: a next, right away (hop), and only then the backoff of round 0.
    expect(r.failed()).toBe(125);
    expect(r.current).toBe("a:1");
    expect(r.failed()).toBe(backoffDelay(0, 500, 30_000, () => 0.5));
    expect(r.current).toBe("b:2");
  });

  it("one address: every failure is a full round (the single-server backoff)", () => {
    const r = rotation(["a:1"]);
    expect(r.failed()).toBe(backoffDelay(0, 500, 30_000, () => 0.5));
    expect(r.failed()).toBe(backoffDelay(1, 500, 30_000, () => 0.5));
    expect(r.current).toBe("a:1");
    r.succeeded();
    expect(r.failed()).toBe(backoffDelay(0, 500, 30_000, () => 0.5));
  });

  it("a refusal (what every replica would answer) ends the round at once, with its own cap", () => {
    const r = rotation(["a:1", "b:2", "c:3"], () => 1);
    expect(r.failed({ fullRound: true, maxDelayMs: 300_000 })).toBe(backoffDelay(0, 500, 300_000, () => 1));
    expect(r.current).toBe("b:2");
    // A new round: b's failure is a hop again.
    expect(r.failed()).toBe(250);
    expect(r.failed()).toBe(250);
    expect(r.failed({ maxDelayMs: 100 })).toBe(100); // the third in a row: a round ended, capped backoff
  });

  it("the hop pause is jittered between 0 and its maximum", () => {
    const values = [0, 0.999];
    const r = rotation(["a:1", "b:2", "c:3"], () => values.shift() ?? 0);
    expect(r.failed()).toBe(0);
    expect(r.failed()).toBe(250);
  });

  it("refuses an empty list", () => {
    expect(() => rotation([])).toThrow(/no control plane address/);
  });
});
