/** A tiny JSON client for the control plane's HTTP API, for tests. */
export interface ApiResponse<T = any> {
  status: number;
  body: T;
}

export async function api<T = any>(baseUrl: string, method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
