/**
 * Test support (not part of the package's build): a real grpc-js client speaking the agent
 * protocol, and a control plane in a temp dir.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AGENT_TOKEN_METADATA_KEY,
  AgentService,
  ConnectRequestSchema,
  FaultEventType,
  bearer,
  createClientConstructor,
  timestampFromMs,
} from "@firedrill/protocol";
import type {
  CapabilitiesSchema,
  ConnectResponse,
  HeldFaultSchema,
  HostFactsSchema,
  RevertReason,
} from "@firedrill/protocol";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { startControlPlane } from "../control-plane.js";
import type { ControlPlane } from "../control-plane.js";
import type { ControlPlaneOptions } from "../config.js";

const Client = createClientConstructor(AgentService);

type ResponseCase = NonNullable<ConnectResponse["message"]["case"]>;
type ResponseOf<C extends ResponseCase> = Extract<ConnectResponse["message"], { case: C }>["value"];

/** What a test Hello may override. */
export interface HelloOverrides {
  labels?: Record<string, string>;
  heldFaults?: MessageInitShape<typeof HeldFaultSchema>[];
  capabilities?: MessageInitShape<typeof CapabilitiesSchema>;
  facts?: MessageInitShape<typeof HostFactsSchema>;
}

/** Optional fields of a test FaultEvent. */
export interface EventOverrides {
  reason?: RevertReason;
  error?: string;
  message?: string;
  measurements?: Record<string, number>;
  time?: Timestamp;
}

/** A test agent: one real Connect stream. */
export interface TestAgent {
  readonly agentId: string;
  readonly received: ConnectResponse[];
  /** Resolves with the final status when the stream ends (OK or error). */
  readonly ended: Promise<grpc.StatusObject | grpc.ServiceError>;
  /** The next message of a case not yet consumed by next(). */
  next<C extends ResponseCase>(kind: C, timeoutMs?: number): Promise<ResponseOf<C>>;
  hello(init?: HelloOverrides): void;
  event(faultId: string, type: FaultEventType, init?: EventOverrides): void;
  heartbeat(): void;
  /** Half-closes the stream and closes the client. */
  close(): void;
  /** Cancels the call abruptly (like a killed process). */
  cancel(): void;
}

/**
 * Opens a Connect stream; `token: undefined` sends no authorization metadata. After hello() it
 * sends a Heartbeat every `heartbeatMs` (0: never) until closed.
 */
export function connectTestAgent(options: {
  address: string;
  token: string | undefined;
  agentId?: string;
  heartbeatMs?: number;
}): TestAgent {
  const agentId = options.agentId ?? "agent-1";
  const client = new Client(options.address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (options.token !== undefined) metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(options.token));
  const stream = client.connect(metadata);
  const received: ConnectResponse[] = [];
  const consumed = new Set<ConnectResponse>();
  const waiters = new Set<() => void>();
  stream.on("data", (message: ConnectResponse) => {
    received.push(message);
    for (const w of [...waiters]) w();
  });
  const ended = new Promise<grpc.StatusObject | grpc.ServiceError>((resolve) => {
    stream.on("error", (err: grpc.ServiceError) => resolve(err));
    stream.on("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve(status);
    });
  });
  let heartbeats: NodeJS.Timeout | undefined;
  const stopHeartbeats = () => clearInterval(heartbeats);
  void ended.then(stopHeartbeats);
  const send = (message: NonNullable<MessageInitShape<typeof ConnectRequestSchema>["message"]>) =>
    stream.write(create(ConnectRequestSchema, { message }));
  return {
    agentId,
    received,
    ended,
    next(kind, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = received.find((m) => m.message.case === kind && !consumed.has(m));
          if (!found) return false;
          consumed.add(found);
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found.message.value as never);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${kind} within ${timeoutMs}ms; received: ${received.map((m) => m.message.case).join(", ")}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    hello(init = {}) {
      send({
        case: "hello",
        value: {
          agentId,
          version: "0.1.0-test",
          facts: { hostname: `${agentId}.test`, cpuCount: 2, memoryBytes: 4n * 1024n ** 3n, ...init.facts },
          labels: init.labels ?? { app: "web", "firedrill:opt-in": "true" },
          capabilities: init.capabilities ?? { faultKinds: ["cpu-burn"], root: false },
          heldFaults: init.heldFaults ?? [],
        },
      });
      const every = options.heartbeatMs ?? 100;
      if (every > 0 && heartbeats === undefined) {
        heartbeats = setInterval(() => send({ case: "heartbeat", value: { time: timestampFromMs(Date.now()) } }), every);
      }
    },
    event(faultId, type, init = {}) {
      send({ case: "faultEvent", value: { faultId, type, time: timestampFromMs(Date.now()), kind: "cpu-burn", ...init } });
    },
    heartbeat() {
      send({ case: "heartbeat", value: { time: timestampFromMs(Date.now()) } });
    },
    close() {
      stopHeartbeats();
      stream.end();
      client.close();
    },
    cancel() {
      stopHeartbeats();
      stream.cancel();
      client.close();
    },
  };
}

/** A control plane in a fresh temp dir, with what it printed. */
export interface TestControlPlane {
  cp: ControlPlane;
  dataDir: string;
  output: () => string;
  /** The join token, read from the file the control plane wrote. */
  token: () => string;
  /** The bootstrap admin API token (`<dataDir>/admin-token`). */
  adminToken: () => string;
  /**
   * An API token for a principal with `role` (created through the API with the admin token; the
   * same name and role give a new token of the same principal). @default name: the role's name
   */
  tokenFor(role: "viewer" | "operator" | "admin" | "alertmanager", options?: { name?: string; scope?: string; kind?: "person" | "service" }): Promise<string>;
  /** fetch() with the admin token as bearer (the same arguments as fetch). */
  fetch(url: string, init?: RequestInit): Promise<Response>;
  /** fetch() on the HTTP API with the admin token (or `token`) as bearer. */
  api<T = any>(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }>;
  /** Closes the control plane (the temp dir stays until cleanup()). */
  close(): Promise<void>;
  /** Starts another control plane on the same data dir. */
  restart(): Promise<void>;
  /** Closes and removes the temp dir. */
  cleanup(): Promise<void>;
}

/** Starts a control plane on 127.0.0.1 ephemeral ports in a temp dir. */
export async function startTestControlPlane(overrides: Partial<ControlPlaneOptions> = {}): Promise<TestControlPlane> {
  const dataDir = mkdtempSync(join(tmpdir(), "firedrill-cp-"));
  let text = "";
  const out = new PassThrough();
  out.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
  const logger = pino({ level: process.env.FIREDRILL_TEST_LOG ?? "silent" });
  const start = () =>
    startControlPlane({
      dataDir,
      grpcAddr: "127.0.0.1:0",
      httpAddr: "127.0.0.1:0",
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 200,
      ackTimeoutMs: 1500,
      reconcileGraceMs: 300,
      logger,
      out,
      ...overrides,
    });
  const handle: TestControlPlane = {
    cp: await start(),
    dataDir,
    output: () => text,
    token: () => readFileSync(join(dataDir, "join-token"), "utf8").trim(),
    adminToken: () => readFileSync(join(dataDir, "admin-token"), "utf8").trim(),
    fetch(url, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has("authorization")) headers.set("authorization", `Bearer ${handle.adminToken()}`);
      return fetch(url, { ...init, headers });
    },
    async tokenFor(role, options = {}) {
      const res = await handle.api<{ secret?: string; error?: { message: string } }>("POST", "/api/v1/tokens", {
        name: options.name ?? role,
        role,
        ...(options.scope !== undefined ? { scope: options.scope } : {}),
        ...(options.kind !== undefined ? { kind: options.kind } : {}),
      });
      if (res.status !== 201 || !res.body.secret) throw new Error(`cannot create a ${role} token: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.secret;
    },
    async api(method, path, body, token) {
      const res = await fetch(`${handle.cp.httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token ?? handle.adminToken()}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    close: () => handle.cp.close(),
    async restart() {
      await handle.cp.close();
      handle.cp = await start();
    },
    async cleanup() {
      await handle.cp.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}
