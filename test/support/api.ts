/**
 * A tiny JSON client for the control plane's HTTP API, for tests and benchmarks. Every call
 * authenticates: with the server's bootstrap admin token unless another token is given.
 */

/** A control plane the client talks to: its base URL and the bootstrap admin's token. */
export interface ApiTarget {
  /** `http://host:port` */
  httpUrl: string;
  /** The bootstrap admin's API token (`<dataDir>/admin-token`). */
  adminToken: string;
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
}

/**
 * Calls `method path` on `server` with a JSON body.
 * `token`: undefined = the server's admin token; a string = that token; null = no Authorization
 * header at all (an anonymous call).
 */
export async function api<T = any>(server: ApiTarget, method: string, path: string, body?: unknown, token?: string | null): Promise<ApiResponse<T>> {
  const bearer = token === undefined ? server.adminToken : token;
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  const res = await fetch(`${server.httpUrl}${path}`, {
    method,
    headers,
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new Error(`${method} ${path}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 300)}`);
  }
  return { status: res.status, body: parsed as T };
}

/** What `POST /api/v1/tokens` takes. */
export interface NewToken {
  name: string;
  role: "viewer" | "operator" | "admin" | "alertmanager";
  kind?: "person" | "service";
  expires?: string;
  scope?: string;
}

/** Creates an API token with the admin token and returns its secret (`fdt_…`). Throws unless 201. */
export async function createToken(server: ApiTarget, token: NewToken): Promise<string> {
  const res = await api(server, "POST", "/api/v1/tokens", token);
  if (res.status !== 201) throw new Error(`could not create the ${token.role} token ${token.name}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.secret as string;
}
