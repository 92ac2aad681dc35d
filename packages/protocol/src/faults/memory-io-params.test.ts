import { describe, expect, it } from "vitest";
import { parseFaultParams, validateFaultRequest } from "../fault-kinds.js";
import { InvalidFaultRequestError } from "../params.js";
import { memoryReserveBytes } from "./memory-stress.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function issues(kind: "memory-stress" | "io-stress", params: Record<string, unknown>): string[] {
  try {
    parseFaultParams(kind, params as never);
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.issues.map((i) => `${i.field}: ${i.message}`);
    throw err;
  }
  return [];
}

describe("memory-stress parameters", () => {
  it("takes a percent of RAM or a size, and an optional reserve", () => {
    expect(parseFaultParams("memory-stress", { percent: 50 })).toEqual({ percent: 50 });
    expect(parseFaultParams("memory-stress", { percent: "12.5" })).toEqual({ percent: 12.5 });
    expect(parseFaultParams("memory-stress", { size: "512MiB" })).toEqual({ size: 512 * MiB });
    expect(parseFaultParams("memory-stress", { size: "2G", reserve: "1GiB" })).toEqual({ size: 2 * GiB, reserve: GiB });
    expect(parseFaultParams("memory-stress", { size: 1048576 })).toEqual({ size: MiB });
  });

  it("refuses each bad parameter with what is allowed", () => {
    expect(issues("memory-stress", {})).toEqual([
      "params.percent: is required unless size is given; give exactly one of percent (1-95, of the host's total RAM) or size (e.g. 512MiB)",
    ]);
    expect(issues("memory-stress", { percent: 10, size: "1GiB" })).toEqual([
      "params.size: cannot be combined with percent; give exactly one of percent (1-95, of the host's total RAM) or size (e.g. 512MiB)",
    ]);
    expect(issues("memory-stress", { percent: 96 })).toEqual(["params.percent: 96 is above the maximum 95%"]);
    expect(issues("memory-stress", { percent: 0 })).toEqual(["params.percent: 0 is below the minimum 1%"]);
    expect(issues("memory-stress", { size: "lots" })).toEqual([
      'params.size: "lots" is not a size; use a number of bytes or a size such as 500MiB, 2GiB, 1.5G (K, M, G, T and KiB... are powers of 1024; KB, MB... of 1000)',
    ]);
    expect(issues("memory-stress", { size: "100KiB" })).toEqual(['params.size: "100KiB" is below the minimum 1MiB']);
    expect(issues("memory-stress", { size: "1GiB", reserve: "-1" })).toEqual([
      'params.reserve: "-1" is not a size; use a number of bytes or a size such as 500MiB, 2GiB, 1.5G (K, M, G, T and KiB... are powers of 1024; KB, MB... of 1000)',
    ]);
    expect(issues("memory-stress", { size: "1GiB", load: 5 })).toEqual(["params.load: unknown parameter for memory-stress; allowed: percent, size, reserve"]);
  });

  it("keeps max(512 MiB, 5 % of RAM) available, raised (never lowered) by reserve", () => {
    expect(memoryReserveBytes(4 * GiB)).toBe(512 * MiB);
    expect(memoryReserveBytes(64 * GiB)).toBe(Math.ceil(64 * GiB * 0.05));
    expect(memoryReserveBytes(64 * GiB, 8 * GiB)).toBe(8 * GiB);
    expect(memoryReserveBytes(4 * GiB, 100 * MiB)).toBe(512 * MiB);
  });

  it("is checked by the control plane's request validation too", () => {
    expect(() => validateFaultRequest({ kind: "memory-stress", params: { percent: 99 }, duration: "1m" })).toThrow(
      "params.percent: 99 is above the maximum 95%",
    );
    expect(validateFaultRequest({ kind: "memory-stress", params: { size: "256MiB" }, duration: "1m" }).kind).toBe("memory-stress");
  });
});

describe("io-stress parameters", () => {
  it("has defaults for all but path", () => {
    expect(parseFaultParams("io-stress", { path: "/var/tmp" })).toEqual({
      path: "/var/tmp",
      mbps: "max",
      blockSize: MiB,
      readPercent: 50,
      fileSize: 256 * MiB,
      workers: 1,
      keepFreeBytes: 256 * MiB,
    });
    expect(
      parseFaultParams("io-stress", { path: "/srv", mbps: "50", blockSize: "4KiB", readPercent: 70, fileSize: "1GiB", workers: 4, keepFreeBytes: "2GiB" }),
    ).toEqual({ path: "/srv", mbps: 50, blockSize: 4096, readPercent: 70, fileSize: GiB, workers: 4, keepFreeBytes: 2 * GiB });
    expect(parseFaultParams("io-stress", { path: "/srv", mbps: "max" }).mbps).toBe("max");
  });

  it("rounds fileSize down to whole blocks", () => {
    expect(parseFaultParams("io-stress", { path: "/srv", blockSize: "1MiB", fileSize: "10.5MiB" }).fileSize).toBe(10 * MiB);
  });

  it("refuses each bad parameter with what is allowed", () => {
    expect(issues("io-stress", {})).toEqual(["params.path: is required"]);
    expect(issues("io-stress", { path: "var/tmp" })).toEqual([
      'params.path: "var/tmp" is not valid; expected an absolute path to an existing directory, e.g. /var/tmp',
    ]);
    expect(issues("io-stress", { path: "/srv", mbps: "fast" })).toEqual([
      'params.mbps: "fast" is not a number (allowed: 0.001-100000 MB/s); or "max" for no limit',
    ]);
    expect(issues("io-stress", { path: "/srv", mbps: 0 })).toEqual(['params.mbps: 0 is below the minimum 0.001 MB/s; or "max" for no limit']);
    expect(issues("io-stress", { path: "/srv", blockSize: "1KiB" })).toEqual([
      'params.blockSize: "1KiB" is not allowed; use 4KiB to 4MiB, a multiple of 4KiB (e.g. 4KiB, 64KiB, 1MiB)',
    ]);
    expect(issues("io-stress", { path: "/srv", blockSize: "8MiB" })).toHaveLength(1);
    expect(issues("io-stress", { path: "/srv", blockSize: 5000 })).toHaveLength(1);
    expect(issues("io-stress", { path: "/srv", readPercent: 101 })).toEqual(["params.readPercent: 101 is above the maximum 100%"]);
    expect(issues("io-stress", { path: "/srv", fileSize: "100GiB" })).toEqual(['params.fileSize: "100GiB" is not allowed; use 1MiB to 64GiB (e.g. 256MiB)']);
    expect(issues("io-stress", { path: "/srv", blockSize: "4MiB", fileSize: "2MiB" })).toEqual([
      'params.fileSize: "2MiB" is smaller than blockSize; give a fileSize of at least one block',
    ]);
    expect(issues("io-stress", { path: "/srv", workers: 17 })).toEqual(["params.workers: 17 is above the maximum 16"]);
    expect(issues("io-stress", { path: "/srv", workers: 1.5 })).toEqual(["params.workers: 1.5 is not a whole number (allowed: 1-16)"]);
    expect(issues("io-stress", { path: "/srv", rate: 5 })).toEqual([
      "params.rate: unknown parameter for io-stress; allowed: path, mbps, blockSize, readPercent, fileSize, workers, keepFreeBytes",
    ]);
  });
});
