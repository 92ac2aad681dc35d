/**
 * Previews through the real hub and gRPC server, with test agents on real streams: a PreviewFault
 * goes out, the FaultPreview comes back by request id; timeouts, disconnects and the per-agent bound;
 * and the plan's previews of every host of a fault step.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { previewPlan } from "../experiments/plan.js";
import type { RunPlan } from "../experiments/plan.js";
import { startGrpcServer } from "../grpc-server.js";
import type { GrpcServer } from "../grpc-server.js";
import { createMetrics } from "../metrics.js";
import { createStore } from "../store/store.js";
import { connectTestAgent, tokenAuthenticator } from "../test-support/test-agent.js";
import type { TestAgent } from "../test-support/test-agent.js";
import { createAgentHub } from "./agent-hub.js";
import type { AgentHub } from "./agent-hub.js";
import { MAX_PENDING_PREVIEWS_PER_AGENT, PreviewUnavailableError } from "./previews.js";

const TOKEN = "test-join-token-0123456789";

describe("hub previews", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function harness(): Promise<{ hub: AgentHub; agent(id: string): Promise<TestAgent> }> {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-previews-"));
    const logger = pino({ level: process.env.FIREDRILL_TEST_LOG ?? "silent" });
    const store = createStore({ dataDir: dir });
    const hub = createAgentHub({
      store,
      metrics: createMetrics(store),
      logger,
      authenticate: tokenAuthenticator(TOKEN),
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 200,
      reconcileGraceMs: 300,
    });
    const grpc: GrpcServer = await startGrpcServer({ addr: "127.0.0.1:0", hub, logger });
    const agents: TestAgent[] = [];
    cleanups.push(async () => {
      for (const a of agents) a.cancel();
      hub.close();
      await grpc.close(200);
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return {
      hub,
      async agent(id) {
        const agent = connectTestAgent({ address: grpc.address, token: TOKEN, agentId: id });
        agents.push(agent);
        agent.hello({ facts: { hostname: `${id}.test` } });
        await agent.next("welcome");
        return agent;
      },
    };
  }

  const rejection = async (promise: Promise<unknown>): Promise<Error> => {
    const err = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof PreviewUnavailableError)) throw new Error(`expected PreviewUnavailableError, got ${String(err)}`);
    return err;
  };

  it("sends PreviewFault and resolves with the agent's FaultPreview, matched by request id; only that agent can answer", async () => {
    const h = await harness();
    const a = await h.agent("agt_a");
    const b = await h.agent("agt_b");
    const pending = h.hub.preview("agt_a", "process-kill", { pattern: "nginx", signal: "KILL" }, 3000);
    const request = await a.next("previewFault");
    expect(request.kind).toBe("process-kill");
    expect(request.params).toEqual({ pattern: "nginx", signal: "KILL" });
    expect(request.requestId).toMatch(/^prv_[0-9a-f]{16}$/);
    // Another agent answering agt_a's request, and an answer to no request, are ignored.
    b.send({ case: "faultPreview", value: { requestId: request.requestId, error: "forged" } });
    a.send({ case: "faultPreview", value: { requestId: "prv_unknown", error: "stray" } });
    await new Promise((r) => setTimeout(r, 150)); // both reach the hub before the real answer
    a.send({
      case: "faultPreview",
      value: {
        requestId: request.requestId,
        details: ["sends SIGKILL to 2 processes matching pattern /nginx/", "leaves alone 812 (sshd): sshd (SSH access to the host)"],
        processes: [
          { pid: 4242, name: "nginx", cmdline: "nginx: master process /usr/sbin/nginx" },
          { pid: 4243, name: "nginx", cmdline: `nginx: worker process ${"x".repeat(500)}` },
        ],
        matched: 2,
      },
    });
    const answer = await pending;
    expect(answer.error).toBe("");
    expect(answer.matched).toBe(2);
    expect(answer.details[1]).toBe("leaves alone 812 (sshd): sshd (SSH access to the host)");
    expect(answer.processes[0]).toEqual({ pid: 4242, name: "nginx", cmdline: "nginx: master process /usr/sbin/nginx" });
    expect(answer.processes[1]!.cmdline).toHaveLength(200); // bounded
  });

  it("rejects when the agent is not connected, does not answer in time, disconnects, or has too many pending", async () => {
    const h = await harness();
    expect((await rejection(h.hub.preview("agt_nobody", "cpu-burn", {}, 1000))).message).toBe("agent agt_nobody is not connected");

    const a = await h.agent("agt_a");
    const t0 = Date.now();
    expect((await rejection(h.hub.preview("agt_a", "cpu-burn", { load: 5 }, 300))).message).toBe(
      "agent agt_a did not answer the preview within 300ms",
    );
    expect(Date.now() - t0).toBeLessThan(3000);

    const many = Array.from({ length: MAX_PENDING_PREVIEWS_PER_AGENT }, () => h.hub.preview("agt_a", "cpu-burn", {}, 10_000));
    expect((await rejection(h.hub.preview("agt_a", "cpu-burn", {}, 10_000))).message).toBe(
      `agent agt_a already has ${MAX_PENDING_PREVIEWS_PER_AGENT} previews pending; try again in a few seconds`,
    );
    a.cancel();
    const errors = await Promise.all(many.map(rejection));
    expect(new Set(errors.map((e) => e.message))).toEqual(new Set(["agent agt_a disconnected before answering the preview"]));
  });

  it("previewPlan asks every host of each host fault step in parallel and shows ok, refused and unavailable", async () => {
    const h = await harness();
    const web1 = await h.agent("agt_web1");
    const web2 = await h.agent("agt_web2");
    const answer = (agent: TestAgent, value: { error?: string; details?: string[]; processes?: { pid: number; name: string; cmdline: string }[]; matched?: number }) =>
      void agent.next("previewFault").then((r) => agent.send({ case: "faultPreview", value: { requestId: r.requestId, ...value } }));
    answer(web1, { details: ["sends SIGTERM to 1 process matching name \"nginx\""], processes: [{ pid: 10, name: "nginx", cmdline: "nginx: master" }], matched: 1 });
    answer(web2, { error: 'params.name: no process matches name "nginx"; check with ps -eo pid,comm,args' });
    const hosts = [
      { id: "agt_web1", hostname: "web1" },
      { id: "agt_web2", hostname: "web2" },
      { id: "agt_gone", hostname: "web3" },
    ];
    const plan = {
      steps: [
        { name: "kill-nginx", type: "fault", fault: "process-kill", target: "web", params: { name: "nginx" }, durationMs: 30_000, startAfter: [], hosts },
        { name: "pause", type: "wait", durationMs: 1000, startAfter: [], hosts: [] },
        { name: "kill-box", type: "fault", fault: "ec2-terminate", target: "asg", params: {}, durationMs: 1000, startAfter: [], hosts: [{ id: "i-1", hostname: "i-1" }] },
      ],
    } as unknown as RunPlan;
    const t0 = Date.now();
    const previewed = await previewPlan(plan, h.hub, { timeoutMs: 1500 });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(previewed.steps[0]!.previews).toEqual([
      {
        hostId: "agt_web1",
        hostname: "web1",
        status: "ok",
        details: ['sends SIGTERM to 1 process matching name "nginx"'],
        processes: [{ pid: 10, name: "nginx", cmdline: "nginx: master" }],
        matched: 1,
      },
      { hostId: "agt_web2", hostname: "web2", status: "refused", error: 'params.name: no process matches name "nginx"; check with ps -eo pid,comm,args', details: [] },
      { hostId: "agt_gone", hostname: "web3", status: "unavailable", error: "agent agt_gone is not connected", details: [] },
    ]);
    expect(previewed.steps[1]!.previews).toBeUndefined();
    expect(previewed.steps[2]!.previews).toBeUndefined(); // cloud steps are not asked of agents
  });
});
