import { describe, expect, it } from "vitest";
import { haFixture, haDatabase, openDb, runScript, silent, sleep, waitFor } from "../test-support/ha.js";
import { registerReplica } from "./replica.js";
import { createRunOwners, runOwnerFenceSql } from "./run-owners.js";

const fx = haFixture();
const { skip, dbs, children, closers } = fx;

const DEAD_AFTER_MS = 2000;

function member(url: string) {
  const db = openDb(url, dbs);
  const replica = registerReplica({ db, logger: silent, deadAfterMs: DEAD_AFTER_MS });
  const lost: string[][] = [];
  const owners = createRunOwners({ replica, logger: silent, onLost: (runs) => lost.push(runs) });
  closers.push(() => owners.close(), () => replica.close());
  return { db, replica, owners, lost };
}

/** A replica process that claims RUNS runs, says so, and heartbeats until killed. */
const OWNER_SCRIPT = `
  import { pino } from "pino";
  import { createPostgresDatabase } from "./src/store/postgres/database.ts";
  import { registerReplica } from "./src/ha/replica.ts";
  import { createRunOwners } from "./src/ha/run-owners.ts";
  const logger = pino({ level: "silent" });
  const db = createPostgresDatabase({ url: process.env.PG_URL });
  const replica = registerReplica({ db, logger, deadAfterMs: ${DEAD_AFTER_MS} });
  const owners = createRunOwners({ replica, logger });
  for (let i = 0; i < Number(process.env.RUNS); i++) owners.claim("run-" + i);
  process.stdout.write("claimed " + replica.id + "\\n");
  setInterval(() => {}, 1000);
`;

/** A replica process that, told "go" on stdin, takes over every orphan it can and prints what it won. */
const RACER_SCRIPT = `
  import { pino } from "pino";
  import { createPostgresDatabase } from "./src/store/postgres/database.ts";
  import { registerReplica } from "./src/ha/replica.ts";
  import { createRunOwners } from "./src/ha/run-owners.ts";
  const logger = pino({ level: "silent" });
  const db = createPostgresDatabase({ url: process.env.PG_URL });
  const replica = registerReplica({ db, logger, deadAfterMs: ${DEAD_AFTER_MS} });
  const owners = createRunOwners({ replica, logger });
  process.stdout.write("ready " + replica.id + "\\n");
  process.stdin.once("data", () => {
    const won = [];
    // Both racers walk the same list in the same order: they collide on every run.
    for (let i = 0; i < Number(process.env.RUNS); i++) {
      const t = owners.takeOver("run-" + i);
      if (t !== undefined) won.push({ runId: t.runId, generation: t.generation, from: t.previousReplicaId });
    }
    process.stdout.write("won " + JSON.stringify(won) + "\\n");
  });
  setInterval(() => {}, 1000);
`;

describe.skipIf(skip !== undefined)("run ownership on PostgreSQL", () => {
  it("claims, heartbeats and releases; a claimed run cannot be claimed by another replica", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b] = [member(url), member(url)];
    expect(a.owners.claim("r1")).toBe(true);
    expect(a.owners.claim("r1")).toBe(true); // idempotent for its owner
    expect(b.owners.claim("r1")).toBe(false);
    expect([...a.owners.owned()]).toEqual([["r1", 1]]);
    await sleep(DEAD_AFTER_MS + 1000); // the heartbeat keeps it alive past deadAfterMs
    expect(b.owners.orphans()).toEqual([]);
    expect(b.owners.takeOver("r1")).toBeUndefined();
    a.owners.release("r1");
    expect(b.owners.claim("r1")).toBe(true);
    expect(a.replica.liveReplicas().map((r) => r.id).sort()).toEqual([a.replica.id, b.replica.id].sort());
  });

  it("a replica marked stopped leaves its runs to the others at once", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b] = [member(url), member(url)];
    a.owners.claim("r1");
    a.owners.close();
    a.replica.close();
    expect(b.replica.isLive(a.replica.id)).toBe(false);
    expect(b.owners.orphans().map((o) => o.runId)).toEqual(["r1"]);
    expect(b.owners.takeOver("r1")).toEqual({ runId: "r1", previousReplicaId: a.replica.id, generation: 2 });
  });

  it("a replica cut off past deadAfterMs learns at its next heartbeat that its run was taken over", async () => {
    const url = await haDatabase(fx.cluster);
    const [a, b] = [member(url), member(url)];
    a.owners.claim("r1");
    a.db.exec("UPDATE run_owners SET heartbeat_at = 0"); // as if a had not beaten for a long time
    const taken = b.owners.takeOver("r1")!;
    expect(taken.generation).toBe(2);
    // a's run-fenced write is refused, b's goes through.
    const fence = runOwnerFenceSql();
    expect(a.db.prepare<[string, string, number], { ok: number }>(`SELECT 1 AS ok WHERE ${fence}`).get("r1", a.replica.id, 1)).toBeUndefined();
    expect(b.db.prepare<[string, string, number], { ok: number }>(`SELECT 1 AS ok WHERE ${fence}`).get("r1", b.replica.id, 2)).toEqual({ ok: 1 });
    await waitFor(() => a.lost.length > 0 || undefined, 3000, "a learns it lost r1");
    expect(a.lost).toEqual([["r1"]]);
    expect(a.owners.owned().size).toBe(0);
  });

  it("a SIGKILLed owner's runs become orphans; two replicas racing to take them over win each exactly once", async () => {
    const url = await haDatabase(fx.cluster);
    const RUNS = 40;
    const owner = runScript(OWNER_SCRIPT, { PG_URL: url, RUNS: String(RUNS) }, children);
    const ownerId = (await owner.line(/^claimed /, 20_000)).split(" ")[1]!;
    const observer = member(url);
    expect(observer.owners.orphans()).toEqual([]);

    const racers = [0, 1].map(() => runScript(RACER_SCRIPT, { PG_URL: url, RUNS: String(RUNS) }, children));
    await Promise.all(racers.map((r) => r.line(/^ready /, 20_000)));
    await owner.kill9();
    await waitFor(() => observer.owners.orphans().length === RUNS || undefined, DEAD_AFTER_MS + 3000, "all runs orphaned");
    expect(observer.owners.orphans().every((o) => o.replicaId === ownerId)).toBe(true);
    for (const r of racers) r.send("go");

    const results = await Promise.all(
      racers.map(async (r) => JSON.parse((await r.line(/^won /, 20_000)).slice(4)) as { runId: string; generation: number; from: string }[]),
    );
    const all = results.flat();
    expect(all.map((w) => w.runId).sort()).toEqual(Array.from({ length: RUNS }, (_, i) => `run-${i}`).sort());
    expect(new Set(all.map((w) => w.runId)).size).toBe(RUNS); // nobody won a run twice
    expect(all.every((w) => w.generation === 2 && w.from === ownerId)).toBe(true);
    expect(observer.owners.orphans()).toEqual([]);
    const owners = observer.db.prepare<[], { replica_id: string; n: number }>("SELECT replica_id, COUNT(*) AS n FROM run_owners GROUP BY replica_id ORDER BY replica_id").all();
    expect(owners.reduce((s, o) => s + o.n, 0)).toBe(RUNS);
    expect(owners.every((o) => o.replica_id !== ownerId)).toBe(true);
    console.log(`takeover race: ${results.map((r) => r.length).join(" / ")} runs won by each racer`);
  });
});
