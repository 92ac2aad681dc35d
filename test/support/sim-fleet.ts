/**
 * A simulated agent fleet for scale tests and the fleet benchmark: thousands of agents that speak
 * the real agent protocol over real gRPC streams (one grpc-js channel, so one TCP connection, per
 * agent), hosted by a few child processes (test/support/sim-fleet-worker.ts) so that the fleet's own
 * CPU is spread over cores and never measured as the control plane's.
 *
 * Each agent behaves as firedrill-agent's link, lease and runtime do (packages/agent/src/link.ts,
 * lease.ts, runtime.ts, agent.ts), without touching the host: Hello with facts, labels, capabilities
 * and held faults; heartbeats at the Welcome's interval; every message renews the lease; a lease
 * that runs out reverts the agent's faults locally (reported REVERTED, reason lease, once the link
 * is back); StartFault → ACCEPTED, STARTED, PROGRESS every `progressEveryMs`, REVERTED (duration)
 * at the end; StopFault / StopAll → REVERTED with their reason; a silent control plane (nothing for
 * 2 heartbeats + 1 s) or an ended stream → reconnect with jittered backoff (`backoff`, by default as the agent: 500 ms → 30 s).
 *
 * The control plane must run with `--insecure-agents` on loopback: agents authenticate with the
 * join token in the Connect metadata and choose their own ids.
 */
import { join } from "node:path";
import { ROOT, sleep, spawnNode } from "./processes.js";
import type { TestProcess } from "./processes.js";

/** Options of a simulated fleet. */
export interface SimFleetOptions {
  /** host:port of the control plane's gRPC port (plain, `--insecure-agents`). */
  address: string;
  /** The control plane's join token (`<dataDir>/join-token`). */
  joinToken: string;
  /** How many agents. */
  agents: number;
  /** Worker processes hosting them. @default Math.max(1, Math.ceil(agents / 2500)) */
  processes?: number;
  /** Agent ids are `${idPrefix}-${String(i).padStart(5, "0")}`. @default "sim" */
  idPrefix?: string;
  /** Every agent's labels. @default { app: "sim", "firedrill:opt-in": "true" } */
  labels?: Record<string, string>;
  /** How often each running fault sends PROGRESS. @default 2000 */
  progressEveryMs?: number;
  /**
   * First dials per second per process, so that registration measures the control plane rather
   * than a SYN flood. Reconnects are not paced (they follow the backoff). @default 500
   */
  dialsPerSecond?: number;
  /**
   * Reconnect backoff (jittered, exponential), as `firedrill-agent` does by default: 500 ms up to
   * `--reconnect-max` 30 s. @default { initialMs: 500, maxMs: 30000 }
   */
  backoff?: { initialMs: number; maxMs: number };
}

/** What the fleet saw, summed over its processes. */
export interface SimFleetStats {
  /** Agents whose current stream got a Welcome. */
  connected: number;
  /** Welcomes received in total. */
  welcomes: number;
  /** Streams that ended while the fleet was not closing (those that never got a Welcome included). */
  linksDropped: number;
  /** Of `linksDropped`, streams that ended before their Welcome (a failed connect). */
  droppedBeforeWelcome: number;
  /**
   * Times an agent's lease ran out: nothing from the control plane within the Welcome's lease TTL,
   * renewed by every message received.
   */
  leasesExpired: number;
  /** StartFault messages received; when the last one arrived (epoch ms: performance.timeOrigin + performance.now()). */
  startFaults: number;
  lastStartFaultAt: number;
  /** StopFault messages received, and when the last one arrived (epoch ms). */
  stopFaults: number;
  lastStopFaultAt: number;
  /** StopAll messages received, and when the last one arrived (epoch ms). */
  stopAlls: number;
  lastStopAllAt: number;
  /** Faults held now (running on the simulated hosts). */
  heldFaults: number;
  /** REVERTED events written to the control plane, and when the last one was (epoch ms). */
  reverted: number;
  lastRevertAt: number;
  /** FAILED events written (a refused StartFault: unknown kind, bad duration, too many faults). */
  failed: number;
  /** PROGRESS events written. */
  progress: number;
  /**
   * Why streams ended (while not closing), counted by "before|after Welcome: <gRPC status>", e.g.
   * `{ "after Welcome: UNAVAILABLE": 3 }` ("ended": a clean end without status).
   */
  endedBy: Record<string, number>;
}

/** A running simulated fleet. */
export interface SimFleet {
  /** The worker processes' pids. */
  readonly pids: number[];
  /** Resolves once `n` agents are connected; rejects after `timeoutMs` naming how many were (connected/n). */
  waitConnected(n: number, timeoutMs: number): Promise<void>;
  /** The stats summed over the processes (the maximum for the last*At fields). */
  stats(): Promise<SimFleetStats>;
  /** Zeroes the counters and last*At fields (not `connected` nor `heldFaults`, which are states). */
  resetCounters(): Promise<void>;
  /** Ends every stream (not counted as drops) and stops the worker processes. Safe to repeat. */
  close(): Promise<void>;
}

/** What the fleet sends a worker. */
export type SimWorkerRequest =
  | { type: "start"; id: number; config: SimWorkerConfig }
  | { type: "stats" | "reset" | "close"; id: number };

/** What a worker sends the fleet: "ready" once it listens, then one reply per request. */
export type SimWorkerMessage = { type: "ready" } | { type: "reply"; id: number; stats?: SimFleetStats; error?: string };

/** One worker's share of the fleet. */
export interface SimWorkerConfig {
  address: string;
  joinToken: string;
  agentIds: string[];
  labels: Record<string, string>;
  progressEveryMs: number;
  dialsPerSecond: number;
  backoff: { initialMs: number; maxMs: number };
}

/** The worker script. */
export const SIM_FLEET_WORKER = join(ROOT, "test/support/sim-fleet-worker.ts");

/** Counters summed over processes; the last*At fields are maxima. */
const SUMMED = [
  "connected",
  "welcomes",
  "linksDropped",
  "droppedBeforeWelcome",
  "leasesExpired",
  "startFaults",
  "stopFaults",
  "stopAlls",
  "heldFaults",
  "reverted",
  "failed",
  "progress",
] as const;
const LATEST = ["lastStartFaultAt", "lastStopFaultAt", "lastStopAllAt", "lastRevertAt"] as const;

/** Zeroed stats. */
export function emptySimStats(): SimFleetStats {
  return {
    connected: 0,
    welcomes: 0,
    linksDropped: 0,
    droppedBeforeWelcome: 0,
    leasesExpired: 0,
    startFaults: 0,
    lastStartFaultAt: 0,
    stopFaults: 0,
    lastStopFaultAt: 0,
    stopAlls: 0,
    lastStopAllAt: 0,
    heldFaults: 0,
    reverted: 0,
    lastRevertAt: 0,
    failed: 0,
    progress: 0,
    endedBy: {},
  };
}

/** How long a worker may take to start (loading the protocol from source on a busy machine). */
const WORKER_START_TIMEOUT_MS = 60_000;
/** How long a request to a worker may take. */
const REQUEST_TIMEOUT_MS = 30_000;

/** One worker process and its pending requests. */
class Worker {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: SimWorkerMessage & { type: "reply" }) => void; reject: (e: Error) => void }>();
  readonly ready: Promise<void>;
  private gone: Error | undefined;

  constructor(readonly proc: TestProcess) {
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`simulated-agent worker ${proc.pid} did not start within ${WORKER_START_TIMEOUT_MS / 1000} s; its output: ${this.tail()}`)),
        WORKER_START_TIMEOUT_MS,
      );
      proc.child.on("message", (message: SimWorkerMessage) => {
        if (message.type === "ready") {
          clearTimeout(timer);
          resolve();
          return;
        }
        const waiting = this.pending.get(message.id);
        if (!waiting) return;
        this.pending.delete(message.id);
        if (message.error !== undefined) waiting.reject(new Error(`simulated-agent worker ${proc.pid}: ${message.error}`));
        else waiting.resolve(message);
      });
      void proc.exited.then((code) => {
        clearTimeout(timer);
        this.gone = new Error(`simulated-agent worker ${proc.pid} exited (code ${code ?? proc.child.signalCode}); its output: ${this.tail()}`);
        reject(this.gone);
        for (const waiting of this.pending.values()) waiting.reject(this.gone);
        this.pending.clear();
      });
    });
    // A worker that dies before anyone awaits `ready` must not be an unhandled rejection.
    this.ready.catch(() => {});
  }

  private tail(): string {
    return this.proc.output().slice(-2000) || "(none)";
  }

  get alive(): boolean {
    return this.gone === undefined;
  }

  request(type: "stats" | "reset" | "close"): Promise<SimWorkerMessage & { type: "reply" }>;
  request(type: "start", config: SimWorkerConfig): Promise<SimWorkerMessage & { type: "reply" }>;
  request(type: SimWorkerRequest["type"], config?: SimWorkerConfig): Promise<SimWorkerMessage & { type: "reply" }> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`simulated-agent worker ${this.proc.pid} did not answer "${type}" within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const message: SimWorkerRequest = type === "start" ? { type, id, config: config! } : { type, id };
      this.proc.child.send(message, (err) => {
        if (err) this.pending.get(id)?.reject(new Error(`simulated-agent worker ${this.proc.pid}: could not send "${type}": ${err.message}`));
      });
    });
  }
}

/**
 * Starts a simulated fleet: spawns the worker processes, hands each its share of the agent ids, and
 * resolves once every worker has begun dialing (use `waitConnected` to wait for the Welcomes).
 * Thrown when the options are out of range or a worker does not start.
 */
export async function startSimFleet(options: SimFleetOptions): Promise<SimFleet> {
  const { agents } = options;
  if (!Number.isInteger(agents) || agents < 1 || agents > 100_000) throw new Error(`startSimFleet: agents ${agents} is not a whole number from 1 to 100000`);
  const processes = options.processes ?? Math.max(1, Math.ceil(agents / 2500));
  if (!Number.isInteger(processes) || processes < 1 || processes > agents) {
    throw new Error(`startSimFleet: processes ${processes} is not a whole number from 1 to the number of agents (${agents})`);
  }
  const prefix = options.idPrefix ?? "sim";
  const labels = options.labels ?? { app: "sim", "firedrill:opt-in": "true" };
  const progressEveryMs = options.progressEveryMs ?? 2000;
  const dialsPerSecond = options.dialsPerSecond ?? 500;
  if (!(progressEveryMs >= 100)) throw new Error(`startSimFleet: progressEveryMs ${progressEveryMs} must be at least 100`);
  if (!(dialsPerSecond > 0)) throw new Error(`startSimFleet: dialsPerSecond ${dialsPerSecond} must be above 0`);

  const workers: Worker[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(
      workers.map(async (w) => {
        // Ends every stream first, so the control plane sees clean disconnects, not a dead process.
        if (w.alive) await w.request("close").catch(() => {});
        await Promise.race([w.proc.exited, sleep(5000)]);
        w.proc.kill("SIGKILL");
        await Promise.race([w.proc.exited, sleep(5000)]);
      }),
    );
  };
  try {
    for (let p = 0; p < processes; p++) workers.push(new Worker(spawnNode(SIM_FLEET_WORKER, [], {}, { ipc: true })));
    await Promise.all(workers.map((w) => w.ready));
    await Promise.all(
      workers.map((w, p) => {
        const from = Math.floor((p * agents) / processes);
        const to = Math.floor(((p + 1) * agents) / processes);
        const agentIds: string[] = [];
        for (let i = from; i < to; i++) agentIds.push(`${prefix}-${String(i).padStart(5, "0")}`);
        return w.request("start", { address: options.address, joinToken: options.joinToken, agentIds, labels, progressEveryMs, dialsPerSecond, backoff: options.backoff ?? { initialMs: 500, maxMs: 30_000 } });
      }),
    );
  } catch (err) {
    await close();
    throw err;
  }

  const stats = async (): Promise<SimFleetStats> => {
    const all = await Promise.all(workers.map((w) => w.request("stats")));
    const total = emptySimStats();
    for (const reply of all) {
      const s = reply.stats!;
      for (const key of SUMMED) total[key] += s[key];
      for (const key of LATEST) total[key] = Math.max(total[key], s[key]);
      for (const [why, n] of Object.entries(s.endedBy)) total.endedBy[why] = (total.endedBy[why] ?? 0) + n;
    }
    return total;
  };

  let closing: Promise<void> | undefined;
  return {
    pids: workers.map((w) => w.proc.pid),
    stats,
    async waitConnected(n, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const s = await stats();
        if (s.connected >= n) return;
        if (performance.now() > deadline) {
          throw new Error(
            `only ${s.connected}/${n} simulated agents connected after ${(timeoutMs / 1000).toFixed(1)} s ` +
              `(${s.welcomes} Welcomes, ${s.linksDropped} streams ended, ${s.droppedBeforeWelcome} of them before their Welcome; why: ${JSON.stringify(s.endedBy)})`,
          );
        }
        await sleep(200);
      }
    },
    async resetCounters() {
      await Promise.all(workers.map((w) => w.request("reset")));
    },
    close() {
      closing ??= close();
      return closing;
    },
  };
}
