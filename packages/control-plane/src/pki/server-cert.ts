/**
 * Certificates signed by the control plane's CA: the HTTP API's TLS server certificate, kept in
 * `<dataDir>/pki/http.crt` / `http.key` and reissued when its names change or it nears expiry,
 * and (through {@link issueCertificate}) client certificates.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { isIP } from "node:net";
import { join } from "node:path";
import {
  PkiError,
  SIGNING_ALGORITHM,
  certificateFingerprint,
  certificatePem,
  generateKeyPair,
  importSigningKey,
  privateKeyPem,
  randomSerialNumber,
  validity,
} from "./ca.js";
import type { CertificateAuthority } from "./ca.js";
import { ensurePkiDir, narrowMode, readIfExists, writeFileAtomic } from "./files.js";
import { x509 } from "./x509.js";

/** The HTTP API certificate's file name inside `<dataDir>/pki` (leaf and CA, PEM). */
export const HTTP_CERT_FILE = "http.crt";
/** The HTTP API key's file name inside `<dataDir>/pki` (PKCS#8 PEM, mode 0600). */
export const HTTP_KEY_FILE = "http.key";
/** How long a new leaf certificate is valid (the most browsers and Apple platforms accept). */
export const LEAF_VALIDITY_DAYS = 397;
/** A stored server certificate with fewer days left than this is reissued. */
export const RENEW_BEFORE_DAYS = 30;

const DAY_MS = 86_400_000;
/** A CN holds at most 64 characters (RFC 5280 ub-common-name). */
const MAX_CN_LENGTH = 64;
const DNS_NAME = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** What {@link issueCertificate} makes. */
export interface IssueCertificateOptions {
  /** The subject's CN. */
  commonName: string;
  /** DNS SANs. @default [] */
  dnsNames?: readonly string[];
  /** IP SANs (IPv4 or IPv6). @default [] */
  ipAddresses?: readonly string[];
  /** `server`: serverAuth EKU (a TLS server); `client`: clientAuth EKU (e.g. an agent). */
  usage: "server" | "client";
  /** @default 397 */
  days?: number;
}

/** A certificate made by {@link issueCertificate}. */
export interface IssuedCertificate {
  /** The leaf certificate alone, PEM. */
  certPem: string;
  /** Its private key, PKCS#8 PEM. */
  keyPem: string;
  /** `sha256:<hex>` of the leaf's DER. */
  fingerprint: string;
  /** Hex. */
  serialNumber: string;
  notAfter: Date;
}

/** The HTTP API's certificate, from {@link ensureServerCert}. */
export interface ServerCertificate {
  /** The leaf and the CA certificate, PEM: what the TLS server presents. */
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  /** The SANs, canonical (DNS names lowercase, IPv6 compressed), in the order asked. */
  names: string[];
  notAfter: Date;
  /** True when a new certificate was issued by this call, false when the stored one was reused. */
  issued: boolean;
}

type SanName = { type: "dns" | "ip"; value: string };

/** The canonical form of an IPv6 address (compressed, lowercase, embedded IPv4 as hex). */
function canonicalIpv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/**
 * A SAN for `name`: an IP SAN when it parses as an IPv4 or IPv6 address (brackets allowed), else a
 * DNS SAN (lowercase, without a trailing dot).
 * Thrown when `name` is neither: PkiError.
 */
export function sanFor(name: string): SanName {
  const trimmed = name.trim();
  const bare = trimmed.startsWith("[") && trimmed.endsWith("]") ? trimmed.slice(1, -1) : trimmed;
  const family = isIP(bare);
  if (family === 4) return { type: "ip", value: bare };
  if (family === 6) {
    try {
      return { type: "ip", value: canonicalIpv6(bare) };
    } catch {
      throw new PkiError(`${JSON.stringify(name)} is an IPv6 address with a zone; a certificate can name the address without the zone (%…)`);
    }
  }
  const dns = bare.toLowerCase().replace(/\.$/, "");
  if (dns.length > 253 || !DNS_NAME.test(dns)) {
    throw new PkiError(`${JSON.stringify(name)} is neither a DNS name nor an IP address; a certificate can only name those`);
  }
  return { type: "dns", value: dns };
}

const sanKey = (san: SanName) => `${san.type}:${san.value}`;

/**
 * Issues a certificate signed by `ca`: a new ECDSA P-256 key, digitalSignature key usage, the
 * serverAuth or clientAuth EKU, and the given SANs.
 * Thrown when a name is invalid: PkiError; when the CA key cannot be read: Error from node:crypto.
 */
export async function issueCertificate(ca: CertificateAuthority, options: IssueCertificateOptions): Promise<IssuedCertificate> {
  const ips = (options.ipAddresses ?? []).map((address) => {
    const san = sanFor(address);
    if (san.type !== "ip") throw new PkiError(`${JSON.stringify(address)} is not an IP address; give DNS names as dnsNames`);
    return san;
  });
  const sans: SanName[] = [...(options.dnsNames ?? []).map((n) => sanFor(n)), ...ips];
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const signingKey = await importSigningKey(ca.keyPem);
  const keys = await generateKeyPair();
  const serialNumber = randomSerialNumber();
  const times = validity(options.days ?? LEAF_VALIDITY_DAYS);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([options.usage === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (caKeyId !== undefined) extensions.push(new x509.AuthorityKeyIdentifierExtension(caKeyId));
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: [{ CN: [options.commonName.slice(0, MAX_CN_LENGTH)] }],
    issuer: caCert.subjectName,
    ...times,
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return {
    certPem: certificatePem(cert),
    keyPem: await privateKeyPem(keys.privateKey),
    fingerprint: certificateFingerprint(new Uint8Array(cert.rawData)),
    serialNumber,
    notAfter: times.notAfter,
  };
}

/** The SANs of a certificate as canonical `type:value` keys. */
function sansOf(cert: X509Certificate): Set<string> {
  const parsed = new x509.X509Certificate(cert.raw);
  const names = parsed.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  const keys = new Set<string>();
  for (const name of names) {
    if (name.type !== "dns" && name.type !== "ip") {
      keys.add(`${name.type}:${name.value}`);
      continue;
    }
    try {
      keys.add(sanKey(sanFor(name.value)));
    } catch {
      keys.add(`${name.type}:${name.value}`);
    }
  }
  return keys;
}

/** Whether the stored certificate can be served for `wanted`. */
function reusable(certPem: string, keyPem: string, ca: CertificateAuthority, wanted: Set<string>): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return false;
  } catch {
    return false;
  }
  const caCert = new X509Certificate(ca.certPem);
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return false;
  if (Date.parse(cert.validTo) - Date.now() <= RENEW_BEFORE_DAYS * DAY_MS) return false;
  const have = sansOf(cert);
  return have.size === wanted.size && [...wanted].every((k) => have.has(k));
}

/**
 * The HTTP API's TLS certificate for `names` (each a DNS name or an IP address), signed by `ca`:
 * reuses `<dataDir>/pki/http.crt` and `http.key` when the certificate names exactly these (as a
 * set), has more than 30 days left and is signed by `ca`; otherwise issues a new one (397 days) and
 * stores it atomically (both files mode 0600).
 * Thrown when `names` is empty or holds an invalid name: PkiError; filesystem errors as they are.
 */
export async function ensureServerCert(dataDir: string, ca: CertificateAuthority, names: readonly string[]): Promise<ServerCertificate> {
  const sans: SanName[] = [];
  const wanted = new Set<string>();
  for (const name of names) {
    const san = sanFor(name);
    if (wanted.has(sanKey(san))) continue;
    wanted.add(sanKey(san));
    sans.push(san);
  }
  if (sans.length === 0) throw new PkiError("the HTTP API certificate needs at least one name (a DNS name or an IP address)");
  const canonical = sans.map((s) => s.value);
  const dir = await ensurePkiDir(dataDir);
  const certFile = join(dir, HTTP_CERT_FILE);
  const keyFile = join(dir, HTTP_KEY_FILE);
  const storedCert = await readIfExists(certFile);
  const storedKey = await readIfExists(keyFile);
  if (storedCert !== undefined && storedKey !== undefined && reusable(storedCert, storedKey, ca, wanted)) {
    await narrowMode(keyFile, 0o600);
    const leaf = new X509Certificate(storedCert);
    return { certPem: `${leaf.toString().trim()}\n${ca.certPem}`, keyPem: storedKey, names: canonical, notAfter: new Date(leaf.validTo), issued: false };
  }
  const issued = await issueCertificate(ca, {
    commonName: canonical[0]!,
    dnsNames: sans.filter((s) => s.type === "dns").map((s) => s.value),
    ipAddresses: sans.filter((s) => s.type === "ip").map((s) => s.value),
    usage: "server",
  });
  const chain = `${issued.certPem}${ca.certPem}`;
  // Key first: a stop between the two writes leaves a key that does not match the old
  // certificate, which the next start notices and reissues.
  await writeFileAtomic(keyFile, issued.keyPem, 0o600);
  await writeFileAtomic(certFile, chain, 0o600);
  return { certPem: chain, keyPem: issued.keyPem, names: canonical, notAfter: issued.notAfter, issued: true };
}
