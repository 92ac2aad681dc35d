import { describe, expect, it } from "vitest";
import { haFixture, haDatabase, openDb, runScript, silent, sleep, waitFor } from "../test-support/ha.js";
import { createCommandBus, type AgentCommand } from "./commands.js";
import { createNotifyListener, notify } from "./notify.js";
import { registerReplica } from "./replica.js";

const fx = haFixture();
const { skip, dbs, children, closers } = fx;

/**
 * A replica in this process: its own store connection, listener and bus. The poll is an hour by
 * default, so whatever arrives came by NOTIFY (or by an explicit pump).
 */
async function node(url: string, pollMs = 3_600_000) {
  const db = openDb(url, dbs);
  const replica = registerReplica({ db, logger: silent });
  const reconnects: number[] = [];
  const listener = createNotifyListener({ url, logger: silent, onReconnect: () => reconnects.push(Date.now()), pingMs: 1000, timeoutMs: 2000 });
  /** Agents whose stream is "here" for deliver(). */
  const streams = new Set<string>();
  const delivered: { agentId: string; command: AgentCommand }[] = [];
  const broadcasts: AgentCommand[] = [];
  const bus = createCommandBus({
    replica,
    listener,
    logger: silent,
    pollMs,
    deliver(agentId, command) {
      if (!streams.has(agentId)) return false;
      delivered.push({ agentId, command });
      return true;
    },
    onBroadcast: (command) => broadcasts.push(command),
  });
  closers.push(() => listener.close(), () => replica.close(), () => bus.close());
  await listener.ready();
  const hold = (agentId: string) => {
    streams.add(agentId);
    expect(bus.streamOpened(agentId)).toBe(true);
  };
  const drop = (agentId: string) => {
    streams.delete(agentId);
    bus.streamClosed(agentId);
  };
  return { db, replica, listener, bus, streams, delivered, broadcasts, reconnects, hold, drop };
}

/** A replica process holding agent-1's stream until killed. */
const HOLDER_SCRIPT = `
  import { pino } from "pino";
  import { createPostgresDatabase } from "./src/store/postgres/database.ts";
  import { registerReplica } from "./src/ha/replica.ts";
  import { createNotifyListener } from "./src/ha/notify.ts";
  import { createCommandBus } from "./src/ha/commands.ts";
  const logger = pino({ level: "silent" });
  const db = createPostgresDatabase({ url: process.env.PG_URL });
  const replica = registerReplica({ db, logger });
  const listener = createNotifyListener({ url: process.env.PG_URL, logger });
  const bus = createCommandBus({ replica, listener, logger, deliver: () => true, onBroadcast: () => {} });
  bus.streamOpened("agent-1");
  process.stdout.write("holding " + replica.id + "\\n");
  setInterval(() => {}, 1000);
`;

const stop = (faultId: string): AgentCommand => ({ kind: "stop-fault", payload: { faultId } });

describe.skipIf(skip !== undefined)("the command bus on PostgreSQL", () => {
  it("routes a command from replica A to the replica holding the agent's stream, by NOTIFY", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b, c] = [await node(url), await node(url), await node(url)];
    b.hold("agent-1");
    c.hold("agent-2");
    expect(a.bus.holderOf("agent-1")).toBe(b.replica.id);

    expect(a.bus.send("agent-1", stop("f1"))).toBe("routed");
    expect(a.bus.send("agent-2", stop("f2"))).toBe("routed");
    await waitFor(() => b.delivered.length === 1 && c.delivered.length === 1, 3000, "both delivered");
    expect(b.delivered).toEqual([{ agentId: "agent-1", command: stop("f1") }]);
    expect(c.delivered).toEqual([{ agentId: "agent-2", command: stop("f2") }]);
    expect(a.delivered).toEqual([]);

    // Held here: delivered at once, nothing queued. Held nowhere: left for the agent's Welcome.
    expect(b.bus.send("agent-1", stop("f3"))).toBe("local");
    expect(b.delivered.at(-1)).toEqual({ agentId: "agent-1", command: stop("f3") });
    expect(a.bus.send("agent-9", stop("f4"))).toBe("unrouted");
    expect(a.db.prepare("SELECT COUNT(*) AS n FROM agent_commands").get()).toEqual({ n: 0 });

    // The stream ended on B: its record is gone, a command is no longer routed there.
    b.drop("agent-1");
    expect(a.bus.holderOf("agent-1")).toBeUndefined();
    expect(a.bus.send("agent-1", stop("f5"))).toBe("unrouted");
    expect(a.bus.stats()).toMatchObject({ routed: 2, unrouted: 2 });
  });

  it("a command whose agent moved before it was claimed follows the agent to its new replica", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b, c] = [await node(url), await node(url), await node(url)];
    b.hold("agent-1");
    expect(a.bus.send("agent-1", stop("f1"))).toBe("routed");
    // Before B sees the notification, the agent reconnects to C (its old stream on B not yet closed).
    b.streams.delete("agent-1");
    c.hold("agent-1");
    await waitFor(() => c.delivered.length === 1, 3000, "delivered on C");
    expect(c.delivered).toEqual([{ agentId: "agent-1", command: stop("f1") }]);
    expect(b.delivered).toEqual([]);
    expect(b.bus.stats().rerouted).toBe(1);
    // B's late stream end does not erase C's record.
    b.drop("agent-1");
    expect(a.bus.holderOf("agent-1")).toBe(c.replica.id);
  });

  it("a broadcast runs at once here and reaches every other live replica by NOTIFY", async () => {
    const url = await haDatabase(fx.cluster);
    const nodes = [await node(url), await node(url), await node(url)];
    const halt: AgentCommand = { kind: "stop-all", payload: { reason: "halt" } };
    // A replica that missed heartbeats for a while (cut off from PostgreSQL) still gets the halt.
    nodes[2]!.db.exec(`UPDATE replicas SET heartbeat_at = heartbeat_at - 20000 WHERE id = '${nodes[2]!.replica.id}'`);
    expect(nodes[1]!.bus.broadcast(halt)).toBe(2);
    expect(nodes[1]!.broadcasts).toEqual([halt]);
    await waitFor(() => nodes.every((n) => n.broadcasts.length === 1), 3000, "every replica got the halt");
    for (const n of nodes) expect(n.broadcasts).toEqual([halt]);
    expect(nodes[0]!.db.prepare("SELECT COUNT(*) AS n FROM agent_commands").get()).toEqual({ n: 0 });
  });

  it("commands for a dead holder are not queued; queued ones past maxAgeMs are dropped, not delivered", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b] = [await node(url), await node(url)];
    b.hold("agent-1");
    // B stops heartbeating (simulated: its heartbeat is old); checked before its next beat.
    a.db.exec(`UPDATE replicas SET heartbeat_at = 0 WHERE id = '${b.replica.id}'`);
    expect(a.bus.holderOf("agent-1")).toBeUndefined();
    expect(a.bus.send("agent-1", stop("f1"))).toBe("unrouted");
    b.replica.heartbeat();
    expect(a.bus.holderOf("agent-1")).toBe(b.replica.id);

    a.db
      .prepare("INSERT INTO agent_commands (agent_id, replica_id, from_replica_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)")
      .run("agent-1", b.replica.id, a.replica.id, "stop-fault", JSON.stringify({ faultId: "old" }), Date.now() - 120_000);
    expect(b.bus.pump()).toBe(1);
    expect(b.delivered).toEqual([]);
    expect(b.bus.stats().dropped).toBe(1);
  });

  it("a SIGKILLed replica's streams go stale with its heartbeat: commands for its agents are no longer routed there", async () => {
    const url = await haDatabase(fx.cluster);
    const holder = runScript(HOLDER_SCRIPT, { PG_URL: url }, children);
    const holderId = (await holder.line(/^holding /, 20_000)).split(" ")[1]!;
    const a = await node(url);
    expect(a.bus.holderOf("agent-1")).toBe(holderId);
    await holder.kill9();
    await waitFor(() => a.bus.holderOf("agent-1") === undefined, 8000, "the dead holder's stream record is stale");
    expect(a.bus.send("agent-1", stop("f1"))).toBe("unrouted");
    // The agent reconnects to A: its commands are local again.
    a.hold("agent-1");
    expect(a.bus.send("agent-1", stop("f2"))).toBe("local");
  });

  it("the safety-net poll delivers what no notification announced", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b] = [await node(url), await node(url, 300)];
    b.hold("agent-1");
    a.db
      .prepare(`INSERT INTO agent_commands (agent_id, replica_id, from_replica_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?, (extract(epoch from statement_timestamp()) * 1000)::bigint)`)
      .run("agent-1", b.replica.id, a.replica.id, "stop-fault", JSON.stringify({ faultId: "f1" }));
    await waitFor(() => b.delivered.length === 1, 3000, "delivered by the poll");
  });

  it("notify refuses payloads over PostgreSQL's limit and bad channel names", async () => {
    const url = await haDatabase(fx.cluster);
    const db = openDb(url, dbs);
    expect(() => notify(db, "firedrill_x", "x".repeat(8000))).toThrow(/over PostgreSQL's limit/);
    expect(() => notify(db, "bad-name; DROP", "")).toThrow(/must be 1-63 characters/);
    notify(db, "firedrill_x", "ok");
  });

  it("after a PostgreSQL restart the listeners re-subscribe and a command sent afterwards is delivered by NOTIFY", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b, c] = [await node(url), await node(url), await node(url)];
    b.hold("agent-1");
    await fx.cluster.restart("fast", 500);
    await waitFor(() => [a, b, c].every((n) => n.reconnects.length > 0 && n.listener.connected), 15_000, "listeners reconnected");
    // The synchronous stores reconnect by themselves; send once B heartbeats again (a replica whose
    // heartbeat went stale during the outage is not routed to).
    await waitFor(() => {
      try {
        return a.bus.holderOf("agent-1") === b.replica.id;
      } catch {
        return undefined;
      }
    }, 10_000, "B live again");
    const outcome = await waitFor(() => {
      try {
        return a.bus.send("agent-1", stop("after-restart"));
      } catch {
        return undefined;
      }
    }, 10_000, "send after the restart");
    expect(outcome).toBe("routed");
    await waitFor(() => b.delivered.length === 1, 3000, "delivered after the restart");
    expect(b.delivered).toEqual([{ agentId: "agent-1", command: stop("after-restart") }]);

    // A halt after the restart is instant too.
    expect(c.bus.broadcast({ kind: "stop-all", payload: {} })).toBe(2);
    await waitFor(() => a.broadcasts.length === 1 && b.broadcasts.length === 1, 3000, "halt after the restart");
    await sleep(100);
  });
});
