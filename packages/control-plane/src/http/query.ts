/** Query-string parsing for listing endpoints. */
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN } from "@firedrill/protocol";
import { ApiError } from "../errors.js";
import type { Issue } from "../errors.js";
import { CursorError, DEFAULT_PAGE_SIZE, MAX_LABEL_FILTERS, MAX_PAGE_SIZE } from "../store/listings.js";

/** A parsed fault listing query. */
export interface ListQuery {
  state: "active" | "all";
  limit: number;
  /** Where the page starts (checked by the listing: {@link withCursor}). */
  cursor: string | undefined;
  agentId: string | undefined;
  runId: string | undefined;
}

/** A parsed agent listing query. */
export interface AgentListQuery {
  limit: number;
  cursor: string | undefined;
  /** `compact` leaves out the host facts. */
  view: "compact" | "full";
  connected: boolean | undefined;
  /** `label=key=value` requirements, every one exact. */
  labels: Record<string, string>;
}

type Input = Record<string, unknown>;

function inputOf(query: unknown): Input {
  return (typeof query === "object" && query !== null ? query : {}) as Input;
}

function unknownParameters(input: Input, allowed: readonly string[], issues: Issue[]): void {
  for (const key of Object.keys(input)) {
    if (!allowed.includes(key)) issues.push({ field: `query.${key}`, message: `unknown parameter; allowed: ${allowed.join(", ")}` });
  }
}

function parseLimit(input: Input, issues: Issue[]): number {
  if (input.limit === undefined) return DEFAULT_PAGE_SIZE;
  const n = typeof input.limit === "string" && /^\d+$/.test(input.limit) ? Number(input.limit) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_SIZE) {
    issues.push({
      field: "query.limit",
      message: `${JSON.stringify(input.limit)} is not valid; use a whole number from 1 to ${MAX_PAGE_SIZE} (more: follow nextCursor)`,
    });
    return DEFAULT_PAGE_SIZE;
  }
  return n;
}

function parseCursor(input: Input, issues: Issue[]): string | undefined {
  if (input.cursor === undefined) return undefined;
  if (typeof input.cursor !== "string" || input.cursor === "") {
    issues.push({ field: "query.cursor", message: "must be one cursor: the nextCursor of the previous page, unchanged" });
    return undefined;
  }
  return input.cursor;
}

/** One non-empty string parameter (an id). */
function parseId(input: Input, name: string, what: string, issues: Issue[]): string | undefined {
  const value = input[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "" || value.length > 256) {
    issues.push({ field: `query.${name}`, message: `must be one ${what}` });
    return undefined;
  }
  return value;
}

function fail(issues: Issue[]): never {
  throw new ApiError(400, "invalid_request", `invalid query: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, issues);
}

/**
 * Parses a fault listing's `state`, `limit`, `cursor` and (when `global`: `GET /api/v1/faults`)
 * `agent` and `runId`. Throws ApiError 400 naming each bad parameter.
 */
export function parseListQuery(query: unknown, global: boolean): ListQuery {
  const input = inputOf(query);
  const issues: Issue[] = [];
  unknownParameters(input, ["state", "limit", "cursor", ...(global ? ["agent", "runId"] : [])], issues);
  let state: ListQuery["state"] = "all";
  if (input.state !== undefined) {
    if (input.state === "active" || input.state === "all") state = input.state;
    else issues.push({ field: "query.state", message: `${JSON.stringify(input.state)} is not allowed; use active or all` });
  }
  const limit = parseLimit(input, issues);
  const cursor = parseCursor(input, issues);
  const agentId = global ? parseId(input, "agent", "agent id", issues) : undefined;
  const runId = global ? parseId(input, "runId", "run id", issues) : undefined;
  if (issues.length > 0) fail(issues);
  return { state, limit, cursor, agentId, runId };
}

/** Parses `GET /api/v1/agents`' `limit`, `cursor`, `view`, `connected` and `label`. Throws ApiError 400 naming each bad parameter. */
export function parseAgentListQuery(query: unknown): AgentListQuery {
  const input = inputOf(query);
  const issues: Issue[] = [];
  unknownParameters(input, ["limit", "cursor", "view", "connected", "label"], issues);
  const limit = parseLimit(input, issues);
  const cursor = parseCursor(input, issues);
  let view: AgentListQuery["view"] = "compact";
  if (input.view !== undefined) {
    if (input.view === "compact" || input.view === "full") view = input.view;
    else issues.push({ field: "query.view", message: `${JSON.stringify(input.view)} is not allowed; use compact (no host facts) or full` });
  }
  let connected: boolean | undefined;
  if (input.connected !== undefined) {
    if (input.connected === "true" || input.connected === "false") connected = input.connected === "true";
    else issues.push({ field: "query.connected", message: `${JSON.stringify(input.connected)} is not allowed; use true or false` });
  }
  const labels: Record<string, string> = {};
  const given = input.label === undefined ? [] : Array.isArray(input.label) ? (input.label as unknown[]) : [input.label];
  if (given.length > MAX_LABEL_FILTERS) {
    issues.push({ field: "query.label", message: `at most ${MAX_LABEL_FILTERS} labels; got ${given.length}` });
  } else {
    for (const item of given) {
      const text = typeof item === "string" ? item : "";
      const at = text.indexOf("=");
      const key = at < 0 ? "" : text.slice(0, at);
      const value = at < 0 ? "" : text.slice(at + 1);
      if (at < 0 || !LABEL_KEY_PATTERN.test(key) || !LABEL_VALUE_PATTERN.test(value)) {
        issues.push({ field: "query.label", message: `${JSON.stringify(item)} is not key=value with a valid label key and value, e.g. label=app=web` });
      } else if (Object.hasOwn(labels, key) && labels[key] !== value) {
        issues.push({ field: "query.label", message: `${key} is given twice with different values; no agent has both` });
      } else labels[key] = value;
    }
  }
  if (issues.length > 0) fail(issues);
  return { limit, cursor, view, connected, labels };
}

/** Runs a page query, answering a cursor the listing refuses with 400 (what is wrong and what to send). */
export function withCursor<T>(page: () => T): T {
  try {
    return page();
  } catch (err) {
    if (err instanceof CursorError) fail([{ field: "query.cursor", message: err.message }]);
    throw err;
  }
}
