/**
 * Schedule routes: create (experiment on a cron, or Chaos-Monkey), list with next slots, show with
 * recent slots, pause, resume, remove.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import { callerOf } from "../auth/http.js";
import { formatWindow } from "./calendar.js";
import { killChance } from "./scheduler.js";
import type { Scheduler, ScheduleSummary } from "./scheduler.js";
import type { SlotRecord } from "./types.js";
import type { ParsedScheduleSpec } from "./validate.js";
import { parseExperimentOffLoop } from "../experiments/spec-pool.js";
import { ExperimentSpecError } from "../experiments/spec.js";
import { MAX_SPEC_BYTES } from "../experiments/yaml-source.js";

/** What the schedule routes need. */
export interface ScheduleRoutesOptions {
  scheduler: Scheduler;
}

/** A slot as the API returns it. */
export interface SlotJson {
  slot: string;
  plannedAt: string;
  outcome: SlotRecord["outcome"];
  detail: string | null;
  runId: string | null;
  instanceId: string | null;
  decidedAt: string;
}

/** A schedule as the API returns it. */
export interface ScheduleJson {
  id: string;
  kind: "experiment" | "chaos-monkey";
  name: string;
  state: "active" | "paused";
  tz: string;
  /** Experiment schedules. */
  cron: string | null;
  /** Chaos-Monkey: `mon-fri 10:00-16:00`. */
  window: string | null;
  group: string | null;
  region: string | null;
  meanWorkdays: number | null;
  minWorkdays: number | null;
  /** Chaos-Monkey: the chance of a kill on an eligible workday. */
  killChance: number | null;
  leashed: boolean | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  /** Since when the schedule has been active (created or resumed). */
  activeSince: string;
  nextSlot: { at: string; note: string } | null;
  lastSlot: SlotJson | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** Renders a slot as API JSON. */
export function toSlotJson(slot: SlotRecord): SlotJson {
  return {
    slot: slot.slotKey,
    plannedAt: iso(slot.plannedAt),
    outcome: slot.outcome,
    detail: slot.detail,
    runId: slot.runId,
    instanceId: slot.instanceId,
    decidedAt: iso(slot.decidedAt),
  };
}

/** Renders a schedule summary as API JSON. */
export function toScheduleJson({ schedule: s, next, last }: ScheduleSummary): ScheduleJson {
  const c = s.chaos;
  return {
    id: s.id,
    kind: s.kind,
    name: s.name,
    state: s.state,
    tz: s.tz,
    cron: s.cron,
    window: c ? formatWindow(c.window) : null,
    group: c?.group ?? null,
    region: c?.region ?? null,
    meanWorkdays: c?.meanWorkdays ?? null,
    minWorkdays: c?.minWorkdays ?? null,
    killChance: c ? killChance(c.meanWorkdays, c.minWorkdays) : null,
    leashed: c?.leashed ?? null,
    createdBy: s.createdBy,
    createdAt: iso(s.createdAt),
    updatedAt: iso(s.updatedAt),
    activeSince: iso(s.activeSince),
    nextSlot: next ? { at: iso(next.at), note: next.note } : null,
    lastSlot: last ? toSlotJson(last) : null,
  };
}

type IdParams = { Params: { id: string } };

/** The authenticated principal: the actor of every schedule change. */
const actorOf = (request: FastifyRequest): string => callerOf(request).name;
const READ = { config: { permission: "read" as const } };
const WRITE = { config: { permission: "schedule:write" as const } };

function slotLimit(query: unknown): number {
  const raw = (typeof query === "object" && query !== null ? (query as Record<string, unknown>) : {}).slots;
  if (raw === undefined) return 20;
  const n = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new ApiError(400, "invalid_request", `slots ${JSON.stringify(raw)} is not valid; use a whole number from 1 to 1000`, [
      { field: "query.slots", message: "must be a whole number from 1 to 1000" },
    ]);
  }
  return n;
}

/**
 * An experiment schedule's spec parsed in the worker pool, so that creating a schedule never
 * parses YAML on the event loop. Undefined when the body holds no spec text to parse, or one over
 * the size limit (validation refuses that without parsing).
 */
async function parseSpecOffLoop(body: unknown): Promise<ParsedScheduleSpec | undefined> {
  if (typeof body !== "object" || body === null) return undefined;
  const { kind, spec } = body as { kind?: unknown; spec?: unknown };
  if (kind !== "experiment" || typeof spec !== "string" || Buffer.byteLength(spec, "utf8") > MAX_SPEC_BYTES) return undefined;
  try {
    return { text: spec, result: { name: (await parseExperimentOffLoop(spec)).metadata.name } };
  } catch (err) {
    if (err instanceof ExperimentSpecError) return { text: spec, result: { error: err } };
    throw err;
  }
}

/** Registers the schedule routes under /api/v1/schedules. */
export function registerScheduleRoutes(app: FastifyInstance, options: ScheduleRoutesOptions): void {
  const { scheduler } = options;

  app.post("/api/v1/schedules", WRITE, async (request, reply) => {
    const body = request.body ?? {};
    const summary = scheduler.create(body, actorOf(request), await parseSpecOffLoop(body));
    request.auditTargets.push(summary.schedule.id);
    return reply.code(201).send({ schedule: toScheduleJson(summary) });
  });

  app.get("/api/v1/schedules", READ, async () => ({ schedules: scheduler.list().map(toScheduleJson) }));

  app.get<IdParams>("/api/v1/schedules/:id", READ, async (request) => {
    const limit = slotLimit(request.query);
    const summary = scheduler.get(request.params.id);
    return { schedule: toScheduleJson(summary), slots: scheduler.slots(request.params.id, limit).map(toSlotJson) };
  });

  app.post<IdParams>("/api/v1/schedules/:id/pause", WRITE, async (request) => ({
    schedule: toScheduleJson(scheduler.pause(request.params.id, actorOf(request))),
  }));

  app.post<IdParams>("/api/v1/schedules/:id/resume", WRITE, async (request) => ({
    schedule: toScheduleJson(scheduler.resume(request.params.id, actorOf(request))),
  }));

  app.delete<IdParams>("/api/v1/schedules/:id", WRITE, async (request) => {
    const removed = scheduler.remove(request.params.id, actorOf(request));
    return { removed: { id: removed.id, name: removed.name, kind: removed.kind } };
  });
}
