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
  EnrollRequestSchema,
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
  /** FaultEvent.details (ACCEPTED/STARTED): what the agent says about the fault. */
  details?: string[];
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
  /** Sends any message on the stream (e.g. a FaultPreview answer). */
  send(message: NonNullable<MessageInitShape<typeof ConnectRequestSchema>["message"]>): void;
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
  /** TLS with a client certificate (an enrolled agent); default plain gRPC (insecure-agents mode). */
  credentials?: grpc.ChannelCredentials;
}): TestAgent {
  const agentId = options.agentId ?? "agent-1";
  const client = new Client(options.address, options.credentials ?? grpc.credentials.createInsecure());
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
    send(message) {
      send(message);
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
      // Unit tests speak plain gRPC with the join token and choose their agent ids; the enrolled,
      // mTLS path is tested on its own (enrollTestAgent) and by every end-to-end agent process.
      insecureAgents: true,
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

/**
 * A test agent ("agent-1") connected to `tcp`, welcomed, and listed as connected by the API (so a
 * run's target group matches it); waits up to 5 s for the listing.
 */
export async function connectListedAgent(tcp: TestControlPlane): Promise<TestAgent> {
  const agent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token() });
  agent.hello();
  await agent.next("welcome");
  for (let i = 0; i < 100 && !(await tcp.api("GET", "/api/v1/agents/agent-1")).body.agent?.connected; i++) await new Promise((r) => setTimeout(r, 50));
  return agent;
}

/** An enrolled test identity: its id, key and certificate, and credentials for Connect. */
export interface EnrolledIdentity {
  agentId: string;
  keyPem: string;
  certPem: string;
  caPem: string;
  credentials: grpc.ChannelCredentials;
}

/** TLS credentials trusting `caPem`, with a client certificate when given. */
export function tlsCredentials(caPem: string, client?: { keyPem: string; certPem: string }): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(caPem),
    client ? Buffer.from(client.keyPem) : null,
    client ? Buffer.from(client.certPem) : null,
  );
}

/** A new ECDSA P-256 key and a CSR for it (PEM). */
export async function makeCsr(): Promise<{ keyPem: string; csrPem: string }> {
  const { x509 } = await import("../pki/x509.js");
  const { webcrypto } = await import("node:crypto");
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as import("node:crypto").webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=test-agent", keys, signingAlgorithm: alg });
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END PRIVATE KEY-----\n`;
  return { keyPem, csrPem: csr.toString("pem") };
}

/** Enrolls like an agent: Enroll over TLS trusting `caPem`, with `joinToken`. Rejects with the gRPC error. */
export async function enrollTestAgent(address: string, caPem: string, joinToken: string, hostname = "test-host"): Promise<EnrolledIdentity> {
  const { keyPem, csrPem } = await makeCsr();
  const client = new Client(address, tlsCredentials(caPem));
  const metadata = new grpc.Metadata();
  metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(joinToken));
  try {
    const response = await new Promise<{ agentId: string; certificatePem: string }>((resolve, reject) => {
      client.enroll(create(EnrollRequestSchema, { csrPem, hostname }), metadata, {}, (err: grpc.ServiceError | null, res?: { agentId: string; certificatePem: string }) => (err ? reject(err) : resolve(res!)));
    });
    return {
      agentId: response.agentId,
      keyPem,
      certPem: response.certificatePem,
      caPem,
      credentials: tlsCredentials(caPem, { keyPem, certPem: response.certificatePem }),
    };
  } finally {
    client.close();
  }
}

/** A hub `authenticate` for tests of the insecure-agents mode: the join token `token` opens Connect. */
export function tokenAuthenticator(token: string) {
  return (call: { metadata: grpc.Metadata }) => {
    const raw = call.metadata.get(AGENT_TOKEN_METADATA_KEY)[0];
    const presented = typeof raw === "string" ? raw.replace(/^Bearer\s+/i, "") : undefined;
    if (presented !== token) return { code: grpc.status.UNAUTHENTICATED, refusal: "join-token" as const, details: "invalid join token" };
    return { agentId: undefined, labels: {} };
  };
}
