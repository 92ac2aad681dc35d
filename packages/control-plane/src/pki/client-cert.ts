/**
 * Agent client certificates, issued from a certificate signing request (the agent keeps its key):
 * subject CN = the agent id (chosen by the control plane, never by the CSR), EKU clientAuth only,
 * short-lived. And the check of a presented client certificate against the CA.
 */
import { X509Certificate, webcrypto } from "node:crypto";
import { certificateFingerprint, certificatePem, importSigningKey, randomSerialNumber, PkiError } from "./ca.js";
import type { CertificateAuthority } from "./ca.js";
import { x509 } from "./x509.js";

type CryptoKey = webcrypto.CryptoKey;

const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;
/** The longest CSR accepted, in characters of PEM. */
export const MAX_CSR_LENGTH = 4096;
/** Client certificates are backdated this much against clock skew. */
const BACKDATE_MS = 5 * 60_000;

/** A client certificate issued for an agent. */
export interface ClientCertificate {
  certPem: string;
  serialNumber: string;
  notAfter: Date;
  fingerprint: string;
}

/**
 * Verifies a PEM CSR (its signature proves the key) and returns its ECDSA P-256 public key.
 * Thrown when it is malformed, too large, badly signed or not P-256: PkiError saying which.
 */
export async function csrPublicKey(csrPem: string): Promise<CryptoKey> {
  if (typeof csrPem !== "string" || csrPem.length === 0 || csrPem.length > MAX_CSR_LENGTH) {
    throw new PkiError(`the certificate signing request must be a PEM CSR of at most ${MAX_CSR_LENGTH} characters`);
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new PkiError(`the certificate signing request is not a PKCS#10 PEM: ${(err as Error).message}`);
  }
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") {
    throw new PkiError("the certificate signing request must be for an ECDSA P-256 key");
  }
  if (!(await csr.verify())) throw new PkiError("the certificate signing request's signature does not verify");
  return (await csr.publicKey.export(EC_KEY, ["verify"], webcrypto as never)) as CryptoKey;
}

/**
 * Issues an agent's client certificate for `publicKey`: CN = `agentId`, EKU clientAuth, valid
 * `lifetimeMs`. Thrown when the CA key cannot be read: Error from node:crypto.
 */
export async function issueClientCertificate(
  ca: CertificateAuthority,
  publicKey: CryptoKey,
  agentId: string,
  lifetimeMs: number,
  now = Date.now(),
): Promise<ClientCertificate> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const serialNumber = randomSerialNumber();
  const second = Math.floor(now / 1000) * 1000;
  const notAfter = new Date(second + lifetimeMs);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  if (caKeyId !== undefined) extensions.push(new x509.AuthorityKeyIdentifierExtension(caKeyId));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: [{ CN: [agentId] }],
    issuer: caCert.subjectName,
    notBefore: new Date(second - BACKDATE_MS),
    notAfter,
    publicKey,
    signingKey: await importSigningKey(ca.keyPem),
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return { certPem: certificatePem(cert), serialNumber, notAfter, fingerprint: certificateFingerprint(new Uint8Array(cert.rawData)) };
}

/** A verified client certificate: whose it is. */
export interface PeerIdentity {
  agentId: string;
  serialNumber: string;
  notAfter: number;
}

/**
 * Checks a client certificate (DER, as the TLS layer saw it; the handshake proved the key) against
 * the CA: signed by it, within its validity, EKU clientAuth, a CN. Returns why not as a string.
 */
export function verifyClientCertificate(der: Buffer, ca: X509Certificate, now = Date.now()): PeerIdentity | string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return "the client certificate cannot be parsed";
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return "the client certificate is not issued by this control plane's CA";
  if (Date.parse(cert.validFrom) > now + BACKDATE_MS) return "the client certificate is not valid yet";
  const notAfter = Date.parse(cert.validTo);
  if (notAfter <= now) return `the client certificate expired at ${new Date(notAfter).toISOString()}`;
  if (cert.keyUsage !== undefined && !cert.keyUsage.includes("1.3.6.1.5.5.7.3.2")) return "the certificate is not a client certificate";
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  if (!cn) return "the client certificate names no agent (no CN)";
  return { agentId: cn, serialNumber: cert.serialNumber.toLowerCase(), notAfter };
}
