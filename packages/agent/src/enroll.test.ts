import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startAgent } from "./agent.js";
import type { Agent, AgentOptions } from "./agent.js";
import { renewalDue } from "./enroll.js";
import { createFaultRegistry } from "./faults/index.js";
import type { FaultKindDefinition } from "./faults/index.js";
import { fileFault } from "./testing/file-fault.js";
import { joinTokenFor, startFakeControlPlane } from "./testing/fake-control-plane.js";
import type { FakeControlPlane } from "./testing/fake-control-plane.js";
import { captureLog } from "./testing/log-capture.js";
import type { PeerCertificate } from "node:tls";
import { checkControlPlaneIdentity, isLoopbackHost } from "./tls.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe("zero-trust enrollment", () => {
  let dir: string;
  let planes: FakeControlPlane[];
  let agents: Agent[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-enroll-"));
    planes = [];
    agents = [];
  });
  afterEach(async () => {
    for (const a of agents) await a.stop();
    for (const p of planes) await p.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const plane = async (name: string, options: Partial<Parameters<typeof startFakeControlPlane>[0]> = {}) => {
    const p = await startFakeControlPlane({ dataDir: join(dir, name), ...options });
    planes.push(p);
    return p;
  };
  const agent = async (options: Partial<AgentOptions> & Pick<AgentOptions, "server">) => {
    const a = await startAgent({
      stateDir: join(dir, "agent"),
      labels: {},
      log: captureLog().log,
      imdsEndpoint: "off",
      registry: createFaultRegistry([fileFault as FaultKindDefinition]),
      backoffInitialMs: 100,
      backoffMaxMs: 400,
      joinTokenBackoffMaxMs: 400,
      ...options,
    });
    agents.push(a);
    return a;
  };

  it("refuses a server that does not hold the pinned CA, sends it nothing, and keeps trying", async () => {
    const ours = await plane("ours");
    await ours.close(); // only its CA matters: the token pins it
    const rogue = await plane("rogue");
    const captured = captureLog();
    const a = await agent({ server: rogue.address, token: ours.token, log: captured.log });
    let refused = false;
    void a.refused.then(() => (refused = true));

    const mismatches = await waitFor("three refused attempts", () => {
      const m = captured.find(/presented no certificate with the fingerprint the join token pins/);
      return m.length >= 3 && m;
    });
    expect(mismatches[0]!.msg).toContain(`expected CA ${ours.ca.fingerprint}`);
    expect(mismatches[0]!.msg).toContain(rogue.ca.fingerprint);
    expect(mismatches[0]!.msg).toMatch(/not your control plane, or the join token is for another one/);
    // The rogue saw TLS handshakes only: no call, so no token and no CSR.
    expect(rogue.calls).toEqual([]);
    expect(refused).toBe(false);
    expect(a.agentId).toBeUndefined();
    expect(existsSync(join(dir, "agent", "agent.key"))).toBe(false);
  });

  it("refuses a server certificate without serverAuth even when it chains to the pinned CA", async () => {
    // A certificate of our own CA made for a client (such as another agent's) cannot pose as the server.
    const impostor = await plane("ours", { serverUsage: "client" });
    const captured = captureLog();
    await agent({ server: impostor.address, token: impostor.token, log: captured.log });
    // OpenSSL's purpose check and our own EKU check both refuse it.
    await waitFor("two failed enrollments", () => captured.find(/enrollment failed|not a server certificate/).length >= 2);
    expect(impostor.calls).toEqual([]);
  });

  it("says which name to add to --advertise when the server certificate does not name the address", async () => {
    const p = await plane("ours", { dnsNames: ["cp.example.internal"], ipAddresses: [] });
    const captured = captureLog();
    await agent({ server: p.address, token: p.token, log: captured.log });
    const [line] = await waitFor("the name error", () => {
      const m = captured.find(/does not name "127.0.0.1"/);
      return m.length > 0 && m;
    });
    expect(line!.msg).toContain("DNS:cp.example.internal");
    expect(line!.msg).toContain(`add "127.0.0.1" to the server's --advertise`);
    expect(p.calls).toEqual([]);
  });

  it("pins, enrolls once, stores the identity, then connects with its client certificate only; a restart reuses it", async () => {
    const p = await plane("ours");
    const stateDir = join(dir, "agent");
    const first = await agent({ server: p.address, token: p.token });
    const connect = await waitFor("a connect with a hello", () => p.calls.find((c) => c.method === "connect" && c.hello));

    const enrolls = p.calls.filter((c) => c.method === "enroll");
    expect(enrolls).toHaveLength(1);
    expect(enrolls[0]!.authorization).toBe(`Bearer ${p.token}`);
    const agentId = readFileSync(join(stateDir, "agent-id"), "utf8").trim();
    expect(agentId).toMatch(/^agt_[0-9a-f]{16}$/);
    expect(first.agentId).toBe(agentId);

    // Files and modes: the key is the agent's secret.
    expect(mode(stateDir)).toBe(0o700);
    expect(mode(join(stateDir, "agent.key"))).toBe(0o600);
    expect(readFileSync(join(stateDir, "agent.key"), "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(readFileSync(join(stateDir, "ca.crt"), "utf8")).toBe(p.ca.certPem);
    const cert = new X509Certificate(readFileSync(join(stateDir, "agent.crt")));
    expect(cert.subject).toBe(`CN=${agentId}`);
    expect(cert.checkIssued(new X509Certificate(p.ca.certPem))).toBe(true);

    // Connect: authenticated by the client certificate, no join token any more.
    expect(connect.authorization).toBeUndefined();
    expect(connect.clientCn).toBe(agentId);
    expect(connect.clientFingerprint).toBe(cert.fingerprint256);
    expect(connect.hello!.agentId).toBe(agentId);

    await first.stop();
    agents = [];
    const callsBefore = p.calls.length;
    const second = await agent({ server: p.address, token: p.token });
    const again = await waitFor("a second connect", () => p.calls.slice(callsBefore).find((c) => c.method === "connect" && c.hello));
    expect(p.calls.filter((c) => c.method === "enroll")).toHaveLength(1);
    expect(again.clientCn).toBe(agentId);
    expect(again.authorization).toBeUndefined();
    expect(second.agentId).toBe(agentId);

    await second.stop();
    agents = [];
    // Enrolled: the join token is no longer needed.
    const third = await agent({ server: p.address });
    await waitFor("a connect without a token", () => p.calls.filter((c) => c.method === "connect" && c.hello).length >= 3);
    expect(third.agentId).toBe(agentId);
    expect(p.calls.filter((c) => c.method === "enroll")).toHaveLength(1);
  });

  it("refuses to start without a certificate and without a join token, saying where to get one", async () => {
    await expect(agent({ server: "127.0.0.1:1" })).rejects.toThrow(/not enrolled .* no join token: create one on the control plane with `firedrill join-token create`/);
    await expect(agent({ server: "127.0.0.1:1", token: "fdj_not-a-pinning-token" })).rejects.toThrow(/not a join token that pins the control plane's CA/);
  });

  it("renews the certificate with a new key after 2/3 of its lifetime and uses it on the next connect", async () => {
    const p = await plane("ours", { clientLifetimeMs: 9000 });
    const stateDir = join(dir, "agent");
    await agent({ server: p.address, token: p.token, renewCheckIntervalMs: 200 });
    await waitFor("a connect", () => p.calls.find((c) => c.method === "connect" && c.hello));
    const firstCert = readFileSync(join(stateDir, "agent.crt"), "utf8");
    const firstKey = readFileSync(join(stateDir, "agent.key"), "utf8");
    const agentId = readFileSync(join(stateDir, "agent-id"), "utf8").trim();

    const renewal = await waitFor("a renewal", () => p.calls.find((c) => c.method === "renewCertificate"), 15_000);
    expect(renewal.clientCn).toBe(agentId);
    expect(renewal.authorization).toBeUndefined();
    await waitFor("the new certificate on disk", () => readFileSync(join(stateDir, "agent.crt"), "utf8") !== firstCert);
    const renewed = new X509Certificate(readFileSync(join(stateDir, "agent.crt")));
    const newKey = readFileSync(join(stateDir, "agent.key"), "utf8");
    expect(newKey).not.toBe(firstKey);
    expect(mode(join(stateDir, "agent.key"))).toBe(0o600);
    expect(renewed.subject).toBe(`CN=${agentId}`);
    expect(Date.parse(renewed.validTo)).toBeGreaterThan(Date.parse(new X509Certificate(firstCert).validTo));
    expect(existsSync(join(stateDir, "agent.key.next"))).toBe(false);
    // Early in the new certificate's life: no renewal storm.
    await sleep(1000);
    expect(p.calls.filter((c) => c.method === "renewCertificate")).toHaveLength(1);

    // The next connect presents the renewed certificate.
    const before = p.calls.length;
    for (const s of p.streams) s.emit("error", { code: 14, details: "going away" });
    const next = await waitFor("a reconnect", () => p.calls.slice(before).find((c) => c.method === "connect" && c.hello));
    expect(next.clientFingerprint).toBe(renewed.fingerprint256);
    expect(p.calls.filter((c) => c.method === "enroll")).toHaveLength(1);
  });
});

describe("helpers", () => {
  it("knows loopback hosts", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ["10.0.0.1", "0.0.0.0", "::", "cp.example.com", "localhost.example.com", "128.0.0.1"]) expect(isLoopbackHost(h)).toBe(false);
  });

  it("requires serverAuth and a matching name of the server certificate", () => {
    const cert = (eku: string[], san: string) => ({ subject: {}, subjectaltname: san, ext_key_usage: eku }) as unknown as PeerCertificate;
    expect(checkControlPlaneIdentity("127.0.0.1", cert(["1.3.6.1.5.5.7.3.1"], "IP Address:127.0.0.1"))).toBeUndefined();
    expect(checkControlPlaneIdentity("127.0.0.1", cert(["1.3.6.1.5.5.7.3.2"], "IP Address:127.0.0.1"))?.message).toMatch(/not a server certificate/);
    expect(checkControlPlaneIdentity("127.0.0.1", cert([], "IP Address:127.0.0.1"))?.message).toMatch(/not a server certificate/);
    expect(checkControlPlaneIdentity("cp.example.com", cert(["1.3.6.1.5.5.7.3.1"], "DNS:other.example.com"))?.message).toMatch(
      /does not name "cp.example.com" \(it names DNS:other.example.com\): add "cp.example.com" to the server's --advertise/,
    );
  });

  it("renews after 2/3 of the lifetime", () => {
    expect(renewalDue({ issuedAt: 0, notAfter: 3000 }, 1999)).toBe(false);
    expect(renewalDue({ issuedAt: 0, notAfter: 3000 }, 2000)).toBe(true);
  });

  it("makes distinct join tokens per CA", async () => {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-token-"));
    try {
      const p = await startFakeControlPlane({ dataDir: dir });
      await p.close();
      expect(joinTokenFor(p.ca)).toMatch(/^fdj_[0-9a-f]{12}_[A-Za-z0-9_-]{43}_[0-9a-f]{64}$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
