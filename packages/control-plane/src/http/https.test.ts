/**
 * HTTPS on a non-loopback address with a certificate from the server's own CA; plain HTTP there
 * only with insecureHttp (warned); the bootstrap admin token reset offline.
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { request } from "node:https";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { resetAdminToken } from "../auth/bootstrap.js";
import { createIdentityStore } from "../auth/identity-store.js";
import { createStore } from "../store/store.js";
import { ensureCa } from "../pki/index.js";
import { startTestControlPlane } from "../test-support/test-agent.js";
import type { TestControlPlane } from "../test-support/test-agent.js";

/** GET over HTTPS to 127.0.0.1 trusting only `ca`. */
function httpsGet(port: number, path: string, ca: string, token?: string): Promise<{ status: number; body: string; peer: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, ca, agent: false, headers: token ? { authorization: `Bearer ${token}` } : {}, timeout: 10_000 },
      (res) => {
        let body = "";
        const peer = (res.socket as unknown as { getPeerX509Certificate(): X509Certificate }).getPeerX509Certificate();
        res.on("data", (c: Buffer) => (body += c.toString("utf8")));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, peer }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("HTTPS on a non-loopback address", () => {
  let tcp: TestControlPlane | undefined;
  afterEach(async () => {
    await tcp?.cleanup();
    tcp = undefined;
  });

  it("serves HTTPS with a certificate from its own CA and prints the CA's fingerprint", async () => {
    // 0.0.0.0 is not loopback, so the server must not serve plain HTTP; the test only talks to 127.0.0.1.
    tcp = await startTestControlPlane({ httpAddr: "0.0.0.0:0", advertise: ["firedrill.test"] });
    expect(tcp.cp.httpUrl).toMatch(/^https:\/\//);
    const caPem = readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8");
    const ca = new X509Certificate(caPem);
    const fingerprint = `sha256:${ca.fingerprint256.replace(/:/g, "").toLowerCase()}`;
    expect(tcp.cp.caFingerprint).toBe(fingerprint);
    expect(tcp.output()).toContain(fingerprint);

    const port = Number(new URL(tcp.cp.httpUrl).port);
    const health = await httpsGet(port, "/healthz", caPem);
    expect(health.status).toBe(200);
    expect(health.peer.checkIssued(ca)).toBe(true);
    expect(health.peer.subjectAltName).toContain("DNS:firedrill.test");
    expect(health.peer.subjectAltName).toContain("IP Address:127.0.0.1");
    const agents = await httpsGet(port, "/api/v1/agents", caPem, tcp.adminToken());
    expect(agents.status).toBe(200);
    // Another CA is not trusted.
    const otherDir = mkdtempSync(join(tmpdir(), "firedrill-other-ca-"));
    try {
      const other = await ensureCa(otherDir);
      await expect(httpsGet(port, "/healthz", other.certPem)).rejects.toThrow(/self-signed|unable to verify|certificate/i);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it("serves plain HTTP there only with insecureHttp, and says so at start and in /healthz", async () => {
    tcp = await startTestControlPlane({ httpAddr: "0.0.0.0:0", insecureHttp: true });
    expect(tcp.cp.httpUrl).toMatch(/^http:\/\//);
    expect(tcp.cp.caFingerprint).toBeUndefined();
    expect(tcp.output()).toContain("WARNING");
    const port = new URL(tcp.cp.httpUrl).port;
    const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { ok: boolean; warnings?: string[] };
    expect(health.ok).toBe(true);
    expect(health.warnings?.[0]).toContain("--insecure-http");
  });
});

describe("reset-admin-token", () => {
  it("revokes the old bootstrap token and writes a working new one (0600)", async () => {
    const tcp = await startTestControlPlane();
    try {
      const old = tcp.adminToken();
      await tcp.close();
      const store = createStore({ dataDir: tcp.dataDir });
      const result = resetAdminToken(createIdentityStore(store.db), tcp.dataDir);
      store.close();
      expect(result.revoked).toBe(1);
      await tcp.restart();
      const fresh = tcp.adminToken();
      expect(fresh).not.toBe(old);
      expect((await tcp.api("GET", "/api/v1/whoami", undefined, fresh)).body.principal).toMatchObject({ name: "admin", role: "admin" });
      const refused = await tcp.api("GET", "/api/v1/whoami", undefined, old);
      expect(refused.status).toBe(401);
      expect(refused.body.error.message).toContain("revoked");
      // Not a second bootstrap: a restart with principals keeps the file as it is.
      expect(tcp.output().match(/created the first admin API token/g)).toHaveLength(1);
    } finally {
      await tcp.cleanup();
    }
  });
});
