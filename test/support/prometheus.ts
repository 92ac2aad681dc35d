/**
 * A real Prometheus (and Alertmanager) for tests: the binaries from Debian's packages, installed
 * by scripts/setup.sh, on free loopback ports with their own config and data dirs; Prometheus
 * scrapes a tiny metrics endpoint the test controls every second. Never the system's services.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { captureProcess, freePort } from "./processes.js";

export { freePort };
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Why Prometheus tests are skipped when the binary is missing. */
export const PROMETHEUS_MISSING = "prometheus is not installed; .ci/run installs it via scripts/setup.sh";

/** The scrape job of the test target. */
export const TEST_JOB = "firedrill-test";

/** The `prometheus` binary on PATH (or in /usr/bin), or undefined. */
export function findPrometheus(): string | undefined {
  return findBinary("prometheus");
}

/** The `prometheus-alertmanager` binary (Debian's name for alertmanager), or undefined. */
export function findAlertmanager(): string | undefined {
  return findBinary("prometheus-alertmanager");
}

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/usr/local/bin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The metrics endpoint Prometheus scrapes: gauges the test sets. */
export interface MetricsTarget {
  /** `127.0.0.1:<port>`, as Prometheus labels the `instance`. */
  address: string;
  /** Sets a gauge (exposed as `# TYPE <name> gauge`). */
  set(name: string, value: number): void;
  /** How many scrapes were served. */
  scrapes(): number;
  close(): Promise<void>;
}

/** Starts the target on a free loopback port. */
export async function startMetricsTarget(initial: Record<string, number> = {}): Promise<MetricsTarget> {
  const gauges = new Map(Object.entries(initial));
  let scrapes = 0;
  const server: Server = createHttpServer((req, res) => {
    if (req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    scrapes += 1;
    const body = [...gauges].map(([name, value]) => `# TYPE ${name} gauge\n${name} ${value}\n`).join("");
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    set: (name, value) => void gauges.set(name, value),
    scrapes: () => scrapes,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A running test Prometheus and its target. */
export interface TestPrometheus {
  /** `http://127.0.0.1:<port>` */
  url: string;
  target: MetricsTarget;
  /** Everything Prometheus printed (for failure messages). */
  output(): string;
  /** Kills Prometheus, closes the target, removes the data dir. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startPrometheus}. */
export interface StartPrometheusOptions {
  /** Gauges the target exposes from the start. */
  metrics?: Record<string, number>;
  /** How long to wait for readiness and the first successful scrape. @default 30000 */
  readyTimeoutMs?: number;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return res.ok ? res.json() : undefined;
}

/** SIGTERM, then SIGKILL after 5 s; waits (bounded) for the exit. */
async function killChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const gone = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
  if (!gone) {
    child.kill("SIGKILL");
    await Promise.race([exited, sleep(2000)]);
  }
}

async function waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean>, output: () => string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}) before ${what}:\n${output()}`);
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`prometheus: no ${what} within ${timeoutMs} ms:\n${output()}`);
    await sleep(100);
  }
}

/**
 * Starts Prometheus scraping a fresh {@link MetricsTarget} every second and waits until it is
 * ready and the target is up. Returns undefined when the binary is not installed (skip the test
 * with {@link PROMETHEUS_MISSING}).
 */
export async function startPrometheus(options: StartPrometheusOptions = {}): Promise<TestPrometheus | undefined> {
  const binary = findPrometheus();
  if (!binary) return undefined;
  const timeoutMs = options.readyTimeoutMs ?? 30_000;
  const target = await startMetricsTarget(options.metrics);
  const dir = mkdtempSync(join(tmpdir(), "firedrill-prometheus-"));
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      `  - job_name: ${TEST_JOB}`,
      "    static_configs:",
      `      - targets: ["${target.address}"]`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const child = spawn(
    binary,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  const { exited, output } = captureProcess(child);
  const url = `http://127.0.0.1:${port}`;

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await killChild(child, exited);
    await target.close();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitFor("readiness", timeoutMs, async () => (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok, output, child);
    const upQuery = `${url}/api/v1/query?${new URLSearchParams({ query: `up{job="${TEST_JOB}"} == 1` }).toString()}`;
    await waitFor(
      `successful scrape of ${target.address}`,
      timeoutMs,
      async () => {
        const body = (await getJson(upQuery)) as { data?: { result?: unknown[] } } | undefined;
        return (body?.data?.result?.length ?? 0) > 0;
      },
      output,
      child,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, target, output, stop };
}

/** Why Alertmanager tests are skipped when the binary is missing. */
export const ALERTMANAGER_MISSING = "prometheus-alertmanager is not installed; .ci/run installs it via scripts/setup.sh";

/** A running test Alertmanager. */
export interface TestAlertmanager {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Sends alerts as Prometheus does (`POST /api/v2/alerts`). */
  post(alerts: { labels: Record<string, string>; annotations?: Record<string, string>; endsAt?: string }[]): Promise<void>;
  output(): string;
  /** Kills Alertmanager and removes its data dir. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startAlertmanager}. */
export interface StartAlertmanagerOptions {
  /** How long to wait for readiness. @default 30000 */
  readyTimeoutMs?: number;
  /**
   * A file holding the API token the webhook sends as `Authorization: Bearer` (the receiver's
   * `http_config.authorization.credentials_file`). Without it, the webhook sends no credentials.
   */
  bearerTokenFile?: string;
}

/**
 * Starts Debian's `prometheus-alertmanager` on a free loopback port, clustering off, routing every
 * alert at once (group_wait 0s, group_interval 1s) to `webhookUrl` with send_resolved, with the
 * bearer token in `bearerTokenFile` if given (a number is the ready timeout, as before).
 * Returns undefined when the binary is not installed (skip with {@link ALERTMANAGER_MISSING}).
 */
export async function startAlertmanager(
  webhookUrl: string,
  options: StartAlertmanagerOptions | number = {},
): Promise<TestAlertmanager | undefined> {
  const opts: StartAlertmanagerOptions = typeof options === "number" ? { readyTimeoutMs: options } : options;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const binary = findBinary("prometheus-alertmanager");
  if (!binary) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "firedrill-alertmanager-"));
  const config = join(dir, "alertmanager.yml");
  writeFileSync(
    config,
    [
      "route:",
      "  receiver: firedrill",
      "  group_by: [alertname]",
      "  group_wait: 0s",
      "  group_interval: 1s",
      "  repeat_interval: 1h",
      "receivers:",
      "  - name: firedrill",
      "    webhook_configs:",
      `      - url: ${JSON.stringify(webhookUrl)}`,
      "        send_resolved: true",
      ...(opts.bearerTokenFile
        ? ["        http_config:", "          authorization:", "            type: Bearer", `            credentials_file: ${JSON.stringify(opts.bearerTokenFile)}`]
        : []),
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const child = spawn(
    binary,
    [
      `--config.file=${config}`,
      `--storage.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--cluster.listen-address=",
      "--log.level=warn",
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  const { exited, output } = captureProcess(child);
  const url = `http://127.0.0.1:${port}`;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await killChild(child, exited);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor("readiness", readyTimeoutMs, async () => (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok, output, child);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    output,
    stop,
    post: async (alerts) => {
      const res = await fetch(`${url}/api/v2/alerts`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(alerts),
        signal: AbortSignal.timeout(5000),
      });
      if (!res.ok) throw new Error(`alertmanager refused the alerts: HTTP ${res.status} ${await res.text()}`);
    },
  };
}
