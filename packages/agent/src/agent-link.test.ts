import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ConnectResponseSchema, FaultEventType, RevertReason, StartFaultSchema, durationFromMs } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startAgent } from "./agent.js";
import type { Agent, AgentOptions } from "./agent.js";
import { AgentConfigError, parseAgentConfig } from "./config.js";
import { createFaultRegistry } from "./faults/index.js";
import type { FaultKindDefinition } from "./faults/index.js";
import { fileFault } from "./testing/file-fault.js";
import { joinTokenFor, startFakeControlPlane } from "./testing/fake-control-plane.js";
import type { FakeControlPlane } from "./testing/fake-control-plane.js";
import { captureLog } from "./testing/log-capture.js";

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

describe("agent link: refusals and the lease cap", () => {
  let dir: string;
  let planes: FakeControlPlane[];
  let agents: Agent[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-link-"));
    planes = [];
    agents = [];
  });
  afterEach(async () => {
    for (const a of agents) await a.stop();
    for (const p of planes) await p.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const plane = async (options: Partial<Parameters<typeof startFakeControlPlane>[0]> = {}) => {
    const p = await startFakeControlPlane({ dataDir: join(dir, "cp"), ...options });
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
      backoffMaxMs: 300,
      joinTokenBackoffMaxMs: 300,
      ...options,
    });
    agents.push(a);
    return a;
  };
  const settled = (a: Agent) => {
    let refused: grpc.ServiceError | undefined;
    void a.refused.then((e) => (refused = e));
    return () => refused;
  };
  const connects = (p: FakeControlPlane) => p.calls.filter((c) => c.method === "connect").length;

  it("stops for good on `revoked` from the control plane it verified against the pinned CA", async () => {
    const p = await plane();
    p.connect = { kind: "refuse", code: grpc.status.PERMISSION_DENIED, refusal: "revoked", details: "agent revoked by admin" };
    const a = await agent({ server: p.address, token: p.token });
    const refused = await Promise.race([a.refused, sleep(15_000).then(() => undefined)]);
    expect(refused?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused?.details).toBe("agent revoked by admin");
    // No reconnect after a revocation.
    const count = connects(p);
    await sleep(800);
    expect(connects(p)).toBe(count);
  });

  it("stops on `revoked` arriving on a live stream too", async () => {
    const p = await plane();
    const a = await agent({ server: p.address, token: p.token });
    await waitFor("the link up", () => p.streams.size > 0);
    const md = new grpc.Metadata();
    md.set("firedrill-refusal", "revoked");
    for (const s of p.streams) s.emit("error", { code: grpc.status.PERMISSION_DENIED, details: "revoked just now", metadata: md });
    const refused = await Promise.race([a.refused, sleep(10_000).then(() => undefined)]);
    expect(refused?.details).toBe("revoked just now");
  });

  it("keeps retrying on UNAUTHENTICATED without `revoked`, and on an unknown refusal", async () => {
    const p = await plane();
    p.connect = { kind: "refuse", code: grpc.status.UNAUTHENTICATED, details: "go away" };
    const a = await agent({ server: p.address, token: p.token });
    const refused = settled(a);
    await waitFor("three connects", () => connects(p) >= 3);
    p.connect = { kind: "refuse", code: grpc.status.PERMISSION_DENIED, refusal: "identity-mismatch", details: "not you" };
    const seen = connects(p);
    await waitFor("more connects", () => connects(p) >= seen + 2);
    expect(refused()).toBeUndefined();
  });

  it("re-enrolls with the join token on `not-enrolled`", async () => {
    const p = await plane();
    const a = await agent({ server: p.address, token: p.token });
    await waitFor("the link up", () => p.streams.size > 0);
    const firstId = a.agentId;
    p.connect = { kind: "refuse", code: grpc.status.UNAUTHENTICATED, refusal: "not-enrolled", details: "unknown agent; enroll again" };
    for (const s of p.streams) s.emit("error", { code: grpc.status.UNAVAILABLE, details: "restart" });
    await waitFor("a second enrollment", () => p.calls.filter((c) => c.method === "enroll").length >= 2);
    p.connect = { kind: "welcome", leaseTtlMs: 15_000, heartbeatMs: 5000 };
    await waitFor("the link up again", () => p.streams.size > 0);
    expect(a.agentId).not.toBe(firstId);
    const last = p.calls.filter((c) => c.method === "connect").at(-1)!;
    expect(last.clientCn).toBe(a.agentId);
    expect(last.authorization).toBeUndefined();
  });

  it("never stops on an insecure link, whatever it is told", async () => {
    const p = await plane({ insecure: true });
    const token = joinTokenFor(p.ca);
    p.connect = { kind: "refuse", code: grpc.status.PERMISSION_DENIED, refusal: "revoked", details: "revoked (says who?)" };
    const a = await agent({ server: p.address, token, insecure: true });
    const refused = settled(a);
    await waitFor("three connects", () => connects(p) >= 3);
    expect(refused()).toBeUndefined();
    // Insecure mode: the join token rides on Connect, the id is self-chosen.
    const call = p.calls.find((c) => c.method === "connect")!;
    expect(call.authorization).toBe(`Bearer ${token}`);
    expect(p.calls.some((c) => c.method === "enroll")).toBe(false);
    expect(a.agentId).toMatch(/^agt_[0-9a-f]{16}$/);
  });

  it("refuses --insecure to a server that is not on loopback", async () => {
    const base = { token: "fdj_whatever-token", stateDir: "/tmp/x", labels: {}, logLevel: "info", imds: "off", maxLeaseTtlMs: 300_000, reconnectMaxMs: 1000, progressIntervalMs: 1000 };
    expect(() => parseAgentConfig({ ...base, server: "10.0.0.5:7070", insecure: true })).toThrow(/--insecure: 10.0.0.5:7070 is not a loopback address/);
    expect(() => parseAgentConfig({ ...base, server: "cp.example.com:7070", insecure: true })).toThrow(AgentConfigError);
    expect(parseAgentConfig({ ...base, server: "localhost:7070", insecure: true }).insecure).toBe(true);
    expect(parseAgentConfig({ ...base, server: "[::1]:7070", insecure: true }).insecure).toBe(true);
    await expect(agent({ server: "10.0.0.5:7070", token: "a-long-enough-token", insecure: true })).rejects.toThrow(/not a loopback address/);
  });

  it("clamps a 1-hour lease to --max-lease-ttl: faults are reverted after the local maximum of silence", async () => {
    const p = await plane();
    // A heartbeat interval long enough that the link itself does not notice the silence.
    p.connect = { kind: "welcome", leaseTtlMs: 3_600_000, heartbeatMs: 60_000 };
    const captured = captureLog();
    await agent({ server: p.address, token: p.token, maxLeaseTtlMs: 1500, log: captured.log });
    await waitFor("the link up", () => p.streams.size > 0);
    const path = join(dir, "effect");
    const events: Array<{ type: FaultEventType; reason: RevertReason }> = [];
    for (const s of p.streams) {
      s.on("data", (m: { message: { case: string; value: { type: FaultEventType; reason: RevertReason } } }) => {
        if (m.message.case === "faultEvent") events.push(m.message.value);
      });
    }
    p.broadcast(
      create(ConnectResponseSchema, {
        message: { case: "startFault", value: create(StartFaultSchema, { faultId: "f1", kind: "test-file", params: { path }, duration: durationFromMs(60_000) }) },
      }),
    );
    await waitFor("the fault's effect", () => existsSync(path));
    const started = Date.now();
    // Then silence: no lease renewal. A 1 h lease would keep the fault; the cap reverts it.
    await waitFor("the revert", () => !existsSync(path), 10_000);
    expect(Date.now() - started).toBeLessThan(5000);
    await waitFor("the REVERTED event", () => events.find((e) => e.type === FaultEventType.REVERTED));
    expect(events.find((e) => e.type === FaultEventType.REVERTED)!.reason).toBe(RevertReason.LEASE);
    const warnings = captured.find(/longer than --max-lease-ttl/);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ askedMs: 3_600_000, maxMs: 1500 });
  });
});

describe("firedrill-agent exit codes", () => {
  const bin = join(import.meta.dirname, "bin.ts");
  const run = (args: string[], timeoutMs = 30_000) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", bin, ...args], {
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, FIREDRILL_LOG_LEVEL: "error", FIREDRILL_TOKEN: "", FIREDRILL_TOKEN_FILE: "" },
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });

  it("exits 3 when revoked by the verified control plane, 2 for --insecure off loopback or a removed flag", async () => {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-exit-"));
    const p = await startFakeControlPlane({ dataDir: join(dir, "cp") });
    try {
      p.connect = { kind: "refuse", code: grpc.status.PERMISSION_DENIED, refusal: "revoked", details: "revoked by admin" };
      const common = ["--state-dir", join(dir, "agent"), "--imds", "off", "--no-guard"];
      const revoked = await run(["run", "--server", p.address, "--token", p.token, ...common]);
      expect(revoked.stderr).toMatch(/revoked this agent/);
      expect(revoked.code).toBe(3);
      const insecure = await run(["run", "--server", "10.0.0.5:7070", "--token", p.token, "--insecure", ...common]);
      expect(insecure.code).toBe(2);
      expect(insecure.stderr).toMatch(/not a loopback address/);
      const ca = await run(["run", "--server", p.address, "--token", p.token, "--ca", "/etc/ca.pem", ...common]);
      expect(ca.code).toBe(2);
      expect(ca.stderr).toMatch(/--ca is gone/);
    } finally {
      await p.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
