/**
 * The console's access to the control plane: one fetch wrapper (same-origin cookie, CSRF header on
 * every non-GET, the server's error message surfaced), the session calls, and the JSON shapes the
 * pages read. Types come from `@firedrill/control-plane` (type-only: nothing of the server is
 * bundled); the few shapes it does not export are declared here.
 */
import type {
  AgentJson,
  AgentListJson,
  AgentMeasurementsJson,
  AgentSummaryJson,
  AuditJson,
  ConsoleCallerJson,
  ConsoleSessionJson,
  ErrorJson,
  FaultJson,
  FaultListJson,
  MeasurementPoint,
  ReportCloudAction,
  ReportFaultWindow,
  ReportJson,
  ReportStopConditionJson,
  Role,
  RunEventJson,
  RunPlan,
  RunSamplesJson,
  SampleConditionJson,
  SampleConditionState,
  SampleJson,
  ScheduleJson,
  SlotJson,
  SpofReportJson,
} from "@firedrill/control-plane";

export type {
  AgentJson,
  AgentListJson,
  AgentMeasurementsJson,
  AgentSummaryJson,
  AuditJson,
  FaultJson,
  FaultListJson,
  MeasurementPoint,
  ReportCloudAction,
  ReportJson,
  Role,
  RunEventJson,
  RunPlan,
  SampleConditionJson,
  SampleJson,
  ScheduleJson,
  SlotJson,
  SpofReportJson,
};

/** Who is logged in. */
export type SessionCaller = ConsoleCallerJson;
/** A session: the caller, and the token to send in `x-firedrill-csrf` on every non-GET. */
export type Session = ConsoleSessionJson & { caller: NonNullable<ConsoleSessionJson["caller"]> };
export type StopConditionState = SampleConditionState;
export type SamplesJson = RunSamplesJson;
export type ReportStopCondition = ReportStopConditionJson;
export type FaultWindowJson = ReportFaultWindow;

export type RunStateWord = "pending" | "preflight" | "running" | "completed" | "aborted" | "failed";

/** A run in the listing (`GET /api/v1/runs`; the control plane does not export this shape). */
export interface RunSummaryJson {
  id: string;
  name: string;
  state: RunStateWord;
  reason: string | null;
  actor: string;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  cloudRevertsUnconfirmed: number;
  faultCounts?: Record<string, number>;
  faultRevertsUnconfirmed?: number;
}

/** A cloud action with its revert, as `GET /api/v1/runs/:id` lists it. */
export interface CloudRevertJson {
  id: number;
  step: string | null;
  action: string;
  resource: string;
  region: string;
  state: string;
  unconfirmed: boolean;
  text: string;
}

/** `GET /api/v1/runs/:id`. */
export interface RunDetailJson {
  run: RunSummaryJson & { spec: string; plan: RunPlan };
  events: RunEventJson[];
  cloudReverts: CloudRevertJson[];
}

/** A halt in force (`GET /api/v1/halt`). */
export interface HaltJson {
  reason: string;
  actor: string;
  at: string;
}

/** An API answer that is not a success: the server's `error.message`, status and code. */
export class ApiRequestError extends Error {
  override readonly name = "ApiRequestError";
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;
let onUnauthenticated: ((message: string) => void) | null = null;

/** Keeps the session's CSRF token (sent on every non-GET), or forgets it. */
export function setCsrf(token: string | null): void {
  csrf = token;
}

/** What to do when a call answers 401 (the session ended): the app shows the login form. */
export function setUnauthenticatedHandler(handler: ((message: string) => void) | null): void {
  onUnauthenticated = handler;
}

async function errorOf(res: Response, method: string, path: string): Promise<ApiRequestError> {
  let message = `${method} ${path} answered ${res.status} ${res.statusText}`.trim();
  let code = `http_${res.status}`;
  try {
    const text = await res.text();
    if (text) {
      try {
        const body = JSON.parse(text) as Partial<ErrorJson>;
        if (body.error && typeof body.error.message === "string") {
          message = body.error.message;
          code = body.error.code ?? code;
        } else message = `${message}: ${text.slice(0, 300)}`;
      } catch {
        message = `${message}: ${text.slice(0, 300)}`;
      }
    }
  } catch {
    // The body could not be read: the status line says enough.
  }
  return new ApiRequestError(message, res.status, code);
}

/**
 * Calls the API. Resolves with the parsed JSON (undefined for 204); rejects with an
 * {@link ApiRequestError} carrying the server's message, or one saying the server could not be
 * reached. A 401 outside the login also ends the session in the page.
 */
export async function request<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET") {
    if (csrf !== null) headers["x-firedrill-csrf"] = csrf;
    if (body !== undefined) headers["content-type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    throw new ApiRequestError(`${method} ${path}: the control plane could not be reached (${err instanceof Error ? err.message : String(err)}); is it running?`, 0, "network");
  }
  if (!res.ok) {
    const error = await errorOf(res, method, path);
    if (res.status === 401 && !path.startsWith("/console/api/")) onUnauthenticated?.(error.message);
    throw error;
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string): Promise<T> => request<T>("GET", path);
export const post = <T>(path: string, body: unknown = {}): Promise<T> => request<T>("POST", path, body);
export const del = <T>(path: string): Promise<T> => request<T>("DELETE", path);

/** The current session, or null when there is none (401: show the login form). */
export async function loadSession(): Promise<Session | null> {
  try {
    const session = await get<ConsoleSessionJson>("/console/api/session");
    // No credential at all: not logged in (the server answers 200 with no caller).
    if (session.caller === null) return null;
    setCsrf(session.csrf);
    return session as Session;
  } catch (err) {
    if (err instanceof ApiRequestError && err.status === 401) return null;
    throw err;
  }
}

/** Logs in with an API token; the server sets the session cookie. */
export async function login(token: string): Promise<Session> {
  const session = await request<Session>("POST", "/console/api/login", { token });
  setCsrf(session.csrf);
  return session;
}

/** Ends the session (the server clears the cookie). */
export async function logout(): Promise<void> {
  try {
    await request<void>("POST", "/console/api/logout");
  } finally {
    setCsrf(null);
  }
}

/** Path segment, encoded. */
export const seg = (s: string): string => encodeURIComponent(s);

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
