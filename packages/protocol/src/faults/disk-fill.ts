import type { JsonValue } from "@bufbuild/protobuf";
import type { ParamReader } from "../params.js";

/** Parameters of `disk-fill`. Exactly one of `targetPercent` and `size` is set. */
export interface DiskFillParams {
  /** An absolute path to an existing directory on the filesystem to fill. */
  path: string;
  /** Fill until the filesystem holding `path` is this full, in percent (1-98). */
  targetPercent?: number;
  /** Fill this many bytes. */
  size?: number;
  /** Never leave less than this many bytes free. @default 268435456 (256 MiB) */
  keepFreeBytes: number;
}

/** The highest usage any disk fill may cause, in percent. */
export const DISK_FILL_MAX_PERCENT = 98;
/** Default of `keepFreeBytes`: 256 MiB. */
export const DISK_FILL_DEFAULT_KEEP_FREE = 256 * 1024 * 1024;

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

const SIZE_HINT = "a number of bytes or a size such as 500MiB, 2GiB, 1.5G (K, M, G, T and KiB... are powers of 1024; KB, MB... of 1000)";

/**
 * Parses a size: a number of bytes, or text such as `500MiB`, `2GiB`, `1.5G`, `100MB`. As in
 * util-linux, `K`/`KiB`, `M`/`MiB`... are powers of 1024 and `KB`, `MB`... powers of 1000.
 * Returns whole bytes, or undefined when the value is not a size.
 */
export function parseSize(value: JsonValue | undefined): number | undefined {
  let bytes: number | undefined;
  if (typeof value === "number") bytes = value;
  else if (typeof value === "string") {
    const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(value.trim());
    const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
    if (match && unit !== undefined) bytes = Number(match[1]) * unit;
  }
  if (bytes === undefined || !Number.isFinite(bytes) || bytes < 0) return undefined;
  return Math.floor(bytes);
}

/**
 * Reads a size parameter (see {@link parseSize}); problems are collected by the reader. Shared by the
 * kinds that take sizes (disk-fill, memory-stress, io-stress).
 */
export function readSize(reader: ParamReader, name: string, opts: { min: number; default?: number }): number | undefined {
  const raw = reader.raw(name);
  if (raw === undefined) return opts.default;
  const bytes = parseSize(raw);
  if (bytes === undefined) {
    reader.fail(name, `${JSON.stringify(raw)} is not a size; use ${SIZE_HINT}`);
    return undefined;
  }
  if (bytes < opts.min) {
    reader.fail(name, `${JSON.stringify(raw)} is below the minimum ${opts.min} ${opts.min === 1 ? "byte" : "bytes"}`);
    return undefined;
  }
  return bytes;
}

/** Reads disk-fill parameters; problems are collected by the reader. */
export function parseDiskFillParams(reader: ParamReader): DiskFillParams {
  const path = reader.string("path", {
    required: true,
    pattern: /^\/[^\0]*$/,
    patternHint: "an absolute path to an existing directory, e.g. /var/tmp",
  });
  const hasTarget = reader.has("targetPercent");
  const hasSize = reader.has("size");
  let targetPercent: number | undefined;
  let size: number | undefined;
  if (hasTarget && hasSize) {
    reader.raw("targetPercent");
    reader.raw("size");
    reader.fail("size", "cannot be combined with targetPercent; give exactly one of targetPercent (1-98) or size (e.g. 500MiB)");
  } else if (!hasTarget && !hasSize) {
    reader.fail("targetPercent", "is required unless size is given; give exactly one of targetPercent (1-98) or size (e.g. 500MiB)");
  } else if (hasTarget) {
    targetPercent = reader.number("targetPercent", { min: 1, max: DISK_FILL_MAX_PERCENT, unit: "%" });
  } else {
    size = readSize(reader, "size", { min: 1 });
  }
  const keepFreeBytes = readSize(reader, "keepFreeBytes", { min: 0, default: DISK_FILL_DEFAULT_KEEP_FREE });
  reader.rejectUnknown("disk-fill", ["path", "targetPercent", "size", "keepFreeBytes"]);
  return {
    path: path ?? "",
    ...(targetPercent !== undefined ? { targetPercent } : {}),
    ...(size !== undefined ? { size } : {}),
    keepFreeBytes: keepFreeBytes ?? DISK_FILL_DEFAULT_KEEP_FREE,
  };
}
