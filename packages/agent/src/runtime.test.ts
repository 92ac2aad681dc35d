import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { FaultEventType, RevertReason, StartFaultSchema, durationFromMs, faultEventTypeName, revertReasonName } from "@firedrill/protocol";
import type { FaultEvent, JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cpuBurn } from "./faults/cpu-burn.js";
import { createFaultRegistry } from "./faults/index.js";
import type { FaultKindDefinition } from "./faults/index.js";
import { Journal } from "./journal.js";
import { recoverJournal } from "./recover.js";
import { PendingReports } from "./reports.js";
import { DEFAULT_MAX_FAULTS, FaultRuntime } from "./runtime.js";
import { fileFault } from "./testing/file-fault.js";

const log = pino({ level: "silent" });

describe("fault runtime", () => {
  let dir: string;
  let journal: Journal;
  let events: FaultEvent[];
  let runtime: FaultRuntime;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-runtime-"));
    journal = new Journal(join(dir, "state"));
    events = [];
    runtime = new FaultRuntime({
      registry: createFaultRegistry([
        fileFault as FaultKindDefinition,
        cpuBurn as FaultKindDefinition,
        { ...(fileFault as FaultKindDefinition), kind: "test-net-a", exclusiveGroup: "network" },
        { ...(fileFault as FaultKindDefinition), kind: "test-net-b", exclusiveGroup: "network" },
      ]),
      journal,
      host: { cpuCount: 2, stateDir: join(dir, "state"), protectedPids: () => [process.pid], networkExclusions: [] },
      log,
      holder: { pid: process.pid, startTime: 0 },
      emit: (e) => events.push(e),
      progressIntervalMs: 200,
      revertRetryMs: 10,
      revertAttempts: 2,
    });
  });
  afterEach(async () => {
    await runtime.stopAll(RevertReason.SHUTDOWN);
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (id: string, kind: string, params: JsonObject, ms = 60_000) =>
    runtime.start(create(StartFaultSchema, { faultId: id, kind, params, duration: durationFromMs(ms) }));
  const timeline = (id: string) =>
    events.filter((e) => e.faultId === id && e.type !== FaultEventType.PROGRESS).map((e) => faultEventTypeName(e.type));

  it("journals before acting, and reverts at the end of the duration", async () => {
    const path = join(dir, "effect");
    await start("f1", "test-file", { path }, 1000);
    expect(existsSync(path)).toBe(true);
    expect(journal.readAll().records.map((r) => r.faultId)).toEqual(["f1"]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(existsSync(path)).toBe(false);
    expect(journal.readAll().records).toEqual([]);
    expect(timeline("f1")).toEqual(["accepted", "started", "reverted"]);
    expect(revertReasonName(events.at(-1)!.reason)).toBe("duration");
  });

  it("reports progress measurements while running", async () => {
    await start("f2", "test-file", { path: join(dir, "p") });
    await new Promise((r) => setTimeout(r, 500));
    const progress = events.filter((e) => e.type === FaultEventType.PROGRESS);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[0]!.measurements.exists).toBe(1);
  });

  it("reverts on stop, idempotently", async () => {
    const path = join(dir, "effect2");
    await start("f3", "test-file", { path });
    await Promise.all([runtime.stop("f3", RevertReason.STOPPED), runtime.stop("f3", RevertReason.STOPPED)]);
    await runtime.stop("f3", RevertReason.STOPPED);
    expect(existsSync(path)).toBe(false);
    expect(timeline("f3")).toEqual(["accepted", "started", "reverted"]);
    expect(revertReasonName(events.at(-1)!.reason)).toBe("stopped");
  });

  it("reverts everything on stop-all with the given reason", async () => {
    const paths = [join(dir, "a"), join(dir, "b"), join(dir, "c")];
    await Promise.all(paths.map((path, i) => start(`all-${i}`, "test-file", { path })));
    expect(paths.every(existsSync)).toBe(true);
    await runtime.stopAll(RevertReason.LEASE);
    expect(paths.some(existsSync)).toBe(false);
    expect(runtime.activeCount).toBe(0);
    const reverted = events.filter((e) => e.type === FaultEventType.REVERTED);
    expect(reverted.map((e) => revertReasonName(e.reason))).toEqual(["lease", "lease", "lease"]);
  });

  it("undoes a fault whose start fails half-way, and reports it failed", async () => {
    const path = join(dir, "half");
    await start("f4", "test-file", { path, failStart: "yes" });
    expect(existsSync(path)).toBe(false);
    expect(journal.readAll().records).toEqual([]);
    expect(timeline("f4")).toEqual(["accepted", "failed"]);
    expect(events.at(-1)!.error).toContain("start failed half-way on purpose");
  });

  it("refuses bad params, unknown kinds and bad durations without touching anything", async () => {
    await start("b1", "cpu-burn", { load: 0 });
    await start("b2", "cpu-burn", { load: 150 });
    await start("b3", "cpu-burn", { load: 50, cores: 9 });
    await start("b4", "no-such-kind", {});
    await start("b5", "cpu-burn", { load: 50 }, 10);
    await start("b6", "test-file", { path: "relative" });
    const errors = Object.fromEntries(events.map((e) => [e.faultId, e.error]));
    expect(events.every((e) => e.type === FaultEventType.FAILED)).toBe(true);
    expect(errors.b1).toBe("params.load: 0 is below the minimum 1");
    expect(errors.b2).toBe("params.load: 150 is above the maximum 100");
    expect(errors.b3).toBe('params.cores: 9 is more than the 2 CPUs of this host; use at most 2, or "all"');
    expect(errors.b4).toBe('kind: unknown fault kind "no-such-kind"; this agent runs: test-file, cpu-burn, test-net-a, test-net-b');
    expect(errors.b5).toBe("duration: 10ms is outside the allowed 1s-12h");
    expect(errors.b6).toContain("params.path");
    expect(journal.readAll().records).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(["state"]);
  });

  it("never runs the same fault id twice", async () => {
    const path = join(dir, "once");
    await start("dup", "test-file", { path });
    await start("dup", "test-file", { path });
    expect(events.filter((e) => e.type === FaultEventType.ACCEPTED)).toHaveLength(1);
    await runtime.stop("dup", RevertReason.STOPPED);
    await start("dup", "test-file", { path });
    expect(existsSync(path)).toBe(false);
  });

  it("a journal left by a dead holder is reverted by recovery, and reported", async () => {
    const path = join(dir, "left-behind");
    // What a SIGKILLed agent leaves: the effect on the host and the journal record.
    await start("crash", "test-file", { path });
    const record = journal.readAll().records[0]!;
    journal.write({ ...record, holder: { pid: 999_999_999, startTime: 1 } });
    const reports = new PendingReports(join(dir, "state"));
    const result = await recoverJournal({ journal, registry: createFaultRegistry([fileFault as FaultKindDefinition]), log, reports });
    expect(result.reverted.map((r) => r.faultId)).toEqual(["crash"]);
    expect(existsSync(path)).toBe(false);
    expect(journal.readAll().records).toEqual([]);
    const reported = reports.list();
    expect(reported).toHaveLength(1);
    expect(revertReasonName(reported[0]!.reason)).toBe("recovery");
  });

  it("runs one fault of an exclusive group at a time", async () => {
    await start("n1", "test-net-a", { path: join(dir, "n1") });
    await start("n2", "test-net-b", { path: join(dir, "n2") });
    expect(existsSync(join(dir, "n2"))).toBe(false);
    expect(events.find((e) => e.faultId === "n2")!.error).toBe(
      "kind: a network fault is already running on this host (n1, test-net-a); only one network fault at a time: stop it first",
    );
    await runtime.stop("n1", RevertReason.STOPPED);
    await start("n3", "test-net-b", { path: join(dir, "n3") });
    expect(existsSync(join(dir, "n3"))).toBe(true);
  });

  it(`holds at most ${DEFAULT_MAX_FAULTS} faults by default: one more is refused, saying what runs and how to fix it`, async () => {
    for (let i = 0; i < DEFAULT_MAX_FAULTS; i++) await start(`cap-${i}`, "test-file", { path: join(dir, `cap-${i}`) });
    await start("cap-over", "test-file", { path: join(dir, "cap-over") });
    expect(existsSync(join(dir, "cap-over"))).toBe(false);
    expect(timeline("cap-over")).toEqual(["failed"]);
    expect(events.find((e) => e.faultId === "cap-over")!.error).toBe(
      "this host already holds 4 faults (cap-0 test-file running, cap-1 test-file running, cap-2 test-file running, cap-3 test-file running), " +
        "the most this agent allows (--max-faults 4); stop one of them first, or raise --max-faults on the agent",
    );
    expect(journal.readAll().records).toHaveLength(DEFAULT_MAX_FAULTS);
    await runtime.stop("cap-0", RevertReason.STOPPED);
    await start("cap-next", "test-file", { path: join(dir, "cap-next") });
    expect(existsSync(join(dir, "cap-next"))).toBe(true);
  });

  it("a revert it gives up is reported revert_failed (not failed), the record kept; a later stop tries again", async () => {
    const path = join(dir, "stuck");
    await start("rf", "test-file", { path });
    // Make the revert fail for real: the path is now a non-empty directory, which unlink refuses.
    rmSync(path);
    mkdirSync(path);
    writeFileSync(join(path, "x"), "x");
    await runtime.stop("rf", RevertReason.STOPPED);
    const last = events.at(-1)!;
    expect(faultEventTypeName(last.type)).toBe("revert_failed");
    expect(last.error).toMatch(/^revert failed after 2 attempts: .*EISDIR.*; the effect may still be on the host and the journal keeps the record/);
    expect(journal.readAll().records.map((r) => r.faultId)).toEqual(["rf"]);
    expect(runtime.held().map((h) => h.faultId)).toEqual(["rf"]);
    // The cause is fixed: the next stop reverts it.
    rmSync(path, { recursive: true });
    writeFileSync(path, "chaos\n");
    await runtime.stop("rf", RevertReason.STOPPED);
    expect(existsSync(path)).toBe(false);
    expect(journal.readAll().records).toEqual([]);
    expect(faultEventTypeName(events.at(-1)!.type)).toBe("reverted");
  });

  describe("a fault the guard reverted while the agent was stalled", () => {
    /** What the guard does to a stopped agent's journal: revert, store the report, remove the record. */
    const guardReverts = (reports: PendingReports) =>
      recoverJournal({ journal, registry: createFaultRegistry([fileFault as FaultKindDefinition, cpuBurn as FaultKindDefinition]), log, reports, holderAlive: () => false });

    it("is ended in-process (its burner threads stop) and reported reverted by recovery, once", async () => {
      const path = join(dir, "stalled");
      await start("g1", "test-file", { path });
      await start("g2", "cpu-burn", { load: 5, cores: 1 });
      const burners = () =>
        readdirSync(`/proc/${process.pid}/task`).filter((t) => {
          try {
            return readFileSync(`/proc/${process.pid}/task/${t}/comm`, "utf8").trim() === "fd-cpu-burn";
          } catch {
            return false;
          }
        });
      expect(burners()).toHaveLength(1);
      const reports = new PendingReports(join(dir, "state"));
      const result = await guardReverts(reports);
      expect(result.reverted.map((r) => r.faultId).sort()).toEqual(["g1", "g2"]);
      expect(existsSync(path)).toBe(false);
      expect(reports.list().map((e) => [e.faultId, revertReasonName(e.reason)]).sort()).toEqual([["g1", "recovery"], ["g2", "recovery"]]);
      // The agent resumes: it finds the records gone.
      expect(runtime.reconcileWithJournal().sort()).toEqual(["g1", "g2"]);
      await runtime.stopAll(RevertReason.SHUTDOWN); // waits for the in-process ends
      expect(burners()).toEqual([]);
      expect(runtime.activeCount).toBe(0);
      for (const id of ["g1", "g2"]) {
        expect(timeline(id)).toEqual(["accepted", "started", "reverted"]);
        expect(revertReasonName(events.filter((e) => e.faultId === id).at(-1)!.reason)).toBe("recovery");
      }
      expect(runtime.reconcileWithJournal()).toEqual([]);
    });

    it("its duration timer, firing after the resume, reports it as recovery, not duration", async () => {
      const path = join(dir, "late");
      await start("g3", "test-file", { path }, 1000);
      await guardReverts(new PendingReports(join(dir, "state")));
      await new Promise((r) => setTimeout(r, 1300));
      expect(timeline("g3")).toEqual(["accepted", "started", "reverted"]);
      expect(revertReasonName(events.at(-1)!.reason)).toBe("recovery");
      expect(runtime.activeCount).toBe(0);
    });

    it("a recovery that cannot revert stores revert_failed in the pending report, and keeps the record", async () => {
      const path = join(dir, "dir-now");
      await start("g4", "test-file", { path });
      rmSync(path);
      mkdirSync(path);
      writeFileSync(join(path, "x"), "x");
      const reports = new PendingReports(join(dir, "state"));
      const result = await guardReverts(reports);
      expect(result.failed.map((f) => f.record.faultId)).toEqual(["g4"]);
      const [report] = reports.list();
      expect(faultEventTypeName(report!.type)).toBe("revert_failed");
      expect(report!.error).toContain("EISDIR");
      expect(journal.readAll().records.map((r) => r.faultId)).toEqual(["g4"]);
      expect(runtime.reconcileWithJournal()).toEqual([]);
      rmSync(path, { recursive: true });
    });
  });
});
