import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidConfigError, startControlPlane } from "./index.js";
import { connectTestAgent, startTestControlPlane } from "./test-support/test-agent.js";
import type { TestAgent, TestControlPlane } from "./test-support/test-agent.js";

describe("control plane start-up", () => {
  let tcp: TestControlPlane | undefined;
  let agent: TestAgent | undefined;
  afterEach(async () => {
    agent?.cancel();
    agent = undefined;
    await tcp?.cleanup();
    tcp = undefined;
  });

  it("writes the join token once with mode 0600, prints it once and stores only its hash", async () => {
    tcp = await startTestControlPlane();
    const token = tcp.token();
    expect(token).toMatch(/^fdj_[0-9a-f]{12}_[A-Za-z0-9_-]{43}_[0-9a-f]{64}$/);
    expect(tcp.cp.joinTokenFile).toBe(join(tcp.dataDir, "join-token"));
    expect(statSync(tcp.cp.joinTokenFile).mode & 0o777).toBe(0o600);
    expect(tcp.output()).toContain(token);
    expect(tcp.output()).toContain(`saved to ${tcp.cp.joinTokenFile}`);

    // The token appears in no database file (main, WAL or shared memory), before or after close.
    const dbFiles = () => readdirSync(tcp!.dataDir).filter((f) => f.startsWith("firedrill.db"));
    expect(dbFiles().length).toBeGreaterThan(0);
    for (const f of dbFiles()) expect(readFileSync(join(tcp.dataDir, f)).includes(token)).toBe(false);
    await tcp.restart();
    for (const f of dbFiles()) expect(readFileSync(join(tcp.dataDir, f)).includes(token)).toBe(false);

    // The second start does not print it again, and the same token still admits agents.
    expect(tcp.output().split(token).length - 1).toBe(1);
    expect(tcp.token()).toBe(token);
    agent = connectTestAgent({ address: tcp.cp.grpcAddress, token });
    agent.hello();
    const welcome = await agent.next("welcome");
    expect(welcome.agentId).toBe("agent-1");
  });

  it("keeps agents and faults across a restart, and marks agents disconnected at start-up", async () => {
    tcp = await startTestControlPlane();
    agent = connectTestAgent({ address: tcp.cp.grpcAddress, token: tcp.token() });
    agent.hello({ labels: { app: "checkout", az: "a", "firedrill:opt-in": "true" } });
    await agent.next("welcome");
    const res = await tcp.fetch(`${tcp.cp.httpUrl}/api/v1/agents/agent-1/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "cpu-burn", params: { load: 40 }, duration: "1m", runId: "run-7" }),
    });
    expect(res.status).toBe(202); // the test agent does not acknowledge
    const { fault } = (await res.json()) as { fault: { id: string } };

    // A control plane that dies without closing the stream cleanly: the agent row still says connected.
    await tcp.restart();
    const agents = (await (await tcp.fetch(`${tcp.cp.httpUrl}/api/v1/agents`)).json()) as {
      agents: { id: string; connected: boolean; labels: Record<string, string>; activeFaults: number }[];
    };
    expect(agents.agents).toEqual([
      expect.objectContaining({ id: "agent-1", connected: false, labels: { app: "checkout", az: "a", "firedrill:opt-in": "true" }, activeFaults: 1 }),
    ]);
    const shown = (await (await tcp.fetch(`${tcp.cp.httpUrl}/api/v1/faults/${fault.id}`)).json()) as {
      fault: { id: string; runId: string; params: unknown; durationMs: number; state: string };
    };
    expect(shown.fault).toMatchObject({ id: fault.id, runId: "run-7", params: { load: 40 }, durationMs: 60_000, state: "pending" });
  });

  it("rejects a lease TTL below 3s with a clear error", async () => {
    const attempt = startControlPlane({
      dataDir: "/nonexistent-never-created",
      grpcAddr: "127.0.0.1:0",
      httpAddr: "127.0.0.1:0",
      leaseTtlMs: 1000,
      logger: pino({ level: "silent" }),
    });
    await expect(attempt).rejects.toBeInstanceOf(InvalidConfigError);
    await expect(attempt).rejects.toThrow(/leaseTtlMs: 1000ms is below the minimum 3000ms/);
  });

  it("rejects a heartbeat interval longer than half the lease, and insecure agents off loopback", async () => {
    const attempt = startControlPlane({
      dataDir: "/nonexistent-never-created",
      grpcAddr: "0.0.0.0:0",
      httpAddr: "localhost",
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 2000,
      insecureAgents: true,
      logger: pino({ level: "silent" }),
    });
    const err = (await attempt.catch((e: unknown) => e)) as InvalidConfigError;
    expect(err).toBeInstanceOf(InvalidConfigError);
    expect(err.issues.map((i) => i.field).sort()).toEqual(["heartbeatIntervalMs", "httpAddr", "insecureAgents"]);
    expect(err.message).toContain('"localhost" is not a host:port HTTP address');
  });

  it("refuses agents with a missing or wrong join token: UNAUTHENTICATED with a hint", async () => {
    tcp = await startTestControlPlane();
    const missing = connectTestAgent({ address: tcp.cp.grpcAddress, token: undefined });
    missing.hello();
    const missingStatus = await missing.ended;
    missing.close();
    expect(missingStatus.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(missingStatus.details).toBe(
      `missing join token: start firedrill-agent with --token-file (the first join token is in ${tcp.cp.joinTokenFile}; more with firedrill join-token create)`,
    );

    const wrong = connectTestAgent({ address: tcp.cp.grpcAddress, token: "fdj_not-the-token" });
    wrong.hello();
    const wrongStatus = await wrong.ended;
    wrong.close();
    expect(wrongStatus.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(wrongStatus.details).toMatch(/^invalid join token: .*start firedrill-agent with --token-file \(the first join token is in .*join-token/);
    expect(wrong.received).toEqual([]);

    const agents = (await (await tcp.fetch(`${tcp.cp.httpUrl}/api/v1/agents`)).json()) as { agents: unknown[] };
    expect(agents.agents).toEqual([]);
  });
});
