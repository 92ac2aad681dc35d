import { existsSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { FaultEventType, InvalidFaultRequestError, RevertReason, StartFaultSchema, durationFromMs, faultEventTypeName } from "@firedrill/protocol";
import type { FaultEvent, JsonObject } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Journal } from "../journal.js";
import { FaultRuntime } from "../runtime.js";
import { captureLog } from "../testing/log-capture.js";
import { createFaultRegistry } from "./index.js";
import type { FaultKindDefinition } from "./index.js";
import { NO_SYSTEMD_MESSAGE, createServiceStop, serviceStop } from "./service-stop.js";
import { revertServiceStopRecord } from "./service-stop-revert.js";
import type { SystemctlResult, SystemctlRunner } from "./service-stop-revert.js";
import type { FaultContext, HostInfo } from "./types.js";

/** A unit as the fake systemd knows it: its `systemctl show` properties. */
type Unit = Record<string, string>;

/**
 * A fake systemctl over a table of units: `show` prints their properties, `stop` / `start` / `kill`
 * change ActiveState (and propagate a stop through RequiredBy=), like systemd. Every call is logged.
 */
function fakeSystemd(units: Record<string, Unit>, opts: { failStart?: string; onCall?: (args: readonly string[]) => void } = {}) {
  const calls: string[][] = [];
  const find = (name: string) => Object.values(units).find((u) => u.Id === name || (u.Names ?? "").split(" ").includes(name));
  const ok = (stdout = ""): SystemctlResult => ({ code: 0, stdout, stderr: "" });
  const stopWithDeps = (u: Unit) => {
    u.ActiveState = "inactive";
    u.SubState = "dead";
    for (const dep of (u.RequiredBy ?? "").split(" ").filter(Boolean)) {
      const d = find(dep);
      if (d && d.ActiveState === "active") stopWithDeps(d);
    }
  };
  const run: SystemctlRunner = async (args) => {
    const a = args.filter((x) => x !== "--no-pager" && x !== "--no-ask-password");
    calls.push([...a]);
    opts.onCall?.(a);
    const names = a.slice(a.indexOf("--") + 1);
    switch (a[0]) {
      case "show": {
        const props = a[1]!.slice("--property=".length).split(",");
        return ok(
          names
            .map((n) => {
              const u = find(n) ?? { Id: n, LoadState: "not-found", ActiveState: "inactive", SubState: "dead" };
              return props.map((p) => `${p}=${u[p] ?? ""}`).join("\n");
            })
            .join("\n\n") + "\n",
        );
      }
      case "stop":
        for (const n of names) stopWithDeps(find(n)!);
        return ok();
      case "kill":
        for (const n of names) {
          const u = find(n)!;
          u.NRestarts = String(Number(u.NRestarts ?? 0) + 1);
        }
        return ok();
      case "start":
        if (opts.failStart && names.includes(opts.failStart)) {
          return { code: 1, stdout: "", stderr: `Job for ${opts.failStart} failed because the control process exited with error code.\nSee "systemctl status ${opts.failStart}" for details.\n` };
        }
        for (const n of names) {
          const u = find(n);
          if (!u) return { code: 5, stdout: "", stderr: `Failed to start ${n}: Unit ${n} not found.\n` };
          u.ActiveState = "active";
          u.SubState = "running";
        }
        return ok();
      default:
        return { code: 1, stdout: "", stderr: `unexpected ${a.join(" ")}` };
    }
  };
  return { run, calls, units };
}

function unit(id: string, fields: Unit = {}): Unit {
  return {
    Id: id,
    Names: id,
    LoadState: "loaded",
    ActiveState: "active",
    SubState: "running",
    UnitFileState: "enabled",
    NRestarts: "0",
    CanStart: "yes",
    CanStop: "yes",
    ControlGroup: `/system.slice/${id}`,
    Restart: "no",
    RestartUSec: "100ms",
    ...fields,
  };
}

const host = (fields: Partial<HostInfo> = {}): HostInfo => ({
  cpuCount: 2,
  stateDir: "/nonexistent",
  protectedPids: () => [process.pid],
  networkExclusions: [],
  ...fields,
});

/** A kind over a fake systemd; `processes` are what each control group holds. */
function kind(units: Record<string, Unit>, opts: { processes?: Record<string, { pid: number; comm: string; cmdline: string; ppid: number }[]>; failStart?: string; systemd?: boolean; root?: boolean } = {}) {
  const fake = fakeSystemd(units, opts.failStart !== undefined ? { failStart: opts.failStart } : {});
  const def = createServiceStop({
    run: fake.run,
    systemdRunning: () => opts.systemd ?? true,
    isRoot: () => opts.root ?? true,
    processesIn: (cg) => opts.processes?.[cg] ?? [],
    measureIntervalMs: 20,
  });
  return { def, fake };
}

function context(h: HostInfo = host()) {
  const { log } = captureLog();
  const records: JsonObject[] = [];
  const ctx: FaultContext = { faultId: "f1", log, host: h, updateRevert: (r) => void records.push(structuredClone(r)) };
  return { ctx, records, log };
}

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidFaultRequestError);
    return (err as Error).message;
  }
  throw new Error("not refused");
};
const asyncRefusal = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidFaultRequestError);
  return (err as Error).message;
};

describe("service-stop: validation on the agent", () => {
  it("refuses on a host without systemd, and without root, before anything else", () => {
    const { def } = kind({}, { systemd: false });
    expect(refusal(() => def.validate({ unit: "fd-demo.service" }, host()))).toBe(`kind: ${NO_SYSTEMD_MESSAGE}`);
    const { def: notRoot } = kind({}, { root: false });
    expect(refusal(() => notRoot.validate({ unit: "fd-demo.service" }, host()))).toMatch(/^kind: service-stop needs root/);
  });

  it.skipIf(existsSync("/run/systemd/system"))("the real agent refuses here: this machine's init is not systemd", () => {
    expect(refusal(() => serviceStop.validate({ unit: "fd-demo.service" }, host()))).toBe(`kind: ${NO_SYSTEMD_MESSAGE}`);
  });

  it("refuses protected units by name and this agent's --protect-process unit: rules", () => {
    const { def } = kind({});
    expect(refusal(() => def.validate({ unit: "ssh.service" }, host()))).toContain("SSH access to the host");
    expect(refusal(() => def.validate({ unit: "firedrill-agent.service" }, host()))).toContain("firedrill itself");
    const local = host({ processProtection: { rules: ["postgres", "unit:postgresql.service"] } });
    expect(refusal(() => def.validate({ unit: "postgresql.service" }, local))).toBe(
      'params.unit: "postgresql.service" is protected (postgresql.service: protected by this agent\'s --protect-process unit:postgresql.service): service-stop never stops it',
    );
    expect(def.validate({ unit: "nginx.service" }, local)).toEqual({ unit: "nginx.service", mode: "stop" });
  });
});

describe("service-stop: what it reads before acting (preview and start)", () => {
  it("refuses a unit systemd does not know", async () => {
    const { def } = kind({});
    expect(await asyncRefusal(Promise.resolve(def.preview!({ unit: "nope.service", mode: "stop" }, host())))).toBe(
      "params.unit: no unit nope.service on this host (systemd does not know it); list the units with systemctl list-units --all",
    );
  });

  it("refuses an alias of a protected unit, a unit holding a protected process, and a unit that cannot be started again", async () => {
    const { def } = kind(
      {
        ssh: unit("ssh.service", { Names: "ssh.service sshd.service myssh.service" }),
        custom: unit("custom.service"),
        agent: unit("mine.service"),
        oneway: unit("oneway.service", { CanStart: "no" }),
        nostop: unit("nostop.service", { CanStop: "no" }),
      },
      {
        processes: {
          "/system.slice/custom.service": [{ pid: 4242, comm: "sshd", cmdline: "/usr/sbin/sshd -D -p 2222", ppid: 1 }],
          "/system.slice/mine.service": [{ pid: process.pid, comm: "node", cmdline: "node", ppid: 1 }],
        },
      },
    );
    const preview = (u: string, mode: "stop" | "kill" = "stop") => Promise.resolve(def.preview!({ unit: u, mode }, host()));
    expect(await asyncRefusal(preview("myssh.service"))).toContain("(ssh.service: SSH access to the host)");
    expect(await asyncRefusal(preview("custom.service"))).toBe(
      "params.unit: custom.service is protected: it holds pid 4242 (sshd): sshd (SSH access to the host); service-stop never stops it",
    );
    expect(await asyncRefusal(preview("mine.service"))).toContain("this firedrill agent, its guard or its parent");
    expect(await asyncRefusal(preview("oneway.service"))).toContain("RefuseManualStart=yes");
    expect(await asyncRefusal(preview("nostop.service"))).toContain("use mode kill");
    expect((await preview("nostop.service", "kill")).details[0]).toMatch(/^kills every process of nostop\.service/);
  });

  it("finds what the stop takes down with it, and refuses when that includes a protected unit", async () => {
    const { def } = kind({
      db: unit("db.service", { RequiredBy: "api.service idle.service" }),
      api: unit("api.service", { BoundBy: "worker.service" }),
      worker: unit("worker.service"),
      idle: unit("idle.service", { ActiveState: "inactive", SubState: "dead" }),
      base: unit("base.service", { RequiredBy: "app.service" }),
      app: unit("app.service", { ConsistsOf: "helper.service" }),
      helper: unit("helper.service", { Names: "helper.service dbus-helper.service" }),
    });
    const p = await def.preview!({ unit: "db.service", mode: "stop" }, host());
    expect(p.details).toEqual([
      "stops db.service (active (running), enabled) with systemctl stop; starts it again on revert",
      "also takes down, as they depend on it: api.service (RequiredBy= of db.service), worker.service (BoundBy= of api.service); started again on revert",
    ]);
    expect(await asyncRefusal(Promise.resolve(def.preview!({ unit: "base.service", mode: "stop" }, host())))).toBe(
      "params.unit: stopping base.service would also stop helper.service (ConsistsOf= of app.service), which is protected (dbus-helper.service: the D-Bus system bus (systemctl and logind need it)); service-stop never stops it",
    );
  });

  it("says what keeps a unit from staying down: Restart= in kill mode, socket activation", async () => {
    const { def } = kind({ web: unit("web.service", { Restart: "always", RestartUSec: "2s", TriggeredBy: "web.socket" }) });
    const p = await def.preview!({ unit: "web.service", mode: "kill" }, host());
    expect(p.details).toEqual([
      "kills every process of web.service (active (running), enabled) with SIGKILL, a crash; it has Restart=always (RestartSec=2s): systemd restarts it during the fault (restarts_seen counts it); starts it again on revert if it is down",
      "web.socket can start web.service again during the fault (socket, timer or path activation); the measurement active shows it",
    ]);
    const { def: once } = kind({ job: unit("job.service", { Restart: "on-success" }) });
    expect((await once.preview!({ unit: "job.service", mode: "kill" }, host())).details).toEqual([
      "kills every process of job.service (active (running), enabled) with SIGKILL, a crash; systemd does not restart it (Restart=on-success): it stays down; starts it again on revert if it is down",
    ]);
  });
});

describe("service-stop: start and revert", () => {
  it("journals the unit's state before stopping it, measures it down, and starts it again on revert", async () => {
    const units = { db: unit("db.service", { RequiredBy: "api.service", NRestarts: "3" }), api: unit("api.service") };
    const { def, fake } = kind(units);
    const { ctx, records } = context();
    let stoppedWhenJournaled: boolean | undefined;
    const update = ctx.updateRevert;
    ctx.updateRevert = (r) => {
      stoppedWhenJournaled = units.db.ActiveState !== "active";
      update(r);
    };
    const plan = def.validate({ unit: "db.service" }, ctx.host);
    expect(def.planRevert(plan, ctx)).toEqual({ unit: "db.service", mode: "stop", phase: "planned" });
    const running = await def.start(plan, ctx);
    expect(stoppedWhenJournaled).toBe(false);
    expect(records).toEqual([
      {
        unit: "db.service",
        mode: "stop",
        phase: "stopping",
        wasActive: true,
        activeState: "active",
        subState: "running",
        unitFileState: "enabled",
        nRestarts: 3,
        alsoStopped: ["api.service"],
      },
    ]);
    expect(fake.calls.filter((c) => c[0] !== "show")).toEqual([["stop", "--", "db.service"]]);
    expect(units.db.ActiveState).toBe("inactive");
    expect(units.api.ActiveState).toBe("inactive");
    expect(running.measure!()).toEqual({ active: 0, restarts_seen: 0, was_active: 1 });
    await running.revert();
    await running.revert();
    // Idempotent: the record alone (the guard, a restart) starts them again too, harmlessly.
    await def.revertRecord(records[0]!, { log: ctx.log, holderAlive: false });
    expect(fake.calls.filter((c) => c[0] === "start")).toEqual([
      ["start", "--", "db.service", "api.service"],
      ["start", "--", "db.service", "api.service"],
    ]);
    expect(units.db.ActiveState).toBe("active");
    expect(units.api.ActiveState).toBe("active");
  });

  it("leaves a unit that was down as it is, and never starts it", async () => {
    const units = { idle: unit("idle.service", { ActiveState: "inactive", SubState: "dead", UnitFileState: "disabled" }) };
    const { def, fake } = kind(units);
    const { ctx, records } = context();
    const running = await def.start(def.validate({ unit: "idle.service" }, ctx.host), ctx);
    expect(running.details).toEqual(["idle.service is inactive (dead), disabled already: nothing to stop; it is left as it is on revert"]);
    expect(records[0]).toMatchObject({ wasActive: false, activeState: "inactive", unitFileState: "disabled" });
    await running.revert();
    await def.revertRecord(records[0]!, { log: ctx.log, holderAlive: false });
    expect(fake.calls.filter((c) => c[0] !== "show")).toEqual([]);
    expect(units.idle.ActiveState).toBe("inactive");
  });

  it("kill mode: SIGKILL through systemctl kill, restarts counted from NRestarts", async () => {
    const units = { web: unit("web.service", { Restart: "always", NRestarts: "5" }) };
    const { def, fake } = kind(units);
    const { ctx } = context();
    const running = await def.start(def.validate({ unit: "web.service", mode: "kill" }, ctx.host), ctx);
    expect(fake.calls.filter((c) => c[0] !== "show")).toEqual([["kill", "--signal=SIGKILL", "--", "web.service"]]);
    await new Promise((r) => setTimeout(r, 60));
    expect(running.measure!()).toEqual({ active: 1, restarts_seen: 1, was_active: 1 });
    await running.revert();
  });

  it("a unit that does not start again: the revert fails with systemctl's words, and is retried", async () => {
    const units = { db: unit("db.service") };
    const { def } = kind(units, { failStart: "db.service" });
    const { ctx, records } = context();
    const running = await def.start(def.validate({ unit: "db.service" }, ctx.host), ctx);
    const err = await running.revert().then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe(
      'could not start db.service again: systemctl start said: Job for db.service failed because the control process exited with error code. See "systemctl status db.service" for details.; see systemctl status db.service and journalctl -u db.service, fix the cause (the revert is retried)',
    );
    const fromRecord = await def.revertRecord(records[0]!, { log: ctx.log, holderAlive: false }).then(() => undefined, (e: Error) => e.message);
    expect(fromRecord).toBe(err?.message);
  });

  it("the record alone: a planned record touches nothing, a malformed or protected one is refused", async () => {
    const { fake, run } = (() => {
      const f = fakeSystemd({ db: unit("db.service", { ActiveState: "inactive" }) });
      return { fake: f, run: f.run };
    })();
    const { log } = captureLog();
    await revertServiceStopRecord({ unit: "db.service", mode: "stop", phase: "planned" }, { log }, run);
    expect(fake.calls).toEqual([]);
    await revertServiceStopRecord({ unit: "db.service", mode: "stop", phase: "stopping", wasActive: true, alsoStopped: [] }, { log }, run);
    expect(fake.calls.filter((c) => c[0] === "start")).toEqual([["start", "--", "db.service"]]);
    const bad = (r: JsonObject) => revertServiceStopRecord(r, { log }, run).then(() => "reverted", (e: Error) => e.message);
    expect(await bad({ unit: "--help", mode: "stop", phase: "stopping", wasActive: true })).toMatch(/does not name a unit/);
    expect(await bad({ unit: "ssh.service", mode: "stop", phase: "stopping", wasActive: true })).toMatch(/names a protected unit/);
    expect(await bad({ unit: "db.service", mode: "stop", phase: "stopping" })).toMatch(/does not say whether the unit was active/);
    expect(await bad({ unit: "db.service", mode: "stop", phase: "stopping", wasActive: true, alsoStopped: ["x y"] })).toMatch(/bad unit list/);
  });
});

describe("service-stop in the fault runtime", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-service-stop-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function runtimeWith(def: FaultKindDefinition) {
    const journal = new Journal(join(dir, "state"));
    const events: FaultEvent[] = [];
    const runtime = new FaultRuntime({
      registry: createFaultRegistry([def]),
      journal,
      host: { cpuCount: 2, stateDir: join(dir, "state"), protectedPids: () => [process.pid], networkExclusions: [] },
      log: captureLog().log,
      holder: { pid: process.pid, startTime: 0 },
      emit: (e) => events.push(e),
      progressIntervalMs: 50,
      revertRetryMs: 10,
      revertAttempts: 2,
    });
    const start = (id: string, params: JsonObject) => runtime.start(create(StartFaultSchema, { faultId: id, kind: "service-stop", params, duration: durationFromMs(60_000) }));
    const timeline = (id: string) => events.filter((e) => e.faultId === id && e.type !== FaultEventType.PROGRESS).map((e) => faultEventTypeName(e.type));
    return { runtime, journal, events, start, timeline };
  }

  it("refuses on a host without systemd with a FAILED event that names systemd; nothing journaled", async () => {
    const { def } = kind({}, { systemd: false });
    const { start, events, journal, timeline } = runtimeWith(def as FaultKindDefinition);
    await start("f1", { unit: "fd-demo.service" });
    expect(timeline("f1")).toEqual(["failed"]);
    expect(events[0]!.error).toBe(`kind: ${NO_SYSTEMD_MESSAGE}`);
    expect(journal.readAll().records).toEqual([]);
  });

  it("a unit that does not come back: revert_failed with systemctl's message, the journal keeps the record", async () => {
    const { def } = kind({ db: unit("db.service") }, { failStart: "db.service" });
    const { runtime, start, events, journal, timeline } = runtimeWith(def as FaultKindDefinition);
    await start("f2", { unit: "db.service" });
    expect(journal.readAll().records[0]!.revert).toMatchObject({ unit: "db.service", phase: "stopping", wasActive: true });
    await runtime.stop("f2", RevertReason.STOPPED);
    expect(timeline("f2")).toEqual(["accepted", "started", "revert_failed"]);
    expect(events.at(-1)!.error).toMatch(/^revert failed after 2 attempts: could not start db\.service again: systemctl start said: Job for db\.service failed/);
    expect(journal.readAll().records.map((r) => r.faultId)).toEqual(["f2"]);
  });
});
