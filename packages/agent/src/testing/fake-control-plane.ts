/**
 * A small control plane for the agent's tests: real gRPC over real TLS on loopback, its own CA
 * (from the control plane's pki), Enroll / RenewCertificate signing the agent's CSRs, and a Connect
 * whose answer each test chooses. It records what every call carried (metadata, client certificate).
 */
import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AgentService,
  ConnectResponseSchema,
  EnrollResponseSchema,
  REFUSAL_METADATA_KEY,
  RenewCertificateResponseSchema,
  WelcomeSchema,
  addService,
  durationFromMs,
  formatJoinToken,
  timestampFromMs,
} from "@firedrill/protocol";
import type { ConnectRequest, ConnectResponse, Hello, Refusal } from "@firedrill/protocol";
import { ensureCa, issueCertificate } from "../../../control-plane/src/pki/index.js";
import type { CertificateAuthority } from "../../../control-plane/src/pki/index.js";
import { x509 } from "../x509.js";

type AuthContext = ReturnType<grpc.ServerUnaryCall<unknown, unknown>["getAuthContext"]>;

/** What one call carried. */
export interface RecordedCall {
  method: "enroll" | "renewCertificate" | "connect";
  authorization: string | undefined;
  /** The client certificate's subject CN, when one was presented. */
  clientCn: string | undefined;
  /** SHA-256 fingerprint (Node's colon form) of the client certificate. */
  clientFingerprint: string | undefined;
  hello?: Hello;
}

/** How Connect answers a Hello. */
export type ConnectBehaviour =
  | { kind: "welcome"; leaseTtlMs: number; heartbeatMs: number }
  | { kind: "refuse"; code: grpc.status; refusal?: Refusal; details: string };

export interface FakeControlPlaneOptions {
  /** Where the CA lives (ensureCa). */
  dataDir: string;
  /** TLS (default) or plain gRPC. */
  insecure?: boolean;
  /** Lifetime of issued client certificates. @default 7 days */
  clientLifetimeMs?: number;
  /** The server certificate's usage: `client` makes an impostor (clientAuth EKU only). @default server */
  serverUsage?: "server" | "client";
  /** The server certificate's names. @default localhost, 127.0.0.1 */
  dnsNames?: string[];
  ipAddresses?: string[];
}

export interface FakeControlPlane {
  address: string;
  ca: CertificateAuthority;
  /** A join token pinning this control plane's CA. */
  token: string;
  calls: RecordedCall[];
  /** Live Connect streams. */
  streams: Set<grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>>;
  connect: ConnectBehaviour;
  /** Sends a message on every live stream. */
  broadcast(message: ConnectResponse): void;
  close(): Promise<void>;
}

/** The hex SHA-256 of a CA's DER (what a join token pins). */
export function caSha256(ca: CertificateAuthority): string {
  return ca.fingerprint.replace(/^sha256:/, "");
}

/** A join token for `ca`. */
export function joinTokenFor(ca: CertificateAuthority): string {
  return formatJoinToken({ id: "jt_0123456789ab", secret: randomBytes(32).toString("base64url"), caSha256: caSha256(ca) });
}

async function signCsr(ca: CertificateAuthority, csrPem: string, agentId: string, lifetimeMs: number): Promise<{ certPem: string; notAfter: number }> {
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  if (!(await csr.verify())) throw new Error("CSR signature does not verify");
  const publicKey = await csr.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"], webcrypto as never);
  const der = createPrivateKey(ca.keyPem).export({ type: "pkcs8", format: "der" });
  const signingKey = await webcrypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const now = Math.floor(Date.now() / 1000) * 1000;
  const notAfter = now + lifetimeMs;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(8).toString("hex")}`,
    subject: `CN=${agentId}`,
    issuer: new x509.X509Certificate(ca.certPem).subject,
    notBefore: new Date(now - 1000),
    notAfter: new Date(notAfter),
    publicKey,
    signingKey: signingKey as never,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  return { certPem: `${cert.toString("pem").trim()}\n`, notAfter };
}

function peerOf(call: { getAuthContext(): AuthContext }): { cn: string | undefined; fingerprint: string | undefined } {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (!cert?.raw) return { cn: undefined, fingerprint: undefined };
  const parsed = new X509Certificate(cert.raw);
  return { cn: /(?:^|\n)CN=([^\n]+)/.exec(parsed.subject)?.[1], fingerprint: parsed.fingerprint256 };
}

function staticProvider(update: { caCertificate?: Buffer; certificate?: Buffer; privateKey?: Buffer }): grpc.experimental.CertificateProvider {
  // Asynchronously, as grpc-js's file watcher does: it registers the server's watcher after the listeners.
  return {
    addCaCertificateListener: (l) => setImmediate(() => l(update.caCertificate ? { caCertificate: update.caCertificate } : null)),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (l) =>
      setImmediate(() => l(update.certificate && update.privateKey ? { certificate: update.certificate, privateKey: update.privateKey } : null)),
    removeIdentityCertificateListener: () => {},
  };
}

function refusalError(code: grpc.status, details: string, refusal: Refusal | undefined): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  if (refusal) metadata.set(REFUSAL_METADATA_KEY, refusal);
  return { code, details, metadata };
}

/** Starts a fake control plane on 127.0.0.1 (random port). */
export async function startFakeControlPlane(options: FakeControlPlaneOptions): Promise<FakeControlPlane> {
  const ca = await ensureCa(options.dataDir);
  const calls: RecordedCall[] = [];
  const streams = new Set<grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>>();
  const plane: FakeControlPlane = {
    address: "",
    ca,
    token: joinTokenFor(ca),
    calls,
    streams,
    connect: { kind: "welcome", leaseTtlMs: 15_000, heartbeatMs: 5000 },
    broadcast(message) {
      for (const s of streams) s.write(message);
    },
    close: async () => {},
  };
  const lifetime = options.clientLifetimeMs ?? 7 * 86_400_000;
  const server = new grpc.Server();
  const record = (method: RecordedCall["method"], call: { metadata: grpc.Metadata; getAuthContext(): AuthContext }): RecordedCall => {
    const peer = peerOf(call);
    const entry: RecordedCall = {
      method,
      authorization: call.metadata.get("authorization")[0]?.toString(),
      clientCn: peer.cn,
      clientFingerprint: peer.fingerprint,
    };
    calls.push(entry);
    return entry;
  };
  addService(server, AgentService, {
    enroll(call, callback) {
      record("enroll", call);
      const agentId = `agt_${randomBytes(8).toString("hex")}`;
      signCsr(ca, call.request.csrPem, agentId, lifetime).then(
        ({ certPem, notAfter }) =>
          callback(null, create(EnrollResponseSchema, { agentId, certificatePem: certPem, caCertificatePem: ca.certPem, notAfter: timestampFromMs(notAfter) })),
        (err: Error) => callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message }),
      );
    },
    renewCertificate(call, callback) {
      const entry = record("renewCertificate", call);
      if (!entry.clientCn) {
        callback(refusalError(grpc.status.UNAUTHENTICATED, "no client certificate", "not-enrolled"));
        return;
      }
      signCsr(ca, call.request.csrPem, entry.clientCn, lifetime).then(
        ({ certPem, notAfter }) => callback(null, create(RenewCertificateResponseSchema, { certificatePem: certPem, notAfter: timestampFromMs(notAfter) })),
        (err: Error) => callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message }),
      );
    },
    connect(call) {
      const entry = record("connect", call);
      call.once("data", (message: ConnectRequest) => {
        if (message.message.case !== "hello") return;
        entry.hello = message.message.value;
        const behaviour = plane.connect;
        if (behaviour.kind === "refuse") {
          call.emit("error", refusalError(behaviour.code, behaviour.details, behaviour.refusal));
          return;
        }
        streams.add(call);
        call.write(
          create(ConnectResponseSchema, {
            message: {
              case: "welcome",
              value: create(WelcomeSchema, {
                agentId: entry.hello.agentId,
                leaseTtl: durationFromMs(behaviour.leaseTtlMs),
                heartbeatInterval: durationFromMs(behaviour.heartbeatMs),
              }),
            },
          }),
        );
      });
      call.on("error", () => streams.delete(call));
      call.on("end", () => {
        streams.delete(call);
        call.end();
      });
      call.on("cancelled", () => streams.delete(call));
    },
  });
  let credentials: grpc.ServerCredentials;
  if (options.insecure) {
    credentials = grpc.ServerCredentials.createInsecure();
  } else {
    const leaf = await issueCertificate(ca, {
      commonName: "fake control plane",
      dnsNames: options.dnsNames ?? ["localhost"],
      ipAddresses: options.ipAddresses ?? ["127.0.0.1"],
      usage: options.serverUsage ?? "server",
    });
    credentials = grpc.experimental.createCertificateProviderServerCredentials(
      staticProvider({ certificate: Buffer.from(`${leaf.certPem}${ca.certPem}`), privateKey: Buffer.from(leaf.keyPem) }),
      staticProvider({ caCertificate: Buffer.from(ca.certPem) }),
      false,
    );
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  plane.address = `127.0.0.1:${port}`;
  // The certificate providers answer on the next tick.
  await new Promise((resolve) => setTimeout(resolve, 20));
  plane.close = () =>
    new Promise<void>((resolve) => {
      for (const s of streams) s.end();
      server.tryShutdown(() => resolve());
      setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 1000).unref();
    });
  return plane;
}
