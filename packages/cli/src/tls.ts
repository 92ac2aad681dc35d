/**
 * TLS for the CLI: trusting exactly a pinned CA, reading a server's certificate chain without
 * trusting it (for `firedrill login --ca-fingerprint`), and explaining verification failures.
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { connect } from "node:tls";
import type { DetailedPeerCertificate } from "node:tls";
import { certificateFingerprint } from "@firedrill/control-plane";
import { Agent } from "undici";
import type { Dispatcher } from "undici";
import { ServerUnreachableError, TlsVerificationError } from "./errors.js";

/** Certificate verification failures reported by Node's TLS (OpenSSL's codes and Node's hostname check). */
const VERIFY_CODES = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "CERT_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Whether `hostname` (as in a URL, IPv6 in brackets) is this machine: localhost, 127.0.0.0/8, ::1. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || /^::ffff:(127\.|7f)/.test(host);
  return false;
}

/**
 * An undici dispatcher that trusts exactly `caCert` (hostnames are still verified); undefined
 * without one, for the system's trusted CAs.
 */
export function createDispatcher(caCert: string | undefined): Dispatcher | undefined {
  return caCert === undefined ? undefined : new Agent({ connect: { ca: caCert } });
}

/** The TLS verification failure in `err` or its causes: its code and text. */
export function tlsVerifyFailure(err: unknown): { code: string; detail: string } | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && VERIFY_CODES.has(code)) return { code, detail: e.message };
  }
  return undefined;
}

/** Where a pinned CA came from, for messages. */
export interface PinnedCa {
  fingerprint: string | undefined;
  /** e.g. `the config file F`, `--ca-fingerprint`. */
  source: string;
}

/**
 * The error for a verification failure talking to `server`; `pinned` when a CA was pinned;
 * `savedServer` when the config file holds credentials (and maybe a pinned CA) for another server.
 */
export function tlsError(
  server: string,
  failure: { code: string; detail: string },
  pinned: PinnedCa | undefined,
  options?: { cause?: unknown; savedServer?: string | undefined },
): TlsVerificationError {
  const url = new URL(server);
  const login = `firedrill login --server ${server} --token-file FILE --ca-fingerprint sha256:…`;
  const what = `the TLS certificate of the control plane at ${server} could not be verified (${failure.code}: ${failure.detail})`;
  let message: string;
  if (failure.code === "ERR_TLS_CERT_ALTNAME_INVALID" || failure.code === "HOSTNAME_MISMATCH") {
    message = `${what}: it is not issued for ${url.hostname}. Connect by a name or address the certificate holds, or add ${url.hostname} to the server's names (firedrill server --advertise ${url.hostname}, which reissues the certificate of its own CA)`;
  } else if (failure.code === "CERT_HAS_EXPIRED" || failure.code === "CERT_NOT_YET_VALID") {
    message = `${what}: ${failure.code === "CERT_HAS_EXPIRED" ? "it has expired" : "it is not valid yet"} (check this machine's clock). firedrill server renews the certificate its CA issued when it starts; a certificate given with --http-tls-cert must be renewed by its owner`;
  } else if (pinned) {
    message = `${what}: it is not signed by the pinned CA${pinned.fingerprint ? ` ${pinned.fingerprint}` : ""} (from ${pinned.source}). If the server's CA was replaced, get the new fingerprint from its operator (firedrill server prints it at start) and log in again: ${login}`;
  } else {
    message = `${what}: it is not signed by a CA this machine trusts. If the server uses its own CA, pin it: ${login} (firedrill server prints the CA fingerprint at start)`;
    if (options?.savedServer) message += `; the CA and token saved by firedrill login are for ${options.savedServer}: to use them, give that as --server`;
  }
  return new TlsVerificationError(server, failure.code, message, options?.cause === undefined ? undefined : { cause: options.cause });
}

/** A certificate a server presented. */
export interface PeerCertificate {
  fingerprint: string;
  pem: string;
  subject: string;
  /** Whether it may sign certificates (basicConstraints CA:true). */
  ca: boolean;
}

/**
 * Connects to an https `server` without verifying it and resolves with the certificates it
 * presents, leaf first (following each certificate's issuer).
 * Thrown when the server cannot be reached or does not speak TLS: ServerUnreachableError.
 */
export function fetchPeerCertificates(server: string, timeoutMs = 10_000): Promise<PeerCertificate[]> {
  const url = new URL(server);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 443);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ServerUnreachableError(server, `no TLS handshake within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const chain: PeerCertificate[] = [];
      let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (cert?.raw && !chain.some((c) => c.fingerprint === certificateFingerprint(cert!.raw))) {
        const parsed = new X509Certificate(cert.raw);
        chain.push({ fingerprint: certificateFingerprint(cert.raw), pem: parsed.toString(), subject: parsed.subject, ca: parsed.ca });
        cert = cert.issuerCertificate as DetailedPeerCertificate | undefined;
      }
      socket.end();
      socket.destroy();
      resolve(chain);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      const detail = /wrong version number|packet length too long|unknown protocol/i.test(err.message)
        ? `${err.code ?? "TLS error"}: it does not speak TLS on this port; is it an http:// server?`
        : (err.code ?? err.message);
      reject(new ServerUnreachableError(server, detail, { cause: err }));
    });
  });
}
