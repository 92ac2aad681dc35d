import { create } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/** Converts milliseconds to a google.protobuf.Duration. */
export function durationFromMs(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) });
}

/** Converts a google.protobuf.Duration to milliseconds (0 when absent). */
export function durationToMs(duration: Duration | undefined): number {
  if (!duration) return 0;
  return Number(duration.seconds) * 1000 + Math.round(duration.nanos / 1e6);
}

/** Converts epoch milliseconds to a google.protobuf.Timestamp. */
export function timestampFromMs(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) });
}

/** Converts a google.protobuf.Timestamp to epoch milliseconds (undefined when absent). */
export function timestampToMs(timestamp: Timestamp | undefined): number | undefined {
  if (!timestamp) return undefined;
  return Number(timestamp.seconds) * 1000 + Math.round(timestamp.nanos / 1e6);
}
