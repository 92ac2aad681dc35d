/**
 * `<state-dir>/status.json`: what the running agent says about its link, for people and scripts
 * (`firedrill-agent status`, the install script's "connected" check). Written atomically by the
 * agent when it starts, enrolls, connects, disconnects, fails to connect and stops; read by
 * `firedrill-agent status`, which also checks that the process that wrote it still runs.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { writeFileDurable } from "./fs-util.js";
import { isProcessAlive, readProcessStartTime } from "./proc.js";
import { AGENT_VERSION } from "./version.js";

/** The status file in the state dir. */
export const STATUS_FILE = "status.json";

/** What status.json holds. */
export interface AgentStatus {
  /** The agent id; null until enrolled. */
  agentId: string | null;
  /** Whether the link is up (Welcome received). */
  connected: boolean;
  /** When `connected` last changed (or the agent started), ISO 8601. */
  since: string;
  /**
   * The control plane's gRPC address the agent is connected to (when `connected`), or the one it
   * tried last (its first address until it tried).
   */
  server: string;
  /** Every address the agent was given (--server), when several: replicas it fails over between. */
  servers?: string[];
  /** The agent's pid. */
  pid: number;
  /** Its start time in clock ticks since boot (against pid reuse). */
  startTime?: number;
  /** The agent's version. */
  version: string;
  /** Why the agent is not connected (the last failure), in words an operator can act on. */
  lastError?: string;
}

/** Options of {@link createStatusReporter}. */
export interface StatusReporterOptions {
  stateDir: string;
  /** The first address. */
  server: string;
  /** Every address (--server), when several. */
  servers?: readonly string[];
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

/** What the running agent updates. */
export interface StatusReporter {
  /** Records a change; `since` moves only when `connected` changes. Never throws. */
  update(change: { agentId?: string | undefined; connected?: boolean; server?: string; lastError?: string | undefined }): void;
  /** The status as last written. */
  current(): AgentStatus;
}

/**
 * Writes status.json on every change. A write that fails (a full disk: disk-fill may be running
 * on the state dir's filesystem) is logged once and retried with the next change; it never stops
 * the agent.
 */
export function createStatusReporter(options: StatusReporterOptions): StatusReporter {
  const now = options.now ?? Date.now;
  let status: AgentStatus = {
    agentId: null,
    connected: false,
    since: new Date(now()).toISOString(),
    server: options.server,
    ...(options.servers && options.servers.length > 1 ? { servers: [...options.servers] } : {}),
    pid: process.pid,
    startTime: readProcessStartTime(process.pid) ?? 0,
    version: AGENT_VERSION,
  };
  let lastText = "";
  let failing = false;
  const write = () => {
    const text = `${JSON.stringify(status, null, 2)}\n`;
    if (text === lastText) return;
    try {
      writeFileDurable(join(options.stateDir, STATUS_FILE), text, 0o644);
      lastText = text;
      failing = false;
    } catch (err) {
      if (!failing) options.log.warn({ err: (err as Error).message, stateDir: options.stateDir }, `cannot write ${STATUS_FILE}; firedrill-agent status will be out of date`);
      failing = true;
    }
  };
  write();
  return {
    update(change) {
      const next: AgentStatus = { ...status };
      if ("agentId" in change) next.agentId = change.agentId ?? null;
      if (change.server !== undefined) next.server = change.server;
      if (change.connected !== undefined && change.connected !== status.connected) {
        next.connected = change.connected;
        next.since = new Date(now()).toISOString();
      }
      if ("lastError" in change) {
        if (change.lastError === undefined) delete next.lastError;
        else next.lastError = change.lastError;
      }
      status = next;
      write();
    },
    current: () => status,
  };
}

/** Thrown when status.json cannot be parsed. */
export class StatusFileError extends Error {
  override readonly name = "StatusFileError";
}

/** Reads status.json; undefined when there is none. Thrown: StatusFileError when it is not a status. */
export function readStatus(stateDir: string): AgentStatus | undefined {
  const file = join(stateDir, STATUS_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StatusFileError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let value: Partial<AgentStatus>;
  try {
    value = JSON.parse(text) as Partial<AgentStatus>;
  } catch {
    throw new StatusFileError(`${file} is not JSON; it is rewritten when the agent starts (systemctl restart firedrill-agent)`);
  }
  if (typeof value !== "object" || value === null || typeof value.connected !== "boolean" || typeof value.pid !== "number") {
    throw new StatusFileError(`${file} is not an agent status; it is rewritten when the agent starts (systemctl restart firedrill-agent)`);
  }
  return value as AgentStatus;
}

/** The status and what it means now. */
export interface StatusReading {
  status: AgentStatus | undefined;
  /** Whether the process that wrote it still runs. */
  running: boolean;
  /** Connected, by a running agent. */
  connected: boolean;
}

/** Reads status.json and checks that its writer still runs. */
export function readStatusReading(stateDir: string): StatusReading {
  const status = readStatus(stateDir);
  if (!status) return { status, running: false, connected: false };
  const running = typeof status.startTime === "number" && status.startTime > 0 ? isProcessAlive(status.pid, status.startTime) : readProcessStartTime(status.pid) !== undefined;
  return { status, running, connected: running && status.connected };
}

/**
 * Polls status.json until the agent is connected or `timeoutMs` passed; resolves with the last
 * reading either way.
 */
export async function waitForConnected(stateDir: string, timeoutMs: number, pollMs = 250): Promise<StatusReading> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let reading: StatusReading;
    try {
      reading = readStatusReading(stateDir);
    } catch (err) {
      // A torn read cannot happen (atomic rename); a broken file may be replaced by the agent.
      if (performance.now() >= deadline) throw err;
      reading = { status: undefined, running: false, connected: false };
    }
    if (reading.connected || performance.now() >= deadline) return reading;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(1, deadline - performance.now()))));
  }
}

/** One line (two when not connected) saying what the reading means, and the exit code: 0 connected, 1 not. */
export function describeStatus(reading: StatusReading, stateDir: string): { text: string; exitCode: 0 | 1 } {
  const { status } = reading;
  if (!status) {
    return {
      text: `no agent status in ${join(stateDir, STATUS_FILE)}: no agent has run with this state dir yet; start it (systemctl start firedrill-agent) or give the --state-dir it runs with`,
      exitCode: 1,
    };
  }
  const who = status.agentId ?? "this agent (not enrolled yet)";
  const others = status.servers && status.servers.length > 1 ? status.servers.filter((s) => s !== status.server) : [];
  const details = `pid ${status.pid}, version ${status.version}${others.length > 0 ? `; fails over to ${others.join(", ")}` : ""}`;
  if (!reading.running) {
    return {
      text:
        `${who} is not running (pid ${status.pid} is gone; last status at ${status.since}: ${status.connected ? "connected" : "not connected"}` +
        `${status.lastError ? `, ${status.lastError}` : ""}); start it with systemctl start firedrill-agent, and see journalctl -u firedrill-agent`,
      exitCode: 1,
    };
  }
  if (status.connected) return { text: `${who} connected to ${status.server} since ${status.since} (${details})`, exitCode: 0 };
  return {
    text:
      `${who} not connected${others.length > 0 ? ` (last tried ${status.server})` : ` to ${status.server}`} since ${status.since} (${details})\n` +
      `last error: ${status.lastError ?? "none yet: still connecting"}`,
    exitCode: 1,
  };
}
