/**
 * The fleet's recent measurements, in memory: per fault, its last PROGRESS measurements (at most
 * one a second, the last {@link MEASUREMENT_RING_SIZE}), for the console's host page. Nothing is
 * stored: a restart starts empty; the store keeps each fault's latest measurements and its event
 * history (one PROGRESS every 10 s).
 *
 * Bounded and cheap on a 10,000-agent fleet: O(1) per PROGRESS (a map lookup and a write into a
 * typed array); faults that ended more than {@link MEASUREMENT_KEEP_ENDED_MS} ago are dropped;
 * at most {@link MAX_MEASURED_FAULTS} faults are kept (past that, the oldest ended one goes, else
 * the oldest one); and all rings together hold at most {@link MAX_MEASUREMENT_VALUES} numbers
 * (a ring grows as its fault reports, and stops growing once that budget is spent: it then keeps
 * fewer, the newest).
 */

/** PROGRESS measurements kept per fault. */
export const MEASUREMENT_RING_SIZE = 720;
/** At most one measurement per fault this often (the rest are not kept). */
export const MEASUREMENT_MIN_INTERVAL_MS = 1000;
/** Faults that ended longer ago than this are forgotten. */
export const MEASUREMENT_KEEP_ENDED_MS = 3_600_000;
/** Faults kept at most. */
export const MAX_MEASURED_FAULTS = 20_000;
/** Numbers (times and values) held by all rings together at most: 8 bytes each. */
export const MAX_MEASUREMENT_VALUES = 8_000_000;
/** Measurement names kept per fault (an agent sends at most 32). */
const MAX_KEYS = 32;
/** The first capacity of a ring; it doubles up to {@link MEASUREMENT_RING_SIZE}. */
const FIRST_CAPACITY = 16;

/** What the hub knows of a fault when it announces a change. */
export interface MeasuredFaultInfo {
  id: string;
  agentId: string;
  kind: string;
  runId: string | null;
  state: string;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
}

/** One fault's recent measurements, as `GET /api/v1/agents/:id/measurements` lists them. */
export interface FaultMeasurementsJson {
  faultId: string;
  kind: string;
  runId: string | null;
  state: string;
  startedAt: number | null;
  endedAt: number | null;
  /** Oldest first. */
  samples: { at: number; m: Record<string, number> }[];
}

/** Options of {@link createMeasurementRings} (the defaults are the constants above). */
export interface MeasurementRingsOptions {
  ringSize?: number;
  minIntervalMs?: number;
  keepEndedMs?: number;
  maxFaults?: number;
  maxValues?: number;
  /** Clock. @default Date.now */
  now?: () => number;
}

/** The rings. */
export interface MeasurementRings {
  /** A fault changed (started, measured, ended): keeps its state; starts tracking it if it is not over. */
  track(fault: MeasuredFaultInfo): void;
  /** A PROGRESS of `faultId` from `agentId` at `at`: kept if the fault is tracked as that agent's and the last is 1 s old. */
  sample(faultId: string, agentId: string, at: number, measurements: Record<string, number> | null): void;
  /** The agent's faults, newest first (at most `limit`), with their measurements. */
  list(agentId: string, limit?: number): FaultMeasurementsJson[];
  /** How many faults and numbers are held (for tests and metrics). */
  stats(): { faults: number; values: number };
}

interface Ring {
  info: MeasuredFaultInfo;
  keys: string[];
  /** Sample times; `count` of them are valid, the newest at `(head - 1) mod capacity`. */
  at: Float64Array;
  /** `capacity × keys.length` values (NaN: not measured). */
  values: Float64Array;
  capacity: number;
  head: number;
  count: number;
  lastAt: number;
}

/** Creates the rings. */
export function createMeasurementRings(options: MeasurementRingsOptions = {}): MeasurementRings {
  const ringSize = options.ringSize ?? MEASUREMENT_RING_SIZE;
  const minInterval = options.minIntervalMs ?? MEASUREMENT_MIN_INTERVAL_MS;
  const keepEnded = options.keepEndedMs ?? MEASUREMENT_KEEP_ENDED_MS;
  const maxFaults = options.maxFaults ?? MAX_MEASURED_FAULTS;
  const maxValues = options.maxValues ?? MAX_MEASUREMENT_VALUES;
  const now = options.now ?? Date.now;

  /** Every tracked fault, oldest tracked first. */
  const rings = new Map<string, Ring>();
  /** Faults that ended, by when (insertion order is end order, near enough). */
  const ended = new Map<string, number>();
  const byAgent = new Map<string, Set<string>>();
  let values = 0;

  const sizeOf = (r: Ring) => r.capacity * (1 + r.keys.length);

  function drop(id: string): void {
    const ring = rings.get(id);
    if (!ring) return;
    rings.delete(id);
    ended.delete(id);
    values -= sizeOf(ring);
    const set = byAgent.get(ring.info.agentId);
    set?.delete(id);
    if (set?.size === 0) byAgent.delete(ring.info.agentId);
  }

  /** Forgets faults that ended too long ago: from the oldest end, stopping at the first recent one. */
  function expire(at: number): void {
    for (const [id, endedAt] of ended) {
      if (at - endedAt <= keepEnded) break;
      drop(id);
    }
  }

  function makeRoom(): void {
    while (rings.size >= maxFaults) {
      const oldestEnded = ended.keys().next();
      const victim = oldestEnded.done ? rings.keys().next().value : oldestEnded.value;
      if (victim === undefined) return;
      drop(victim);
    }
  }

  /** Copies the ring into new arrays of `capacity` rows and `keys` columns, oldest sample first. */
  function reshape(ring: Ring, capacity: number, keys: string[]): void {
    const at = new Float64Array(capacity);
    const vals = new Float64Array(capacity * keys.length).fill(Number.NaN);
    const n = Math.min(ring.count, capacity);
    const columns = keys.map((k) => ring.keys.indexOf(k));
    for (let i = 0; i < n; i++) {
      const src = (ring.head - n + i + ring.capacity) % ring.capacity;
      at[i] = ring.at[src]!;
      for (let k = 0; k < keys.length; k++) {
        const col = columns[k]!;
        if (col >= 0) vals[i * keys.length + k] = ring.values[src * ring.keys.length + col]!;
      }
    }
    values += capacity * (1 + keys.length) - sizeOf(ring);
    ring.at = at;
    ring.values = vals;
    ring.capacity = capacity;
    ring.keys = keys;
    ring.count = n;
    ring.head = n % capacity;
  }

  return {
    track(record) {
      const ring = rings.get(record.id);
      // A PROGRESS changes none of what is listed: nothing to do (the usual case).
      if (ring && ring.info.state === record.state && ring.info.startedAt === record.startedAt && ring.info.endedAt === record.endedAt) return;
      // Only what is listed: not the record itself (its params and measurements would stay alive).
      const { id, agentId, kind, runId, state, createdAt, startedAt, endedAt } = record;
      const fault: MeasuredFaultInfo = { id, agentId, kind, runId, state, createdAt, startedAt, endedAt };
      if (ring) {
        ring.info = fault;
        if (fault.endedAt !== null && !ended.has(fault.id)) ended.set(fault.id, fault.endedAt);
      } else if (fault.endedAt === null) {
        makeRoom();
        rings.set(fault.id, { info: fault, keys: [], at: new Float64Array(0), values: new Float64Array(0), capacity: 0, head: 0, count: 0, lastAt: -Infinity });
        let set = byAgent.get(fault.agentId);
        if (!set) byAgent.set(fault.agentId, (set = new Set()));
        set.add(fault.id);
      }
      if (ended.size > 0) expire(now());
    },

    sample(faultId, agentId, at, measurements) {
      const ring = rings.get(faultId);
      if (!ring || ring.info.agentId !== agentId || measurements === null || at - ring.lastAt < minInterval) return;
      let added: string[] | undefined;
      for (const k of Object.keys(measurements)) {
        if (ring.keys.length + (added?.length ?? 0) >= MAX_KEYS) break;
        if (!ring.keys.includes(k) && !added?.includes(k)) (added ??= []).push(k);
      }
      const fits = (capacity: number, keys: number) => values + capacity * (1 + keys) - sizeOf(ring) <= maxValues;
      if (added) {
        // New names (the first sample, or a kind that adds one later): rare, so a copy is fine.
        const capacity = ring.capacity === 0 ? FIRST_CAPACITY : ring.capacity;
        const keys = [...ring.keys, ...added];
        if (fits(capacity, keys.length)) reshape(ring, capacity, keys);
        else if (ring.capacity === 0) return; // the budget is spent: this fault keeps none
      } else if (ring.count === ring.capacity && ring.capacity < ringSize) {
        // Past the budget a ring stops growing and wraps: it keeps fewer samples, the newest.
        const capacity = Math.min(ringSize, ring.capacity * 2);
        if (fits(capacity, ring.keys.length)) reshape(ring, capacity, ring.keys);
      }
      if (ring.capacity === 0) return; // nothing measured yet (an empty PROGRESS)
      const row = ring.head;
      ring.at[row] = at;
      for (let k = 0; k < ring.keys.length; k++) {
        const v = measurements[ring.keys[k]!];
        ring.values[row * ring.keys.length + k] = typeof v === "number" ? v : Number.NaN;
      }
      ring.head = (row + 1) % ring.capacity;
      ring.count = Math.min(ring.count + 1, ring.capacity);
      ring.lastAt = at;
    },

    list(agentId, limit = 50) {
      if (ended.size > 0) expire(now());
      const ids = byAgent.get(agentId);
      if (!ids) return [];
      const chosen = [...ids]
        .map((id) => rings.get(id)!)
        .sort((a, b) => (b.info.startedAt ?? b.info.createdAt) - (a.info.startedAt ?? a.info.createdAt) || b.info.id.localeCompare(a.info.id))
        .slice(0, limit);
      return chosen.map((ring) => {
        const samples: FaultMeasurementsJson["samples"] = [];
        for (let i = 0; i < ring.count; i++) {
          const row = (ring.head - ring.count + i + ring.capacity) % ring.capacity;
          const m: Record<string, number> = {};
          for (let k = 0; k < ring.keys.length; k++) {
            const v = ring.values[row * ring.keys.length + k]!;
            if (Number.isFinite(v)) m[ring.keys[k]!] = v;
          }
          samples.push({ at: ring.at[row]!, m });
        }
        const { id, kind, runId, state, startedAt, endedAt } = ring.info;
        return { faultId: id, kind, runId, state, startedAt, endedAt, samples };
      });
    },

    stats: () => ({ faults: rings.size, values }),
  };
}
