/**
 * The control plane's configuration: one zod schema; CLI flags and environment variables map onto
 * it (see `firedrill server --help`).
 */
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import { z } from "zod";
import { isLoopbackHost, parseHostPort } from "./address.js";
import { InvalidConfigError } from "./errors.js";

/** The shortest lease TTL: agents must survive a couple of late renewals. */
export const MIN_LEASE_TTL_MS = 3000;
/** @default 15 s */
export const DEFAULT_LEASE_TTL_MS = 15_000;
/** @default 5 s */
export const DEFAULT_ACK_TIMEOUT_MS = 5000;
/** @default 2 s */
export const DEFAULT_RECONCILE_GRACE_MS = 2000;

const address = (what: string, example: string) =>
  z.string().refine((v) => parseHostPort(v) !== undefined, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not a host:port ${what} address; use e.g. ${example} (port 0 picks a free port)`,
  });

const logger = z.custom<Logger>(
  (v) => typeof v === "object" && v !== null && typeof (v as { child?: unknown }).child === "function",
  { error: "must be a pino logger" },
);

const writable = z.custom<Writable>(
  (v) => typeof v === "object" && v !== null && typeof (v as { write?: unknown }).write === "function",
  { error: "must be a writable stream" },
);

/** The schema of {@link ControlPlaneOptions}; parsing fills in defaults. */
export const controlPlaneOptionsSchema = z
  .object({
    /** Directory for the SQLite database (`firedrill.db`) and the join token file (`join-token`). Created if missing. */
    dataDir: z.string().min(1, { error: "is required: the directory for the database and the join token" }),
    /**
     * `postgres://user@host:port/db`: keep the store in PostgreSQL, shared by replicas (docs/ha.md),
     * instead of the data dir's SQLite file. The password is best given by PGPASSWORD or ~/.pgpass.
     */
    store: z
      .string()
      .regex(/^postgres(ql)?:\/\/[^\s]+$/, { error: "must be a PostgreSQL URL, e.g. postgres://firedrill@db.internal:5432/firedrill (password from PGPASSWORD)" })
      .optional(),
    /** Where agents connect (gRPC), `host:port`. Port 0 picks an ephemeral port. */
    grpcAddr: address("gRPC", "0.0.0.0:7070"),
    /** Where the HTTP JSON API and /metrics listen, `host:port`. */
    httpAddr: address("HTTP", "127.0.0.1:7080"),
    /** How long an agent keeps its faults without hearing from the control plane. @default 15000 (min 3000) */
    leaseTtlMs: z
      .number()
      .int()
      .min(MIN_LEASE_TTL_MS, {
        error: (issue) =>
          `${String(issue.input)}ms is below the minimum ${MIN_LEASE_TTL_MS}ms: a shorter lease would revert faults on ordinary network jitter; use 3s or more`,
      })
      .default(DEFAULT_LEASE_TTL_MS),
    /** How often leases are renewed and agents send heartbeats. @default leaseTtlMs / 3 */
    heartbeatIntervalMs: z.number().int().min(100, { error: "must be at least 100ms" }).optional(),
    /** How long the HTTP API waits for an agent to acknowledge a fault. @default 5000 */
    ackTimeoutMs: z.number().int().min(1).max(60_000).default(DEFAULT_ACK_TIMEOUT_MS),
    /**
     * How long after Welcome the hub waits before reconciling the agent's held faults with the
     * store, so that events the agent flushes on reconnect win. @default 2000
     */
    reconcileGraceMs: z.number().int().min(0).default(DEFAULT_RECONCILE_GRACE_MS),
    /** Root logger; components log through `logger.child({ component })`. */
    logger,
    /**
     * Serve agents plain gRPC, authenticated by the join token alone (no enrollment, no client
     * certificates). Only on a loopback grpcAddr: for trying firedrill on one machine. @default false
     */
    insecureAgents: z.boolean().default(false),
    /** Lifetime of an agent's client certificate (renewed over the link well before). @default 7 days */
    agentCertLifetimeMs: z.number().int().min(10_000).max(366 * 86_400_000).default(7 * 86_400_000),
    /** Most agents this control plane enrolls. @default 20000 */
    maxAgents: z.number().int().min(1).max(1_000_000).default(20_000),
    /** Enrollments per second per join token. @default 50 */
    enrollRatePerToken: z.number().int().min(1).max(100_000).default(50),
    /** An agent unseen this long is stale: listed as such, never targeted. @default 24 h */
    agentStaleAfterMs: z.number().int().min(60_000).default(24 * 3_600_000),
    /** Where the one-time join token notice is printed. @default process.stdout */
    out: writable.optional(),
    /**
     * Guardrail policy file (YAML, the shape of an experiment's `guardrails` plus
     * `maxConcurrentRuns`). Where it and an experiment both set a rule, the stricter wins.
     * @default { optInLabel: "firedrill:opt-in=true" }
     */
    policyFile: z.string().min(1).optional(),
    /** AWS region for selectors and alarms that name none; else the SDK's default chain. */
    awsRegion: z.string().min(1).optional(),
    /** AWS endpoint override (e.g. a local emulator); AWS_ENDPOINT_URL works too. */
    awsEndpoint: z.string().url({ error: "must be a URL, e.g. http://127.0.0.1:4566" }).optional(),
    /** Subnets aws-network-disrupt never touches: the control plane's own (`--aws-protect-subnets`). @default [] */
    awsProtectSubnets: z.array(z.string().regex(/^subnet-[0-9a-f]+$/, { error: (issue) => `${JSON.stringify(issue.input)} is not a subnet id; give subnet ids, comma-separated, e.g. subnet-0abc123,subnet-0def456` })).default([]),
    /** How long an abort waits for revert acks before recording them unconfirmed. @default 20000 */
    revertWaitMs: z.number().int().min(1000).max(600_000).default(20_000),
    /**
     * Names and addresses clients use to reach this server (`--advertise`): accepted in the HTTP
     * `Host` header and put in the certificate the server's CA issues. The bind address, localhost
     * and loopback addresses are always accepted. @default []
     */
    advertise: z
      .array(z.string().min(1).max(253).regex(/^[A-Za-z0-9.:_\[\]-]+$/, { error: "must be a DNS name or an IP address" }))
      .max(64)
      .default([]),
    /** TLS certificate chain (PEM) for the HTTP API; with httpTlsKeyFile the API serves HTTPS. */
    httpTlsCertFile: z.string().min(1).optional(),
    /** TLS private key (PEM) for the HTTP API. */
    httpTlsKeyFile: z.string().min(1).optional(),
    /**
     * Serve plain HTTP on a non-loopback address (tokens then cross the network in clear text).
     * Without it, a non-loopback API serves HTTPS with a certificate from the server's own CA. @default false
     */
    insecureHttp: z.boolean().default(false),
    /** Failed authentications allowed per source address per minute before 429. @default 20 */
    authFailuresPerMinute: z.number().int().min(1).max(1_000_000).default(20),
    /**
     * Where the agent tarballs served at `/install/` are (`--agent-releases`).
     * @default `<bundle dir>/../agent-releases` when it exists, else `<repo>/dist/release`
     */
    agentReleasesDir: z.string().min(1).optional(),
    /**
     * Where the web console's built files are (`--console-dir`): index.html, app.js, app.css,
     * report.js, report.css. @default `<bundle dir>/console` when it exists (the server tarball's
     * lib/console), else `<repo>/packages/console/dist`
     */
    consoleDir: z.string().min(1).optional(),
  })
  .superRefine((value, ctx) => {
    const heartbeat = value.heartbeatIntervalMs ?? Math.floor(value.leaseTtlMs / 3);
    if (heartbeat * 2 > value.leaseTtlMs) {
      ctx.addIssue({
        code: "custom",
        path: ["heartbeatIntervalMs"],
        message: `${heartbeat}ms is more than half the lease TTL (${value.leaseTtlMs}ms): one late renewal would expire every agent's lease; use at most ${Math.floor(value.leaseTtlMs / 2)}ms or raise the lease TTL`,
      });
    }
    if ((value.httpTlsCertFile === undefined) !== (value.httpTlsKeyFile === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: [value.httpTlsCertFile === undefined ? "httpTlsCertFile" : "httpTlsKeyFile"],
        message: "HTTPS needs both a certificate and a key file (--http-tls-cert and --http-tls-key); give both, or neither to use a certificate from the server's own CA",
      });
    }
    if (value.insecureHttp && value.httpTlsCertFile !== undefined) {
      ctx.addIssue({ code: "custom", path: ["insecureHttp"], message: "--insecure-http and --http-tls-cert contradict each other; give one" });
    }
    const grpcHost = parseHostPort(value.grpcAddr)?.host;
    if (value.insecureAgents && grpcHost !== undefined && !isLoopbackHost(grpcHost)) {
      ctx.addIssue({
        code: "custom",
        path: ["insecureAgents"],
        message: `--insecure-agents is only allowed on a loopback --grpc-addr (not ${value.grpcAddr}): remote agents always use TLS pinned to this server's CA and their own certificates`,
      });
    }
  });

/** Options of {@link startControlPlane}. */
export type ControlPlaneOptions = z.input<typeof controlPlaneOptionsSchema>;

/** Options after validation, with every default filled in. */
export type ControlPlaneConfig = Omit<z.output<typeof controlPlaneOptionsSchema>, "heartbeatIntervalMs"> & {
  heartbeatIntervalMs: number;
};

/**
 * Validates options and fills in defaults.
 * Thrown when an option is invalid: InvalidConfigError naming each field.
 */
export function resolveConfig(options: ControlPlaneOptions): ControlPlaneConfig {
  const result = controlPlaneOptionsSchema.safeParse(options);
  if (!result.success) {
    throw new InvalidConfigError(
      result.error.issues.map((issue) => ({ field: issue.path.join(".") || "options", message: issue.message })),
    );
  }
  const value = result.data;
  return { ...value, heartbeatIntervalMs: value.heartbeatIntervalMs ?? Math.floor(value.leaseTtlMs / 3) };
}
