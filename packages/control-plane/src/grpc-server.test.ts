/**
 * The agent link on a real control plane with real TLS on loopback: the gRPC port serves TLS from
 * the server's own CA by default; agents enroll with a join token that pins that CA, then
 * authenticate with their own certificate; an id cannot be claimed by anyone else; revocation,
 * join-token limits, bounds on what an agent sends.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { AGENT_TOKEN_METADATA_KEY, AgentService, FaultEventType, REFUSAL_METADATA_KEY, bearer, createClientConstructor, parseJoinToken } from "@firedrill/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { connectTestAgent, enrollTestAgent, startTestControlPlane, tlsCredentials } from "./test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "./test-support/test-agent.js";

const refusalOf = (status: grpc.StatusObject | grpc.ServiceError): string | undefined => {
  const value = status.metadata?.get(REFUSAL_METADATA_KEY)[0];
  return typeof value === "string" ? value : value?.toString("utf8");
};

describe("the agent link (TLS, enrollment, mTLS)", () => {
  let tcp: TestControlPlane | undefined;
  const agents: TestAgent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) a.cancel();
    await tcp?.cleanup();
    tcp = undefined;
  });
  const start = async (overrides = {}) => {
    tcp = await startTestControlPlane({ insecureAgents: false, ...overrides });
    const caPem = readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8");
    return { tcp, caPem, joinToken: tcp.token() };
  };
  const connect = (address: string, credentials: grpc.ChannelCredentials, agentId: string) => {
    const agent = connectTestAgent({ address, token: undefined, agentId, credentials });
    agents.push(agent);
    return agent;
  };

  it("prints a join token that pins the CA, and serves TLS: a plaintext client gets nothing", async () => {
    const { tcp, caPem, joinToken } = await start();
    const parts = parseJoinToken(joinToken)!;
    expect(parts).toBeDefined();
    const fingerprint = new X509Certificate(caPem).fingerprint256.replace(/:/g, "").toLowerCase();
    expect(parts.caSha256).toBe(fingerprint);
    expect(tcp.cp.agentCaFingerprint).toBe(`sha256:${fingerprint}`);

    const Client = createClientConstructor(AgentService);
    const plain = new Client(tcp.cp.grpcAddress, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(joinToken));
    const stream = plain.connect(metadata, { deadline: Date.now() + 3000 });
    const status = await new Promise<grpc.ServiceError>((resolve) => stream.on("error", resolve));
    plain.close();
    expect(status.code).not.toBe(grpc.status.OK);
  });

  it("enrolls with the join token, then connects with its own certificate only", async () => {
    const { tcp, caPem, joinToken } = await start();
    const identity = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken, "web-1.test");
    expect(identity.agentId).toMatch(/^agt_[0-9a-f]{16}$/);
    const cert = new X509Certificate(identity.certPem);
    expect(cert.subject).toBe(`CN=${identity.agentId}`);
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    const lifetimeDays = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    expect(lifetimeDays).toBeGreaterThan(6.9);
    expect(lifetimeDays).toBeLessThan(7.1);

    const agent = connect(tcp.cp.grpcAddress, identity.credentials, identity.agentId);
    agent.hello();
    expect((await agent.next("welcome")).agentId).toBe(identity.agentId);
    const listed = await tcp.api("GET", `/api/v1/agents/${identity.agentId}`);
    expect(listed.body.agent).toMatchObject({ id: identity.agentId, connected: true, enrolled: true, revokedAt: null, stale: false });

    // Without a certificate there is no Connect.
    const bare = connect(tcp.cp.grpcAddress, tlsCredentials(caPem), "someone");
    bare.hello();
    const refused = await bare.ended;
    expect(refused.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(refusalOf(refused)).toBe("not-enrolled");
  });

  it("refuses another agent's id: with a valid join token or with another agent's certificate; the real agent keeps its faults", async () => {
    const { tcp, caPem, joinToken } = await start();
    const real = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken, "real");
    const impostor = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken, "impostor");
    const agent = connect(tcp.cp.grpcAddress, real.credentials, real.agentId);
    agent.hello();
    await agent.next("welcome");
    const started = tcp.api("POST", `/api/v1/agents/${real.agentId}/faults`, { kind: "cpu-burn", params: { load: 10 }, duration: "5m" });
    const startMsg = await agent.next("startFault");
    agent.event(startMsg.faultId, FaultEventType.ACCEPTED);
    expect((await started).status).toBe(201);

    // The impostor's own certificate, claiming the real id.
    const claim = connect(tcp.cp.grpcAddress, impostor.credentials, real.agentId);
    claim.hello();
    const status = await claim.ended;
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusalOf(status)).toBe("identity-mismatch");
    // The join token alone does not open Connect on the TLS port either.
    const Client = createClientConstructor(AgentService);
    const withToken = new Client(tcp.cp.grpcAddress, tlsCredentials(caPem));
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(joinToken));
    const tokenStream = withToken.connect(metadata);
    const tokenStatus = await new Promise<grpc.ServiceError>((resolve) => tokenStream.on("error", resolve));
    withToken.close();
    expect(tokenStatus.code).toBe(grpc.status.UNAUTHENTICATED);

    // The real agent never lost its link or its fault.
    expect(agent.received.some((m) => m.message.case === "stopFault" || m.message.case === "stopAll")).toBe(false);
    const fault = await tcp.api("GET", `/api/v1/faults/${startMsg.faultId}`);
    expect(fault.body.fault.state).toBe("accepted");
    expect((await tcp.api("GET", `/api/v1/agents/${real.agentId}`)).body.agent.connected).toBe(true);
    const audit = await tcp.api("GET", "/api/v1/audit?limit=50");
    expect(audit.body.entries).toEqual(
      expect.arrayContaining([expect.objectContaining({ outcome: "identity-mismatch", principal: `agent:${impostor.agentId}`, targets: [real.agentId, impostor.agentId] })]),
    );
  });

  it("revoke: StopAll first, the stream closed within 1 s, reconnection refused as revoked", async () => {
    const { tcp, caPem, joinToken } = await start();
    const identity = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken, "to-revoke");
    const agent = connect(tcp.cp.grpcAddress, identity.credentials, identity.agentId);
    agent.hello();
    await agent.next("welcome");
    const started = tcp.api("POST", `/api/v1/agents/${identity.agentId}/faults`, { kind: "cpu-burn", params: { load: 10 }, duration: "5m" });
    const startMsg = await agent.next("startFault");
    agent.event(startMsg.faultId, FaultEventType.ACCEPTED);
    await started;

    const revoking = tcp.api("POST", `/api/v1/agents/${identity.agentId}/revoke`, { reason: "host decommissioned" });
    const stopAll = await agent.next("stopAll");
    expect(stopAll.message).toContain("revoked");
    agent.event(startMsg.faultId, FaultEventType.REVERTED);
    const status = await agent.ended;
    // How fast the link closes is the revoke's bounded wait (700 ms), not asserted here: see docs/security.md.
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusalOf(status)).toBe("revoked");
    const answer = await revoking;
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ faultsReverted: 1, confirmed: true });
    expect(answer.body.agent.revokedAt).not.toBeNull();

    const again = connect(tcp.cp.grpcAddress, identity.credentials, identity.agentId);
    again.hello();
    const refused = await again.ended;
    expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusalOf(refused)).toBe("revoked");

    // A gone host is forgotten; it stays out of the listing.
    expect((await tcp.api("DELETE", `/api/v1/agents/${identity.agentId}`)).status).toBe(200);
    const list = await tcp.api("GET", "/api/v1/agents");
    expect(list.body.agents.map((a: { id: string }) => a.id)).not.toContain(identity.agentId);
  });

  it("refuses an expired, used-up or revoked join token with the reason", async () => {
    const { tcp, caPem } = await start();
    const once = (await tcp.api("POST", "/api/v1/join-tokens", { uses: 1, labels: { team: "payments" } })).body;
    expect(once.joinToken).toMatchObject({ usesAllowed: 1, uses: 0, state: "active", labels: { team: "payments" } });
    const first = await enrollTestAgent(tcp.cp.grpcAddress, caPem, once.token);
    const usedUp = await enrollTestAgent(tcp.cp.grpcAddress, caPem, once.token).catch((e: grpc.ServiceError) => e);
    expect((usedUp as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((usedUp as grpc.ServiceError).details).toContain("used as many times as it allows");
    expect(refusalOf(usedUp as grpc.ServiceError)).toBe("join-token");

    const revoked = (await tcp.api("POST", "/api/v1/join-tokens", {})).body;
    await tcp.api("DELETE", `/api/v1/join-tokens/${revoked.joinToken.id}`);
    const refused = await enrollTestAgent(tcp.cp.grpcAddress, caPem, revoked.token).catch((e: grpc.ServiceError) => e);
    expect((refused as grpc.ServiceError).details).toContain("revoked");

    // The join token's labels are the enrolled agent's, whatever its Hello says.
    const agent = connect(tcp.cp.grpcAddress, first.credentials, first.agentId);
    agent.hello({ labels: { team: "hijack", "firedrill:opt-in": "true" } });
    await agent.next("welcome");
    expect((await tcp.api("GET", `/api/v1/agents/${first.agentId}`)).body.agent.labels).toEqual({ team: "payments", "firedrill:opt-in": "true" });
  });

  it("stores nothing from a flood of events for faults it never sent, and counts them", async () => {
    const { tcp, caPem, joinToken } = await start();
    const identity = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken);
    const agent = connect(tcp.cp.grpcAddress, identity.credentials, identity.agentId);
    agent.hello();
    await agent.next("welcome");
    const big = "x".repeat(100_000);
    for (let i = 0; i < 500; i++) agent.event(`flt_${i.toString(16).padStart(16, "0")}`, FaultEventType.REVERTED, { message: big });
    const dropped = async () => {
      const metrics = await (await tcp.fetch(`${tcp.cp.httpUrl}/metrics`)).text();
      return Number(/^firedrill_agent_messages_dropped_total\{reason="unknown-fault"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
    };
    const deadline = Date.now() + 15_000;
    while ((await dropped()) < 500 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await dropped()).toBe(500);
    const faults = await tcp.api("GET", "/api/v1/faults?state=all&limit=1000");
    expect(faults.body.faults).toEqual([]);
    const { DATABASE_FILE } = await import("./store/store.js");
    const Database = (await import("better-sqlite3")).default;
    const db = new Database(join(tcp.dataDir, DATABASE_FILE), { readonly: true });
    const stored = db.prepare("SELECT COUNT(*) AS n FROM fault_events").get() as { n: number };
    db.close();
    expect(stored.n).toBe(0);
  });

  it("refuses a Hello out of bounds (a 1 MB hostname, 20,000 labels)", async () => {
    const { tcp, caPem, joinToken } = await start();
    const identity = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken);
    const labels = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, "v"]));
    const agent = connect(tcp.cp.grpcAddress, identity.credentials, identity.agentId);
    agent.hello({ labels });
    const status = await agent.ended;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toContain("200 labels; at most 64");
    const again = connect(tcp.cp.grpcAddress, identity.credentials, identity.agentId);
    again.hello({ facts: { hostname: "h".repeat(1_000_000) } });
    const tooBig = await again.ended;
    expect([grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED]).toContain(tooBig.code);
    expect((await tcp.api("GET", "/api/v1/agents")).body.agents).toEqual([]);
  });

  it("renews a certificate for the same id over mTLS", async () => {
    const { tcp, caPem, joinToken } = await start({ agentCertLifetimeMs: 60_000 });
    const identity = await enrollTestAgent(tcp.cp.grpcAddress, caPem, joinToken);
    expect(Date.parse(new X509Certificate(identity.certPem).validTo) - Date.now()).toBeLessThan(61_000);
    const { makeCsr } = await import("./test-support/test-agent.js");
    const { create } = await import("@bufbuild/protobuf");
    const { RenewCertificateRequestSchema } = await import("@firedrill/protocol");
    const Client = createClientConstructor(AgentService);
    const client = new Client(tcp.cp.grpcAddress, identity.credentials);
    const { csrPem } = await makeCsr();
    const renewed = await new Promise<{ certificatePem: string }>((resolve, reject) =>
      client.renewCertificate(create(RenewCertificateRequestSchema, { csrPem }), new grpc.Metadata(), {}, (err: grpc.ServiceError | null, res?: { certificatePem: string }) =>
        err ? reject(err) : resolve(res!),
      ),
    );
    client.close();
    const cert = new X509Certificate(renewed.certificatePem);
    expect(cert.subject).toBe(`CN=${identity.agentId}`);
    expect(cert.serialNumber).not.toBe(new X509Certificate(identity.certPem).serialNumber);
  });
});
