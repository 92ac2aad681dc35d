/** The `/api/v1` routes. */
import type { FastifyInstance } from "fastify";
import { toAgentJson, toAgentSummaryJson, toFaultEventJson, toFaultJson } from "../api-types.js";
import type { AgentListJson, AgentSummaryJson, FaultListJson } from "../api-types.js";
import { ApiError } from "../errors.js";
import type { FaultService } from "../fault-service.js";
import type { Store } from "../store/store.js";
import { createListings } from "../store/listings.js";
import { parseAgentListQuery, parseListQuery, withCursor } from "./query.js";
import { callerOf } from "../auth/http.js";
import { parseScope } from "../auth/scope.js";
import type { AgentHub } from "../hub/agent-hub.js";
import type { FaultMeasurementsJson } from "../hub/measurement-rings.js";

/** `GET /api/v1/agents/:id/measurements`. */
export interface AgentMeasurementsJson {
  faults: FaultMeasurementsJson[];
}

const READ = { config: { permission: "read" as const } };
const WRITE = { config: { permission: "fault:write" as const } };

/** The longest reason an admin may give for overriding the policy. */
const MAX_OVERRIDE_REASON = 1000;

/** Takes `overridePolicy` (an admin's reason) out of a fault-start body. */
function splitOverride(raw: unknown): { body: unknown; overridePolicy?: string } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !("overridePolicy" in raw)) return { body: raw };
  const { overridePolicy, ...body } = raw as Record<string, unknown>;
  if (overridePolicy === undefined || overridePolicy === null) return { body };
  if (typeof overridePolicy !== "string" || overridePolicy.trim() === "" || overridePolicy.length > MAX_OVERRIDE_REASON) {
    throw new ApiError(400, "invalid_request", `overridePolicy must say why, in 1-${MAX_OVERRIDE_REASON} characters`, [
      { field: "overridePolicy", message: `must be a reason of 1-${MAX_OVERRIDE_REASON} characters` },
    ]);
  }
  return { body, overridePolicy: overridePolicy.trim() };
}

/** What the routes need. */
export interface RoutesOptions {
  store: Store;
  faults: FaultService;
  /** An agent unseen this long is listed as stale. */
  staleAfterMs: number;
  /** The agent hub: its in-memory measurements of recent faults (without it, none are listed). */
  hub?: Pick<AgentHub, "measurements">;
}

type AgentParams = { Params: { id: string } };
type AgentFaultParams = { Params: { id: string; faultId: string } };

/** Registers the agent and fault routes. */
export function registerRoutes(app: FastifyInstance, options: RoutesOptions): void {
  const { store, faults } = options;
  const listings = createListings(store.db);

  // One page (keyset by id), the compact view unless ?view=full, and the fleet's counts.
  app.get("/api/v1/agents", READ, async (request): Promise<AgentListJson<AgentSummaryJson>> => {
    const query = parseAgentListQuery(request.query);
    const filter = {
      limit: query.limit,
      labels: query.labels,
      ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
      ...(query.connected !== undefined ? { connected: query.connected } : {}),
    };
    const now = Date.now();
    const page = withCursor((): { agents: AgentSummaryJson[]; nextCursor: string | null } => {
      if (query.view === "full") {
        const full = listings.agents(filter);
        return { agents: full.items.map((a) => toAgentJson(a, options.staleAfterMs, now)), nextCursor: full.nextCursor };
      }
      const compact = listings.agentSummaries(filter);
      return { agents: compact.items.map((a) => toAgentSummaryJson(a, options.staleAfterMs, now)), nextCursor: compact.nextCursor };
    });
    return { ...page, ...listings.countAgents() };
  });

  app.get<AgentParams>("/api/v1/agents/:id", READ, async (request) => ({
    agent: toAgentJson(faults.requireAgent(request.params.id), options.staleAfterMs),
  }));

  app.post<AgentParams>("/api/v1/agents/:id/faults", { config: { permission: "fault:write" } }, async (request, reply) => {
    const caller = callerOf(request);
    const { body, overridePolicy } = splitOverride(request.body);
    if (overridePolicy !== undefined) {
      if (caller.role !== "admin") {
        throw new ApiError(403, "forbidden", `${caller.name} (${caller.role}) may not override the server policy: only admins may (--override-policy); ask an admin, or change the host's labels or the policy`);
      }
      request.auditDetail = `policy overridden: ${overridePolicy}`;
    }
    const outcome = await faults.start(request.params.id, body, {
      actor: caller.name,
      scope: caller.scope === null ? null : parseScope(caller.scope),
      ...(overridePolicy !== undefined ? { overridePolicy } : {}),
    });
    request.auditTargets.push(outcome.fault.id);
    return reply.code(outcome.acknowledged ? 201 : 202).send({ fault: toFaultJson(outcome.fault) });
  });

  // The newest 50 faults the hub holds measurements of (in memory: recent ones, a restart forgets them).
  app.get<AgentParams>("/api/v1/agents/:id/measurements", READ, async (request): Promise<AgentMeasurementsJson> => {
    const agent = faults.requireAgent(request.params.id);
    return { faults: options.hub?.measurements(agent.id, 50) ?? [] };
  });

  app.get<AgentParams>("/api/v1/agents/:id/faults", READ, async (request): Promise<FaultListJson> => {
    const agent = faults.requireAgent(request.params.id);
    const query = parseListQuery(request.query, false);
    const page = withCursor(() =>
      listings.faults({ agentId: agent.id, state: query.state, limit: query.limit, ...(query.cursor !== undefined ? { cursor: query.cursor } : {}) }),
    );
    return { faults: page.items.map(toFaultJson), nextCursor: page.nextCursor };
  });

  app.delete<AgentFaultParams>("/api/v1/agents/:id/faults/:faultId", WRITE, async (request, reply) => {
    const outcome = await faults.stop(request.params.id, request.params.faultId, callerOf(request).name);
    return reply.code(outcome.acknowledged ? 200 : 202).send({ fault: toFaultJson(outcome.fault) });
  });

  app.delete<AgentParams>("/api/v1/agents/:id/faults", WRITE, async (request) => ({
    faults: (await faults.stopAll(request.params.id, callerOf(request).name)).map(toFaultJson),
  }));

  app.get("/api/v1/faults", READ, async (request): Promise<FaultListJson> => {
    const query = parseListQuery(request.query, true);
    if (query.agentId !== undefined) faults.requireAgent(query.agentId);
    const page = withCursor(() =>
      listings.faults({
        state: query.state,
        limit: query.limit,
        ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
        ...(query.agentId !== undefined ? { agentId: query.agentId } : {}),
        ...(query.runId !== undefined ? { runId: query.runId } : {}),
      }),
    );
    return { faults: page.items.map(toFaultJson), nextCursor: page.nextCursor };
  });

  app.get<{ Params: { faultId: string } }>("/api/v1/faults/:faultId", READ, async (request) => {
    const fault = store.getFault(request.params.faultId);
    if (!fault) {
      throw new ApiError(
        404,
        "fault_not_found",
        `fault ${JSON.stringify(request.params.faultId)} is not known to this control plane; list faults with GET /api/v1/faults?state=all (firedrill fault list --all)`,
      );
    }
    return { fault: toFaultJson(fault), events: store.listFaultEvents(fault.id).map(toFaultEventJson) };
  });
}
