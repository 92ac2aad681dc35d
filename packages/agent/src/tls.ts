/**
 * Trusting only our own control plane: the pinning probe (find the CA whose SHA-256 the join token
 * carries in the chain the server presents, before any secret is sent) and the gRPC credentials
 * that verify the server against that CA from then on.
 */
import { X509Certificate, createHash } from "node:crypto";
import { isIP } from "node:net";
import * as tls from "node:tls";
import * as grpc from "@grpc/grpc-js";

/** The serverAuth extended key usage OID. */
export const SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1";

/** The control plane did not present the CA the join token pins: it is not ours (or the token is for another one). */
export class PinMismatchError extends Error {
  override readonly name = "PinMismatchError";
  constructor(
    readonly server: string,
    /** `sha256:<hex>` of each certificate presented, leaf first. */
    readonly seen: string[],
    /** `sha256:<hex>` the join token pins. */
    readonly expected: string,
  ) {
    super(
      `the server at ${server} presented no certificate with the fingerprint the join token pins ` +
        `(expected CA ${expected}, saw ${seen.length > 0 ? seen.join(", ") : "no certificate"}): ` +
        `this is not your control plane, or the join token is for another one; the join token was not sent`,
    );
  }
}

/** Splits `host:port` (IPv6 in brackets) into its parts. */
export function splitServer(server: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(server) ?? /^([^:]+):(\d+)$/.exec(server);
  if (!m) throw new Error(`${server} is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Whether a host (name or address, IPv6 with or without brackets) is a loopback one: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost" || bare.endsWith(".localhost")) return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  if (isIP(bare) === 6) {
    if (bare === "::1" || bare === "0:0:0:0:0:0:0:1") return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
    return mapped !== null && mapped[1]!.startsWith("127.");
  }
  return false;
}

/** `sha256:` and the lowercase hex SHA-256 of a certificate's DER. */
export function fingerprintOf(der: Uint8Array): string {
  return `sha256:${createHash("sha256").update(der).digest("hex")}`;
}

/** DER to PEM. */
export function pemOf(der: Uint8Array): string {
  return `${new X509Certificate(der).toString().trim()}\n`;
}

/** Options of {@link fetchPresentedChain}. */
export interface ProbeOptions {
  /** Gives up after this long. @default 10000 */
  timeoutMs?: number;
}

/**
 * Opens a TLS connection to `server` WITHOUT verifying it, reads the certificate chain it presents
 * (leaf first, as DER) and closes the connection. Nothing is sent but the TLS handshake.
 * Thrown when the connection or handshake fails or times out.
 */
export function fetchPresentedChain(server: string, options: ProbeOptions = {}): Promise<Buffer[]> {
  const { host, port } = splitServer(server);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      ...(isIP(host) === 0 ? { servername: host } : {}),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TLS handshake with ${server} timed out`));
    }, options.timeoutMs ?? 10_000);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const chain: Buffer[] = [];
      const seen = new Set<string>();
      let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (cert?.raw && !seen.has(cert.fingerprint256)) {
        seen.add(cert.fingerprint256);
        chain.push(cert.raw);
        cert = cert.issuerCertificate;
      }
      socket.destroy();
      resolve(chain);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

/**
 * Finds the pinned CA in the chain `server` presents: the certificate whose SHA-256 is `caSha256`
 * (64 hex digits). Resolves with its PEM.
 * Thrown when none matches: PinMismatchError (nothing was sent); when the server cannot be reached:
 * the network error.
 */
export async function pinServerCa(server: string, caSha256: string, options: ProbeOptions = {}): Promise<string> {
  const chain = await fetchPresentedChain(server, options);
  const expected = `sha256:${caSha256.toLowerCase()}`;
  const found = chain.find((der) => fingerprintOf(der) === expected);
  if (!found) throw new PinMismatchError(server, chain.map(fingerprintOf), expected);
  return pemOf(found);
}

/** The certificate's SANs, as Node prints them (`DNS:a, IP Address:1.2.3.4`). */
function sanText(cert: tls.PeerCertificate): string {
  return cert.subjectaltname ?? "no subject alternative names";
}

/**
 * The server check of every verified call: Node's hostname check against the SANs, and the
 * serverAuth EKU (a certificate from the same CA made for a client, such as another agent's, must
 * not pose as the control plane). Returns the error that fails the handshake, or undefined.
 */
export function checkControlPlaneIdentity(host: string, cert: tls.PeerCertificate): Error | undefined {
  const nameError = tls.checkServerIdentity(host, cert);
  if (nameError) {
    return new Error(
      `the control plane's certificate does not name "${host}" (it names ${sanText(cert)}): ` +
        `add "${host}" to the server's --advertise, or point --server at one of those names`,
      { cause: nameError },
    );
  }
  const eku = (cert as tls.PeerCertificate & { ext_key_usage?: string[] }).ext_key_usage ?? [];
  if (!eku.includes(SERVER_AUTH_OID)) {
    return new Error(`the certificate presented by "${host}" is not a server certificate (no serverAuth extended key usage): refusing it`);
  }
  return undefined;
}

/** Options of {@link verifiedCredentials}. */
export interface VerifiedCredentialsOptions {
  /** The pinned CA, PEM: the only one trusted. */
  caPem: string;
  /** The agent's client key and certificate (PEM), once enrolled. */
  keyPem?: string;
  certPem?: string;
  /** Called with each failed server check (to log why the handshake failed). */
  onVerifyError?: (err: Error) => void;
}

/**
 * gRPC channel credentials that trust only the pinned CA, check the server's name and serverAuth
 * EKU, and present the agent's client certificate when given (mTLS).
 */
export function verifiedCredentials(options: VerifiedCredentialsOptions): grpc.ChannelCredentials {
  const key = options.keyPem !== undefined ? Buffer.from(options.keyPem) : null;
  const cert = options.certPem !== undefined ? Buffer.from(options.certPem) : null;
  return grpc.credentials.createSsl(Buffer.from(options.caPem), key, cert, {
    checkServerIdentity(host, peer) {
      const err = checkControlPlaneIdentity(host, peer);
      if (err) options.onVerifyError?.(err);
      return err;
    },
  });
}
