import type { ParamReader } from "../params.js";
import { DISK_FILL_DEFAULT_KEEP_FREE, readSize } from "./disk-fill.js";

/** Parameters of `io-stress`. */
export interface IoStressParams {
  /** An absolute path to an existing directory on the filesystem to stress (disk-fill's rules). */
  path: string;
  /** Target throughput in MB/s (10^6 bytes per second), reads and writes together; "max": unthrottled. @default "max" */
  mbps: number | "max";
  /** Bytes per read or write, 4 KiB to 4 MiB, a multiple of 4 KiB. @default 1048576 (1 MiB) */
  blockSize: number;
  /** Percent of the block operations that are reads (0: writes only, 100: reads only). @default 50 */
  readPercent: number;
  /** Size of the working file, laid out before the mix starts. @default 268435456 (256 MiB) */
  fileSize: number;
  /** Concurrent block operations (workers in the io child process), 1-16. @default 1 */
  workers: number;
  /** Never leave less than this many bytes free on the filesystem. @default 268435456 (256 MiB) */
  keepFreeBytes: number;
}

/** Default of `blockSize`: 1 MiB. */
export const IO_STRESS_DEFAULT_BLOCK = 1024 * 1024;
/** Smallest `blockSize`: 4 KiB. */
export const IO_STRESS_MIN_BLOCK = 4 * 1024;
/** Largest `blockSize`: 4 MiB. */
export const IO_STRESS_MAX_BLOCK = 4 * 1024 * 1024;
/** Default of `fileSize`: 256 MiB. */
export const IO_STRESS_DEFAULT_FILE = 256 * 1024 * 1024;
/** Smallest `fileSize`: 1 MiB. */
export const IO_STRESS_MIN_FILE = 1024 * 1024;
/** Largest `fileSize`: 64 GiB. */
export const IO_STRESS_MAX_FILE = 64 * 1024 ** 3;
/** Largest `mbps` (100 GB/s: more than any device; "max" is the way to ask for no limit). */
export const IO_STRESS_MAX_MBPS = 100_000;
/** Most `workers`. */
export const IO_STRESS_MAX_WORKERS = 16;

/** Reads io-stress parameters; problems are collected by the reader. */
export function parseIoStressParams(reader: ParamReader): IoStressParams {
  const path = reader.string("path", {
    required: true,
    pattern: /^\/[^\0]*$/,
    patternHint: "an absolute path to an existing directory, e.g. /var/tmp",
  });
  let mbps: number | "max" = "max";
  if (reader.has("mbps") && reader.raw("mbps") !== "max") {
    const before = reader.issues.length;
    mbps = reader.number("mbps", { min: 0.001, max: IO_STRESS_MAX_MBPS, unit: " MB/s" }) ?? "max";
    // The number's own message, plus the other form the parameter takes.
    for (const issue of reader.issues.slice(before)) issue.message += '; or "max" for no limit';
  } else reader.raw("mbps");

  const blockSize = readSize(reader, "blockSize", { min: 0, default: IO_STRESS_DEFAULT_BLOCK });
  let block = blockSize ?? IO_STRESS_DEFAULT_BLOCK;
  if (blockSize !== undefined && (blockSize < IO_STRESS_MIN_BLOCK || blockSize > IO_STRESS_MAX_BLOCK || blockSize % IO_STRESS_MIN_BLOCK !== 0)) {
    reader.fail("blockSize", `${JSON.stringify(reader.raw("blockSize"))} is not allowed; use 4KiB to 4MiB, a multiple of 4KiB (e.g. 4KiB, 64KiB, 1MiB)`);
    block = IO_STRESS_DEFAULT_BLOCK;
  }
  const readPercent = reader.number("readPercent", { min: 0, max: 100, unit: "%", default: 50 });
  const fileSize = readSize(reader, "fileSize", { min: 0, default: IO_STRESS_DEFAULT_FILE });
  if (fileSize !== undefined && (fileSize < IO_STRESS_MIN_FILE || fileSize > IO_STRESS_MAX_FILE)) {
    reader.fail("fileSize", `${JSON.stringify(reader.raw("fileSize"))} is not allowed; use 1MiB to 64GiB (e.g. 256MiB)`);
  } else if (fileSize !== undefined && fileSize < block) {
    reader.fail("fileSize", `${JSON.stringify(reader.raw("fileSize"))} is smaller than blockSize; give a fileSize of at least one block`);
  }
  const workers = reader.number("workers", { min: 1, max: IO_STRESS_MAX_WORKERS, integer: true, default: 1 });
  const keepFreeBytes = readSize(reader, "keepFreeBytes", { min: 0, default: DISK_FILL_DEFAULT_KEEP_FREE });
  reader.rejectUnknown("io-stress", ["path", "mbps", "blockSize", "readPercent", "fileSize", "workers", "keepFreeBytes"]);
  return {
    path: path ?? "",
    mbps,
    blockSize: block,
    readPercent: readPercent ?? 50,
    // Whole blocks: the mix reads and writes block-aligned offsets inside the file.
    fileSize: Math.floor((fileSize ?? IO_STRESS_DEFAULT_FILE) / block) * block || block,
    workers: workers ?? 1,
    keepFreeBytes: keepFreeBytes ?? DISK_FILL_DEFAULT_KEEP_FREE,
  };
}
