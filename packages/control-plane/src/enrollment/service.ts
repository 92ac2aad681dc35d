/**
 * Agent enrollment over gRPC: `Enroll` trades a join token and a CSR for a control-plane-chosen
 * agent id and a short-lived client certificate; `RenewCertificate` reissues it (mTLS); and the
 * check of the client certificate every `Connect` presents.
 */
import { X509Certificate, createHash, randomBytes, webcrypto } from "node:crypto";
import * as grpc from "@grpc/grpc-js";

/** What every server call offers: metadata, the peer, the TLS auth context. */
type ServerCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;
import { create } from "@bufbuild/protobuf";
import { AGENT_TOKEN_METADATA_KEY, EnrollResponseSchema, REFUSAL_METADATA_KEY, RenewCertificateResponseSchema, parseBearer, plural, timestampFromMs } from "@firedrill/protocol";
import type { EnrollRequest, EnrollResponse, Refusal, RenewCertificateRequest, RenewCertificateResponse } from "@firedrill/protocol";
import type { Logger } from "pino";
import type { AuditLog } from "../auth/audit.js";
import { PkiError, csrPublicKey, issueClientCertificate, verifyClientCertificate } from "../pki/index.js";
import type { CertificateAuthority, PeerIdentity } from "../pki/index.js";
import type { IdentityRegistry } from "./identities.js";
import type { JoinTokenStore } from "./join-tokens.js";

type CryptoKey = webcrypto.CryptoKey;

/** Default lifetime of an agent's client certificate. */
export const DEFAULT_AGENT_CERT_LIFETIME_MS = 7 * 86_400_000;
/** Default most agents one control plane enrolls. */
export const DEFAULT_MAX_AGENTS = 20_000;
/** Default enrollments per second per join token (a burst of ten seconds' worth is allowed). */
export const DEFAULT_ENROLL_RATE = 50;
/** The longest hostname accepted at enrollment. */
const MAX_HOSTNAME = 255;

/** Options of {@link createEnrollmentService}. */
export interface EnrollmentOptions {
  ca: CertificateAuthority;
  /** SHA-256 (hex) of the CA certificate's DER: what join tokens pin. */
  caSha256: string;
  joinTokens: JoinTokenStore;
  identities: IdentityRegistry;
  audit: AuditLog;
  log: Logger;
  /** @default 7 days */
  certLifetimeMs?: number;
  /** @default 20000 */
  maxAgents?: number;
  /** @default 50 per second per join token */
  enrollRatePerToken?: number;
  /** @default Date.now */
  now?: () => number;
}

/** A verified, enrolled, unrevoked agent: its certificate and the labels its join token gave it. */
export interface EnrolledPeer extends PeerIdentity {
  labels: Record<string, string>;
}

/** A refused call: a gRPC status with the refusal reason in trailing metadata. */
export interface Refused {
  code: grpc.status;
  details: string;
  refusal: Refusal;
}

/** The enrollment side of the agent service. */
export interface EnrollmentService {
  readonly enroll: grpc.handleUnaryCall<EnrollRequest, EnrollResponse>;
  readonly renewCertificate: grpc.handleUnaryCall<RenewCertificateRequest, RenewCertificateResponse>;
  /** Who the call's client certificate says it is (with its join token's labels), or why it is refused. */
  peer(call: ServerCall): EnrolledPeer | Refused;
}

/** A gRPC error carrying the refusal in trailing metadata. */
export function refusalError(refused: Refused): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  metadata.set(REFUSAL_METADATA_KEY, refused.refusal);
  return Object.assign(new Error(refused.details), { code: refused.code, details: refused.details, metadata }) as grpc.ServiceError;
}

/** The serial number of a PEM certificate as node:crypto reports it for presented certificates. */
const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toLowerCase();

const peerAddress = (call: ServerCall): string => call.getPeer().replace(/^ipv[46]:/, "").slice(0, 100);

/** Creates the enrollment service. */
export function createEnrollmentService(options: EnrollmentOptions): EnrollmentService {
  const { ca, joinTokens, identities, audit } = options;
  const log = options.log.child({ component: "enrollment" });
  const now = options.now ?? Date.now;
  const lifetimeMs = options.certLifetimeMs ?? DEFAULT_AGENT_CERT_LIFETIME_MS;
  const maxAgents = options.maxAgents ?? DEFAULT_MAX_AGENTS;
  const rate = options.enrollRatePerToken ?? DEFAULT_ENROLL_RATE;
  const caCert = new X509Certificate(ca.certPem);
  // Token buckets per join token id (bounded: oldest dropped past 10,000 tokens).
  const buckets = new Map<string, { tokens: number; at: number }>();
  let inFlight = 0;

  const takeEnrollment = (tokenId: string, at: number): boolean => {
    const burst = rate * 10;
    let bucket = buckets.get(tokenId);
    if (!bucket) {
      if (buckets.size >= 10_000) buckets.delete(buckets.keys().next().value as string);
      bucket = { tokens: burst, at };
      buckets.set(tokenId, bucket);
    }
    bucket.tokens = Math.min(burst, bucket.tokens + ((at - bucket.at) / 1000) * rate);
    bucket.at = at;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  };

  const record = (call: ServerCall, route: string, status: number, outcome: string, targets: string[], detail: string | null, principal: string | null) => {
    try {
      audit.append({
        time: now(),
        principal,
        role: principal ? "agent" : null,
        tokenId: null,
        source: peerAddress(call),
        method: "GRPC",
        route,
        path: route,
        targets,
        status,
        outcome,
        detail,
      });
    } catch (err) {
      log.error({ err }, "could not write the audit log");
    }
  };

  // Verified certificates by their DER's SHA-256: a reconnecting fleet is not parsed and
  // signature-checked again each time (bounded; the expiry is still checked on every use).
  const verifiedCache = new Map<string, PeerIdentity>();
  const verifyCached = (der: Buffer): PeerIdentity | string => {
    const key = createHash("sha256").update(der).digest("hex");
    const hit = verifiedCache.get(key);
    if (hit) return hit.notAfter > now() ? hit : `the client certificate expired at ${new Date(hit.notAfter).toISOString()}`;
    const result = verifyClientCertificate(der, caCert, now());
    if (typeof result !== "string") {
      if (verifiedCache.size >= Math.max(1000, maxAgents * 2)) verifiedCache.delete(verifiedCache.keys().next().value as string);
      verifiedCache.set(key, result);
    }
    return result;
  };

  /** The CSR's key, or undefined after answering INVALID_ARGUMENT. */
  const csrKeyOrRefuse = async (csrPem: string, callback: (err: grpc.ServiceError) => void): Promise<CryptoKey | undefined> => {
    try {
      return await csrPublicKey(csrPem);
    } catch (err) {
      if (!(err instanceof PkiError)) throw err;
      callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message } as grpc.ServiceError);
      return undefined;
    }
  };

  const peer = (call: ServerCall): EnrolledPeer | Refused => {
    const cert = call.getAuthContext()?.sslPeerCertificate;
    if (!cert?.raw) {
      return { code: grpc.status.UNAUTHENTICATED, refusal: "not-enrolled", details: "no client certificate: enroll with a join token first (firedrill-agent --token-file)" };
    }
    const verified = verifyCached(cert.raw);
    if (typeof verified === "string") {
      return { code: grpc.status.UNAUTHENTICATED, refusal: "not-enrolled", details: `${verified}; enroll again with a join token` };
    }
    const identity = identities.get(verified.agentId);
    if (!identity) {
      return { code: grpc.status.UNAUTHENTICATED, refusal: "not-enrolled", details: `agent ${verified.agentId} is not enrolled here; enroll again with a join token` };
    }
    if (identity.revokedAt !== null) {
      return {
        code: grpc.status.PERMISSION_DENIED,
        refusal: "revoked",
        details: `agent ${verified.agentId} was revoked by ${identity.revokedBy ?? "an admin"} at ${new Date(identity.revokedAt).toISOString()}${identity.revokeReason ? ` (${identity.revokeReason})` : ""}; it cannot connect again`,
      };
    }
    return { ...verified, labels: identity.labels };
  };

  const enroll: grpc.handleUnaryCall<EnrollRequest, EnrollResponse> = (call, callback) => {
    const route = "/firedrill.v1.AgentService/Enroll";
    const refuse = (refused: Refused, targets: string[] = []) => {
      record(call, route, refused.code === grpc.status.RESOURCE_EXHAUSTED ? 429 : 401, refused.refusal, targets, refused.details, null);
      callback(refusalError(refused));
    };
    const raw = call.metadata.get(AGENT_TOKEN_METADATA_KEY)[0];
    const text = parseBearer(typeof raw === "string" ? raw : raw?.toString("utf8"));
    if (text === undefined) {
      refuse({ code: grpc.status.UNAUTHENTICATED, refusal: "join-token", details: "missing join token: start firedrill-agent with --token-file (firedrill join-token create makes one)" });
      return;
    }
    const at = now();
    const checked = joinTokens.check(text, at);
    if (!checked.ok) {
      refuse({ code: grpc.status.UNAUTHENTICATED, refusal: "join-token", details: checked.reason }, checked.tokenId ? [checked.tokenId] : []);
      return;
    }
    if (!takeEnrollment(checked.token.id, at)) {
      refuse({ code: grpc.status.RESOURCE_EXHAUSTED, refusal: "limit", details: `too many enrollments with join token ${checked.token.id} right now (${rate}/s); retry shortly` }, [checked.token.id]);
      return;
    }
    // Enrollments in flight count too: the cap holds however many arrive at once.
    if (identities.countActive() + inFlight >= maxAgents) {
      refuse({ code: grpc.status.RESOURCE_EXHAUSTED, refusal: "limit", details: `this control plane already holds ${plural(maxAgents, "agent")} (--max-agents); revoke or remove some first` }, [checked.token.id]);
      return;
    }
    const hostname = call.request.hostname.slice(0, MAX_HOSTNAME);
    inFlight += 1;
    void (async () => {
      const publicKey = await csrKeyOrRefuse(call.request.csrPem, callback);
      if (!publicKey) return;
      // The use is counted only now that the request is sound: a bad CSR does not spend a use.
      const used = joinTokens.use(text, options.caSha256, now());
      if (!used.ok) {
        refuse({ code: grpc.status.UNAUTHENTICATED, refusal: "join-token", details: used.reason }, used.tokenId ? [used.tokenId] : []);
        return;
      }
      const agentId = `agt_${randomBytes(8).toString("hex")}`;
      const cert = await issueClientCertificate(ca, publicKey, agentId, lifetimeMs, now());
      const serial = serialOf(cert.certPem);
      identities.enroll({
        agentId,
        hostname,
        joinTokenId: used.token.id,
        labels: used.token.labels,
        enrolledAt: now(),
        certSerial: serial,
        certNotAfter: cert.notAfter.getTime(),
      });
      log.info({ agentId, hostname, joinToken: used.token.id, notAfter: cert.notAfter.toISOString() }, "agent enrolled");
      record(call, route, 200, "ok", [agentId, used.token.id], `enrolled ${hostname || "(no hostname)"}`, null);
      callback(
        null,
        create(EnrollResponseSchema, {
          agentId,
          certificatePem: cert.certPem,
          caCertificatePem: ca.certPem,
          notAfter: timestampFromMs(cert.notAfter.getTime()),
        }),
      );
    })()
      .catch((err: unknown) => {
        log.error({ err }, "enrollment failed");
        callback({ code: grpc.status.INTERNAL, details: "the control plane failed to enroll the agent; see its log" } as grpc.ServiceError);
      })
      .finally(() => {
        inFlight -= 1;
      });
  };

  const renewCertificate: grpc.handleUnaryCall<RenewCertificateRequest, RenewCertificateResponse> = (call, callback) => {
    const who = peer(call);
    if ("refusal" in who) {
      callback(refusalError(who));
      return;
    }
    void (async () => {
      const publicKey = await csrKeyOrRefuse(call.request.csrPem, callback);
      if (!publicKey) return;
      const cert = await issueClientCertificate(ca, publicKey, who.agentId, lifetimeMs, now());
      identities.renew(who.agentId, serialOf(cert.certPem), cert.notAfter.getTime(), now());
      log.info({ agentId: who.agentId, notAfter: cert.notAfter.toISOString() }, "agent certificate renewed");
      callback(null, create(RenewCertificateResponseSchema, { certificatePem: cert.certPem, notAfter: timestampFromMs(cert.notAfter.getTime()) }));
    })().catch((err: unknown) => {
      log.error({ err }, "certificate renewal failed");
      callback({ code: grpc.status.INTERNAL, details: "the control plane failed to renew the certificate; see its log" } as grpc.ServiceError);
    });
  };

  return { enroll, renewCertificate, peer };
}
