/** The gRPC listener agents connect to. */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { AgentService, addService } from "@firedrill/protocol";
import type { Logger } from "pino";
import { formatHostPort, isLoopbackHost, parseHostPort } from "./address.js";
import { ListenError } from "./errors.js";
import type { AgentHub } from "./hub/agent-hub.js";

/** Options of {@link startGrpcServer}. */
export interface GrpcServerOptions {
  /** `host:port`; port 0 picks a free port. */
  addr: string;
  hub: AgentHub;
  logger: Logger;
  /** PEM files; without them the port is insecure. */
  tls?: { certFile: string; keyFile: string };
}

/** A running gRPC listener. */
export interface GrpcServer {
  /** The bound `host:port`. */
  readonly address: string;
  readonly secure: boolean;
  /** Stops accepting calls and waits (at most `graceMs`) for open calls to finish. */
  close(graceMs?: number): Promise<void>;
}

function credentials(options: GrpcServerOptions): grpc.ServerCredentials {
  if (!options.tls) return grpc.ServerCredentials.createInsecure();
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ListenError(`cannot read the TLS ${what} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const cert = read(options.tls.certFile, "certificate (--tls-cert)");
  const key = read(options.tls.keyFile, "key (--tls-key)");
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
}

/** Binds the gRPC port and serves `AgentService` through the hub. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const log = options.logger;
  const parsed = parseHostPort(options.addr);
  if (!parsed) throw new ListenError(`${JSON.stringify(options.addr)} is not a host:port address`);
  const creds = credentials(options);
  const server = new grpc.Server({
    // Agents keep one long-lived stream; let the transport notice dead peers.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
  });
  addService(server, AgentService, { connect: options.hub.connect });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatHostPort(parsed.host, parsed.port), creds, (err, boundPort) => {
      if (err) {
        reject(
          new ListenError(
            `cannot listen for agents on ${options.addr} (gRPC): ${err.message}; choose another --grpc-addr or stop what holds the port`,
            { cause: err },
          ),
        );
      } else resolve(boundPort);
    });
  });
  const address = formatHostPort(parsed.host, port);
  const secure = options.tls !== undefined;
  if (!secure && !isLoopbackHost(parsed.host)) {
    log.warn(
      { address },
      "the agent port is insecure (no TLS) on a non-loopback address: join tokens and fault commands cross the network in clear text; pass --tls-cert and --tls-key",
    );
  }
  log.info({ address, tls: secure }, "listening for agents (gRPC)");
  return {
    address,
    secure,
    close(graceMs = 2000) {
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
