/**
 * Two control-plane processes ("replicas") on one store, racing the decisions that must happen at
 * most once: the termination ledger's record-before-kill (min time between terminations, the
 * InService floor, max percent of group, one termination per instance) and schedule slot claims.
 * Each racer is a real process with its own connection (PostgreSQL) or its own handle on the file
 * (SQLite), so the engine's isolation — not JavaScript's single thread — decides who wins.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeEach, expect, it } from "vitest";
import { createAuditLog } from "../auth/audit.js";
import { createTerminationLedger } from "../aws/ledger.js";
import { createScheduleStore } from "../schedules/store.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createStore, type Store, type StoreOptions } from "./store.js";

const INSTANCES = Array.from({ length: 12 }, (_, i) => `i-${String(i).padStart(4, "0")}`);
const SLOTS = 40;
const RACERS = 2;

/**
 * One racer: waits for GO (a start time both share), then decides every termination and claims
 * every slot, in an order of its own, and writes what it was granted to OUT.
 */
const RACER = `
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createStore } from "./src/store/store.ts";
import { createTerminationLedger } from "./src/aws/ledger.ts";
import { createScheduleStore } from "./src/schedules/store.ts";
import { createAuditLog } from "./src/auth/audit.ts";

const { STORE_OPTIONS, OUT, GO, SEED, INSTANCES, SLOTS, SCHEDULE } = process.env;
const store = createStore(JSON.parse(STORE_OPTIONS));
const ledger = createTerminationLedger(store.db);
const schedules = createScheduleStore(store.db);
const audit = createAuditLog(store.db);
writeFileSync(OUT + ".ready", "");
const deadline = Date.now() + 120000;
while (!existsSync(GO) && Date.now() < deadline) await sleep(10);
const start = Number(readFileSync(GO, "utf8"));
while (Date.now() < start) await sleep(1);

const ids = JSON.parse(INSTANCES);
const order = Number(SEED) % 2 === 0 ? [...ids].reverse() : ids;
const open = { optInTag: "", excludeTags: [] };
const out = { granted: { interval: [], floor: [], percent: [], once: [], slots: [], daySlots: [], audit: [] }, refused: {}, errors: [] };
const attempt = (scenario, fn) => {
  try {
    const result = fn();
    if (result === true || (result && result.ok)) out.granted[scenario].push(result.id ?? true);
    else if (result && result.rule) out.refused[result.rule] = (out.refused[result.rule] ?? 0) + 1;
  } catch (err) {
    out.errors.push(scenario + ": " + String(err && err.message || err));
  }
};
for (const [k, instanceId] of order.entries()) {
  const base = { region: "us-east-1", call: "TerminateInstanceInAutoScalingGroup", actor: "racer-" + SEED, tags: {} };
  // Min time between terminations (1 h): one kill in the group, whoever comes first.
  attempt("interval", () => ledger.decideTermination({ ...base, instanceId: "iv-" + instanceId, now: Date.now(),
    guardrails: { ...open, minHealthy: 0, minTimeBetweenTerminationsMs: 3600000 },
    group: { name: "asg-interval", minSize: 0, desiredCapacity: ids.length, inService: ids.map((i) => "iv-" + i) } }));
  // The InService floor (6 of 12): six kills, AWS still showing every instance InService.
  attempt("floor", () => ledger.decideTermination({ ...base, instanceId: "fl-" + instanceId, now: Date.now(),
    guardrails: { ...open, minHealthy: 6 },
    group: { name: "asg-floor", minSize: 0, desiredCapacity: ids.length, inService: ids.map((i) => "fl-" + i) } }));
  // Max percent of group (25% of 12) for one run shared by both replicas: three kills.
  attempt("percent", () => ledger.decideTermination({ ...base, instanceId: "pc-" + instanceId, now: Date.now(), runId: "run_shared",
    guardrails: { ...open, minHealthy: 0, maxPercentOfGroup: 25 },
    group: { name: "asg-percent", minSize: 0, desiredCapacity: ids.length, inService: ids.map((i) => "pc-" + i) } }));
  // One termination per instance (no group): each instance once.
  attempt("once", () => ledger.decideTermination({ ...base, instanceId: "on-" + instanceId, now: Date.now(),
    guardrails: { ...open, minHealthy: 0 } }));
  void k;
}
const slots = Array.from({ length: Number(SLOTS) }, (_, i) => i);
for (const i of Number(SEED) % 2 === 0 ? [...slots].reverse() : slots) {
  const now = Date.now();
  // The claim as store.claimSlot makes it, and as the scheduler decides a day (look, then claim).
  attempt("slots", () => schedules.claimSlot({ scheduleId: SCHEDULE, slotKey: "at:" + i, plannedAt: i, outcome: "claimed", decidedAt: now }));
  attempt("daySlots", () => schedules.transaction(() => {
    if (schedules.getSlot(SCHEDULE, "day:" + i)) return false;
    return schedules.claimSlot({ scheduleId: SCHEDULE, slotKey: "day:" + i, plannedAt: i, outcome: "planned", detail: "racer-" + SEED, decidedAt: now });
  }));
  // Both replicas write the one audit chain.
  attempt("audit", () => ({ ok: true, id: audit.append({ time: now, principal: "racer-" + SEED, role: "admin", tokenId: null, source: "test",
    method: "POST", route: "/x", path: "/x/" + i, targets: [], status: 200, outcome: "ok", detail: null }).id }));
}
writeFileSync(OUT, JSON.stringify(out));
store.close();
`;

interface RacerResult {
  granted: Record<"interval" | "floor" | "percent" | "once" | "slots" | "daySlots" | "audit", (number | true)[]>;
  refused: Record<string, number>;
  errors: string[];
}

async function race(options: StoreOptions, schedule: string): Promise<RacerResult[]> {
  const cwd = join(import.meta.dirname, "../..");
  const go = join(options.dataDir, "go");
  const outs = Array.from({ length: RACERS }, (_, n) => join(options.dataDir, `racer-${n}.json`));
  const children = outs.map((out, n) => {
    const child = spawn(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", "--input-type=module", "-e", RACER], {
      cwd,
      env: {
        ...process.env,
        STORE_OPTIONS: JSON.stringify(options),
        OUT: out,
        GO: go,
        SEED: String(n),
        INSTANCES: JSON.stringify(INSTANCES),
        SLOTS: String(SLOTS),
        SCHEDULE: schedule,
      },
      stdio: ["ignore", "inherit", "inherit"],
    });
    const exit = new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", resolve);
    });
    return { child, exit };
  });
  try {
    const readyBy = Date.now() + 60_000;
    while (!outs.every((f) => existsSync(`${f}.ready`)) && Date.now() < readyBy) await new Promise((r) => setTimeout(r, 50));
    expect(outs.map((f) => existsSync(`${f}.ready`))).toEqual(outs.map(() => true));
    writeFileSync(`${go}.tmp`, String(Date.now() + 200));
    renameSync(`${go}.tmp`, go);
    expect(await Promise.all(children.map((c) => c.exit))).toEqual(outs.map(() => 0));
    return outs.map((f) => JSON.parse(readFileSync(f, "utf8")) as RacerResult);
  } finally {
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

describeEachEngine("two replicas racing on one store", (engine) => {
  let options: StoreOptions;
  let store: Store;
  beforeEach(async () => {
    options = await engine.freshStoreOptions();
    store = createStore(options);
    return () => store.close();
  });

  it("never exceed a guardrail in the ledger, claim each schedule slot exactly once, and keep one audit chain", async () => {
    const now = Date.now();
    const schedules = createScheduleStore(store.db);
    const schedule = schedules.insertSchedule({
      id: "sch_000000race01",
      kind: "experiment",
      name: "race",
      specYaml: "x",
      cron: "* * * * *",
      tz: "UTC",
      chaos: null,
      state: "active",
      activeSince: now,
      createdBy: "test",
      createdAt: now,
      updatedAt: now,
    });
    const results = await race(options, schedule.id);
    expect(results.flatMap((r) => r.errors)).toEqual([]);
    const granted = (scenario: keyof RacerResult["granted"]) => results.flatMap((r) => r.granted[scenario]);

    // What the replicas were told, and what the ledger holds, agree and stay within the rules.
    expect(granted("interval")).toHaveLength(1);
    expect(granted("floor")).toHaveLength(6);
    expect(granted("percent")).toHaveLength(3);
    expect(granted("once")).toHaveLength(INSTANCES.length);
    const ledger = createTerminationLedger(store.db);
    const counted = (group: string) => ledger.list({ groupName: group, limit: 1000 }).filter((e) => e.action === "terminate" && e.outcome !== "failed");
    expect(counted("asg-interval")).toHaveLength(1);
    expect(counted("asg-floor")).toHaveLength(6);
    expect(counted("asg-percent")).toHaveLength(3);
    const all = ledger.list({ limit: 1000 });
    expect(new Set(all.map((e) => e.instanceId)).size).toBe(all.length); // no instance twice
    expect(all.map((e) => e.id).sort((a, b) => a - b)).toEqual(
      results.flatMap((r) => [...r.granted.interval, ...r.granted.floor, ...r.granted.percent, ...r.granted.once]).sort((a, b) => Number(a) - Number(b)),
    );

    // Every slot claimed exactly once, by one of the two.
    expect(granted("slots")).toHaveLength(SLOTS);
    expect(granted("daySlots")).toHaveLength(SLOTS);
    // One audit chain, intact, with every append of both.
    expect(granted("audit")).toHaveLength(RACERS * SLOTS);
    expect(await createAuditLog(store.db).verify()).toMatchObject({ ok: true, rows: RACERS * SLOTS });

    const rows = store.db.prepare<[string], { n: number }>("SELECT COUNT(*) AS n FROM schedule_slots WHERE schedule_id = ?").get(schedule.id);
    expect(rows?.n).toBe(2 * SLOTS);
    // (Who won is the engine's business; on a 2-core machine usually both win some.)
    console.log(
      `[${engine.engine}] slots won per racer: ${results.map((r) => r.granted.slots.length + r.granted.daySlots.length).join(" / ")}; ` +
        `refusals: ${JSON.stringify(results.map((r) => r.refused))}`,
    );
  }, 120_000);
});
