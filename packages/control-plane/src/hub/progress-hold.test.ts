/**
 * On a large fleet (more running faults than `progressHoldAbove`), a fault's PROGRESS is stored at
 * most every PROGRESS_HISTORY_MS: the ones between are held (the newest wins) and stored before the
 * fault's next event, so its end carries the latest measurements. Real hub, gRPC and store.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FaultEventType, RevertReason, timestampFromMs } from "@firedrill/protocol";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { startGrpcServer } from "../grpc-server.js";
import { createMetrics } from "../metrics.js";
import { createStore } from "../store/store.js";
import { connectTestAgent, tokenAuthenticator } from "../test-support/test-agent.js";
import type { TestAgent } from "../test-support/test-agent.js";
import { createAgentHub } from "./agent-hub.js";

const TOKEN = "test-join-token-0123456789";

describe("hub: PROGRESS held on a large fleet", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("stores the first PROGRESS, holds the next ones, and stores the newest before the end", async () => {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-hold-"));
    const store = createStore({ dataDir: dir });
    const logger = pino({ level: "silent" });
    const hub = createAgentHub({ store, metrics: createMetrics(store), logger, authenticate: tokenAuthenticator(TOKEN), leaseTtlMs: 3000, heartbeatIntervalMs: 200, reconcileGraceMs: 300, progressHoldAbove: 0 });
    const grpc = await startGrpcServer({ addr: "127.0.0.1:0", hub, logger });
    let agent: TestAgent | undefined;
    cleanups.push(async () => {
      agent?.cancel();
      hub.close();
      await grpc.close(200);
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    agent = connectTestAgent({ address: grpc.address, token: TOKEN, agentId: "agt_hold" });
    agent.hello();
    await agent.next("welcome");
    const now = Date.now();
    store.insertFault({ id: "flt_00000000000000aa", agentId: "agt_hold", runId: null, kind: "cpu-burn", params: {}, durationMs: 60_000, createdAt: now, actor: "test" });
    const id = "flt_00000000000000aa";
    const send = (type: FaultEventType, extra: object, at: number) => agent!.event(id, type, { time: timestampFromMs(at), ...extra });
    send(FaultEventType.ACCEPTED, {}, now + 1);
    send(FaultEventType.STARTED, { measurements: { cpu_percent: 1 } }, now + 2);
    for (let i = 1; i <= 5; i++) send(FaultEventType.PROGRESS, { measurements: { cpu_percent: 10 + i } }, now + 10 + i);
    await new Promise((r) => setTimeout(r, 300));
    await hub.drained();
    // The first PROGRESS is stored; the four after it are held, not written.
    expect(store.getFault(id)!.measurements).toEqual({ cpu_percent: 11 });
    expect(store.listFaultEvents(id).filter((e) => e.type === "progress")).toHaveLength(1);
    send(FaultEventType.REVERTED, { reason: RevertReason.DURATION }, now + 100);
    await new Promise((r) => setTimeout(r, 300));
    await hub.drained();
    const fault = store.getFault(id)!;
    expect(fault.state).toBe("reverted");
    expect(fault.measurements).toEqual({ cpu_percent: 15 });
  });
});
