/**
 * The agent's mTLS identity: its key, its client certificate and the pinned CA in the state dir,
 * enrollment with a join token (after the server proved it holds the pinned CA), and renewal well
 * before the certificate expires.
 */
import { X509Certificate, createPrivateKey, webcrypto } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AGENT_TOKEN_METADATA_KEY,
  AgentService,
  EnrollRequestSchema,
  REFUSAL_METADATA_KEY,
  RenewCertificateRequestSchema,
  bearer,
  createClientConstructor,
  parseRefusal,
} from "@firedrill/protocol";
import type { ClientOf, EnrollResponse, JoinTokenParts, Refusal, RenewCertificateResponse } from "@firedrill/protocol";
import type { Logger } from "pino";
import { describeConnectFailure } from "./connect-error.js";
import { removeFileDurable, writeFileDurable } from "./fs-util.js";
import { PinMismatchError, fingerprintOf, pinServerCa, verifiedCredentials } from "./tls.js";
import { x509 } from "./x509.js";

/** The agent's private key (PKCS#8 PEM, mode 0600). */
export const AGENT_KEY_FILE = "agent.key";
/** A renewed key, written before the certificate it belongs to (see {@link writeRenewedIdentity}). */
const NEXT_KEY_FILE = "agent.key.next";
/** The agent's client certificate (PEM). */
export const AGENT_CERT_FILE = "agent.crt";
/** The control plane's CA certificate, pinned by the join token at enrollment (PEM). */
export const CA_CERT_FILE = "ca.crt";
/** The agent id (the certificate's subject CN), for people and scripts. */
export const AGENT_ID_FILE = "agent-id";

/** The agent's identity as stored in its state dir. */
export interface StoredIdentity {
  /** The agent id: the certificate's subject CN, chosen by the control plane. */
  agentId: string;
  keyPem: string;
  certPem: string;
  /** The pinned CA certificate. */
  caPem: string;
  /** `sha256:<hex>` of the CA certificate's DER. */
  caFingerprint: string;
  /** When the certificate's lifetime started for renewal purposes: the later of its notBefore and when it was stored (epoch ms). */
  issuedAt: number;
  /** Epoch ms. */
  notAfter: number;
}

/** Why no usable identity was loaded (for the log), or the identity. */
export type IdentityLoad = { identity: StoredIdentity; problem?: undefined } | { identity?: undefined; problem: string | undefined };

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** The subject CN of a certificate, if any. */
export function commonNameOf(cert: X509Certificate): string | undefined {
  return /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
}

function keyMatches(cert: X509Certificate, keyPem: string): boolean {
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/**
 * Checks that `certPem` is a client certificate for `keyPem` issued by `caPem`, naming an agent.
 * Returns the parsed certificate and its CN, or why not.
 */
export function checkClientCertificate(certPem: string, keyPem: string, caPem: string): { cert: X509Certificate; agentId: string } | string {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    ca = new X509Certificate(caPem);
  } catch (err) {
    return `a certificate cannot be parsed (${(err as Error).message})`;
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return "the certificate is not issued by the pinned CA";
  if (!keyMatches(cert, keyPem)) return "the certificate is not for the agent's key";
  const agentId = commonNameOf(cert);
  if (!agentId || !/^[A-Za-z0-9_.-]{1,64}$/.test(agentId)) return "the certificate names no valid agent id (CN)";
  return { cert, agentId };
}

/**
 * Loads the identity from the state dir: `agent.key`, `agent.crt`, `ca.crt`. Expired certificates
 * are returned too (the caller decides); a missing or inconsistent set gives the problem instead.
 * A renewal interrupted between its two writes is finished here.
 */
export function readIdentity(stateDir: string): IdentityLoad {
  const certFile = join(stateDir, AGENT_CERT_FILE);
  const keyFile = join(stateDir, AGENT_KEY_FILE);
  const nextKeyFile = join(stateDir, NEXT_KEY_FILE);
  const certPem = readText(certFile);
  const caPem = readText(join(stateDir, CA_CERT_FILE));
  let keyPem = readText(keyFile);
  if (certPem === undefined || caPem === undefined || keyPem === undefined) {
    const present = [certPem, caPem, keyPem].some((t) => t !== undefined);
    return { problem: present ? `the identity in ${stateDir} is incomplete (${AGENT_KEY_FILE}, ${AGENT_CERT_FILE} and ${CA_CERT_FILE} are all needed)` : undefined };
  }
  let checked = checkClientCertificate(certPem, keyPem, caPem);
  const nextKey = readText(nextKeyFile);
  if (typeof checked === "string" && nextKey !== undefined) {
    // A renewal stored its new certificate but stopped before moving its key into place.
    const retry = checkClientCertificate(certPem, nextKey, caPem);
    if (typeof retry !== "string") {
      writeFileDurable(keyFile, nextKey, 0o600);
      keyPem = nextKey;
      checked = retry;
    }
  }
  if (nextKey !== undefined) removeFileDurable(nextKeyFile);
  if (typeof checked === "string") return { problem: `the identity in ${stateDir} cannot be used: ${checked}` };
  const { cert, agentId } = checked;
  const notBefore = Date.parse(cert.validFrom);
  let storedAt = notBefore;
  try {
    storedAt = statSync(certFile).mtimeMs;
  } catch {
    // keep notBefore
  }
  return {
    identity: {
      agentId,
      keyPem,
      certPem,
      caPem,
      caFingerprint: fingerprintOf(new X509Certificate(caPem).raw),
      issuedAt: Math.max(notBefore, Math.min(storedAt, Date.now())),
      notAfter: Date.parse(cert.validTo),
    },
  };
}

/** Stores a new identity: the CA, the key (0600), the certificate, then the agent id; each atomically. */
export function writeIdentity(stateDir: string, identity: StoredIdentity): void {
  writeFileDurable(join(stateDir, CA_CERT_FILE), identity.caPem, 0o644);
  writeFileDurable(join(stateDir, AGENT_KEY_FILE), identity.keyPem, 0o600);
  writeFileDurable(join(stateDir, AGENT_CERT_FILE), identity.certPem, 0o644);
  writeFileDurable(join(stateDir, AGENT_ID_FILE), `${identity.agentId}\n`, 0o644);
}

/**
 * Stores a renewed key and certificate: the key beside the old one first, then the certificate,
 * then the key moved into place, so that a stop at any point leaves a usable pair (see
 * {@link readIdentity}).
 */
export function writeRenewedIdentity(stateDir: string, keyPem: string, certPem: string): void {
  writeFileDurable(join(stateDir, NEXT_KEY_FILE), keyPem, 0o600);
  writeFileDurable(join(stateDir, AGENT_CERT_FILE), certPem, 0o644);
  writeFileDurable(join(stateDir, AGENT_KEY_FILE), keyPem, 0o600);
  removeFileDurable(join(stateDir, NEXT_KEY_FILE));
}

/** Removes the key and certificate (the agent must enroll again); the CA and the agent id stay for reference. */
export function dropIdentity(stateDir: string): void {
  removeFileDurable(join(stateDir, AGENT_CERT_FILE));
  removeFileDurable(join(stateDir, AGENT_KEY_FILE));
  removeFileDurable(join(stateDir, NEXT_KEY_FILE));
}

/** A new ECDSA P-256 key (PKCS#8 PEM) and a CSR for it (PEM; the subject is ignored by the control plane). */
export async function createKeyAndCsr(hostname: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${hostname.replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 64) || "firedrill-agent"}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END PRIVATE KEY-----\n`;
  return { keyPem, csrPem: `${csr.toString("pem").trim()}\n` };
}

/** Whether more than 2/3 of the certificate's lifetime has passed at `now`. */
export function renewalDue(identity: Pick<StoredIdentity, "issuedAt" | "notAfter">, now = Date.now()): boolean {
  return now >= identity.issuedAt + ((identity.notAfter - identity.issuedAt) * 2) / 3;
}

/** The `firedrill-refusal` of a failed call, if it carries one. */
export function refusalOf(error: unknown): Refusal | undefined {
  const metadata = (error as grpc.ServiceError | undefined)?.metadata;
  if (!(metadata instanceof grpc.Metadata)) return undefined;
  return parseRefusal(metadata.get(REFUSAL_METADATA_KEY)[0]);
}

/** What the link dials with: the channel credentials, and what a refusal on it can be trusted for. */
export interface LinkChannel {
  /** Changes whenever the credentials change (a new client is then made for the next connect). */
  key: string;
  credentials: grpc.ChannelCredentials;
  /** Extra Connect metadata (the join token in insecure mode). */
  metadata?: grpc.Metadata;
  /** True when the server was verified against the pinned CA: only then is a refusal believed. */
  verified: boolean;
  /** The agent id to say in Hello. */
  agentId: string;
}

/** The result of preparing a connect attempt: a channel, or wait and try again. */
export type PrepareResult = { channel: LinkChannel } | { retry: true; /** Longest backoff for this kind of wait. */ maxDelayMs?: number };

/** Options of {@link Enrollment}. */
export interface EnrollmentOptions {
  /** Control plane gRPC address, host:port. */
  server: string;
  stateDir: string;
  /** The parsed join token; only needed while not enrolled. */
  joinToken: { text: string; parts: JoinTokenParts } | undefined;
  /** The identity loaded at start, if any. */
  identity: StoredIdentity | undefined;
  hostname: string;
  log: Logger;
  /** How often the certificate's age is checked for renewal. @default 60000 */
  renewCheckIntervalMs?: number;
  /** Deadline of Enroll and RenewCertificate. @default 15000 */
  callTimeoutMs?: number;
  /** How long to wait for the pinning handshake. @default 10000 */
  probeTimeoutMs?: number;
  /** Longest backoff after the control plane refused the join token. @default 300000 */
  joinTokenBackoffMaxMs?: number;
  /** The verified control plane said this agent is revoked (during a renewal). */
  onRevoked: (error: grpc.ServiceError) => void;
  /** The identity changed (enrolled, renewed or dropped). */
  onIdentity?: (identity: StoredIdentity | undefined) => void;
}

type AgentClient = ClientOf<typeof AgentService>;

/**
 * The agent's identity over its life: loads, enrolls (pinning first), renews, drops. Gives the link
 * the channel of each connect attempt.
 */
export class Enrollment {
  private identity: StoredIdentity | undefined;
  private generation = 0;
  private channel: LinkChannel | undefined;
  private renewing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly Client = createClientConstructor(AgentService);

  constructor(private readonly opts: EnrollmentOptions) {
    this.identity = opts.identity;
  }

  /** The current agent id (undefined until enrolled). */
  get agentId(): string | undefined {
    return this.identity?.agentId;
  }

  /** The current identity. */
  get current(): StoredIdentity | undefined {
    return this.identity;
  }

  /** Starts the periodic renewal check. */
  start(): void {
    const tick = () => {
      if (this.closed) return;
      // Every minute by default; sooner when the certificate has less than ten minutes left, so a
      // short lifetime (--agent-cert-ttl on the server) still renews in time.
      // Not enrolled yet: look again in a second (the check itself is a comparison).
      const left = this.identity ? this.identity.notAfter - Date.now() : 10_000;
      const every = this.opts.renewCheckIntervalMs ?? Math.min(60_000, Math.max(1000, left / 10));
      this.timer = setTimeout(() => void this.maybeRenew().finally(tick), every);
      this.timer.unref();
    };
    tick();
  }

  /** Stops the renewal check. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /**
   * The channel of the next connect attempt: the mTLS channel of a valid identity (renewed first
   * when due), or, without one, pin the server's CA and enroll with the join token.
   */
  async prepare(): Promise<PrepareResult> {
    const log = this.opts.log;
    if (this.identity && this.identity.notAfter <= Date.now()) {
      log.warn({ notAfter: new Date(this.identity.notAfter).toISOString() }, "this agent's certificate expired; enrolling again");
      this.drop();
    }
    if (this.identity) {
      if (renewalDue(this.identity)) await this.maybeRenew();
      return { channel: this.channelFor(this.identity) };
    }
    const token = this.opts.joinToken;
    if (!token) {
      log.error(
        { stateDir: this.opts.stateDir },
        "this agent is not enrolled and has no join token: create one on the control plane with `firedrill join-token create`, " +
          "put it in the --token-file (or FIREDRILL_TOKEN) and restart the agent; retrying meanwhile",
      );
      return { retry: true, maxDelayMs: this.opts.joinTokenBackoffMaxMs ?? 300_000 };
    }
    let caPem: string;
    try {
      caPem = await pinServerCa(this.opts.server, token.parts.caSha256, { timeoutMs: this.opts.probeTimeoutMs ?? 10_000 });
    } catch (err) {
      if (err instanceof PinMismatchError) {
        log.error({ server: err.server, seen: err.seen, expected: err.expected }, err.message);
      } else {
        const failure = describeConnectFailure(this.opts.server, err);
        log.warn({ server: this.opts.server, reason: failure.reason }, `could not verify the control plane's certificate: ${failure.message}`);
      }
      return { retry: true };
    }
    return this.enroll(caPem, token.text);
  }

  private async enroll(caPem: string, token: string): Promise<PrepareResult> {
    const log = this.opts.log;
    const { keyPem, csrPem } = await createKeyAndCsr(this.opts.hostname);
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(token));
    const credentials = verifiedCredentials({ caPem, onVerifyError: (err) => log.error({ server: this.opts.server }, err.message) });
    let response: EnrollResponse;
    try {
      response = await this.unary<EnrollResponse>(credentials, (client, deadline, done) =>
        client.enroll(create(EnrollRequestSchema, { csrPem, hostname: this.opts.hostname }), metadata, { deadline }, done),
      );
    } catch (err) {
      const error = err as grpc.ServiceError;
      const refusal = refusalOf(error);
      if (refusal === "join-token") {
        log.error(
          { server: this.opts.server, details: error.details },
          `the control plane refused the join token: ${error.details}; create a new one with \`firedrill join-token create\` and put it in the --token-file; retrying meanwhile`,
        );
        return { retry: true, maxDelayMs: this.opts.joinTokenBackoffMaxMs ?? 300_000 };
      }
      if (refusal === "limit") {
        log.warn({ server: this.opts.server, details: error.details }, "the control plane is not enrolling more agents right now; retrying");
        return { retry: true, maxDelayMs: this.opts.joinTokenBackoffMaxMs ?? 300_000 };
      }
      if (error.code === grpc.status.UNAVAILABLE) {
        const failure = describeConnectFailure(this.opts.server, error);
        log.warn({ server: this.opts.server, reason: failure.reason }, `enrollment failed, retrying: ${failure.message}`);
      } else {
        log.warn({ server: this.opts.server, code: error.code, err: error.details ?? error.message }, "enrollment failed; retrying");
      }
      return { retry: true };
    }
    const checked = checkClientCertificate(response.certificatePem, keyPem, caPem);
    if (typeof checked === "string" || checked.agentId !== response.agentId) {
      log.error(
        { server: this.opts.server, agentId: response.agentId, problem: typeof checked === "string" ? checked : "the certificate's CN is not the agent id" },
        "the control plane's enrollment answer is unusable; retrying",
      );
      return { retry: true };
    }
    // The CA stored is the one we pinned, whatever the answer says.
    const identity: StoredIdentity = {
      agentId: checked.agentId,
      keyPem,
      certPem: response.certificatePem,
      caPem,
      caFingerprint: fingerprintOf(new X509Certificate(caPem).raw),
      issuedAt: Math.max(Date.parse(checked.cert.validFrom), Date.now()),
      notAfter: Date.parse(checked.cert.validTo),
    };
    writeIdentity(this.opts.stateDir, identity);
    this.setIdentity(identity);
    log.info({ agentId: identity.agentId, notAfter: new Date(identity.notAfter).toISOString() }, "enrolled with the control plane");
    return { channel: this.channelFor(identity) };
  }

  /** Forgets the key and certificate (the next connect enrolls again, with the join token if there is one). */
  drop(): void {
    dropIdentity(this.opts.stateDir);
    this.setIdentity(undefined);
  }

  /** Renews the certificate when more than 2/3 of its lifetime has passed. Never throws. */
  maybeRenew(): Promise<void> {
    const identity = this.identity;
    if (this.closed || !identity || !renewalDue(identity) || identity.notAfter <= Date.now()) return Promise.resolve();
    this.renewing ??= this.renew(identity).finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renew(identity: StoredIdentity): Promise<void> {
    const log = this.opts.log;
    try {
      const { keyPem, csrPem } = await createKeyAndCsr(this.opts.hostname);
      const response = await this.unary<RenewCertificateResponse>(this.channelFor(identity).credentials, (client, deadline, done) =>
        client.renewCertificate(create(RenewCertificateRequestSchema, { csrPem }), new grpc.Metadata(), { deadline }, done),
      );
      const checked = checkClientCertificate(response.certificatePem, keyPem, identity.caPem);
      if (typeof checked === "string" || checked.agentId !== identity.agentId) {
        log.error({ problem: typeof checked === "string" ? checked : `the certificate names ${checked.agentId}` }, "the renewed certificate is unusable; keeping the current one");
        return;
      }
      if (this.identity !== identity) return; // dropped or replaced meanwhile
      writeRenewedIdentity(this.opts.stateDir, keyPem, response.certificatePem);
      const renewed: StoredIdentity = {
        ...identity,
        keyPem,
        certPem: response.certificatePem,
        issuedAt: Math.max(Date.parse(checked.cert.validFrom), Date.now()),
        notAfter: Date.parse(checked.cert.validTo),
      };
      this.setIdentity(renewed);
      log.info({ notAfter: new Date(renewed.notAfter).toISOString() }, "renewed this agent's certificate");
    } catch (err) {
      const error = err as grpc.ServiceError;
      if (refusalOf(error) === "revoked") {
        // Over the channel verified against the pinned CA: the control plane revoked this agent.
        this.opts.onRevoked(error);
        return;
      }
      log.warn(
        { code: error.code, err: error.details ?? error.message, notAfter: new Date(identity.notAfter).toISOString() },
        "could not renew this agent's certificate; will try again",
      );
    }
  }

  private setIdentity(identity: StoredIdentity | undefined): void {
    this.identity = identity;
    this.generation++;
    this.channel = undefined;
    this.opts.onIdentity?.(identity);
  }

  private channelFor(identity: StoredIdentity): LinkChannel {
    this.channel ??= {
      key: `tls-${this.generation}`,
      credentials: verifiedCredentials({
        caPem: identity.caPem,
        keyPem: identity.keyPem,
        certPem: identity.certPem,
        onVerifyError: (err) => this.opts.log.error({ server: this.opts.server }, err.message),
      }),
      verified: true,
      agentId: identity.agentId,
    };
    return this.channel;
  }

  private async unary<T>(
    credentials: grpc.ChannelCredentials,
    call: (client: AgentClient, deadline: Date, done: (err: grpc.ServiceError | null, value?: T) => void) => void,
  ): Promise<T> {
    const client: AgentClient = new this.Client(this.opts.server, credentials);
    try {
      return await new Promise<T>((resolve, reject) => {
        call(client, new Date(Date.now() + (this.opts.callTimeoutMs ?? 15_000)), (err, value) => {
          if (err) reject(err);
          else resolve(value as T);
        });
      });
    } finally {
      client.close();
    }
  }
}
