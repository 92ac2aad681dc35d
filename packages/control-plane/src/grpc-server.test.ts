import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AGENT_TOKEN_METADATA_KEY,
  AgentService,
  ConnectRequestSchema,
  bearer,
  createClientConstructor,
} from "@firedrill/protocol";
import type { ConnectResponse } from "@firedrill/protocol";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ListenError, startControlPlane } from "./index.js";
import type { ControlPlane } from "./index.js";

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("gRPC listener", () => {
  const dirs: string[] = [];
  let cp: ControlPlane | undefined;
  afterEach(async () => {
    await cp?.close();
    cp = undefined;
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-tls-"));
    dirs.push(dir);
    return dir;
  };
  const options = (dataDir: string) => ({
    dataDir,
    grpcAddr: "127.0.0.1:0",
    httpAddr: "127.0.0.1:0",
    logger: pino({ level: "silent" }),
    out: new PassThrough(),
  });

  it.skipIf(!hasOpenssl())("serves agents over TLS when given a certificate and key", async () => {
    const dir = tempDir();
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
        "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      { stdio: "ignore" },
    );
    cp = await startControlPlane({ ...options(join(dir, "data")), tlsCertFile: cert, tlsKeyFile: key });
    const token = readFileSync(cp.joinTokenFile, "utf8").trim();
    const Client = createClientConstructor(AgentService);
    const client = new Client(cp.grpcAddress, grpc.credentials.createSsl(readFileSync(cert)), {
      "grpc.ssl_target_name_override": "localhost",
    });
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(token));
    const stream = client.connect(metadata);
    stream.on("error", () => {});
    const welcome = new Promise<ConnectResponse>((resolve) => stream.once("data", resolve));
    stream.write(create(ConnectRequestSchema, { message: { case: "hello", value: { agentId: "tls-1" } } }));
    expect((await welcome).message.case).toBe("welcome");
    stream.cancel();
    client.close();

    // A plaintext client cannot talk to the TLS port.
    const plain = new Client(cp.grpcAddress, grpc.credentials.createInsecure());
    const plainStream = plain.connect(metadata, { deadline: Date.now() + 3000 });
    const status = await new Promise<grpc.ServiceError>((resolve) => plainStream.on("error", resolve));
    plain.close();
    expect(status.code).not.toBe(grpc.status.OK);
  });

  it("names the file when the TLS key cannot be read", async () => {
    const dir = tempDir();
    const attempt = startControlPlane({ ...options(join(dir, "data")), tlsCertFile: join(dir, "missing-cert.pem"), tlsKeyFile: join(dir, "missing-key.pem") });
    await expect(attempt).rejects.toBeInstanceOf(ListenError);
    await expect(attempt).rejects.toThrow(/cannot read the TLS certificate \(--tls-cert\) .*missing-cert\.pem/);
  });
});
