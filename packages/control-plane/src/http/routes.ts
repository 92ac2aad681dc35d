/** The `/api/v1` routes. */
import type { FastifyInstance } from "fastify";
import { toAgentJson, toFaultEventJson, toFaultJson } from "../api-types.js";
import { ApiError } from "../errors.js";
import type { FaultService } from "../fault-service.js";
import type { Store } from "../store/store.js";
import { parseListQuery } from "./query.js";

/** What the routes need. */
export interface RoutesOptions {
  store: Store;
  faults: FaultService;
}

type AgentParams = { Params: { id: string } };
type AgentFaultParams = { Params: { id: string; faultId: string } };

/** Registers the agent and fault routes. */
export function registerRoutes(app: FastifyInstance, options: RoutesOptions): void {
  const { store, faults } = options;

  app.get("/api/v1/agents", async () => ({ agents: store.listAgents().map(toAgentJson) }));

  app.get<AgentParams>("/api/v1/agents/:id", async (request) => ({
    agent: toAgentJson(faults.requireAgent(request.params.id)),
  }));

  app.post<AgentParams>("/api/v1/agents/:id/faults", async (request, reply) => {
    const outcome = await faults.start(request.params.id, request.body);
    return reply.code(outcome.acknowledged ? 201 : 202).send({ fault: toFaultJson(outcome.fault) });
  });

  app.get<AgentParams>("/api/v1/agents/:id/faults", async (request) => {
    const agent = faults.requireAgent(request.params.id);
    const query = parseListQuery(request.query, false);
    return { faults: store.listFaults({ agentId: agent.id, state: query.state, limit: query.limit }).map(toFaultJson) };
  });

  app.delete<AgentFaultParams>("/api/v1/agents/:id/faults/:faultId", async (request, reply) => {
    const outcome = await faults.stop(request.params.id, request.params.faultId);
    return reply.code(outcome.acknowledged ? 200 : 202).send({ fault: toFaultJson(outcome.fault) });
  });

  app.delete<AgentParams>("/api/v1/agents/:id/faults", async (request) => ({
    faults: (await faults.stopAll(request.params.id)).map(toFaultJson),
  }));

  app.get("/api/v1/faults", async (request) => {
    const query = parseListQuery(request.query, true);
    if (query.agentId !== undefined) faults.requireAgent(query.agentId);
    return {
      faults: store
        .listFaults({ state: query.state, limit: query.limit, ...(query.agentId !== undefined ? { agentId: query.agentId } : {}) })
        .map(toFaultJson),
    };
  });

  app.get<{ Params: { faultId: string } }>("/api/v1/faults/:faultId", async (request) => {
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
