import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { startControlPlane } from "@firedrill/control-plane";
import type { AgentJson, ControlPlane } from "@firedrill/control-plane";
import {
  AGENT_TOKEN_METADATA_KEY,
  AgentService,
  ConnectRequestSchema,
  FaultEventSchema,
  FaultEventType,
  HeartbeatSchema,
  HelloSchema,
  RevertReason,
  bearer,
  createClientConstructor,
  timestampFromMs,
} from "@firedrill/protocol";
import type { ConnectRequest, ConnectResponse, StartFault, StopFault } from "@firedrill/protocol";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli } from "./program.js";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");
const BIN = "packages/cli/src/bin.ts";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `firedrill` binary from source, as `pnpm firedrill` does. */
function runBin(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, FIREDRILL_SERVER: "", FIREDRILL_TOKEN: process.env.FIREDRILL_TOKEN ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`firedrill ${args.join(" ")} did not exit within ${timeoutMs}ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Runs the CLI in this process (same code path as the binary, minus process start-up). */
async function runInProcess(args: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(["node", "firedrill", ...args], {
    out: (t) => void (stdout += t),
    err: (t) => void (stderr += t),
  });
  return { code, stdout, stderr };
}

/** A minimal agent on a real gRPC stream that acknowledges what it is told. */
function connectAgent(address: string, token: string, agentId: string) {
  const Client = createClientConstructor(AgentService);
  const client = new Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(token));
  const stream = client.connect(metadata);
  stream.on("error", () => {});
  const send = (message: ConnectRequest["message"]) => stream.write(create(ConnectRequestSchema, { message }));
  const event = (faultId: string, type: FaultEventType, reason = RevertReason.UNSPECIFIED) =>
    send({
      case: "faultEvent",
      value: create(FaultEventSchema, { faultId, type, reason, time: timestampFromMs(Date.now()), measurements: { cpu_percent: 41.2 } }),
    });
  const welcomed = new Promise<void>((done) => {
    stream.on("data", (response: ConnectResponse) => {
      const m = response.message;
      if (m.case === "welcome") done();
      if (m.case === "startFault") {
        const start: StartFault = m.value;
        event(start.faultId, FaultEventType.ACCEPTED);
        event(start.faultId, FaultEventType.STARTED);
      }
      if (m.case === "stopFault") {
        const stop: StopFault = m.value;
        event(stop.faultId, FaultEventType.REVERTED, stop.reason);
      }
    });
  });
  send({
    case: "hello",
    value: create(HelloSchema, {
      agentId,
      version: "0.1.0",
      facts: { hostname: `${agentId}.test` },
      labels: { app: "web", "firedrill:opt-in": "true" },
      capabilities: { faultKinds: ["cpu-burn"] },
    }),
  });
  const heartbeats = setInterval(() => send({ case: "heartbeat", value: create(HeartbeatSchema) }), 200);
  return {
    welcomed,
    close() {
      clearInterval(heartbeats);
      stream.cancel();
      client.close();
    },
  };
}

describe("firedrill CLI against a real control plane", () => {
  let dataDir: string;
  let cp: ControlPlane;
  let agent: ReturnType<typeof connectAgent> | undefined;

  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "firedrill-cli-"));
    cp = await startControlPlane({
      dataDir,
      grpcAddr: "127.0.0.1:0",
      httpAddr: "127.0.0.1:0",
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 500,
      ackTimeoutMs: 2000,
      logger: pino({ level: "silent" }),
      out: new PassThrough(),
      // This test's agent speaks plain gRPC with the join token (enrollment is tested in the control plane).
      insecureAgents: true,
    });
    agent = connectAgent(cp.grpcAddress, readFileSync(cp.joinTokenFile, "utf8").trim(), "web-1");
    await agent.welcomed;
    // The CLI (in this process and as a child) authenticates with the bootstrap admin token and
    // reads no config file of whoever runs the tests.
    process.env.FIREDRILL_TOKEN = readFileSync(cp.adminTokenFile, "utf8").trim();
    process.env.FIREDRILL_CONFIG = join(dataDir, "cli-config.json");
  });
  afterEach(async () => {
    delete process.env.FIREDRILL_TOKEN;
    delete process.env.FIREDRILL_CONFIG;
    agent?.close();
    await cp.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("`agents --json` lists the connected agent; errors go to stderr with exit 1", async () => {
    const listed = await runBin(["agents", "--json"], { FIREDRILL_SERVER: cp.httpUrl });
    expect(listed.stderr).toBe("");
    expect(listed.code).toBe(0);
    const agents = JSON.parse(listed.stdout) as AgentJson[];
    expect(agents).toEqual([expect.objectContaining({ id: "web-1", hostname: "web-1.test", connected: true, labels: { app: "web", "firedrill:opt-in": "true" } })]);

    const refused = await runBin([
      "--server", cp.httpUrl, "fault", "start", "--agent", "web-1", "--kind", "cpu-burn", "--param", "load=150", "--duration", "30s",
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toBe(
      "error: invalid fault request\n  params.load: 150 is above the maximum 100\n",
    );
  });

  it("says plainly when the control plane is unreachable", async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((done) => probe.listen(0, "127.0.0.1", done));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((done) => probe.close(done));
    const unreachable = await runInProcess(["--server", `http://127.0.0.1:${port}`, "agents"]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stdout).toBe("");
    expect(unreachable.stderr).toBe(
      `error: cannot reach the control plane at http://127.0.0.1:${port} (ECONNREFUSED): is \`firedrill server\` running? Set --server or FIREDRILL_SERVER.\n`,
    );
  });

  it("starts, lists, shows and stops a fault", async () => {
    const started = await runInProcess(["--server", cp.httpUrl, "fault", "start", "--agent", "web-1", "--kind", "cpu-burn", "--param", "load=40", "--duration", "5m"]);
    expect(started.stderr).toBe("");
    expect(started.code).toBe(0);
    const id = started.stdout.trim();
    expect(id).toMatch(/^flt_[0-9a-f]{16}$/);

    const listed = await runInProcess(["--server", cp.httpUrl, "fault", "list"]);
    expect(listed.stdout).toMatch(/^ID +AGENT +KIND +STATE +REASON +STARTED +DURATION +MEASURED$/m);
    expect(listed.stdout).toMatch(new RegExp(`^${id} +web-1 +cpu-burn +(accepted|running) +- +`, "m"));

    const stopped = await runInProcess(["--server", cp.httpUrl, "fault", "stop", id]);
    expect(stopped.stderr).toBe("");
    expect(stopped.stdout).toBe(`${id}  reverted (stopped)\n`);

    const active = await runInProcess(["--server", cp.httpUrl, "fault", "list"]);
    expect(active.stdout).toBe("no active faults (--all shows ended ones)\n");
    const shown = await runInProcess(["--server", cp.httpUrl, "fault", "show", id]);
    expect(shown.stdout).toContain("State     reverted (stopped)");
    expect(shown.stdout).toMatch(/ accepted +cpu_percent=41.2\n/);
    expect(shown.stdout).toMatch(/ reverted +reason=stopped/);

    const missing = await runInProcess(["--server", cp.httpUrl, "fault", "stop", "--agent", "web-1"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: give the fault id to stop/);
    const all = await runInProcess(["--server", cp.httpUrl, "fault", "stop", "--agent", "web-1", "--all"]);
    expect(all.stdout).toBe("agent web-1 had no active faults\n");
  });
});

describe("firedrill server", () => {
  it("starts, says where it listens, and exits 0 on SIGTERM", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "firedrill-server-"));
    try {
      const child = spawn(
        process.execPath,
        ["--conditions=@firedrill/source", "--import", "tsx", BIN, "server", "--data-dir", join(dataDir, "data"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn"],
        { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      let stdout = "";
      const exited = new Promise<number | null>((done) => child.on("close", done));
      const kill = setTimeout(() => child.kill("SIGKILL"), 20_000);
      const url = await new Promise<string>((done, fail) => {
        child.stdout.on("data", (c: Buffer) => {
          stdout += c.toString();
          const match = /HTTP API: +(http:\/\/127\.0\.0\.1:\d+)\/api\/v1/.exec(stdout);
          if (match?.[1]) done(match[1]);
        });
        void exited.then(() => fail(new Error(`server exited early: ${stdout}`)));
      });
      expect(stdout).toContain("generated the first agent join token");
      const adminFile = join(dataDir, "data", "admin-token");
      expect(stdout).toContain(`first admin API token`);
      expect(stdout).toContain(adminFile);
      expect(stdout).not.toContain(readFileSync(adminFile, "utf8").trim());
      expect(stdout).toMatch(/agents \(gRPC\): +127\.0\.0\.1:\d+ \(TLS, CA sha256:[0-9a-f]{64}\)/);
      expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ ok: true });
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      clearTimeout(kill);

      // A lost admin token: reset offline; the new one is written 0600 and never printed.
      const before = readFileSync(adminFile, "utf8");
      const reset = await runInProcess(["server", "reset-admin-token", "--data-dir", join(dataDir, "data")]);
      expect(reset.code).toBe(0);
      const after = readFileSync(adminFile, "utf8");
      expect(after).not.toBe(before);
      expect(statSync(adminFile).mode & 0o777).toBe(0o600);
      expect(reset.stdout).toMatch(/revoked 1 earlier admin token; the new admin token tok_[0-9a-f]{12} is in .*admin-token \(mode 0600\)/);
      expect(reset.stdout).not.toContain(after.trim());
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
