/** A small client for the control plane's HTTP JSON API, on the global fetch. */
import { ApiRequestError, CliError, ServerUnreachableError } from "./errors.js";
import type { Issue } from "./errors.js";

/** Options of {@link createApiClient}. */
export interface ApiClientOptions {
  /** The control plane, e.g. `http://127.0.0.1:7080`. */
  server: string;
  /** Per-request timeout. @default 30000 */
  timeoutMs?: number;
}

/** A successful response. */
export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** Typed access to `/api/v1`. */
export interface ApiClient {
  readonly server: string;
  get<T>(path: string, query?: Record<string, string | undefined>): Promise<ApiResponse<T>>;
  post<T>(path: string, body: unknown): Promise<ApiResponse<T>>;
  delete<T>(path: string): Promise<ApiResponse<T>>;
}

/** Encodes one path segment (agent and fault ids). */
export const segment = (value: string): string => encodeURIComponent(value);

function errorCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === "string") return cause.code;
  if (typeof cause?.message === "string") return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Creates the client.
 * Thrown when `server` is not an http(s) URL: CliError.
 */
export function createApiClient(options: ApiClientOptions): ApiClient {
  let base: URL;
  try {
    base = new URL(options.server);
  } catch {
    base = new URL("invalid:");
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new CliError(
      `--server ${JSON.stringify(options.server)} is not an http(s) URL; use e.g. http://127.0.0.1:7080 (or set FIREDRILL_SERVER)`,
    );
  }
  const server = base.origin + base.pathname.replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? 30_000;

  async function request<T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const init: RequestInit = { method, signal: AbortSignal.timeout(timeoutMs), headers: { accept: "application/json" } };
    if (body !== undefined) {
      init.headers = { accept: "application/json", "content-type": "application/json" };
      init.body = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await fetch(`${server}${path}`, init);
    } catch (err) {
      if ((err as Error).name === "TimeoutError") {
        throw new ServerUnreachableError(server, `no answer within ${timeoutMs / 1000}s`, { cause: err });
      }
      throw new ServerUnreachableError(server, errorCode(err), { cause: err });
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const error = (parsed as { error?: { code?: unknown; message?: unknown; issues?: unknown } } | undefined)?.error;
      if (error && typeof error.message === "string") {
        const issues = Array.isArray(error.issues) ? (error.issues as Issue[]) : [];
        throw new ApiRequestError(res.status, typeof error.code === "string" ? error.code : "error", error.message, issues);
      }
      throw new ApiRequestError(
        res.status,
        "http_error",
        `the control plane at ${server} answered ${method} ${path} with HTTP ${res.status} ${res.statusText}; is --server pointing at firedrill server?`,
      );
    }
    if (parsed === undefined) {
      throw new ApiRequestError(
        res.status,
        "invalid_response",
        `the server at ${server} did not answer ${method} ${path} with JSON; is --server pointing at firedrill server?`,
      );
    }
    return { status: res.status, body: parsed as T };
  }

  return {
    server,
    get(path, query = {}) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
      const qs = params.toString();
      return request("GET", qs ? `${path}?${qs}` : path);
    },
    post: (path, body) => request("POST", path, body),
    delete: (path) => request("DELETE", path),
  };
}
