/**
 * Experiment text is checked off the event loop. Reading a maximal experiment (256 KiB, 10,000
 * nodes) costs the yaml library 100 ms to 1 s of CPU (measured: `pnpm bench spec-flood`); on the
 * event loop that would delay every agent's heartbeat and lease, and every other request. So the
 * control plane parses experiments in a small pool of worker threads, one job at a time per
 * worker, each with a time budget, behind a bounded queue. The limits of yaml-source.ts bound
 * the work of one job; the pool bounds how many wait.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { ApiError } from "../errors.js";
import { ExperimentSpecError } from "./spec.js";
import type { Experiment, SpecIssue } from "./types.js";
import { formatKib, MAX_SPEC_BYTES } from "./yaml-source.js";

/** A job sent to a worker. */
export interface SpecCheckRequest {
  id: number;
  text: string;
  file: string;
}

/** A worker's answer: the experiment, its issues, or an unexpected failure. */
export type SpecCheckReply =
  | { id: number; ok: true; experiment: Experiment }
  | { id: number; ok: false; issues: SpecIssue[] }
  | { id: number; ok: false; failure: string };

/** Longest a worker may take over one experiment before it is stopped. */
export const SPEC_CHECK_TIME_BUDGET_MS = 10_000;
/** Most experiments waiting for a worker; more are refused as busy. */
export const SPEC_CHECK_MAX_QUEUED = 64;

/** Thrown when {@link SPEC_CHECK_MAX_QUEUED} experiments already wait to be checked. */
export class SpecCheckBusyError extends Error {
  override readonly name = "SpecCheckBusyError";
  constructor(readonly queued: number) {
    super(`${queued} ${queued === 1 ? "experiment is" : "experiments are"} already waiting to be checked, the control plane's limit; retry in a few seconds`);
  }
}

/** Thrown when checking one experiment took longer than the time budget (the worker was stopped). */
export class SpecCheckTimeoutError extends Error {
  override readonly name = "SpecCheckTimeoutError";
  constructor(readonly budgetMs: number) {
    super(
      `checking the experiment did not finish within ${budgetMs / 1000} s, the control plane's limit; make the file smaller (far below 256 KiB and 10,000 YAML nodes), or retry when the control plane is less busy`,
    );
  }
}

/** Thrown when the experiment could not be checked: the worker ran out of memory or failed, or the pool is closed. */
export class SpecCheckFailedError extends Error {
  override readonly name = "SpecCheckFailedError";
  constructor(
    /** `memory`: the input needed more than a check may use; `closed`: shutting down; `crash`: the worker failed. */
    readonly reason: "memory" | "closed" | "crash",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Options of {@link createSpecCheckPool}. */
export interface SpecCheckPoolOptions {
  /** Worker threads. @default 1 with 2 cores or fewer (one core stays with the event loop), else cores - 1, at most 4 */
  workers?: number;
  /** Longest one experiment may take in a worker. @default {@link SPEC_CHECK_TIME_BUDGET_MS} */
  timeBudgetMs?: number;
  /** Most experiments waiting for a worker. @default {@link SPEC_CHECK_MAX_QUEUED} */
  maxQueued?: number;
  /** An idle worker exits after this long. @default 60_000 */
  idleMs?: number;
}

/** A pool of worker threads that parse experiments. */
export interface SpecCheckPool {
  /**
   * Parses and validates experiment text in a worker.
   * Thrown: {@link ExperimentSpecError} (invalid), {@link SpecCheckBusyError}, {@link SpecCheckTimeoutError},
   * {@link SpecCheckFailedError}.
   */
  parse(text: string, file?: string): Promise<Experiment>;
  /** Starts the workers now, so that the first experiment does not wait for one to load. */
  warmUp(): Promise<void>;
  /** Workers running, busy, and jobs waiting. */
  stats(): { workers: number; busy: number; queued: number };
  /** Stops every worker; jobs still waiting or running are refused. */
  close(): Promise<void>;
}

interface Job {
  id: number;
  text: string;
  file: string;
  resolve(experiment: Experiment): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  isReady: boolean;
  job: Job | undefined;
  idle: NodeJS.Timeout | undefined;
}

/** Heap and stack for one worker: far above what a maximal experiment needs, far below the host's. */
const RESOURCE_LIMITS = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 };

/**
 * Starts a worker. From source (`.ts`, tests and `pnpm firedrill`) the worker registers tsx first;
 * built (`.js`) it runs the compiled file directly; in the release bundle (lib/firedrill.mjs) the
 * worker is its own bundle beside it (lib/spec-worker.mjs).
 */
function startWorker(): Worker {
  const fromSource = import.meta.url.endsWith(".ts");
  const ext = fromSource ? ".ts" : import.meta.url.endsWith(".mjs") ? ".mjs" : ".js";
  const entry = new URL(`./spec-worker${ext}`, import.meta.url);
  const options = { resourceLimits: RESOURCE_LIMITS };
  if (!fromSource) return new Worker(entry, options);
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm/api").replace(/\.cjs$/, ".mjs")).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true, execArgv: ["--conditions=@firedrill/source"] });
}

function defaultWorkers(): number {
  const cores = availableParallelism();
  return cores <= 2 ? 1 : Math.min(4, cores - 1);
}

/** Creates a pool; workers start on the first job (or {@link SpecCheckPool.warmUp}). */
export function createSpecCheckPool(options: SpecCheckPoolOptions = {}): SpecCheckPool {
  const size = Math.max(1, options.workers ?? defaultWorkers());
  const budgetMs = options.timeBudgetMs ?? SPEC_CHECK_TIME_BUDGET_MS;
  const maxQueued = options.maxQueued ?? SPEC_CHECK_MAX_QUEUED;
  const idleMs = options.idleMs ?? 60_000;
  const slots: Slot[] = [];
  const queue: Job[] = [];
  let nextId = 1;
  let closed = false;

  const remove = (slot: Slot): void => {
    const i = slots.indexOf(slot);
    if (i >= 0) slots.splice(i, 1);
    clearTimeout(slot.idle);
  };

  const finish = (slot: Slot): Job | undefined => {
    const job = slot.job;
    slot.job = undefined;
    if (job) clearTimeout(job.timer);
    return job;
  };

  const spawn = (): Slot => {
    const worker = startWorker();
    let markReady = (): void => {};
    const slot: Slot = { worker, isReady: false, job: undefined, idle: undefined, ready: new Promise<void>((resolve) => (markReady = resolve)) };
    worker.on("message", (message: SpecCheckReply | { ready: true }) => {
      if ("ready" in message) {
        slot.isReady = true;
        markReady();
        dispatch();
        return;
      }
      if (slot.job?.id !== message.id) return;
      const job = finish(slot)!;
      if (message.ok) job.resolve(message.experiment);
      else if ("issues" in message) job.reject(new ExperimentSpecError(message.issues, job.file));
      else job.reject(new SpecCheckFailedError("crash", `the experiment could not be checked: ${message.failure}`));
      dispatch();
    });
    worker.on("error", (err: Error & { code?: string }) => {
      remove(slot);
      const job = finish(slot);
      const memory = err.code === "ERR_WORKER_OUT_OF_MEMORY";
      const reason = memory ? "checking it needed more memory than a check may use; make the file smaller" : `the checking thread failed (${err.message})`;
      job?.reject(new SpecCheckFailedError(memory ? "memory" : "crash", `the experiment could not be checked: ${reason}`, { cause: err }));
      markReady();
      dispatch();
    });
    worker.on("exit", () => {
      remove(slot);
      finish(slot)?.reject(new SpecCheckFailedError("crash", "the experiment could not be checked: the checking thread exited"));
      markReady();
      dispatch();
    });
    // Workers never keep the process alive (a server exits on SIGTERM with checks in flight or
    // workers idle). Only after the listeners: on Node 20 adding a "message" listener to a Worker
    // refs its port again, so an unref() before it holds the event loop open for good.
    worker.unref();
    slots.push(slot);
    return slot;
  };

  const run = (slot: Slot, job: Job): void => {
    clearTimeout(slot.idle);
    slot.idle = undefined;
    slot.job = job;
    job.timer = setTimeout(() => {
      // The worker is stuck on this job: stop it (a new one starts for the next job).
      if (slot.job !== job) return;
      finish(slot);
      remove(slot);
      void slot.worker.terminate();
      job.reject(new SpecCheckTimeoutError(budgetMs));
      dispatch();
    }, budgetMs);
    slot.worker.postMessage({ id: job.id, text: job.text, file: job.file } satisfies SpecCheckRequest);
  };

  function dispatch(): void {
    while (queue.length > 0 && !closed) {
      let slot = slots.find((s) => s.isReady && !s.job);
      if (!slot) {
        // Start another worker if the pool has room; the job waits until one is ready.
        if (slots.length < size) spawn();
        return;
      }
      run(slot, queue.shift()!);
    }
    for (const slot of slots) {
      if (slot.job || slot.idle || !slot.isReady) continue;
      slot.idle = setTimeout(() => {
        if (slot.job) return;
        remove(slot);
        void slot.worker.terminate();
      }, idleMs);
      slot.idle.unref();
    }
  }

  return {
    parse(text, file = "<input>") {
      if (closed) return Promise.reject(new SpecCheckFailedError("closed", "the experiment could not be checked: the control plane is shutting down"));
      if (queue.length >= maxQueued) return Promise.reject(new SpecCheckBusyError(queue.length));
      return new Promise<Experiment>((resolve, reject) => {
        queue.push({ id: nextId++, text, file, resolve, reject });
        dispatch();
      });
    },
    async warmUp() {
      while (slots.length < size) spawn();
      await Promise.all(slots.map((s) => s.ready));
      dispatch();
    },
    stats: () => ({ workers: slots.length, busy: slots.filter((s) => s.job).length, queued: queue.length }),
    async close() {
      closed = true;
      for (const job of queue.splice(0)) job.reject(new SpecCheckFailedError("closed", "the experiment could not be checked: the control plane is shutting down"));
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}

let shared: SpecCheckPool | undefined;
let holders = 0;

/** The process's pool (created on first use; its idle workers exit on their own). */
export function sharedSpecCheckPool(): SpecCheckPool {
  shared ??= createSpecCheckPool();
  return shared;
}

/**
 * Holds the shared pool for a user that stops (a control plane) until the returned release. The
 * last release closes the pool: its workers are terminated and checks still waiting are refused
 * (503 `shutting_down`); a later use starts a new pool. Releasing twice is harmless.
 */
export function holdSharedSpecCheckPool(): () => Promise<void> {
  holders++;
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    holders--;
    if (holders > 0 || !shared) return;
    const pool = shared;
    shared = undefined;
    await pool.close();
  };
}

/** The API error for a spec of `bytes` bytes over {@link MAX_SPEC_BYTES}, else undefined. */
export function specSizeError(bytes: number): ApiError | undefined {
  if (bytes <= MAX_SPEC_BYTES) return undefined;
  return new ApiError(
    413,
    "experiment_too_large",
    `the experiment is ${formatKib(bytes)} (${bytes} bytes); an experiment may be at most ${formatKib(MAX_SPEC_BYTES)} (${MAX_SPEC_BYTES} bytes): split it into smaller experiments`,
  );
}

/**
 * Parses experiment text off the event loop (in {@link sharedSpecCheckPool} unless `pool` is
 * given). Thrown: {@link ExperimentSpecError} for an invalid experiment (every issue and its line);
 * {@link ApiError} 400 `experiment_too_complex` past the time budget or a worker's memory, 503
 * `busy` when too many wait, 503 `shutting_down`.
 */
export async function parseExperimentOffLoop(text: string, pool: SpecCheckPool = sharedSpecCheckPool()): Promise<Experiment> {
  try {
    return await pool.parse(text);
  } catch (err) {
    if (err instanceof SpecCheckBusyError) throw new ApiError(503, "busy", err.message);
    if (err instanceof SpecCheckTimeoutError || (err instanceof SpecCheckFailedError && err.reason === "memory")) {
      throw new ApiError(400, "experiment_too_complex", err.message);
    }
    if (err instanceof SpecCheckFailedError && err.reason === "closed") throw new ApiError(503, "shutting_down", err.message);
    throw err;
  }
}

/**
 * Parses experiment text for the API, off the event loop (see {@link parseExperimentOffLoop}).
 * Thrown: {@link ApiError} — 413 over 256 KiB (checked before anything is queued), 400
 * `invalid_experiment` with every issue and its line, and the errors of parseExperimentOffLoop.
 */
export async function parseExperimentForApi(text: string, pool: SpecCheckPool = sharedSpecCheckPool()): Promise<Experiment> {
  const tooLarge = specSizeError(Buffer.byteLength(text, "utf8"));
  if (tooLarge) throw tooLarge;
  try {
    return await parseExperimentOffLoop(text, pool);
  } catch (err) {
    if (err instanceof ExperimentSpecError) {
      throw new ApiError(
        400,
        "invalid_experiment",
        `invalid experiment: ${err.issues.map((i) => `${i.line !== undefined ? `line ${i.line}: ` : ""}${i.path}: ${i.message}`).join("; ")}`,
        err.issues.map((i) => ({ field: i.path, message: i.message, ...(i.line !== undefined ? { line: i.line } : {}) })),
      );
    }
    throw err;
  }
}
