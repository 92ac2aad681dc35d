import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureCa, ensureServerCert, formatFingerprint } from "@firedrill/control-plane";
import type { CertificateAuthority } from "@firedrill/control-plane";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { FakeApi } from "../testing/fake-api.js";
import { TEST_TOKEN as TOKEN, runCliInProcess, startFakeApi } from "../testing/fake-api.js";

const WHOAMI = { principal: { name: "admin", kind: "person", role: "admin" }, token: { id: "tok_0123456789ab", scope: null, expiresAt: null } };
const mode = (path: string) => statSync(path).mode & 0o777;

/** A stand-in control plane: GET /api/v1/whoami for the one valid token; over https with `tls`. Returns its URL. */
const servers: FakeApi[] = [];
async function api(tls?: { key: string; cert: string }): Promise<string> {
  const server = await startFakeApi({
    token: TOKEN,
    refusal: () => "the API token is not valid for this control plane: send Authorization: Bearer <token>",
    ...(tls ? { tls } : {}),
  });
  server.answer("GET", "/api/v1/whoami", 200, WHOAMI);
  servers.push(server);
  return server.url;
}

let pkiDir: string;
let otherPkiDir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let httpUrl: string;
/** Its certificate is for 127.0.0.1 and localhost, from `ca`. */
let httpsUrl: string;
/** Same CA, but a certificate only for cp.example.internal. */
let wrongNameUrl: string;
/** A certificate for 127.0.0.1 from `otherCa`. */
let otherCaUrl: string;

beforeAll(async () => {
  pkiDir = mkdtempSync(join(tmpdir(), "firedrill-login-pki-"));
  otherPkiDir = mkdtempSync(join(tmpdir(), "firedrill-login-pki-other-"));
  ca = await ensureCa(pkiDir);
  otherCa = await ensureCa(otherPkiDir);
  const good = await ensureServerCert(pkiDir, ca, ["127.0.0.1", "localhost"]);
  const wrongName = await ensureServerCert(mkdtempSync(join(pkiDir, "b-")), ca, ["cp.example.internal"]);
  const other = await ensureServerCert(otherPkiDir, otherCa, ["127.0.0.1"]);
  httpUrl = await api();
  httpsUrl = await api({ key: good.keyPem, cert: good.certPem });
  wrongNameUrl = await api({ key: wrongName.keyPem, cert: wrongName.certPem });
  otherCaUrl = await api({ key: other.keyPem, cert: other.certPem });
});
afterAll(async () => {
  for (const server of servers) await server.close();
  rmSync(pkiDir, { recursive: true, force: true });
  rmSync(otherPkiDir, { recursive: true, force: true });
});

let home: string;
let configFile: string;
let tokenFile: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), "firedrill-login-"));
  configFile = join(home, "xdg", "firedrill", "config.json");
  tokenFile = join(home, "admin-token");
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  vi.stubEnv("XDG_CONFIG_HOME", join(home, "xdg"));
  vi.stubEnv("FIREDRILL_CONFIG", "");
  vi.stubEnv("FIREDRILL_SERVER", "");
  vi.stubEnv("FIREDRILL_TOKEN", "");
});
afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(home, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  const run = await runCliInProcess(...args);
  // Only `token create` ever prints a token.
  expect(run.out + run.err).not.toContain(TOKEN);
  return run;
}

describe("firedrill login over http", () => {
  it("checks the token, saves server and token (0600 in a 0700 folder), and later commands use them", async () => {
    const login = await cli("login", "--server", `${httpUrl}/`, "--token-file", tokenFile);
    expect(login).toEqual({
      code: 0,
      err: "",
      out: `logged in to ${httpUrl} as admin (admin)\nsaved the server, the token to ${configFile} (mode 0600)\n`,
    });
    expect(JSON.parse(readFileSync(configFile, "utf8"))).toEqual({ server: httpUrl, token: TOKEN });
    expect(mode(configFile)).toBe(0o600);
    expect(mode(join(home, "xdg", "firedrill"))).toBe(0o700);

    const who = await cli("whoami");
    expect(who.code).toBe(0);
    expect(who.out).toContain(`Token    tok_0123456789ab (from the config file ${configFile})\n`);
    expect(who.out).toContain(`Server   ${httpUrl}\n`);

    // FIREDRILL_TOKEN overrides the saved token.
    vi.stubEnv("FIREDRILL_TOKEN", "fdt_000000000000_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ");
    expect((await cli("whoami")).err).toBe(
      "error: the API token is not valid for this control plane: send Authorization: Bearer <token> (the token came from FIREDRILL_TOKEN)\n",
    );
  });

  it("--json prints who and where, never the token", async () => {
    const login = await cli("login", "--server", httpUrl, "--token-file", tokenFile, "--json");
    expect(JSON.parse(login.out)).toEqual({ server: httpUrl, principal: WHOAMI.principal, tokenId: "tok_0123456789ab", configFile, caFingerprint: null });
  });

  it("writes nothing when the server refuses the token or there is none", async () => {
    writeFileSync(tokenFile, "fdt_000000000000_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\n");
    const refused = await cli("login", "--server", httpUrl, "--token-file", tokenFile);
    expect(refused).toEqual({
      code: 1,
      out: "",
      err: `error: the API token is not valid for this control plane: send Authorization: Bearer <token> (the token came from --token-file ${tokenFile})\n`,
    });
    const none = await cli("login", "--server", httpUrl);
    expect(none).toEqual({
      code: 1,
      out: "",
      err: `error: login needs a token: firedrill login --server ${httpUrl} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN\n`,
    });
    expect(existsSync(configFile)).toBe(false);
  });

  it("takes the token from FIREDRILL_TOKEN, and refuses --ca-fingerprint for http", async () => {
    vi.stubEnv("FIREDRILL_TOKEN", TOKEN);
    expect((await cli("login", "--server", httpUrl)).code).toBe(0);
    const pinned = await cli("login", "--server", httpUrl, "--ca-fingerprint", ca.fingerprint);
    expect(pinned.code).toBe(1);
    expect(pinned.err).toBe(
      `error: --ca-fingerprint pins the CA of an https server, but ${httpUrl} is http://; use https://${new URL(httpUrl).host} if the server has TLS\n`,
    );
  });
});

describe("firedrill login over https", () => {
  it("pins the CA whose fingerprint is given (any notation); later commands trust exactly it", async () => {
    const login = await cli("login", "--server", httpsUrl, "--token-file", tokenFile, "--ca-fingerprint", formatFingerprint(ca.fingerprint));
    expect(login).toEqual({
      code: 0,
      err: "",
      out: `logged in to ${httpsUrl} as admin (admin)\nsaved the server, the token, pinned CA ${ca.fingerprint} to ${configFile} (mode 0600)\n`,
    });
    const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, string>;
    expect(config).toEqual({ server: httpsUrl, token: TOKEN, caFingerprint: ca.fingerprint, caCert: expect.any(String) });
    expect(new X509Certificate(config.caCert!).raw.equals(new X509Certificate(ca.certPem).raw)).toBe(true);

    expect((await cli("whoami")).code).toBe(0);

    // Logging in again keeps the pinned CA without --ca-fingerprint.
    expect((await cli("login", "--token-file", tokenFile)).out).toContain(`pinned CA ${ca.fingerprint}`);

    // A server at that address with another CA is refused, naming the pin.
    writeFileSync(configFile, JSON.stringify({ ...config, server: otherCaUrl }));
    const other = await cli("whoami");
    expect(other.code).toBe(1);
    expect(other.err).toBe(
      `error: the TLS certificate of the control plane at ${otherCaUrl} could not be verified (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain): it is not signed by the pinned CA ${ca.fingerprint} (from the config file ${configFile}). If the server's CA was replaced, get the new fingerprint from its operator (firedrill server prints it at start) and log in again: firedrill login --server ${otherCaUrl} --token-file FILE --ca-fingerprint sha256:…\n`,
    );
  });

  it("refuses a server whose CA has another fingerprint, naming what it saw, and writes nothing", async () => {
    const login = await cli("login", "--server", otherCaUrl, "--token-file", tokenFile, "--ca-fingerprint", ca.fingerprint.toUpperCase().replace("SHA256:", ""));
    expect(login).toEqual({
      code: 1,
      out: "",
      err: `error: the server at ${otherCaUrl} presented a CA with fingerprint ${otherCa.fingerprint} (${otherCa.subject}); expected ${ca.fingerprint}; check with the server's operator (firedrill server prints its CA fingerprint at start) before trusting it. Nothing was saved.\n`,
    });
    expect(existsSync(configFile)).toBe(false);
  });

  it("refuses the server's own certificate as a CA, and a fingerprint that is not one", async () => {
    const leaf = new X509Certificate(readFileSync(join(pkiDir, "pki", "http.crt"))).fingerprint256;
    const login = await cli("login", "--server", httpsUrl, "--token-file", tokenFile, "--ca-fingerprint", leaf);
    expect(login.code).toBe(1);
    expect(login.err).toContain(" is the server's own certificate, not its CA: pin the CA's fingerprint, which firedrill server prints at start)");
    const bad = await cli("login", "--server", httpsUrl, "--token-file", tokenFile, "--ca-fingerprint", "sha256:abc");
    expect(bad.err).toBe(`error: --ca-fingerprint "sha256:abc" is not a SHA-256 fingerprint; give the 64 hex digits firedrill server prints at start, e.g. sha256:3b1f…\n`);
    expect(existsSync(configFile)).toBe(false);
  });

  it("without --ca-fingerprint, a server with its own CA fails verification and the error says to pin it", async () => {
    const login = await cli("login", "--server", httpsUrl, "--token-file", tokenFile);
    expect(login).toEqual({
      code: 1,
      out: "",
      err: `error: the TLS certificate of the control plane at ${httpsUrl} could not be verified (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain): it is not signed by a CA this machine trusts. If the server uses its own CA, pin it: firedrill login --server ${httpsUrl} --token-file FILE --ca-fingerprint sha256:… (firedrill server prints the CA fingerprint at start)\n`,
    });
    expect(existsSync(configFile)).toBe(false);
  });

  it("with the right CA but a certificate for other names, says which name is missing", async () => {
    const login = await cli("login", "--server", wrongNameUrl, "--token-file", tokenFile, "--ca-fingerprint", ca.fingerprint);
    expect(login.code).toBe(1);
    expect(login.err).toMatch(
      /^error: the TLS certificate of the control plane at https:\/\/127\.0\.0\.1:\d+ could not be verified \(ERR_TLS_CERT_ALTNAME_INVALID: .*\): it is not issued for 127\.0\.0\.1\. Connect by a name or address the certificate holds, or add 127\.0\.0\.1 to the server's names \(firedrill server --advertise 127\.0\.0\.1, which reissues the certificate of its own CA\)\n$/,
    );
    expect(existsSync(configFile)).toBe(false);
  });

  it("the saved token and CA are not used for another server", async () => {
    expect((await cli("login", "--server", httpsUrl, "--token-file", tokenFile, "--ca-fingerprint", ca.fingerprint)).code).toBe(0);
    const unpinned = await cli("--server", `${httpsUrl}/elsewhere`, "whoami");
    expect(unpinned.err).toMatch(
      new RegExp(`: it is not signed by a CA this machine trusts\\. .*; the CA and token saved by firedrill login are for ${httpsUrl.replaceAll(".", "\\.")}: to use them, give that as --server\n$`),
    );
    const elsewhere = await cli("--server", httpUrl, "whoami");
    expect(elsewhere.err).toBe(
      `error: the control plane at ${httpUrl} needs an API token and none is set: run firedrill login --server ${httpUrl} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN (the token saved by firedrill login is for ${httpsUrl})\n`,
    );
  });
});
