import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:https";
import type { Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PkiError, ensureCa, ensureServerCert, issueCertificate } from "./index.js";
import type { CertificateAuthority } from "./index.js";

const mode = (path: string) => statSync(path).mode & 0o777;
/** The certificates of a PEM chain, in order. */
const certsOf = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));

let dataDir: string;
let ca: CertificateAuthority;
beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "firedrill-pki-"));
  ca = await ensureCa(dataDir);
});
afterEach(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe("ensureServerCert", () => {
  it("issues a P-256 serverAuth certificate for DNS names and IP addresses, signed by the CA, stored 0600", async () => {
    const server = await ensureServerCert(dataDir, ca, ["cp.example.internal", "LOCALHOST", "127.0.0.1", "[::1]", "10.0.0.7"]);
    expect(server.issued).toBe(true);
    expect(server.names).toEqual(["cp.example.internal", "localhost", "127.0.0.1", "::1", "10.0.0.7"]);
    expect(mode(join(dataDir, "pki", "http.key"))).toBe(0o600);
    expect(mode(join(dataDir, "pki", "http.crt"))).toBe(0o600);
    expect(readFileSync(join(dataDir, "pki", "http.crt"), "utf8")).toBe(server.certPem);
    expect(readFileSync(join(dataDir, "pki", "http.key"), "utf8")).toBe(server.keyPem);

    const [leaf, caInChain, ...rest] = certsOf(server.certPem);
    expect(rest).toEqual([]);
    expect(caInChain?.raw.equals(new X509Certificate(ca.certPem).raw)).toBe(true);
    const caCert = new X509Certificate(ca.certPem);
    expect(leaf!.checkIssued(caCert)).toBe(true);
    expect(leaf!.verify(caCert.publicKey)).toBe(true);
    expect(leaf!.ca).toBe(false);
    expect(leaf!.subject).toBe("CN=cp.example.internal");
    expect(leaf!.subjectAltName).toBe(
      "DNS:cp.example.internal, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.7",
    );
    expect(leaf!.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(leaf!.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: "prime256v1" });
    const days = (Date.parse(leaf!.validTo) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(396.9);
    expect(days).toBeLessThan(397.1);
    expect(server.notAfter.getTime()).toBe(Date.parse(leaf!.validTo));
  });

  it("reuses the stored certificate for the same names in any order and case", async () => {
    const first = await ensureServerCert(dataDir, ca, ["localhost", "127.0.0.1", "::1"]);
    const again = await ensureServerCert(dataDir, ca, ["0:0:0:0:0:0:0:1", "127.0.0.1", "LocalHost", "localhost"]);
    expect(again.issued).toBe(false);
    expect(again.certPem).toBe(first.certPem);
    expect(again.keyPem).toBe(first.keyPem);
    expect(again.names).toEqual(["::1", "127.0.0.1", "localhost"]);
  });

  it("reissues when the names change, when another CA signed it, and when it expires within 30 days", async () => {
    const first = await ensureServerCert(dataDir, ca, ["localhost", "127.0.0.1"]);
    const renamed = await ensureServerCert(dataDir, ca, ["localhost", "127.0.0.1", "cp.example.internal"]);
    expect(renamed.issued).toBe(true);
    expect(renamed.certPem).not.toBe(first.certPem);
    expect(certsOf(renamed.certPem)[0]!.subjectAltName).toBe("DNS:localhost, DNS:cp.example.internal, IP Address:127.0.0.1");
    const fewer = await ensureServerCert(dataDir, ca, ["localhost"]);
    expect(fewer.issued).toBe(true);

    const otherDir = mkdtempSync(join(tmpdir(), "firedrill-pki-other-"));
    try {
      const otherCa = await ensureCa(otherDir);
      const resigned = await ensureServerCert(dataDir, otherCa, ["localhost"]);
      expect(resigned.issued).toBe(true);
      expect(certsOf(resigned.certPem)[0]!.checkIssued(new X509Certificate(otherCa.certPem))).toBe(true);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }

    const expiring = await issueCertificate(ca, { commonName: "localhost", dnsNames: ["localhost"], usage: "server", days: 29 });
    writeFileSync(join(dataDir, "pki", "http.crt"), expiring.certPem);
    writeFileSync(join(dataDir, "pki", "http.key"), expiring.keyPem);
    const renewed = await ensureServerCert(dataDir, ca, ["localhost"]);
    expect(renewed.issued).toBe(true);
    expect(Date.parse(certsOf(renewed.certPem)[0]!.validTo) - Date.now()).toBeGreaterThan(396 * 86_400_000);
  });

  it("reissues when the stored key does not belong to the certificate", async () => {
    const first = await ensureServerCert(dataDir, ca, ["localhost"]);
    const stray = await issueCertificate(ca, { commonName: "x", dnsNames: ["localhost"], usage: "server" });
    writeFileSync(join(dataDir, "pki", "http.key"), stray.keyPem);
    const again = await ensureServerCert(dataDir, ca, ["localhost"]);
    expect(again.issued).toBe(true);
    expect(again.certPem).not.toBe(first.certPem);
  });

  it("refuses no names and names that are neither DNS names nor addresses", async () => {
    await expect(ensureServerCert(dataDir, ca, [])).rejects.toThrow(PkiError);
    await expect(ensureServerCert(dataDir, ca, ["http://cp.example"])).rejects.toThrow(
      '"http://cp.example" is neither a DNS name nor an IP address; a certificate can only name those',
    );
    await expect(issueCertificate(ca, { commonName: "x", ipAddresses: ["cp.example"], usage: "server" })).rejects.toThrow(
      '"cp.example" is not an IP address; give DNS names as dnsNames',
    );
  });
});

describe("issueCertificate", () => {
  it("issues a clientAuth certificate", async () => {
    const client = await issueCertificate(ca, { commonName: "agent web-1", dnsNames: ["web-1.agents.firedrill"], usage: "client", days: 30 });
    const cert = new X509Certificate(client.certPem);
    expect(cert.subject).toBe("CN=agent web-1");
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.serialNumber.toLowerCase()).toBe(client.serialNumber);
    expect(client.fingerprint).toBe(`sha256:${cert.fingerprint256.replaceAll(":", "").toLowerCase()}`);
  });
});

describe("TLS with the issued certificate", () => {
  let server: Server;
  let port: number;
  beforeEach(async () => {
    const cert = await ensureServerCert(dataDir, ca, ["localhost", "127.0.0.1"]);
    server = createServer({ key: cert.keyPem, cert: cert.certPem }, (_req, res) => res.end("ok"));
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });

  function get(options: { ca: string; servername?: string }): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/", ca: options.ca, agent: false, ...(options.servername ? { servername: options.servername } : {}) }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve(body));
      });
      req.on("error", reject);
      req.end();
    });
  }

  it("a client trusting the CA connects by IP address and by DNS name", async () => {
    expect(await get({ ca: ca.certPem })).toBe("ok");
    expect(await get({ ca: ca.certPem, servername: "localhost" })).toBe("ok");
  });

  it("a client trusting another CA, or asking for a name the certificate lacks, is refused", async () => {
    const otherDir = mkdtempSync(join(tmpdir(), "firedrill-pki-other-"));
    try {
      const otherCa = await ensureCa(otherDir);
      await expect(get({ ca: otherCa.certPem })).rejects.toMatchObject({ code: "SELF_SIGNED_CERT_IN_CHAIN" });
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
    await expect(get({ ca: ca.certPem, servername: "cp.example.internal" })).rejects.toMatchObject({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });
  });
});
