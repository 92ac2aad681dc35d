/**
 * A small client for the control plane's HTTP JSON API, on undici's fetch: every request carries
 * `Authorization: Bearer <token>`, and for https a pinned CA, when there is one, is the only CA trusted.
 */
import { fetch } from "undici";
import type { RequestInit, Response } from "undici";
import { registerConnection } from "./connection.js";
import type { Connection } from "./connection.js";
import { ApiRequestError, CliError, ServerUnreachableError } from "./errors.js";
import type { Issue } from "./errors.js";
import type { SseEvent } from "./sse.js";
import { readEventStream } from "./sse.js";
import { createDispatcher, tlsError, tlsVerifyFailure } from "./tls.js";

/** Options of {@link createApiClient}. */
export interface ApiClientOptions {
  /** The control plane, e.g. `http://127.0.0.1:7080`. */
  server: string;
  /** The API token sent as `Authorization: Bearer`; never printed. */
  token?: string | undefined;
  /** Where the token came from (`FIREDRILL_TOKEN`, `--token-file F`, …), for error messages. */
  tokenFrom?: string | undefined;
  /** A CA certificate (PEM) to trust, alone, for an https server. */
  caCert?: string | undefined;
  /** The pinned CA's fingerprint, for error messages. */
  caFingerprint?: string | undefined;
  /** Where the pinned CA came from (`the config file F`, `--ca-fingerprint`), for error messages. */
  caSource?: string | undefined;
  /** The server the config file's token is for, when it is another one (for the message when no token is set). */
  savedServer?: string | undefined;
  /** Per-request timeout. @default 30000 */
  timeoutMs?: number;
}

/** A successful response. */
export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** A successful response that is not JSON (a file). */
export interface ApiFileResponse {
  status: number;
  body: Buffer;
  contentType: string | null;
}

/** Typed access to `/api/v1`. */
export interface ApiClient {
  readonly server: string;
  get<T>(path: string, query?: Record<string, string | undefined>): Promise<ApiResponse<T>>;
  /** GETs a file (e.g. a report's HTML); errors are the JSON API's. */
  getFile(path: string): Promise<ApiFileResponse>;
  post<T>(path: string, body: unknown): Promise<ApiResponse<T>>;
  delete<T>(path: string): Promise<ApiResponse<T>>;
  /** Reads the server-sent events at `path` until the stream ends or `onEvent` returns "stop". */
  events(path: string, onEvent: (event: SseEvent) => void | "stop", signal?: AbortSignal): Promise<void>;
}

/** Encodes one path segment (agent and fault ids). */
export const segment = (value: string): string => encodeURIComponent(value);

function errorCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === "string") return cause.code;
  if (typeof cause?.message === "string") return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** Removes every occurrence of `secret` from `text`. */
function redact(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join("<token>") : text;
}

function createConnection(options: ApiClientOptions, server: string, timeoutMs: number): Connection {
  const headers: Record<string, string> = { accept: "application/json" };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const caCert = server.startsWith("https:") ? options.caCert : undefined;
  const dispatcher = createDispatcher(caCert);
  const pinned = caCert === undefined ? undefined : { fingerprint: options.caFingerprint, source: options.caSource ?? "the config file" };
  return {
    server,
    headers,
    ...(dispatcher ? { dispatcher } : {}),
    fetchError(err) {
      if ((err as Error).name === "TimeoutError") {
        return new ServerUnreachableError(server, `no answer within ${timeoutMs / 1000}s`, { cause: err });
      }
      const tls = tlsVerifyFailure(err);
      if (tls) return tlsError(server, tls, pinned, { cause: err, savedServer: options.savedServer });
      return new ServerUnreachableError(server, errorCode(err), { cause: err });
    },
    httpError(res, method, path, text) {
      let parsed: unknown;
      try {
        parsed = text === "" ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const error = (parsed as { error?: { code?: unknown; message?: unknown; issues?: unknown } } | undefined)?.error;
      if (res.status === 401 && options.token === undefined) {
        return new ApiRequestError(
          401,
          typeof error?.code === "string" ? error.code : "unauthenticated",
          `the control plane at ${server} needs an API token and none is set: run firedrill login --server ${server} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN` +
            (options.savedServer ? ` (the token saved by firedrill login is for ${options.savedServer})` : ""),
        );
      }
      if (error && typeof error.message === "string") {
        const issues = Array.isArray(error.issues) ? (error.issues as Issue[]) : [];
        let message = redact(error.message, options.token);
        if (res.status === 401 && options.tokenFrom) message = `${message} (the token came from ${options.tokenFrom})`;
        return new ApiRequestError(
          res.status,
          typeof error.code === "string" ? error.code : "error",
          message,
          issues.map((i) => ({ ...i, message: redact(String(i.message), options.token) })),
        );
      }
      return new ApiRequestError(
        res.status,
        "http_error",
        `the control plane at ${server} answered ${method} ${path} with HTTP ${res.status} ${res.statusText}; is --server pointing at firedrill server?`,
      );
    },
  };
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
  const connection = createConnection(options, server, timeoutMs);
  registerConnection(connection);

  async function request<T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const init: RequestInit = { method, signal: AbortSignal.timeout(timeoutMs), headers: connection.headers };
    if (connection.dispatcher) init.dispatcher = connection.dispatcher;
    if (body !== undefined) {
      init.headers = { ...connection.headers, "content-type": "application/json" };
      init.body = JSON.stringify(body);
    }
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${server}${path}`, init);
      text = await res.text();
    } catch (err) {
      throw connection.fetchError(err);
    }
    if (!res.ok) throw connection.httpError(res, method, path, text);
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
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

  async function getFile(path: string): Promise<ApiFileResponse> {
    const init: RequestInit = { method: "GET", signal: AbortSignal.timeout(timeoutMs), headers: { ...connection.headers, accept: "*/*" } };
    if (connection.dispatcher) init.dispatcher = connection.dispatcher;
    let res: Response;
    let body: Buffer;
    try {
      res = await fetch(`${server}${path}`, init);
      body = Buffer.from(await res.arrayBuffer());
    } catch (err) {
      throw connection.fetchError(err);
    }
    if (!res.ok) throw connection.httpError(res, "GET", path, body.toString("utf8"));
    return { status: res.status, body, contentType: res.headers.get("content-type") };
  }

  return {
    server,
    getFile,
    get(path, query = {}) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
      const qs = params.toString();
      return request("GET", qs ? `${path}?${qs}` : path);
    },
    post: (path, body) => request("POST", path, body),
    delete: (path) => request("DELETE", path),
    events: (path, onEvent, signal) => readEventStream(`${server}${path}`, onEvent, signal, connection),
  };
}
