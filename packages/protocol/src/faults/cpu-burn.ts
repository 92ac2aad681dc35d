import type { ParamReader } from "../params.js";

/** Parameters of `cpu-burn`. */
export interface CpuBurnParams {
  /** Percent of each selected core to keep busy, 1-100. @default 100 */
  load: number;
  /** How many cores to burn, or "all". @default 1 */
  cores: number | "all";
}

/** Reads cpu-burn parameters; problems are collected by the reader. */
export function parseCpuBurnParams(reader: ParamReader): CpuBurnParams {
  const load = reader.number("load", { min: 1, max: 100, integer: true, default: 100 });
  const rawCores = reader.raw("cores");
  let cores: number | "all" = 1;
  if (rawCores === "all") cores = "all";
  else if (rawCores !== undefined) {
    const n = typeof rawCores === "string" && /^\d+$/.test(rawCores) ? Number(rawCores) : rawCores;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 1024) {
      reader.fail("cores", `${JSON.stringify(rawCores)} is not valid; use a whole number of cores >= 1, or "all"`);
    } else cores = n;
  }
  reader.rejectUnknown("cpu-burn", ["load", "cores"]);
  return { load: load ?? 100, cores };
}
