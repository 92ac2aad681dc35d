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
  /**
   * Control plane gRPC address, host:port: the one used until {@link Enrollment.prepare} names
   * another (with several replicas, the link's current one).
   */
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
  /** An enrollment attempt failed (it is retried): why, in words an operator can act on. */
  onProblem?: (message: string) => void;
}

/** What made an enrollment attempt fail. */
export type EnrollmentFailure =
  /** Not enrolled, and no join token to enroll with. */
  | "no-token"
  /** The server does not present the CA the join token pins: not our control plane. */
  | "pin-mismatch"
  /** The server cannot be reached, or its certificate is not accepted (name, usage). */
  | "unreachable"
  /** The control plane refused the join token (unknown, expired, used up, revoked). */
  | "join-token"
  /** The control plane enrolls no more agents right now (its agent limit, its rate limit). */
  | "limit"
  /** The control plane answered with a certificate this agent cannot use. */
  | "unusable"
  /** Anything else the control plane answered. */
  | "failed";

/** An enrollment attempt failed; the message says what, where and how to fix it. */
export class EnrollmentError extends Error {
  override readonly name = "EnrollmentError";
  /** The handshake (`probe`, pinning) or the Enroll call (`enroll`). */
  readonly stage: "probe" | "enroll" | undefined;
  /** A short reason (for log fields). */
  readonly reason: string | undefined;
  /** The control plane's own words, when it answered. */
  readonly details: string | undefined;
  /** The gRPC status code, when a call failed. */
  readonly code: number | undefined;
  constructor(
    readonly kind: EnrollmentFailure,
    message: string,
    options: { cause?: unknown; stage?: "probe" | "enroll"; reason?: string; details?: string; code?: number } = {},
  ) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.stage = options.stage;
    this.reason = options.reason;
    this.details = options.details;
    this.code = options.code;
  }
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
  /** The address of the latest attempt: enrollment and renewal go there. */
  private server: string;
  private readonly Client = createClientConstructor(AgentService);

  constructor(private readonly opts: EnrollmentOptions) {
    this.identity = opts.identity;
    this.server = opts.server;
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
   * The channel of the next connect attempt, to `server` (replicas share the CA, so one channel
   * serves every address; each is still checked against the pinned CA and its certificate's names):
   * the mTLS channel of a valid identity (renewed first when due), or, without one, pin the
   * server's CA and enroll with the join token.
   */
  async prepare(server: string = this.server): Promise<PrepareResult> {
    this.server = server;
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
      const message =
        "this agent is not enrolled and has no join token: create one on the control plane with `firedrill join-token create`, " +
        "put it in the --token-file (or FIREDRILL_TOKEN) and restart the agent";
      log.error({ stateDir: this.opts.stateDir }, `${message}; retrying meanwhile`);
      this.opts.onProblem?.(message);
      return { retry: true, maxDelayMs: this.opts.joinTokenBackoffMaxMs ?? 300_000 };
    }
    try {
      return { channel: this.channelFor(await this.enrollOnce()) };
    } catch (err) {
      if (!(err instanceof EnrollmentError)) throw err;
      this.logFailure(err);
      this.opts.onProblem?.(err.message);
      const slow = err.kind === "join-token" || err.kind === "limit";
      return slow ? { retry: true, maxDelayMs: this.opts.joinTokenBackoffMaxMs ?? 300_000 } : { retry: true };
    }
  }

  /** Logs a failed attempt of {@link prepare} (it is retried). */
  private logFailure(err: EnrollmentError): void {
    const log = this.opts.log;
    const server = this.server;
    switch (err.kind) {
      case "pin-mismatch": {
        const mismatch = err.cause as PinMismatchError;
        log.error({ server: mismatch.server, seen: mismatch.seen, expected: mismatch.expected }, mismatch.message);
        return;
      }
      case "unreachable":
        if (err.stage === "probe") log.warn({ server, reason: err.reason }, `could not verify the control plane's certificate: ${err.message}`);
        else log.warn({ server, reason: err.reason }, `enrollment failed, retrying: ${err.message}`);
        return;
      case "join-token":
        log.error(
          { server, details: err.details },
          `the control plane refused the join token: ${err.details}; create a new one with \`firedrill join-token create\` and put it in the --token-file; retrying meanwhile`,
        );
        return;
      case "limit":
        log.warn({ server, details: err.details }, "the control plane is not enrolling more agents right now; retrying");
        return;
      case "unusable":
        log.error({ server, problem: err.details }, "the control plane's enrollment answer is unusable; retrying");
        return;
      default:
        log.warn({ server, code: err.code, err: err.details }, "enrollment failed; retrying");
    }
  }

  /**
   * One enrollment attempt with the join token: checks that the server presents the CA the token
   * pins (nothing is sent otherwise), sends the token and a CSR, checks the certificate it gets and
   * stores the identity in the state dir.
   * Thrown: EnrollmentError saying what failed (its `kind`), where, and how to fix it.
   */
  async enrollOnce(server: string = this.server): Promise<StoredIdentity> {
    this.server = server;
    const token = this.opts.joinToken;
    if (!token) {
      throw new EnrollmentError("no-token", `this agent is not enrolled (no certificate in ${this.opts.stateDir}) and has no join token: create one with \`firedrill join-token create\``);
    }
    let caPem: string;
    try {
      caPem = await pinServerCa(server, token.parts.caSha256, { timeoutMs: this.opts.probeTimeoutMs ?? 10_000 });
    } catch (err) {
      if (err instanceof PinMismatchError) throw new EnrollmentError("pin-mismatch", err.message, { cause: err });
      const failure = describeConnectFailure(server, err);
      throw new EnrollmentError("unreachable", failure.message, { cause: err, stage: "probe", reason: failure.reason });
    }
    const log = this.opts.log;
    const { keyPem, csrPem } = await createKeyAndCsr(this.opts.hostname);
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(token.text));
    let verifyError: Error | undefined;
    const credentials = verifiedCredentials({
      caPem,
      onVerifyError: (err) => {
        verifyError = err;
        log.error({ server }, err.message);
      },
    });
    let response: EnrollResponse;
    try {
      response = await this.unary<EnrollResponse>(server, credentials, (client, deadline, done) =>
        client.enroll(create(EnrollRequestSchema, { csrPem, hostname: this.opts.hostname }), metadata, { deadline }, done),
      );
    } catch (err) {
      const error = err as grpc.ServiceError;
      const refusal = refusalOf(error);
      const details = error.details ?? error.message;
      if (refusal === "join-token") {
        throw new EnrollmentError("join-token", `the control plane at ${server} refused the join token: ${details}`, { cause: err, details, code: error.code });
      }
      if (refusal === "limit") {
        throw new EnrollmentError("limit", `the control plane at ${server} is not enrolling more agents right now: ${details}`, { cause: err, details, code: error.code });
      }
      if (error.code === grpc.status.UNAVAILABLE) {
        const failure = describeConnectFailure(server, error);
        const message = verifyError ? `cannot enroll with the control plane at ${server}: ${verifyError.message}` : failure.message;
        throw new EnrollmentError("unreachable", message, { cause: err, stage: "enroll", reason: verifyError ? "certificate not accepted" : failure.reason, details, code: error.code });
      }
      throw new EnrollmentError("failed", `enrollment with the control plane at ${server} failed: ${grpc.status[error.code] ?? error.code} ${details}`, {
        cause: err,
        details,
        code: error.code,
      });
    }
    const checked = checkClientCertificate(response.certificatePem, keyPem, caPem);
    if (typeof checked === "string" || checked.agentId !== response.agentId) {
      const problem = typeof checked === "string" ? checked : "the certificate's CN is not the agent id";
      throw new EnrollmentError("unusable", `the enrollment answer of the control plane at ${server} is unusable (${problem})`, { details: problem });
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
    return identity;
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
      const response = await this.unary<RenewCertificateResponse>(this.server, this.channelFor(identity).credentials, (client, deadline, done) =>
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
        onVerifyError: (err) => this.opts.log.error({ server: this.server }, err.message),
      }),
      verified: true,
      agentId: identity.agentId,
    };
    return this.channel;
  }

  private async unary<T>(
    server: string,
    credentials: grpc.ChannelCredentials,
    call: (client: AgentClient, deadline: Date, done: (err: grpc.ServiceError | null, value?: T) => void) => void,
  ): Promise<T> {
    const client: AgentClient = new this.Client(server, credentials);
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
