import { afterEach, describe, expect, it } from "vitest";
import { createStallTracker } from "./stall-tracker.js";
import type { StallTracker } from "./stall-tracker.js";

describe("stall tracker", () => {
  let tracker: StallTracker | undefined;
  afterEach(() => tracker?.close());

  it("counts the stalled time inside a window, clipped to it", () => {
    tracker = createStallTracker({ everyMs: 60_000 });
    tracker.record(1000, 3000);
    tracker.record(5000, 6000);
    expect(tracker.stalledSince(0, 10_000)).toBe(3000);
    expect(tracker.stalledSince(2000, 10_000)).toBe(2000);
    expect(tracker.stalledSince(2500, 5500)).toBe(1000);
    expect(tracker.stalledSince(7000, 10_000)).toBe(0);
  });

  it("notices a real stall of the event loop", async () => {
    tracker = createStallTracker({ everyMs: 50, thresholdMs: 300 });
    const before = Date.now();
    await new Promise((r) => setTimeout(r, 120));
    const until = Date.now() + 800;
    while (Date.now() < until) {
      // busy: the sampler cannot run
    }
    await new Promise((r) => setTimeout(r, 120));
    expect(tracker.stalledSince(before)).toBeGreaterThanOrEqual(400);
  });
});
