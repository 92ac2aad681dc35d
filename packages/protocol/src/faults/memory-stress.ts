import type { ParamReader } from "../params.js";
import { readSize } from "./disk-fill.js";

/** Parameters of `memory-stress`. Exactly one of `percent` and `size` is set. */
export interface MemoryStressParams {
  /** Hold this percent of the host's total RAM (1-95). */
  percent?: number;
  /** Hold this many bytes (at least 1 MiB). */
  size?: number;
  /**
   * Available memory (MemAvailable) the hold never takes: a floor that raises the default
   * max(512 MiB, 5 % of RAM), never lowers it. Bytes; absent: the default.
   */
  reserve?: number;
}

/** The highest `percent` a memory-stress may ask. */
export const MEMORY_STRESS_MAX_PERCENT = 95;
/** The smallest hold: 1 MiB. */
export const MEMORY_STRESS_MIN_BYTES = 1024 * 1024;
/** The reserve's floor in bytes: 512 MiB (or 5 % of RAM when that is more). */
export const MEMORY_STRESS_MIN_RESERVE = 512 * 1024 * 1024;
/** The reserve's floor as a share of total RAM, in percent. */
export const MEMORY_STRESS_MIN_RESERVE_PERCENT = 5;

/**
 * The reserve a memory-stress keeps available on a host with `totalBytes` of RAM: max(512 MiB,
 * 5 % of RAM, `asked`). A `reserve` parameter only ever raises it.
 */
export function memoryReserveBytes(totalBytes: number, asked?: number): number {
  return Math.max(MEMORY_STRESS_MIN_RESERVE, Math.ceil((totalBytes * MEMORY_STRESS_MIN_RESERVE_PERCENT) / 100), asked ?? 0);
}

const EXACTLY_ONE = "give exactly one of percent (1-95, of the host's total RAM) or size (e.g. 512MiB)";

/** Reads memory-stress parameters; problems are collected by the reader. */
export function parseMemoryStressParams(reader: ParamReader): MemoryStressParams {
  const hasPercent = reader.has("percent");
  const hasSize = reader.has("size");
  let percent: number | undefined;
  let size: number | undefined;
  if (hasPercent && hasSize) {
    reader.raw("percent");
    reader.raw("size");
    reader.fail("size", `cannot be combined with percent; ${EXACTLY_ONE}`);
  } else if (!hasPercent && !hasSize) {
    reader.fail("percent", `is required unless size is given; ${EXACTLY_ONE}`);
  } else if (hasPercent) {
    percent = reader.number("percent", { min: 1, max: MEMORY_STRESS_MAX_PERCENT, unit: "%" });
  } else {
    size = readSize(reader, "size", { min: 0 });
    if (size !== undefined && size < MEMORY_STRESS_MIN_BYTES) {
      reader.fail("size", `${JSON.stringify(reader.raw("size"))} is below the minimum 1MiB`);
      size = undefined;
    }
  }
  const reserve = readSize(reader, "reserve", { min: 0 });
  reader.rejectUnknown("memory-stress", ["percent", "size", "reserve"]);
  return {
    ...(percent !== undefined ? { percent } : {}),
    ...(size !== undefined ? { size } : {}),
    ...(reserve !== undefined ? { reserve } : {}),
  };
}
