/** The report's effect lines of memory-stress and io-stress. */
import { describe, expect, it } from "vitest";
import { describeEffect } from "./effects.js";
import type { MeasurementPoint } from "./effects.js";

const at = (...ms: Record<string, number>[]): MeasurementPoint[] => ms.map((m, i) => ({ at: 1000 * (i + 1), m }));

describe("describeEffect: memory-stress and io-stress", () => {
  it("memory-stress: the most held, what was asked, the least left available", () => {
    const hold = at(
      { held_mib: 1200.4, asked_mib: 2048, target_mib: 2048, available_mib: 6400, released_mib: 0 },
      { held_mib: 2049.1, asked_mib: 2048, target_mib: 2048, available_mib: 5120.3, released_mib: 0 },
      { held_mib: 2049.1, asked_mib: 2048, target_mib: 2048, available_mib: 5150, released_mib: 0 },
    );
    expect(describeEffect("memory-stress", hold)).toBe("held 2049 MiB (asked 2048), 5120 MiB still available");
    expect(describeEffect("memory-stress", at({ held_mib: 300, asked_mib: 1024, target_mib: 300, available_mib: 900, released_mib: 128 }))).toBe(
      "held 300 MiB (asked 1024, capped to 300 by the reserve), 900 MiB still available, 128 MiB given back to keep the reserve",
    );
  });

  it("io-stress: the mix's median MB/s and p99, the lay-out left out", () => {
    const io = at(
      { mbps_achieved: 400, read_mbps: 0, write_mbps: 400, laying_out: 1, mbps_asked: 20 },
      { mbps_achieved: 19.8, read_mbps: 9.9, write_mbps: 9.9, p99_ms: 4.1, laying_out: 0, mbps_asked: 20 },
      { mbps_achieved: 20.1, read_mbps: 10, write_mbps: 10.1, p99_ms: 3.2, laying_out: 0, mbps_asked: 20 },
      { mbps_achieved: 20, read_mbps: 10, write_mbps: 10, p99_ms: 3.9, laying_out: 0, mbps_asked: 20 },
    );
    expect(describeEffect("io-stress", io)).toBe("io 20 MB/s (asked 20: 10 read, 10 write), p99 3.9 ms per block");
    expect(describeEffect("io-stress", at({ mbps_achieved: 812.5, read_mbps: 812.5, write_mbps: 0, laying_out: 0 }))).toBe(
      "io 812.5 MB/s (asked max: 812.5 read, 0 write)",
    );
    // Only the lay-out so far: its measurements, as pairs.
    expect(describeEffect("io-stress", at({ mbps_achieved: 400, laying_out: 1 }))).toBe("laying_out=1 mbps_achieved=400");
  });
});
