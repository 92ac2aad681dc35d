/** `firedrill server`: run the control plane until SIGINT/SIGTERM. */
import { Option } from "commander";
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { DATABASE_FILE, InvalidConfigError, createIdentityStore, createLogger, createStore, resetAdminToken, startControlPlane } from "@firedrill/control-plane";
import type { ControlPlaneOptions } from "@firedrill/control-plane";
import { parseDuration } from "@firedrill/protocol";
import { callerPath } from "../caller-path.js";
import type { CommandContext } from "../context.js";
import { CliError } from "../errors.js";

interface ServerOptions {
  dataDir?: string;
  store?: string;
  grpcAddr: string;
  httpAddr: string;
  leaseTtl: string;
  heartbeatInterval?: string;
  ackTimeout: string;
  logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  insecureAgents?: boolean;
  agentCertTtl: string;
  agentStaleAfter: string;
  maxAgents: string;
  policy?: string;
  revertWait: string;
  awsRegion?: string;
  awsEndpoint?: string;
  awsProtectSubnets?: string;
  advertise?: string;
  httpTlsCert?: string;
  httpTlsKey?: string;
  insecureHttp?: boolean;
  authFailureLimit: string;
  agentReleases?: string;
  consoleDir?: string;
}

/** Which flag sets each control-plane option, for error messages. */
const FLAGS: Record<string, string> = {
  dataDir: "--data-dir",
  store: "--store",
  grpcAddr: "--grpc-addr",
  httpAddr: "--http-addr",
  leaseTtlMs: "--lease-ttl",
  heartbeatIntervalMs: "--heartbeat-interval",
  ackTimeoutMs: "--ack-timeout",
  insecureAgents: "--insecure-agents",
  agentCertLifetimeMs: "--agent-cert-ttl",
  agentStaleAfterMs: "--agent-stale-after",
  maxAgents: "--max-agents",
  policyFile: "--policy",
  awsRegion: "--aws-region",
  awsEndpoint: "--aws-endpoint",
  awsProtectSubnets: "--aws-protect-subnets",
  revertWaitMs: "--revert-wait",
  advertise: "--advertise",
  httpTlsCertFile: "--http-tls-cert",
  httpTlsKeyFile: "--http-tls-key",
  insecureHttp: "--insecure-http",
  authFailuresPerMinute: "--auth-failure-limit",
  agentReleasesDir: "--agent-releases",
  consoleDir: "--console-dir",
};

/** `--advertise a,b` → ["a", "b"]. */
function names(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
}

function duration(flag: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new CliError(`${flag} ${JSON.stringify(value)} is not a duration; use e.g. 500ms, 15s, 1m`);
  return ms;
}

/**
 * Resolves when the process receives SIGINT or SIGTERM; a second signal (a moment later: Ctrl-C
 * under `pnpm firedrill` arrives twice, from the terminal and passed on by pnpm) exits at once.
 */
function untilSignal(ctx: CommandContext): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      const first = performance.now();
      const force = (again: NodeJS.Signals) => {
        if (performance.now() - first < 1000) return;
        ctx.io.err(`received ${again} again during shutdown; exiting now\n`);
        process.exit(1);
      };
      process.on("SIGINT", force);
      process.on("SIGTERM", force);
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

/** Registers `server`. */
export function registerServerCommand(program: Command, ctx: CommandContext): void {
  const server = program
    .command("server")
    .description("run the control plane: the gRPC port agents connect to, the HTTP JSON API and /metrics")
    .addOption(
      new Option("--data-dir <dir>", "where the database (firedrill.db) and the join token (join-token) live").argParser(callerPath).env(
        "FIREDRILL_DATA_DIR",
      ),
    )
    .addOption(
      new Option(
        "--store <url>",
        "keep the store in PostgreSQL (postgres://user@host:port/db; password from PGPASSWORD or ~/.pgpass) so several servers run as replicas (docs/ha.md); default: SQLite in --data-dir",
      ).env("FIREDRILL_STORE"),
    )
    .addOption(
      new Option("--grpc-addr <host:port>", "where agents connect; use 0.0.0.0:7070 (with TLS) for remote agents")
        .env("FIREDRILL_GRPC_ADDR")
        .default("127.0.0.1:7070"),
    )
    .addOption(
      new Option("--http-addr <host:port>", "where the HTTP API and /metrics listen (a non-loopback address serves HTTPS)")
        .env("FIREDRILL_HTTP_ADDR")
        .default("127.0.0.1:7080"),
    )
    .addOption(
      new Option("--advertise <names>", "comma-separated DNS names and addresses clients use to reach this server (accepted as Host, put in the certificate)").env(
        "FIREDRILL_ADVERTISE",
      ),
    )
    .addOption(new Option("--http-tls-cert <file>", "TLS certificate chain (PEM) for the HTTP API (default on non-loopback: one from the server's own CA)").argParser(callerPath).env("FIREDRILL_HTTP_TLS_CERT"))
    .addOption(new Option("--http-tls-key <file>", "TLS private key (PEM) for the HTTP API").argParser(callerPath).env("FIREDRILL_HTTP_TLS_KEY"))
    .addOption(
      new Option("--auth-failure-limit <n>", "failed authentications allowed per source address per minute before 429")
        .env("FIREDRILL_AUTH_FAILURE_LIMIT")
        .default("20"),
    )
    .addOption(new Option("--insecure-http", "serve plain HTTP on a non-loopback --http-addr (tokens travel in clear text; warned at start and in /healthz)"))
    .addOption(
      new Option("--lease-ttl <duration>", "how long agents keep faults without hearing from the control plane (min 3s)")
        .env("FIREDRILL_LEASE_TTL")
        .default("15s"),
    )
    .addOption(
      new Option("--heartbeat-interval <duration>", "how often leases are renewed (default: a third of the lease TTL)").env(
        "FIREDRILL_HEARTBEAT_INTERVAL",
      ),
    )
    .addOption(
      new Option("--ack-timeout <duration>", "how long the API waits for an agent to acknowledge a fault")
        .env("FIREDRILL_ACK_TIMEOUT")
        .default("5s"),
    )
    .addOption(
      new Option("--log-level <level>", "log level")
        .choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
        .env("FIREDRILL_LOG_LEVEL")
        .default("info"),
    )
    .addOption(new Option("--insecure-agents", "plain gRPC for agents, join token only, no enrollment (loopback --grpc-addr only)"))
    .addOption(new Option("--agent-cert-ttl <duration>", "lifetime of agents' client certificates (renewed well before)").env("FIREDRILL_AGENT_CERT_TTL").default("168h"))
    .addOption(new Option("--agent-stale-after <duration>", "an agent unseen this long is stale: listed as such, never targeted").env("FIREDRILL_AGENT_STALE_AFTER").default("24h"))
    .addOption(new Option("--max-agents <n>", "most agents this control plane enrolls").env("FIREDRILL_MAX_AGENTS").default("20000"))
    .addOption(
      new Option("--policy <file>", "guardrail policy (YAML); the stricter of it and each experiment's guardrails wins").argParser(callerPath).env("FIREDRILL_POLICY"),
    )
    .addOption(new Option("--aws-region <region>", "AWS region for selectors and alarms that name none (default: the SDK's chain)").env("FIREDRILL_AWS_REGION"))
    .addOption(new Option("--aws-endpoint <url>", "AWS endpoint override, e.g. a local emulator (AWS_ENDPOINT_URL works too)").env("FIREDRILL_AWS_ENDPOINT"))
    .addOption(
      new Option("--aws-protect-subnets <ids>", "subnets aws-network-disrupt never cuts off: the control plane's own, comma-separated (subnet-a,subnet-b)").env("FIREDRILL_AWS_PROTECT_SUBNETS"),
    )
    .addOption(
      new Option(
        "--agent-releases <dir>",
        "the agent tarballs served at /install/ for `curl …/install/agent.sh | sudo sh` (default: agent-releases/ of the server's release bundle, else dist/release of the checkout: pnpm release)",
      )
        .argParser(callerPath)
        .env("FIREDRILL_AGENT_RELEASES"),
    )
    .addOption(
      new Option("--console-dir <dir>", "the web console's built files served at / (default: lib/console of the server's release bundle, else packages/console/dist of the checkout: pnpm console:build)")
        .argParser(callerPath)
        .env("FIREDRILL_CONSOLE_DIR"),
    )
    .addOption(
      new Option("--revert-wait <duration>", "how long an abort waits for revert acks before recording them unconfirmed")
        .env("FIREDRILL_REVERT_WAIT")
        .default("20s"),
    )
    .action(async (options: ServerOptions) => {
      if (!options.dataDir) {
        throw new CliError(
          "--data-dir is required: the directory for the control plane's database and join token, e.g. --data-dir /var/lib/firedrill (or set FIREDRILL_DATA_DIR)",
        );
      }
      const logger = createLogger({ level: options.logLevel });
      const config: ControlPlaneOptions = {
        dataDir: options.dataDir,
        ...(options.store !== undefined ? { store: options.store } : {}),
        grpcAddr: options.grpcAddr,
        httpAddr: options.httpAddr,
        leaseTtlMs: duration("--lease-ttl", options.leaseTtl),
        ackTimeoutMs: duration("--ack-timeout", options.ackTimeout),
        logger,
        ...(options.heartbeatInterval !== undefined
          ? { heartbeatIntervalMs: duration("--heartbeat-interval", options.heartbeatInterval) }
          : {}),
        insecureAgents: options.insecureAgents === true,
        agentCertLifetimeMs: duration("--agent-cert-ttl", options.agentCertTtl),
        agentStaleAfterMs: duration("--agent-stale-after", options.agentStaleAfter),
        maxAgents: Number(options.maxAgents),
        ...(options.policy !== undefined ? { policyFile: options.policy } : {}),
        revertWaitMs: duration("--revert-wait", options.revertWait),
        ...(options.awsRegion !== undefined ? { awsRegion: options.awsRegion } : {}),
        ...(options.awsEndpoint !== undefined ? { awsEndpoint: options.awsEndpoint } : {}),
        awsProtectSubnets: names(options.awsProtectSubnets),
        advertise: names(options.advertise),
        ...(options.httpTlsCert !== undefined ? { httpTlsCertFile: options.httpTlsCert } : {}),
        ...(options.httpTlsKey !== undefined ? { httpTlsKeyFile: options.httpTlsKey } : {}),
        insecureHttp: options.insecureHttp === true,
        authFailuresPerMinute: Number(options.authFailureLimit),
        ...(options.agentReleases !== undefined ? { agentReleasesDir: options.agentReleases } : {}),
        ...(options.consoleDir !== undefined ? { consoleDir: options.consoleDir } : {}),
      };
      let cp;
      try {
        cp = await startControlPlane(config);
      } catch (err) {
        if (err instanceof InvalidConfigError) {
          throw new CliError(
            "invalid server options",
            err.issues.map((i) => ({ field: FLAGS[i.field] ?? FLAGS[i.field.replace(/\.\d+$/, "")] ?? i.field, message: i.message })),
          );
        }
        throw err;
      }
      const signal = untilSignal(ctx);
      // A wildcard bind is no address to connect to: show a name clients can use.
      const reachable = cp.httpUrl.replace(/^(https?:\/\/)(0\.0\.0\.0|\[::\])(?=:)/, (_, scheme: string) => `${scheme}${config.advertise?.[0] ?? hostname()}`);
      const tls = options.insecureAgents ? "insecure, join token only" : `TLS, CA ${cp.agentCaFingerprint}`;
      ctx.io.out(
        [
          "firedrill control plane is running",
          `  console:        ${reachable}/ (log in with an API token, e.g. the admin token below)`,
          `  agents (gRPC):  ${cp.grpcAddress} (${tls})`,
          `  HTTP API:       ${cp.httpUrl}/api/v1`,
          `  metrics:        ${cp.httpUrl}/metrics`,
          `  agent install:  ${reachable}/install/agent.sh (firedrill join-token create prints the one-line install)`,
          `  join token:     ${cp.joinTokenFile}`,
          `  admin token:    ${cp.adminTokenFile} (created on the first start; firedrill login --server ${reachable} --token-file ${cp.adminTokenFile}${cp.caFingerprint ? ` --ca-fingerprint ${cp.caFingerprint}` : ""})`,
          ...(cp.caFingerprint ? [`  CA:             ${cp.caFingerprint}`] : []),
          "",
        ].join("\n"),
      );
      const received = await signal;
      logger.info({ signal: received }, "shutting down");
      await cp.close();
    });

  server
    .command("reset-admin-token")
    .description("offline: revoke the bootstrap admin token and write a new one to DATA_DIR/admin-token (for a lost token)")
    .addOption(new Option("--data-dir <dir>", "the control plane's data dir").argParser(callerPath).env("FIREDRILL_DATA_DIR"))
    .action((own: { dataDir?: string }, command: Command) => {
      // `--data-dir` is also an option of `server`, which commander gives to the parent.
      const options = { dataDir: own.dataDir ?? command.parent?.opts<{ dataDir?: string }>().dataDir };
      if (!options.dataDir) throw new CliError("--data-dir is required: the control plane's data dir, e.g. --data-dir /var/lib/firedrill");
      if (!existsSync(join(options.dataDir, DATABASE_FILE))) {
        throw new CliError(`${options.dataDir} holds no firedrill database (${DATABASE_FILE}); give the --data-dir the server runs with`);
      }
      const store = createStore({ dataDir: options.dataDir });
      try {
        const result = resetAdminToken(createIdentityStore(store.db), options.dataDir);
        ctx.io.out(
          `revoked ${result.revoked} earlier admin token${result.revoked === 1 ? "" : "s"}; the new admin token ${result.tokenId} is in ${result.file} (mode 0600)\n` +
            `log in with: firedrill login --server URL --token-file ${result.file}\n`,
        );
      } finally {
        store.close();
      }
    });
}
