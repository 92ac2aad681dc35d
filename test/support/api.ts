/**
 * A tiny JSON client for the control plane's HTTP API, for tests and benchmarks. Every call
 * authenticates: with the server's bootstrap admin token unless another token is given.
 */
import { request as httpsRequestRaw } from "node:https";

/** A control plane the client talks to: its base URL and the bootstrap admin's token. */
export interface ApiTarget {
  /** `http://host:port` */
  httpUrl: string;
  /** The bootstrap admin's API token (`<dataDir>/admin-token`). */
  adminToken: string;
  /** For an HTTPS server: the CA (PEM) its certificate is checked against. */
  ca?: string;
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
  const payload = body === undefined ? null : JSON.stringify(body);
  const res = server.ca
    ? await httpsRequest(`${server.httpUrl}${path}`, method, headers, payload, server.ca)
    : await fetch(`${server.httpUrl}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new Error(`${method} ${path}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 300)}`);
  }
  return { status: res.status, body: parsed as T };
}

/** One HTTPS request checked against `ca` (fetch takes no CA of its own). */
function httpsRequest(url: string, method: string, headers: Record<string, string>, payload: string | null, ca: string): Promise<{ status: number; text: () => Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequestRaw(url, { method, headers, ca, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: async () => Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
    req.on("error", reject);
    req.end(payload ?? undefined);
  });
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
