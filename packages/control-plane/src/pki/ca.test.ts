import { X509Certificate, createPrivateKey } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PkiError, certificateFingerprint, ensureCa, formatFingerprint, normalizeFingerprint } from "./index.js";

const mode = (path: string) => statSync(path).mode & 0o777;

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "firedrill-pki-"));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("ensureCa", () => {
  it("creates the data dir, a 0700 pki dir, a 0644 CA certificate and a 0600 PKCS#8 key", async () => {
    const dataDir = join(root, "data");
    const ca = await ensureCa(dataDir);
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(join(dataDir, "pki"))).toBe(0o700);
    expect(mode(join(dataDir, "pki", "ca.crt"))).toBe(0o644);
    expect(mode(join(dataDir, "pki", "ca.key"))).toBe(0o600);
    expect(readdirSync(join(dataDir, "pki")).sort()).toEqual(["ca.crt", "ca.key"]);

    expect(readFileSync(join(dataDir, "pki", "ca.crt"), "utf8")).toBe(ca.certPem);
    expect(readFileSync(join(dataDir, "pki", "ca.key"), "utf8")).toBe(ca.keyPem);
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);

    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toMatch(/^CN=firedrill control plane CA [0-9a-f]{8}$/);
    expect(cert.issuer).toBe(cert.subject);
    expect(ca.subject).toBe(cert.subject);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: "prime256v1" });
    const years = (Date.parse(cert.validTo) - Date.now()) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(ca.notAfter.getTime()).toBe(Date.parse(cert.validTo));
    expect(ca.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(formatFingerprint(ca.fingerprint)).toBe(cert.fingerprint256);
  });

  it("loads the stored CA on later calls", async () => {
    const first = await ensureCa(root);
    const second = await ensureCa(root);
    expect(second).toEqual(first);
    expect(readdirSync(join(root, "pki")).sort()).toEqual(["ca.crt", "ca.key"]);
  });

  it("narrows a key file readable by others to 0600 and goes on", async () => {
    const first = await ensureCa(root);
    const keyFile = join(root, "pki", "ca.key");
    chmodSync(keyFile, 0o644);
    chmodSync(join(root, "pki"), 0o755);
    expect((await ensureCa(root)).fingerprint).toBe(first.fingerprint);
    expect(mode(keyFile)).toBe(0o600);
    expect(mode(join(root, "pki"))).toBe(0o700);
  });

  it("refuses a CA whose key is missing or is another key, naming the file", async () => {
    await ensureCa(root);
    const other = mkdtempSync(join(tmpdir(), "firedrill-pki-other-"));
    try {
      const keyFile = join(root, "pki", "ca.key");
      writeFileSync(keyFile, (await ensureCa(other)).keyPem);
      await expect(ensureCa(root)).rejects.toThrow(
        new PkiError(
          `${keyFile} is not the private key of the CA certificate ${join(root, "pki", "ca.crt")}; to start over with a new CA, move ${join(root, "pki", "ca.crt")} and ${keyFile} away and restart (every client that pinned the old CA must then log in again with the new fingerprint)`,
          keyFile,
        ),
      );
      rmSync(keyFile);
      await expect(ensureCa(root)).rejects.toThrow(/CA key .*ca\.key is missing, but its certificate .*ca\.crt is there/);
      expect(existsSync(keyFile)).toBe(false);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("makes a new CA when only a key was left behind", async () => {
    const first = await ensureCa(root);
    rmSync(join(root, "pki", "ca.crt"));
    const second = await ensureCa(root);
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(new X509Certificate(second.certPem).checkPrivateKey(createPrivateKey(readFileSync(join(root, "pki", "ca.key"))))).toBe(true);
  });
});

describe("fingerprints", () => {
  it("hash the DER, from PEM or DER", async () => {
    const ca = await ensureCa(root);
    const der = new X509Certificate(ca.certPem).raw;
    expect(certificateFingerprint(ca.certPem)).toBe(ca.fingerprint);
    expect(certificateFingerprint(der)).toBe(ca.fingerprint);
  });

  it("are read with or without prefix and colons, in any case", () => {
    const hex = "ab".repeat(32);
    const canonical = `sha256:${hex}`;
    expect(normalizeFingerprint(canonical)).toBe(canonical);
    expect(normalizeFingerprint(hex.toUpperCase())).toBe(canonical);
    expect(normalizeFingerprint(`SHA256:${"AB:".repeat(31)}AB`)).toBe(canonical);
    expect(normalizeFingerprint(`sha256=${"ab:".repeat(31)}ab`)).toBe(canonical);
    expect(normalizeFingerprint(` ${canonical}\n`)).toBe(canonical);
    expect(normalizeFingerprint("sha256:abcd")).toBeUndefined();
    expect(normalizeFingerprint(`sha1:${hex}`)).toBeUndefined();
    expect(normalizeFingerprint("zz".repeat(32))).toBeUndefined();
    expect(formatFingerprint(canonical)).toBe(`${"AB:".repeat(31)}AB`);
    expect(formatFingerprint("nonsense")).toBe("nonsense");
  });
});
