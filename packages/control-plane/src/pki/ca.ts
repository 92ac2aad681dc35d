/**
 * The control plane's own certificate authority: an ECDSA P-256 key and a self-signed CA
 * certificate kept in `<dataDir>/pki`, made on the first start. It signs the HTTP API's TLS
 * certificate (and later the agents' client certificates); clients pin it by its SHA-256
 * fingerprint, which the server prints at start.
 */
import { X509Certificate, createHash, createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { join } from "node:path";
import { ensurePkiDir, narrowMode, readIfExists, writeFileAtomic } from "./files.js";
import { x509 } from "./x509.js";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The CA certificate's file name inside `<dataDir>/pki`. */
export const CA_CERT_FILE = "ca.crt";
/** The CA private key's file name inside `<dataDir>/pki` (PKCS#8 PEM, mode 0600). */
export const CA_KEY_FILE = "ca.key";
/** How long a new CA is valid. */
export const CA_VALIDITY_DAYS = 3650;

const DAY_MS = 86_400_000;
/** Certificates start a little in the past so that a client whose clock lags still accepts them. */
const BACKDATE_MS = 5 * 60_000;
const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
/** ECDSA with SHA-256: the signature algorithm of every certificate. */
export const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;

/** The control plane's CA. */
export interface CertificateAuthority {
  /** The CA certificate, PEM. */
  certPem: string;
  /** The CA private key, PKCS#8 PEM. */
  keyPem: string;
  /** `sha256:` and the lowercase hex SHA-256 of the certificate's DER: what clients pin. */
  fingerprint: string;
  /** The certificate's subject, e.g. `CN=firedrill control plane CA 3f9a01c2`. */
  subject: string;
  notAfter: Date;
}

/** The CA or a certificate in `<dataDir>/pki` cannot be used as it is. The message says which file and what to do. */
export class PkiError extends Error {
  override readonly name = "PkiError";
  constructor(
    message: string,
    /** The file at fault, when there is one. */
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function derOf(cert: string | Uint8Array): Uint8Array {
  return typeof cert === "string" ? new X509Certificate(cert).raw : cert;
}

/**
 * The SHA-256 fingerprint of a certificate: `sha256:` and 64 lowercase hex digits.
 * @param cert PEM (the first certificate of a chain is used) or DER bytes.
 * Thrown when a PEM string holds no certificate: Error from node:crypto.
 */
export function certificateFingerprint(cert: string | Uint8Array): string {
  return `sha256:${createHash("sha256").update(derOf(cert)).digest("hex")}`;
}

/**
 * Reads a fingerprint as people write it: with or without a `sha256:` (or `SHA256=`) prefix, hex
 * with or without colons, any case. Returns the canonical `sha256:<lowercase hex>`, or undefined
 * when `text` is not a SHA-256 fingerprint.
 */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text
    .trim()
    .replace(/^sha-?256\s*[:=]?\s*/i, "")
    .replace(/[:\s]/g, "");
  return /^[0-9a-f]{64}$/i.test(hex) ? `sha256:${hex.toLowerCase()}` : undefined;
}

/**
 * A fingerprint in the colon-separated uppercase form of `openssl x509 -noout -fingerprint -sha256`
 * (`AB:12:…`), for comparing by eye. Returns `fingerprint` unchanged when it is not a SHA-256 fingerprint.
 */
export function formatFingerprint(fingerprint: string): string {
  const canonical = normalizeFingerprint(fingerprint);
  if (canonical === undefined) return fingerprint;
  return (canonical.slice("sha256:".length).toUpperCase().match(/../g) ?? []).join(":");
}

/** A positive random 128-bit serial number, hex. */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = 0x40 | (bytes[0]! & 0x3f);
  return bytes.toString("hex");
}

/** Validity of a certificate made now for `days`. */
export function validity(days: number, now: number = Date.now()): { notBefore: Date; notAfter: Date } {
  // Certificates hold whole seconds.
  const second = Math.floor(now / 1000) * 1000;
  return { notBefore: new Date(second - BACKDATE_MS), notAfter: new Date(second + days * DAY_MS) };
}

/** A new exportable ECDSA P-256 key pair. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A private CryptoKey as PKCS#8 PEM. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END PRIVATE KEY-----\n`;
}

/** Imports a PKCS#8 PEM ECDSA P-256 private key for signing. */
export async function importSigningKey(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ type: "pkcs8", format: "der" });
  return (await webcrypto.subtle.importKey("pkcs8", der, EC_KEY, false, ["sign"])) as CryptoKey;
}

/** A certificate as PEM with a trailing newline. */
export function certificatePem(cert: x509.X509Certificate): string {
  return `${cert.toString("pem").trim()}\n`;
}

async function createCa(): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: `CN=firedrill control plane CA ${randomBytes(4).toString("hex")}`,
    ...validity(CA_VALIDITY_DAYS),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      // pathLen 0: this CA signs leaf certificates only.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: certificatePem(cert), keyPem: await privateKeyPem(keys.privateKey) };
}

/** Checks a loaded CA pair; resolves with the CA. */
function loadCa(certPem: string, keyPem: string, certFile: string, keyFile: string): CertificateAuthority {
  const remedy = `to start over with a new CA, move ${certFile} and ${keyFile} away and restart (every client that pinned the old CA must then log in again with the new fingerprint)`;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new PkiError(`${certFile} is not a PEM certificate (${(err as Error).message}); ${remedy}`, certFile, { cause: err });
  }
  if (!cert.ca) throw new PkiError(`${certFile} is not a CA certificate (basicConstraints CA:true is missing); ${remedy}`, certFile);
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new PkiError(`${keyFile} is not a PEM private key (${(err as Error).message}); ${remedy}`, keyFile, { cause: err });
  }
  if (!matches) throw new PkiError(`${keyFile} is not the private key of the CA certificate ${certFile}; ${remedy}`, keyFile);
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= Date.now()) {
    throw new PkiError(`the control plane's CA ${certFile} expired on ${notAfter.toISOString()}; ${remedy}`, certFile);
  }
  return { certPem, keyPem, fingerprint: certificateFingerprint(cert.raw), subject: cert.subject, notAfter };
}

/**
 * The control plane's CA: loads `<dataDir>/pki/ca.crt` and `ca.key`, or on the first call creates
 * them (`<dataDir>` and `pki` with mode 0700, the certificate 0644, the key 0600, each written
 * atomically). A key file readable by others is narrowed to 0600.
 * Thrown when the stored CA cannot be used (key missing or not matching, not a CA, expired):
 * PkiError naming the file and what to do; filesystem errors as they are.
 */
export async function ensureCa(dataDir: string): Promise<CertificateAuthority> {
  const dir = await ensurePkiDir(dataDir);
  const certFile = join(dir, CA_CERT_FILE);
  const keyFile = join(dir, CA_KEY_FILE);
  const storedCert = await readIfExists(certFile);
  if (storedCert === undefined) {
    // No certificate: a first start (or one that stopped between the two writes; a key alone is
    // useless to anyone, since no client can have pinned a certificate that was never written).
    const made = await createCa();
    await writeFileAtomic(keyFile, made.keyPem, 0o600);
    await writeFileAtomic(certFile, made.certPem, 0o644);
    return loadCa(made.certPem, made.keyPem, certFile, keyFile);
  }
  const storedKey = await readIfExists(keyFile);
  if (storedKey === undefined) {
    throw new PkiError(
      `the control plane's CA key ${keyFile} is missing, but its certificate ${certFile} is there: restore the key from a backup, or move ${certFile} away and restart to create a new CA (every client that pinned the old CA must then log in again with the new fingerprint)`,
      keyFile,
    );
  }
  await narrowMode(keyFile, 0o600);
  return loadCa(storedCert, storedKey, certFile, keyFile);
}
