/**
 * Experiment routes: plan, run, follow (server-sent events), stop-condition samples, abort, report,
 * and the global halt.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import { haltJson, readLastLifted } from "../halt.js";
import type { LiftedHalt } from "../halt.js";
import { callerOf } from "../auth/http.js";
import { parseScope } from "../auth/scope.js";
import type { Scope } from "../auth/scope.js";
import { cloudActionLeft, isCloudRevertUnconfirmed } from "../experiments/report.js";
import { runSamplesJson, sampleConditionsOf, toSampleJson } from "../experiments/run-samples.js";
import type { SampleJson } from "../experiments/run-samples.js";
import type { RunSampleEvent } from "../experiments/runner.js";
import type { CloudJournal, CloudRevertEntry } from "../aws/cloud-journal.js";
import { describeUnconfirmed } from "../aws/cloud-journal.js";
import type { Runner } from "../experiments/runner.js";
import type { RunEvent, RunRecord, RunStore, RunSummary } from "../store/run-store.js";
import { isTerminalRunState } from "../store/run-store.js";
import type { Store } from "../store/store.js";
import { createListings } from "../store/listings.js";
import { MAX_SPEC_BYTES } from "../experiments/yaml-source.js";
import { createBodyGate } from "./body-gate.js";
import { createReportJson, toRunEventJson } from "./report-json.js";

/** What the run routes need. */
export interface RunRoutesOptions {
  store: Store;
  runs: RunStore;
  runner: Runner;
  /** The cloud-revert journal: runs say how many of their cloud reverts are not confirmed. */
  cloud?: CloudJournal;
}

type RunParams = { Params: { id: string } };

const READ = { config: { permission: "read" as const } };

/** Stored samples per `samples` event of a run's event stream (`?samples=1`). */
export const SSE_SAMPLES_CHUNK = 5000;

/**
 * Body limit of the routes that take an experiment: a JSON string of a 256 KiB spec written with
 * many newlines, tabs and quotes (each escaped as two characters), plus the other fields. The spec
 * itself is held to {@link MAX_SPEC_BYTES} with a precise 413 (spec-pool.ts).
 */
export const SPEC_BODY_LIMIT = 2 * MAX_SPEC_BYTES + 64 * 1024;

/** JSON of a run (without the spec text, which `GET /runs/:id` adds). */
export function toRunJson(run: RunSummary) {
  return {
    id: run.id,
    name: run.name,
    state: run.state,
    reason: run.reason,
    actor: run.actor,
    createdAt: new Date(run.createdAt).toISOString(),
    startedAt: run.startedAt === null ? null : new Date(run.startedAt).toISOString(),
    endedAt: run.endedAt === null ? null : new Date(run.endedAt).toISOString(),
  };
}

/** JSON of a cloud action with its revert (GET /runs/:id). */
export function toCloudRevertJson(e: CloudRevertEntry, runEnded: boolean) {
  const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
  const unconfirmed = isCloudRevertUnconfirmed(e, runEnded);
  return {
    id: e.id,
    step: e.step,
    action: e.action,
    kind: e.kind,
    region: e.region,
    resource: e.resource,
    state: e.state,
    unconfirmed,
    createdAt: iso(e.createdAt),
    dueAt: iso(e.dueAt),
    revertRequestedAt: iso(e.revertRequestedAt),
    revertReason: e.revertReason,
    attempts: e.attempts,
    lastAttemptAt: iso(e.lastAttemptAt),
    nextAttemptAt: iso(e.nextAttemptAt),
    lastError: e.lastError,
    detail: e.detail,
    endedAt: iso(e.endedAt),
    text: unconfirmed ? describeUnconfirmed(e, cloudActionLeft(e)) : e.state === "confirmed" ? `reverted: ${e.detail ?? "confirmed by AWS"}` : e.state === "cancelled" ? `nothing to revert: ${e.detail ?? ""}` : `in effect: ${cloudActionLeft(e)}`,
  };
}

export { toRunEventJson } from "./report-json.js";

function body(request: FastifyRequest): Record<string, unknown> {
  const value = request.body ?? {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ApiError(400, "invalid_request", "the request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

function stringField(b: Record<string, unknown>, name: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
  const v = b[name];
  if (v === undefined || v === null) {
    if (opts.required) throw new ApiError(400, "invalid_request", `${name} is required`, [{ field: name, message: "is required" }]);
    return undefined;
  }
  if (typeof v !== "string" || v.trim() === "" || v.length > (opts.max ?? 1_000_000)) {
    throw new ApiError(400, "invalid_request", `${name} must be a non-empty string`, [{ field: name, message: "must be a non-empty string" }]);
  }
  return v;
}

/** The token's scope, parsed (null when the token has none). */
function scopeOf(request: FastifyRequest): Scope | null {
  const text = callerOf(request).scope;
  return text === null ? null : parseScope(text);
}

/** JSON of a lifted halt: who set it and why, who lifted it and when. */
function liftedJson(lifted: LiftedHalt) {
  return { ...lifted, at: new Date(lifted.at).toISOString(), liftedAt: new Date(lifted.liftedAt).toISOString() };
}

/** Registers the experiment and halt routes. */
export function registerRunRoutes(app: FastifyInstance, options: RunRoutesOptions): void {
  const { store, runs, runner, cloud } = options;
  const listings = createListings(store.db);

  /**
   * A run with how many of its reverts are not confirmed: cloud ones (the journal keeps retrying)
   * and, with `faults`, host faults whose revert failed or is still not confirmed once the run has
   * ended, and its faults counted by state (one query, whatever the size of the run).
   */
  const withReverts = (run: RunRecord, faults: boolean) => {
    const json = toRunJson(run);
    const cloudUnconfirmed = cloud ? cloud.unconfirmed({ runId: run.id }).length : 0;
    if (!faults) return { ...json, cloudRevertsUnconfirmed: cloudUnconfirmed };
    const ended = isTerminalRunState(run.state);
    const counts = listings.countRunFaults(run.id);
    // Each fault once: revert_failed ones are never among the unended.
    const hostUnconfirmed = counts.byState.revert_failed + (ended ? counts.unended : 0);
    return { ...json, cloudRevertsUnconfirmed: cloudUnconfirmed, faultRevertsUnconfirmed: hostUnconfirmed, faultCounts: counts.byState };
  };

  const reportJson = createReportJson({ store, runs, ...(cloud ? { cloud } : {}) });

  const requireRun = (id: string): RunRecord => {
    const run = runs.getRun(id);
    if (!run) throw new ApiError(404, "run_not_found", `run ${JSON.stringify(id)} does not exist; list runs with GET /api/v1/runs (firedrill runs)`);
    return run;
  };

  // Experiments are big bodies: parsed one per loop turn (body-gate.ts), checked in a worker (spec-pool.ts).
  const specBodies = { bodyLimit: SPEC_BODY_LIMIT, preParsing: createBodyGate() };

  app.post("/api/v1/plan", { ...specBodies, config: { permission: "run:write" } }, async (request) => {
    const spec = stringField(body(request), "spec", { required: true })!;
    const { experiment, plan } = await runner.plan(spec, { scope: scopeOf(request) });
    // What each host fault would hit there (processes, exclusions), from a dry run on its agent.
    const previewed = await runner.previewPlan(plan);
    return { experiment: { name: experiment.metadata.name, hypothesis: experiment.spec.hypothesis }, plan: previewed };
  });

  app.post("/api/v1/runs", { ...specBodies, config: { permission: "run:write" } }, async (request, reply) => {
    const b = body(request);
    const spec = stringField(b, "spec", { required: true })!;
    const run = await runner.start(spec, callerOf(request).name, { scope: scopeOf(request) });
    request.auditTargets.push(run.id);
    return reply.code(201).send({ run: toRunJson(run), plan: run.plan });
  });

  app.get<{ Querystring: { limit?: string; state?: string } }>("/api/v1/runs", READ, async (request) => {
    const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new ApiError(400, "invalid_request", "limit must be a whole number from 1 to 1000", [{ field: "limit", message: "must be 1-1000" }]);
    }
    const active = request.query.state === "active";
    const list = runs.listRuns({ limit, active });
    const unconfirmed = cloud?.countUnconfirmedByRun(list.map((r) => r.id)) ?? new Map<string, number>();
    // Per-state fault counts: one indexed GROUP BY per run (how far a run on a big fleet is, without its timeline).
    return { runs: list.map((r) => ({ ...toRunJson(r), cloudRevertsUnconfirmed: unconfirmed.get(r.id) ?? 0, faultCounts: listings.countRunFaults(r.id).byState })) };
  });

  app.get<RunParams>("/api/v1/runs/:id", READ, async (request) => {
    const run = requireRun(request.params.id);
    const ended = isTerminalRunState(run.state);
    return {
      run: { ...withReverts(run, true), spec: run.specYaml, plan: run.plan },
      events: runs.listEvents(run.id).map(toRunEventJson),
      cloudReverts: (cloud?.list({ runId: run.id }) ?? []).map((e) => toCloudRevertJson(e, ended)),
    };
  });

  app.get<RunParams>("/api/v1/runs/:id/report", READ, async (request) => ({ report: await reportJson(request.params.id) }));

  app.get<RunParams>("/api/v1/runs/:id/samples", READ, async (request) => runSamplesJson(requireRun(request.params.id), runs));

  // Server-sent events: the run's timeline so far, then live events until the run ends. With
  // `samples=1`, right after the timeline's replay, the stop conditions' samples stored so far
  // (`samples`, in chunks of SSE_SAMPLES_CHUNK), then each new one as it is stored (`sample`).
  app.get<RunParams & { Querystring: { after?: string; samples?: string } }>("/api/v1/runs/:id/events", READ, async (request, reply) => {
    const run = requireRun(request.params.id);
    const after = Number(request.query.after ?? 0) || 0;
    const withSamples = request.query.samples === "1" || request.query.samples === "true";
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    let lastId = after;
    let closed = false;
    const send = (event: RunEvent) => {
      if (event.id <= lastId) return;
      lastId = event.id;
      res.write(`id: ${event.id}\nevent: run-event\ndata: ${JSON.stringify(toRunEventJson(event))}\n\n`);
    };
    const sendSample = (sample: SampleJson) => {
      res.write(`event: sample\ndata: ${JSON.stringify(sample)}\n\n`);
    };
    const finish = () => {
      if (closed) return;
      const current = runs.getRun(run.id)!;
      res.write(`event: end\ndata: ${JSON.stringify(withReverts(current, true))}\n\n`);
      cleanup();
      res.end();
    };
    const handleEvent = (event: RunEvent) => {
      send(event);
      if (event.type === "state" && isTerminalRunState(runs.getRun(run.id)!.state)) finish();
    };
    // While the stored samples are being written (a turn of the event loop between chunks), what
    // happens live waits here, in order, and goes out right after them.
    let backlog: (() => void)[] | undefined;
    const onEvent = (event: RunEvent) => {
      if (event.runId !== run.id || closed) return;
      if (backlog) backlog.push(() => handleEvent(event));
      else handleEvent(event);
    };
    const onSample = (sample: RunSampleEvent) => {
      if (sample.runId !== run.id || closed) return;
      const json: SampleJson = { c: sample.c, at: sample.at, v: sample.v, ok: sample.ok };
      if (backlog) backlog.push(() => sendSample(json));
      else sendSample(json);
    };
    const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
    const cleanup = () => {
      closed = true;
      clearInterval(keepAlive);
      runner.events.off("event", onEvent);
      runner.events.off("sample", onSample);
    };
    // Subscribe first, then replay: nothing falls between the two (send() skips duplicates; the
    // samples read below and those announced after are disjoint: both happen in this same turn).
    runner.events.on("event", onEvent);
    if (withSamples) runner.events.on("sample", onSample);
    request.raw.on("close", cleanup);
    for (const event of runs.listEvents(run.id, after)) send(event);
    if (withSamples) {
      const conditions = sampleConditionsOf(run, runs);
      const stored = runs.listSamples(run.id);
      backlog = [];
      for (let i = 0; i === 0 || i < stored.length; i += SSE_SAMPLES_CHUNK) {
        if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
        if (closed) return;
        const samples = stored.slice(i, i + SSE_SAMPLES_CHUNK).map(toSampleJson);
        res.write(`event: samples\ndata: ${JSON.stringify({ conditions, samples })}\n\n`);
      }
      const waiting = backlog;
      backlog = undefined;
      for (const deliver of waiting) {
        if (closed) return;
        deliver();
      }
    }
    if (!closed && isTerminalRunState(runs.getRun(run.id)!.state)) finish();
  });

  app.post<RunParams>("/api/v1/runs/:id/abort", { config: { permission: "run:write" } }, async (request) => {
    const b = body(request);
    const run = await runner.abort(request.params.id, stringField(b, "reason", { max: 1000 }) ?? "no reason given", callerOf(request).name);
    return { run: toRunJson(run) };
  });

  app.get("/api/v1/halt", READ, async () => {
    const halt = runner.haltState();
    const lifted = readLastLifted(store);
    return { halt: halt ? { ...halt, at: new Date(halt.at).toISOString() } : null, lastLifted: lifted ? liftedJson(lifted) : null };
  });

  // Halting while halted keeps the halt as it was (who, since when, why: what unhalt lifts), records
  // the new reason in the audit log, and tells every agent again to revert everything: a second
  // halt is never refused, since it may be what ends a fault a first one missed.
  app.post("/api/v1/halt", { config: { permission: "halt" } }, async (request) => {
    const b = body(request);
    const reason = stringField(b, "reason", { required: true, max: 1000 })!;
    const before = runner.haltState();
    request.auditDetail = before
      ? `halt again: ${reason} (already halted by ${before.actor} since ${new Date(before.at).toISOString()}: ${before.reason}; that halt is kept)`
      : `halt: ${reason}`;
    const halt = await runner.halt(reason, callerOf(request).name);
    return { halt: haltJson(halt), alreadyHalted: before !== undefined };
  });

  app.delete("/api/v1/halt", { config: { permission: "admin" } }, async (request) => {
    const lifted = runner.unhalt(callerOf(request).name);
    request.auditDetail = lifted ? `lifted the halt set by ${lifted.actor} (${lifted.reason})` : "no halt was set";
    return { lifted: lifted ? liftedJson(lifted) : null };
  });
}
