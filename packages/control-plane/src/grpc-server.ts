/** The gRPC listener agents connect to. */
import * as grpc from "@grpc/grpc-js";
import { AgentService, addService } from "@firedrill/protocol";
import type { Logger } from "pino";
import { formatHostPort, isLoopbackHost, parseHostPort } from "./address.js";
import { ListenError } from "./errors.js";
import type { AgentHub } from "./hub/agent-hub.js";
import type { EnrollmentService } from "./enrollment/service.js";

/** Options of {@link startGrpcServer}. */
export interface GrpcServerOptions {
  /** `host:port`; port 0 picks a free port. */
  addr: string;
  hub: AgentHub;
  logger: Logger;
  /** Enroll and RenewCertificate; without TLS they are not served. */
  enrollment?: Pick<EnrollmentService, "enroll" | "renewCertificate">;
  /**
   * TLS: the server's certificate chain and key (PEM) and the CA whose client certificates are
   * requested (not required: enrollment happens before an agent has one). Without it the port is
   * plain gRPC (insecure-agents mode, loopback only).
   */
  tls?: { certChain: string; key: string; ca: string };
}

/** A running gRPC listener. */
export interface GrpcServer {
  /** The bound `host:port`. */
  readonly address: string;
  readonly secure: boolean;
  /** Stops accepting calls and waits (at most `graceMs`) for open calls to finish. */
  close(graceMs?: number): Promise<void>;
}

/** A certificate provider that always answers with the same PEMs. */
function staticProvider(update: { ca?: Buffer; certificate?: Buffer; privateKey?: Buffer }): grpc.experimental.CertificateProvider {
  // grpc-js registers the listener before the watcher that applies the update: answer on the next turn.
  return {
    addCaCertificateListener: (listener) => setImmediate(() => listener(update.ca ? { caCertificate: update.ca } : null)),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) =>
      setImmediate(() => listener(update.certificate && update.privateKey ? { certificate: update.certificate, privateKey: update.privateKey } : null)),
    removeIdentityCertificateListener: () => {},
  };
}

function credentials(options: GrpcServerOptions): grpc.ServerCredentials {
  if (!options.tls) return grpc.ServerCredentials.createInsecure();
  // Request a client certificate but do not require one: an agent enrolls before it has one, and
  // the hub checks the certificate itself (issued by the CA, not expired, not revoked).
  return grpc.experimental.createCertificateProviderServerCredentials(
    staticProvider({ certificate: Buffer.from(options.tls.certChain), privateKey: Buffer.from(options.tls.key) }),
    staticProvider({ ca: Buffer.from(options.tls.ca) }),
    false,
  );
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
    // Bounded input: no agent message is larger than this.
    "grpc.max_receive_message_length": 256 * 1024,
    // Channelz keeps per-call statistics for a debugging service we do not serve: a cost per
    // message and per connection that shows in profiles at 10,000 agents.
    "grpc.enable_channelz": 0,
  });
  const refuseEnroll: grpc.handleUnaryCall<unknown, never> = (_call, callback) =>
    callback({ code: grpc.status.UNIMPLEMENTED, details: "this control plane runs with --insecure-agents: agents connect with the join token, no enrollment" } as grpc.ServiceError);
  addService(server, AgentService, {
    connect: options.hub.connect,
    enroll: options.enrollment?.enroll ?? refuseEnroll,
    renewCertificate: options.enrollment?.renewCertificate ?? refuseEnroll,
  });
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
      "the agent port is insecure (no TLS) on a non-loopback address: join tokens and fault commands cross the network in clear text",
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
