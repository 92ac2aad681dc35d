/** Query-string parsing for listing endpoints. */
import { ApiError } from "../errors.js";
import type { Issue } from "../errors.js";

/** A parsed listing query. */
export interface ListQuery {
  state: "active" | "all";
  limit: number;
  agentId: string | undefined;
}

/** Parses `state`, `limit` and (when `allowAgent`) `agent`. Throws ApiError 400 naming each bad parameter. */
export function parseListQuery(query: unknown, allowAgent: boolean): ListQuery {
  const input = (typeof query === "object" && query !== null ? query : {}) as Record<string, unknown>;
  const issues: Issue[] = [];
  const allowed = ["state", "limit", ...(allowAgent ? ["agent"] : [])];
  for (const key of Object.keys(input)) {
    if (!allowed.includes(key)) issues.push({ field: `query.${key}`, message: `unknown parameter; allowed: ${allowed.join(", ")}` });
  }
  let state: ListQuery["state"] = "all";
  if (input.state !== undefined) {
    if (input.state === "active" || input.state === "all") state = input.state;
    else issues.push({ field: "query.state", message: `${JSON.stringify(input.state)} is not allowed; use active or all` });
  }
  let limit = 100;
  if (input.limit !== undefined) {
    const n = typeof input.limit === "string" && /^\d+$/.test(input.limit) ? Number(input.limit) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 1000) {
      issues.push({ field: "query.limit", message: `${JSON.stringify(input.limit)} is not valid; use a whole number from 1 to 1000` });
    } else limit = n;
  }
  let agentId: string | undefined;
  if (allowAgent && input.agent !== undefined) {
    if (typeof input.agent !== "string" || input.agent === "") {
      issues.push({ field: "query.agent", message: "must be one agent id" });
    } else agentId = input.agent;
  }
  if (issues.length > 0) {
    throw new ApiError(400, "invalid_request", `invalid query: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, issues);
  }
  return { state, limit, agentId };
}
