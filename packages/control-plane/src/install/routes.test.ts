/**
 * The public `/install/…` routes on a real control plane serving HTTPS from its own CA: the script
 * with this server's gRPC address and version filled in, the CA the join tokens pin, and only the
 * agent artifacts of --agent-releases.
 */
import { X509Certificate, createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseJoinToken } from "@firedrill/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTROL_PLANE_VERSION } from "../version.js";
import { startTestControlPlane } from "../test-support/test-agent.js";
import type { TestControlPlane } from "../test-support/test-agent.js";
import { AGENT_ARTIFACT_PATTERN, listAgentReleases } from "./routes.js";
import { defaultAgentReleasesDir, defaultAgentScriptFile, findRepoRoot } from "./paths.js";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** GET over HTTPS to 127.0.0.1 trusting only `ca`, with any Host header. */
function get(port: number, path: string, ca: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, ca, agent: false, headers, timeout: 10_000, servername: "localhost" }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

const json = (a: Answer) => JSON.parse(a.body.toString("utf8")) as { error: { code: string; message: string } };

describe("install routes", () => {
  let tcp: TestControlPlane;
  let releases: string;
  let caPem: string;
  let port: number;
  let grpcPort: number;
  const version = CONTROL_PLANE_VERSION;
  const tarball = `firedrill-agent-${version}-linux-x64.tar.gz`;
  const tarballBytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));

  beforeAll(async () => {
    releases = mkdtempSync(join(tmpdir(), "firedrill-releases-"));
    writeFileSync(join(releases, tarball), tarballBytes);
    writeFileSync(join(releases, `${tarball}.sha256`), `${createHash("sha256").update(tarballBytes).digest("hex")}  ${tarball}\n`);
    writeFileSync(join(releases, "secret.txt"), "not for you\n");
    mkdirSync(join(releases, `firedrill-agent-9.9.9-linux-arm64.tar.gz`));
    // 0.0.0.0 is not loopback: the API serves HTTPS with a certificate of the server's own CA.
    tcp = await startTestControlPlane({ httpAddr: "0.0.0.0:0", insecureAgents: false, agentReleasesDir: releases });
    caPem = readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8");
    port = Number(new URL(tcp.cp.httpUrl).port);
    grpcPort = Number(tcp.cp.grpcAddress.split(":").pop());
  });
  afterAll(async () => {
    await tcp?.cleanup();
    rmSync(releases, { recursive: true, force: true });
  });

  it("declares every install route public, and nothing else is public but /healthz, the console's files and its login", () => {
    const routes = tcp.cp.httpRoutes();
    const open = routes.filter((r) => r.permission === "public" && (r.method === "GET" || r.method === "POST")).map((r) => `${r.method} ${r.url}`);
    expect(open.sort()).toEqual([
      "GET /",
      "GET /assets/:file",
      "GET /healthz",
      "GET /install/:file",
      "GET /install/agent.sh",
      "GET /install/ca.pem",
      "POST /console/api/login",
    ]);
    const byKey = new Map(routes.map((r) => [`${r.method} ${r.url}`, r.permission]));
    for (const url of ["/install/agent.sh", "/install/ca.pem", "/install/:file"]) {
      expect(byKey.get(`GET ${url}`), url).toBe("public");
      expect(byKey.get(`HEAD ${url}`), url).toBe("public");
    }
  });

  it("serves the script with this server's gRPC address (the request's host), its HTTPS URL and the version, without a token", async () => {
    const answer = await get(port, "/install/agent.sh", caPem);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toMatch(/^text\/x-shellscript/);
    const script = answer.body.toString("utf8");
    expect(script).toContain(`FIREDRILL_VERSION='${version}'\n`);
    expect(script).toContain(`SERVED_SERVER='127.0.0.1:${grpcPort}'\n`);
    expect(script).toContain(`SERVED_BASE_URL='https://127.0.0.1:${port}'\n`);
    expect(script).not.toMatch(/'@@FIREDRILL_[A-Z_]+@@'/);
    expect(spawnSync("dash", ["-n"], { input: script }).status).toBe(0);

    const byName = (await get(port, "/install/agent.sh", caPem, { host: `localhost:${port}` })).body.toString("utf8");
    expect(byName).toContain(`SERVED_SERVER='localhost:${grpcPort}'\n`);
    expect(byName).toContain(`SERVED_BASE_URL='https://localhost:${port}'\n`);
    const v6 = (await get(port, "/install/agent.sh", caPem, { host: `[::1]:${port}` })).body.toString("utf8");
    expect(v6).toContain(`SERVED_SERVER='[::1]:${grpcPort}'\n`);
  });

  it("refuses a Host header that names this server but could not be written into a script, and one that names another server", async () => {
    const odd = await get(port, "/install/agent.sh", caPem, { host: `127.0.0.1:${port}';rm -rf /;'` });
    expect(odd.status).toBe(400);
    expect(json(odd).error.message).toMatch(/Host header .* cannot name the control plane in an install script/);
    const other = await get(port, "/install/agent.sh", caPem, { host: "evil.example.com" });
    expect(other.status).toBe(421);
  });

  it("serves the CA every join token pins", async () => {
    const answer = await get(port, "/install/ca.pem", caPem);
    expect(answer.status).toBe(200);
    expect(answer.body.toString("utf8")).toBe(caPem);
    const der = new X509Certificate(answer.body).raw;
    expect(createHash("sha256").update(der).digest("hex")).toBe(parseJoinToken(tcp.token())!.caSha256);
  });

  it("streams the agent tarball and its checksum from --agent-releases", async () => {
    const answer = await get(port, `/install/${tarball}`, caPem);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/gzip");
    expect(answer.headers["content-length"]).toBe(String(tarballBytes.length));
    expect(answer.body.equals(tarballBytes)).toBe(true);
    const sum = await get(port, `/install/${tarball}.sha256`, caPem);
    expect(sum.status).toBe(200);
    expect(sum.body.toString("utf8")).toBe(`${createHash("sha256").update(tarballBytes).digest("hex")}  ${tarball}\n`);
  });

  it("answers 404 for a release it does not have, saying which it has and how to build them", async () => {
    const missing = await get(port, `/install/firedrill-agent-${version}-linux-arm64.tar.gz`, caPem);
    expect(missing.status).toBe(404);
    const message = json(missing).error.message;
    expect(message).toContain(`it has agent releases for x64 (${version})`);
    expect(message).toContain("pnpm release");
    expect(message).toContain("--agent-releases");
    expect(message).not.toContain(releases); // no server paths to anonymous callers
    // A directory with an artifact's name is not served either.
    expect((await get(port, "/install/firedrill-agent-9.9.9-linux-arm64.tar.gz", caPem)).status).toBe(404);
  });

  it("answers 400 for anything but an agent artifact's name, path traversal included", async () => {
    for (const path of [
      "/install/secret.txt",
      "/install/..%2Fpki%2Fca.key",
      "/install/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
      `/install/${tarball}.bak`,
      `/install/firedrill-agent-${version}-linux-x64.tar.gz%00`,
      "/install/firedrill-agent-0.1.0-linux-riscv.tar.gz",
    ]) {
      const answer = await get(port, path, caPem);
      expect(answer.status, path).toBe(400);
      expect(json(answer).error.code, path).toBe("invalid_artifact_name");
    }
    expect((await get(port, "/install/../pki/ca.key", caPem)).status).not.toBe(200);
  });

  it("names artifacts and finds its files wherever it runs from", () => {
    expect(AGENT_ARTIFACT_PATTERN.test("firedrill-agent-0.1.0-linux-x64.tar.gz")).toBe(true);
    expect(AGENT_ARTIFACT_PATTERN.test("firedrill-agent-1.2.3-rc.1-linux-arm64.tar.gz.sha256")).toBe(true);
    expect(AGENT_ARTIFACT_PATTERN.test("firedrill-server-0.1.0-linux-x64.tar.gz")).toBe(false);
    expect(listAgentReleases(releases)).toBe(`x64 (${version})`);
    expect(listAgentReleases(join(releases, "none"))).toBe("");

    const repo = findRepoRoot()!;
    expect(defaultAgentScriptFile()).toBe(join(repo, "packages/control-plane/src/install/agent.sh"));
    // From the tsc build: the sources' copy.
    expect(defaultAgentScriptFile(join(repo, "packages/control-plane/dist/install"))).toBe(join(repo, "packages/control-plane/src/install/agent.sh"));
    expect(defaultAgentReleasesDir()).toBe(join(repo, "dist/release"));
    // In the server tarball: lib/ beside agent-releases/.
    const bundle = mkdtempSync(join(tmpdir(), "firedrill-bundle-"));
    try {
      mkdirSync(join(bundle, "lib"));
      mkdirSync(join(bundle, "agent-releases"));
      writeFileSync(join(bundle, "lib", "agent.sh"), "#!/bin/sh\n");
      expect(defaultAgentReleasesDir(join(bundle, "lib"))).toBe(join(bundle, "agent-releases"));
      expect(defaultAgentScriptFile(join(bundle, "lib"))).toBe(join(bundle, "lib", "agent.sh"));
    } finally {
      rmSync(bundle, { recursive: true, force: true });
    }
  });
});
