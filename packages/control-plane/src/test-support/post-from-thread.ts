/**
 * Test and bench support (not part of the package's build): HTTP requests sent from a worker
 * thread, so that building and sending big bodies does not run on the event loop being measured
 * (an in-process control plane shares this process's main thread with the test).
 */
import { Worker } from "node:worker_threads";

/** One request. */
export interface ThreadRequest {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  /** Sent as is (a JSON text, or raw bytes). */
  body?: string | Uint8Array;
}

/** Its answer: the status, the body parsed as JSON (or the text), and the time it took. */
export interface ThreadResponse {
  status: number;
  body: any;
  ms: number;
}

const SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
async function send(r) {
  const t0 = performance.now();
  const res = await fetch(r.url, { method: r.method ?? "POST", headers: r.headers ?? {}, body: r.body });
  const text = await res.text();
  let body = text;
  try { body = JSON.parse(text); } catch {}
  return { status: res.status, body, ms: performance.now() - t0 };
}
(async () => {
  const { requests, parallel } = workerData;
  let out;
  if (parallel) out = await Promise.all(requests.map(send));
  else { out = []; for (const r of requests) out.push(await send(r)); }
  parentPort.postMessage(out);
})().catch((err) => parentPort.postMessage({ error: String(err && err.stack || err) }));
`;

/**
 * Sends `requests` from a worker thread, all at once (`parallel`) or one after the other, and
 * resolves with the answers in order.
 */
export function postFromThread(requests: ThreadRequest[], options: { parallel: boolean }): Promise<ThreadResponse[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(SOURCE, { eval: true, workerData: { requests, parallel: options.parallel } });
    worker.once("message", (message: ThreadResponse[] | { error: string }) => {
      void worker.terminate();
      if ("error" in message) reject(new Error(message.error));
      else resolve(message);
    });
    worker.once("error", reject);
  });
}
