/**
 * What authentication costs, and what the alert store holds on to:
 * 1. per request: sequential `GET /api/v1/agents` with a valid token (authenticated and served),
 *    without a token (401: refused before the handler, and audited) and with a wrong secret
 *    (401 after the token lookup and hash compare), against `/healthz` (public) as the floor; p50/p99 per case,
 *    interleaved so that drift hits every case alike. In-process control plane on loopback.
 * 2. memory: the RSS of a `firedrill server` process before and after 1,000 maximal Alertmanager
 *    webhook posts (every alert and every body at the receiver's bounds, every alert new, so the
 *    store fills to its cap and the rest is dropped), against the goal of < 20 MB growth.
 */
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { Writable } from "node:stream";
import { createLogger, startControlPlane } from "@firedrill/control-plane";
// The receiver's bounds, so the payloads follow them.
import {
  ALERTMANAGER_BODY_LIMIT,
  MAX_ALERTS_PER_PAYLOAD,
  MAX_ALERT_SIZE_BYTES,
  MAX_ANNOTATION_VALUE_LENGTH,
  MAX_ANNOTATIONS_PER_ALERT,
  MAX_FINGERPRINT_LENGTH,
  MAX_FIRING_ALERTS,
  MAX_LABEL_NAME_LENGTH,
  MAX_LABEL_VALUE_LENGTH,
  MAX_LABELS_PER_ALERT,
} from "@firedrill/control-plane";
import { api, createToken } from "../test/support/api.js";
import { freePort, killAll, sleep, startServer, tempDir } from "../test/support/processes.js";
import type { ServerHandle } from "../test/support/processes.js";
import { printTable } from "./table.js";

/** One keep-alive connection, as a CLI or a dashboard polling the API would hold. */
function createClient(baseUrl: string) {
  const url = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return {
    /** GETs `path`; resolves with the status and the elapsed milliseconds (body read). */
    get(path: string, token?: string): Promise<{ status: number; ms: number }> {
      return new Promise((resolve, reject) => {
        const t0 = performance.now();
        const req = request(
          { host: url.hostname, port: Number(url.port), path, agent, headers: token ? { authorization: `Bearer ${token}` } : {} },
          (res) => {
            res.on("data", () => {});
            res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
          },
        );
        req.once("error", reject);
        req.end();
      });
    },
    close: () => agent.destroy(),
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (v: number) => `${v.toFixed(3)} ms`;

/** Per-request cost of authentication: valid token, no token, unknown token, and the public floor. */
export async function benchAuthOverhead(requests = 2000, warmup = 200): Promise<void> {
  const dir = tempDir("bench-auth");
  const cp = await startControlPlane({
    dataDir: dir.path,
    grpcAddr: "127.0.0.1:0",
    httpAddr: "127.0.0.1:0",
    logger: createLogger({ level: "silent", pretty: false }),
    out: new Writable({ write: (_chunk, _enc, done) => done() }),
    // The 401 cases must stay 401s: lift the per-source limit on failed authentications.
    authFailuresPerMinute: 1_000_000,
  });
  const client = createClient(cp.httpUrl);
  try {
    const adminToken = readFileSync(cp.adminTokenFile, "utf8").trim();
    const viewerToken = await createToken({ httpUrl: cp.httpUrl, adminToken }, { name: "bench-viewer", role: "viewer" });
    // The viewer's token id with a wrong secret: found, hashed and compared, then refused.
    const wrongSecret = `${viewerToken.slice(0, -43)}${"A".repeat(43)}`;
    const cases = [
      { name: "/healthz (public, the floor)", path: "/healthz", token: undefined, expect: 200 },
      { name: "GET /api/v1/agents, viewer token", path: "/api/v1/agents", token: viewerToken, expect: 200 },
      { name: "GET /api/v1/agents, no token", path: "/api/v1/agents", token: undefined, expect: 401 },
      { name: "GET /api/v1/agents, wrong secret", path: "/api/v1/agents", token: wrongSecret, expect: 401 },
    ];
    const samples = cases.map(() => [] as number[]);
    for (let i = 0; i < warmup + requests; i++) {
      for (const [k, c] of cases.entries()) {
        const { status, ms: took } = await client.get(c.path, c.token);
        if (status !== c.expect) throw new Error(`${c.name}: HTTP ${status}, expected ${c.expect}`);
        if (i >= warmup) samples[k]!.push(took);
      }
    }
    const floor = percentile([...samples[0]!].sort((a, b) => a - b), 50);
    const rows = cases.map((c, k) => {
      const sorted = [...samples[k]!].sort((a, b) => a - b);
      const p50 = percentile(sorted, 50);
      return [c.name, c.expect, sorted.length, ms(p50), ms(percentile(sorted, 99)), k === 0 ? "" : `+${(p50 - floor).toFixed(3)} ms`];
    });
    printTable(
      `auth overhead per request: ${requests} sequential requests per case on one keep-alive connection, interleaved (in-process control plane on loopback; the 401s are audited)`,
      ["case", "status", "n", "p50", "p99", "p50 over floor"],
      rows,
    );
  } finally {
    client.close();
    await cp.close();
    dir.cleanup();
  }
}

/** VmRSS (and VmHWM, the peak) of a process, in bytes, from /proc. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** The V8 heap in use in the server, from its own /metrics (prom-client's default metrics). */
async function heapUsed(server: ServerHandle): Promise<number> {
  const res = await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  const value = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(await res.text())?.[1];
  return value === undefined ? NaN : Number(value);
}

/**
 * One alert at every bound that counts: a fingerprint of the longest length, and labels plus
 * annotations filling {@link MAX_ALERT_SIZE_BYTES} exactly, names and values unique to the alert
 * (nothing the server could share between alerts).
 */
function maximalAlert(id: string) {
  const fingerprint = `${id}.`.padEnd(MAX_FINGERPRINT_LENGTH, "0");
  const labels: Record<string, string> = { alertname: `BenchAlert${id}`, severity: "ticket" };
  const annotations: Record<string, string> = {};
  const size = () => Buffer.byteLength(JSON.stringify(labels)) + Buffer.byteLength(JSON.stringify(annotations));
  const fill = (set: Record<string, string>, max: number, maxValue: number, prefix: string) => {
    for (let i = 0; Object.keys(set).length < max; i++) {
      const name = `${prefix}${i}_${id}`.slice(0, MAX_LABEL_NAME_LENGTH);
      set[name] = "";
      const room = MAX_ALERT_SIZE_BYTES - size();
      if (room <= 0) {
        delete set[name];
        return;
      }
      set[name] = `${id}:`.padEnd(Math.min(maxValue, room), "x");
      if (size() >= MAX_ALERT_SIZE_BYTES) return;
    }
  };
  fill(labels, MAX_LABELS_PER_ALERT, MAX_LABEL_VALUE_LENGTH, "l");
  fill(annotations, MAX_ANNOTATIONS_PER_ALERT, MAX_ANNOTATION_VALUE_LENGTH, "a");
  if (size() > MAX_ALERT_SIZE_BYTES) throw new Error(`bench bug: alert of ${size()} bytes`);
  return { status: "firing", labels, annotations, startsAt: new Date().toISOString(), endsAt: "0001-01-01T00:00:00Z", generatorURL: "", fingerprint, _bytes: size() };
}

/** A webhook body as large as the route reads: as many maximal alerts as fit in its body limit. */
function maximalPayload(post: number): { body: string; alerts: number; bytes: number; alertBytes: number } {
  const envelope = {
    version: "4",
    groupKey: `{}:{bench="${post}"}`,
    truncatedAlerts: 0,
    status: "firing",
    receiver: "firedrill",
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: "http://alertmanager.invalid",
    alerts: [] as unknown[],
  };
  let body = JSON.stringify(envelope);
  let alertBytes = 0;
  while (envelope.alerts.length < MAX_ALERTS_PER_PAYLOAD) {
    const { _bytes, ...alert } = maximalAlert(`${post.toString(36)}-${envelope.alerts.length.toString(36)}`);
    envelope.alerts.push(alert);
    const next = JSON.stringify(envelope);
    if (Buffer.byteLength(next) > ALERTMANAGER_BODY_LIMIT) {
      envelope.alerts.pop();
      break;
    }
    body = next;
    alertBytes = _bytes;
  }
  return { body, alerts: envelope.alerts.length, bytes: Buffer.byteLength(body), alertBytes };
}

/**
 * A full garbage collection in another Node process, through its inspector (the server is started
 * with `--inspect` on a loopback port): what is measured after it is what the process retains.
 */
async function createGarbageCollector(inspectPort: number): Promise<{ collect(): Promise<void>; close(): void }> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const WebSocketCtor = (globalThis as { WebSocket?: new (url: string) => any }).WebSocket;
  if (!WebSocketCtor) throw new Error("run the bench with node --experimental-websocket (pnpm bench does)");
  const ws = new WebSocketCtor(targets[0]!.webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("cannot reach the server's inspector"));
  });
  let id = 0;
  const pending = new Map<number, () => void>();
  ws.onmessage = (event: { data: string }) => {
    const message = JSON.parse(event.data) as { id?: number };
    if (message.id !== undefined) pending.get(message.id)?.();
  };
  const call = (method: string) =>
    new Promise<void>((resolve) => {
      id += 1;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method }));
    });
  return {
    async collect() {
      // Twice: the first run can leave objects that only become unreachable once finalizers ran.
      await call("HeapProfiler.collectGarbage");
      await call("HeapProfiler.collectGarbage");
    },
    close: () => ws.close(),
  };
}

/** RSS growth of a `firedrill server` process from 1,000 maximal webhook posts. */
export async function benchAlertMemory(posts = 1000): Promise<void> {
  const dir = tempDir("bench-alerts");
  try {
    const inspectPort = await freePort();
    const server = await startServer({
      dataDir: dir.path,
      extraArgs: ["--log-level", "warn"],
      env: { NODE_OPTIONS: `--inspect=127.0.0.1:${inspectPort}` },
    });
    const gc = await createGarbageCollector(inspectPort);
    const token = await createToken(server, { name: "alertmanager", role: "alertmanager", kind: "service" });
    const post = async (body: string) => {
      const res = await fetch(`${server.httpUrl}/api/v1/alerts/alertmanager`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`webhook: HTTP ${res.status} ${text.slice(0, 500)}`);
      return JSON.parse(text) as { accepted: number; dropped: number };
    };
    // Warm up every path once (module loading, JIT, the audit insert), then let the process settle.
    await post(maximalPayload(-1).body.replace(/"status":"firing"/g, '"status":"resolved"'));
    for (let i = 0; i < 20; i++) await api(server, "GET", "/api/v1/alerts");
    await sleep(2000);
    await gc.collect();
    const before = memoryOf(server.proc.pid);
    const heapBefore = await heapUsed(server);

    let accepted = 0;
    let dropped = 0;
    let sent = 0;
    let shape = { alerts: 0, bytes: 0, alertBytes: 0 };
    // The trend tells retained memory (keeps growing once the store is full) from allocator slack.
    const trend: (string | number)[][] = [["0", 0, mb(before.rss), mb(heapBefore)]];
    const fullAfter = Math.ceil(MAX_FIRING_ALERTS / maximalPayload(0).alerts);
    const checkpoints = new Set([fullAfter, posts / 4, posts / 2, (3 * posts) / 4].map(Math.round));
    // V8 collects lazily: the RSS right after the posts includes garbage. Its lowest value once the
    // store is full (just after a major collection) is the better estimate of what is retained.
    let lowestFull = { rss: Infinity, at: 0 };
    const t0 = performance.now();
    for (let i = 0; i < posts; i++) {
      const payload = maximalPayload(i);
      shape = payload;
      sent += payload.alerts;
      const result = await post(payload.body);
      accepted += result.accepted;
      dropped += result.dropped;
      if (checkpoints.has(i + 1)) trend.push([String(i + 1), accepted, mb(memoryOf(server.proc.pid).rss), mb(await heapUsed(server))]);
      if (accepted >= MAX_FIRING_ALERTS) {
        const { rss } = memoryOf(server.proc.pid);
        if (rss < lowestFull.rss) lowestFull = { rss, at: i + 1 };
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const after = memoryOf(server.proc.pid);
    await sleep(5000);
    const settled = memoryOf(server.proc.pid);
    await gc.collect();
    const collected = memoryOf(server.proc.pid);
    const heapAfter = await heapUsed(server);
    gc.close();
    const firing = ((await api(server, "GET", "/api/v1/alerts")).body.alerts as unknown[]).length;
    const growth = after.rss - before.rss;
    const retained = collected.rss - before.rss;
    const heapRetained = heapAfter - heapBefore;
    const GOAL = 20 * 1024 * 1024;
    const verdict = (bytes: number) => `${mb(bytes)} ${bytes < GOAL ? "within the goal" : "OVER the goal"}`;
    trend.push([`${posts}`, accepted, mb(after.rss), ""], [`${posts} + 5 s idle + full GC`, accepted, mb(collected.rss), mb(heapAfter)]);

    printTable(
      `alert store memory: ${posts} webhook posts of ${shape.alerts} alerts each (${(shape.bytes / 1024).toFixed(0)} KiB bodies, limit ${ALERTMANAGER_BODY_LIMIT / 1024} KiB; ` +
        `${shape.alertBytes} B of labels+annotations per alert, limit ${MAX_ALERT_SIZE_BYTES}), every alert new, in ${seconds.toFixed(1)} s`,
      ["measure", "value"],
      [
        ["alerts sent", sent],
        ["kept / dropped (store full)", `${accepted} / ${dropped}`],
        ["firing after (cap)", `${firing} (${MAX_FIRING_ALERTS})`],
        ["server RSS before", mb(before.rss)],
        ["server RSS after the posts", mb(after.rss)],
        ["server RSS 5 s later", mb(settled.rss)],
        ["server peak RSS (VmHWM)", mb(after.peak)],
        ["server RSS after a full GC", mb(collected.rss)],
        ["V8 heap used before / after (both after a full GC)", `${mb(heapBefore)} / ${mb(heapAfter)}`],
        ["RSS growth right after the posts (garbage included)", mb(growth)],
        [`lowest RSS with the store full (post ${lowestFull.at})`, mb(lowestFull.rss)],
        ["retained: RSS growth after a full GC (goal < 20 MB)", verdict(retained)],
        ["retained: V8 heap growth after a full GC (goal < 20 MB)", verdict(heapRetained)],
      ],
    );
    printTable("the same posts over time (V8 heap used includes garbage not yet collected)", ["posts", "alerts kept", "server RSS", "V8 heap used"], trend);
  } finally {
    await killAll();
    dir.cleanup();
  }
}

/** Both parts. */
export async function benchAuth(): Promise<void> {
  await benchAuthOverhead();
  await benchAlertMemory();
}
