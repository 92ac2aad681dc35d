/**
 * service-stop: takes a systemd unit down — `systemctl stop` (a clean stop), or SIGKILL to every
 * process of the unit (`systemctl kill`, a crash that a unit with Restart= recovers from) — and
 * starts it again on revert when it was up before.
 *
 * The journal holds the unit's state before the fault (ActiveState, SubState, enablement,
 * NRestarts) and the active units the stop takes down with it *before* anything is stopped, so a
 * revert from the record alone (restart, `recover`, the guard) starts exactly what was up, and a
 * unit that was down stays down.
 *
 * Never acted on: a protected unit by name (PROTECTED_UNITS in the protocol: SSH, systemd's own
 * units, D-Bus, consoles, the network, container runtimes, firedrill, special targets, system
 * mounts), under any alias; a unit with a protected process in it (sshd under any unit name, the
 * agent, its guard, a local control plane: the process faults' protections, --protect-process
 * included); a unit named by --protect-process unit:NAME; and a unit whose stop would take a
 * protected unit down with it. A unit that refuses a manual start (RefuseManualStart=) is never
 * stopped: it could not be started again.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { InvalidFaultRequestError, parseFaultParams, protectedUnitReason } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import { hasExecutable } from "../executables.js";
import { readProcess } from "./process-select.js";
import { createProtection } from "./process-protection.js";
import {
  JOB_TIMEOUT_MS,
  ServiceStopError,
  isUp,
  restoreUnits,
  revertServiceStopRecord,
  runSystemctl,
  said,
  showUnits,
} from "./service-stop-revert.js";
import type { ServiceStopRecord, SystemctlRunner } from "./service-stop-revert.js";
import { revertOnce } from "./running.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, HostInfo, RunningFault } from "./types.js";

export type { ServiceStopRecord } from "./service-stop-revert.js";

/** Validated service-stop parameters. */
export type ServiceStopPlan = FaultParamsByKind["service-stop"];

/** The most units a stop may take down with it: more is refused (a slice or target of half the host). */
export const MAX_ALSO_STOPPED = 50;

/** The dependencies through which systemd propagates a stop (the other units' Requires=, Requisite=, BindsTo=, PartOf=, PropagatesStopTo=). */
const STOP_PROPAGATION = ["RequiredBy", "RequisiteOf", "BoundBy", "ConsistsOf", "PropagatesStopTo"] as const;

const UNIT_PROPERTIES = [
  "Id",
  "Names",
  "LoadState",
  "LoadError",
  "ActiveState",
  "SubState",
  "UnitFileState",
  "NRestarts",
  "CanStart",
  "CanStop",
  "ControlGroup",
  "Restart",
  "RestartUSec",
  "TriggeredBy",
  ...STOP_PROPAGATION,
] as const;

/** What the host says about a unit before the fault, and what its stop would take with it. */
export interface UnitInspection {
  /** The canonical name (systemd's Id: an alias resolves to it). */
  unit: string;
  wasActive: boolean;
  activeState: string;
  subState: string;
  unitFileState: string;
  nRestarts: number | undefined;
  /** Active units the stop would take down too. */
  alsoStopped: string[];
  /** One line each, for STARTED and the preview. */
  details: string[];
}

/** A process of a unit, for the protection check. */
interface UnitProcess {
  pid: number;
  comm: string;
  cmdline: string;
  ppid: number;
}

/** Options of the service-stop kind (seams for tests). */
export interface ServiceStopOptions {
  /** Runs systemctl. @default runSystemctl */
  run?: SystemctlRunner;
  /** Whether systemd is the host's init and systemctl is present. @default /run/systemd/system exists and systemctl is on PATH */
  systemdRunning?: () => boolean;
  /** Whether the agent runs as root. @default geteuid() === 0 */
  isRoot?: () => boolean;
  /** The processes in a control group (systemd's ControlGroup, e.g. /system.slice/nginx.service) and below. @default from /proc/PID/cgroup */
  processesIn?: (controlGroup: string) => UnitProcess[];
  /** How often measurements are refreshed. @default 2000 */
  measureIntervalMs?: number;
}

/** Whether systemd is the host's init (sd_booted: /run/systemd/system exists) and systemctl is present. */
export function systemdRuns(): boolean {
  return existsSync("/run/systemd/system") && hasExecutable("systemctl");
}

/** The message for a host without systemd (the agent's own refusal; the control plane refuses earlier from the capability). */
export const NO_SYSTEMD_MESSAGE =
  "service-stop needs systemd, and this host does not run it (/run/systemd/system is missing, or systemctl is not installed): it stops systemd units and cannot run on a host with another init";

/** The processes whose cgroup is `controlGroup` or below it, from /proc. */
export function processesInCgroup(controlGroup: string): UnitProcess[] {
  if (controlGroup === "" || controlGroup === "/") return [];
  const out: UnitProcess[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/cgroup`, "utf8");
    } catch {
      continue;
    }
    const inside = text.split("\n").some((line) => {
      // hierarchy-ID:controllers:path; the unified (0::) or systemd's named hierarchy (name=systemd)
      const parts = line.split(":");
      if (parts.length < 3 || !(parts[0] === "0" || parts[1] === "name=systemd")) return false;
      const path = parts.slice(2).join(":");
      return path === controlGroup || path.startsWith(`${controlGroup}/`);
    });
    if (!inside) continue;
    const p = readProcess(Number(entry));
    if (p) out.push({ pid: p.pid, comm: p.comm, cmdline: p.cmdline, ppid: p.ppid });
  }
  return out;
}

/** Splits a space-separated unit list property (Names=, RequiredBy=, TriggeredBy=…). */
function unitList(value: string | undefined): string[] {
  return (value ?? "").split(/\s+/).filter((u) => u !== "");
}

function refuse(message: string): InvalidFaultRequestError {
  return new InvalidFaultRequestError([{ field: "params.unit", message }]);
}

/** The unit: rules of this agent's --protect-process, as unit names. */
function localUnitRules(host: Pick<HostInfo, "processProtection">): string[] {
  return (host.processProtection?.rules ?? []).map((r) => r.trim()).filter((r) => r.startsWith("unit:")).map((r) => r.slice("unit:".length));
}

/** Why a unit (any of its names) is protected by name, built-in or by this agent's rules. */
function protectedByName(names: readonly string[], host: Pick<HostInfo, "processProtection">): string | undefined {
  const local = localUnitRules(host);
  for (const name of names) {
    const why = protectedUnitReason(name);
    if (why !== undefined) return `${name}: ${why}`;
    if (local.includes(name)) return `${name}: protected by this agent's --protect-process unit:${name}`;
  }
  return undefined;
}

/** The Restart= settings under which systemd restarts a service killed by SIGKILL (an unclean signal). */
const RESTARTS_AFTER_SIGKILL = ["always", "on-failure", "on-abnormal", "on-abort"];

/** "Restart=always (RestartSec=1s)" for a service systemd restarts after a SIGKILL, or undefined when it does not. */
function restartPolicy(props: Record<string, string>): string | undefined {
  const restart = props.Restart;
  if (!restart || !RESTARTS_AFTER_SIGKILL.includes(restart)) return undefined;
  // systemctl show prints RestartUSec as a time span already (100ms, 1s, 1min 30s).
  return `Restart=${restart}${props.RestartUSec ? ` (RestartSec=${props.RestartUSec})` : ""}`;
}

function stateText(props: Record<string, string>): string {
  const enabled = props.UnitFileState ? `, ${props.UnitFileState}` : "";
  return `${props.ActiveState ?? "?"} (${props.SubState ?? "?"})${enabled}`;
}

/** Creates the service-stop kind. */
export function createServiceStop(options: ServiceStopOptions = {}): FaultKindDefinition<ServiceStopPlan> {
  const run = options.run ?? runSystemctl;
  const systemdRunning = options.systemdRunning ?? systemdRuns;
  const isRoot = options.isRoot ?? (() => process.geteuid?.() === 0);
  const processesIn = options.processesIn ?? processesInCgroup;
  const measureEvery = options.measureIntervalMs ?? 2000;

  function validate(params: JsonObject, host: HostInfo): ServiceStopPlan {
    const plan = parseFaultParams("service-stop", params);
    if (!systemdRunning()) throw new InvalidFaultRequestError([{ field: "kind", message: NO_SYSTEMD_MESSAGE }]);
    if (!isRoot()) {
      throw new InvalidFaultRequestError([{ field: "kind", message: "service-stop needs root: firedrill-agent must run as root to stop and start systemd units" }]);
    }
    const why = protectedByName([plan.unit], host);
    if (why !== undefined) throw refuse(`${JSON.stringify(plan.unit)} is protected (${why}): service-stop never stops it`);
    return plan;
  }

  /** Why a unit must not be taken down for its processes, or undefined. */
  function protectedProcess(controlGroup: string | undefined, host: HostInfo): string | undefined {
    if (!controlGroup) return undefined;
    const isProtected = createProtection(host.processProtection);
    const own = new Set(host.protectedPids());
    for (const p of processesIn(controlGroup)) {
      if (p.pid === 1) return `it holds pid 1 (${p.comm}): init`;
      if (own.has(p.pid)) return `it holds pid ${p.pid} (${p.comm}): this firedrill agent, its guard or its parent`;
      const why = isProtected(p);
      if (why !== undefined) return `it holds pid ${p.pid} (${p.comm}): ${why}`;
    }
    return undefined;
  }

  /**
   * Reads the unit and what its stop would take down, and refuses (InvalidFaultRequestError) what
   * must not be stopped. Touches nothing.
   */
  async function inspect(plan: ServiceStopPlan, host: HostInfo): Promise<UnitInspection> {
    const props = (await showUnits(run, [plan.unit], UNIT_PROPERTIES)).get(plan.unit) ?? {};
    const unit = props.Id || plan.unit;
    if (props.LoadState === "not-found" || (props.LoadState === undefined && props.Id === undefined)) {
      throw refuse(`no unit ${plan.unit} on this host (systemd does not know it); list the units with systemctl list-units --all`);
    }
    const names = [...new Set([plan.unit, unit, ...unitList(props.Names)])];
    const byName = protectedByName(names, host);
    if (byName !== undefined) throw refuse(`${JSON.stringify(plan.unit)} is protected (${byName}): service-stop never stops it`);
    const wasActive = isUp(props.ActiveState);
    if (wasActive && props.LoadState !== "loaded") {
      throw refuse(`${unit} is ${props.LoadState ?? "?"} (${props.LoadError || "not loaded"}): it could not be started again after a stop, so it is not stopped`);
    }
    if (wasActive && props.CanStart === "no") {
      throw refuse(`${unit} refuses manual starts (RefuseManualStart=yes): it could not be started again on revert, so it is not stopped`);
    }
    if (wasActive && plan.mode === "stop" && props.CanStop === "no") {
      throw refuse(`${unit} refuses manual stops (RefuseManualStop=yes); use mode kill to simulate a crash instead`);
    }
    const ownProcess = protectedProcess(props.ControlGroup, host);
    if (ownProcess !== undefined) throw refuse(`${unit} is protected: ${ownProcess}; service-stop never stops it`);

    const alsoStopped: string[] = [];
    const why = new Map<string, string>();
    if (wasActive) {
      // Breadth-first over the units systemd stops along with this one.
      const seen = new Set<string>([unit, ...names]);
      let frontier: { name: string; props: Record<string, string> }[] = [{ name: unit, props }];
      while (frontier.length > 0) {
        const next: string[] = [];
        for (const { name, props: p } of frontier) {
          for (const dep of STOP_PROPAGATION) {
            for (const other of unitList(p[dep])) {
              if (seen.has(other)) continue;
              seen.add(other);
              next.push(other);
              why.set(other, `${dep}= of ${name}`);
            }
          }
        }
        if (next.length === 0) break;
        const shown = await showUnits(run, next, UNIT_PROPERTIES);
        frontier = [];
        for (const other of next) {
          const op = shown.get(other) ?? {};
          if (!isUp(op.ActiveState)) continue;
          const otherNames = [other, ...(op.Id ? [op.Id] : []), ...unitList(op.Names)];
          const reason = protectedByName(otherNames, host) ?? protectedProcess(op.ControlGroup, host);
          if (reason !== undefined) {
            throw refuse(`stopping ${unit} would also stop ${other} (${why.get(other)}), which is protected (${reason}); service-stop never stops it`);
          }
          alsoStopped.push(op.Id || other);
          if (alsoStopped.length > MAX_ALSO_STOPPED) {
            throw refuse(`stopping ${unit} would take down more than ${MAX_ALSO_STOPPED} other active units (${alsoStopped.slice(0, 10).join(", ")}…); stop a smaller unit`);
          }
          frontier.push({ name: other, props: op });
        }
      }
    }

    const details: string[] = [];
    const restart = restartPolicy(props);
    if (!wasActive) {
      details.push(`${unit} is ${stateText(props)} already: nothing to ${plan.mode}; it is left as it is on revert`);
    } else if (plan.mode === "stop") {
      details.push(`stops ${unit} (${stateText(props)}) with systemctl stop; starts it again on revert`);
    } else {
      details.push(
        `kills every process of ${unit} (${stateText(props)}) with SIGKILL, a crash; ` +
          (restart
            ? `it has ${restart}: systemd restarts it during the fault (restarts_seen counts it)`
            : `systemd does not restart it (Restart=${props.Restart || "no"}): it stays down`) +
          "; starts it again on revert if it is down",
      );
    }
    if (alsoStopped.length > 0) {
      details.push(`also takes down, as they depend on it: ${alsoStopped.map((u) => `${u} (${why.get(u) ?? "dependency"})`).join(", ")}; started again on revert`);
    }
    const triggers = unitList(props.TriggeredBy);
    if (wasActive && triggers.length > 0) {
      details.push(`${triggers.join(", ")} can start ${unit} again during the fault (socket, timer or path activation); the measurement active shows it`);
    }
    const n = Number(props.NRestarts);
    return {
      unit,
      wasActive,
      activeState: props.ActiveState ?? "",
      subState: props.SubState ?? "",
      unitFileState: props.UnitFileState ?? "",
      nRestarts: props.NRestarts !== undefined && props.NRestarts !== "" && Number.isFinite(n) ? n : undefined,
      alsoStopped,
      details,
    };
  }

  async function start(plan: ServiceStopPlan, ctx: FaultContext): Promise<RunningFault> {
    const found = await inspect(plan, ctx.host);
    const record: ServiceStopRecord = {
      unit: found.unit,
      mode: plan.mode,
      phase: "stopping",
      wasActive: found.wasActive,
      activeState: found.activeState,
      subState: found.subState,
      unitFileState: found.unitFileState,
      ...(found.nRestarts !== undefined ? { nRestarts: found.nRestarts } : {}),
      alsoStopped: found.alsoStopped,
    };
    // Write-ahead: the journal knows what to start again before anything is stopped.
    ctx.updateRevert(toJson(record));
    if (found.wasActive) {
      const args = plan.mode === "stop" ? ["stop", "--", found.unit] : ["kill", "--signal=SIGKILL", "--", found.unit];
      const res = await run(args, { timeoutMs: JOB_TIMEOUT_MS });
      if (res.code !== 0) throw new ServiceStopError(`systemctl ${args.join(" ")} failed: ${said(res)}`);
    }
    ctx.log.info({ unit: found.unit, mode: plan.mode, wasActive: found.wasActive, alsoStopped: found.alsoStopped, details: found.details }, "service-stop in place");

    const baseline = found.nRestarts ?? 0;
    let lastCount = baseline;
    let restartsSeen = 0;
    let last: Record<string, number> = { active: found.wasActive && plan.mode === "kill" ? 1 : 0, restarts_seen: 0, was_active: found.wasActive ? 1 : 0 };
    let polling = false;
    const poll = async () => {
      if (polling) return;
      polling = true;
      try {
        const p = (await showUnits(run, [found.unit], ["ActiveState", "NRestarts"])).get(found.unit) ?? {};
        const count = Number(p.NRestarts);
        if (p.NRestarts !== undefined && p.NRestarts !== "" && Number.isFinite(count)) {
          // A manual start resets the counter: count on from zero then.
          restartsSeen += count >= lastCount ? count - lastCount : count;
          lastCount = count;
        }
        last = { active: isUp(p.ActiveState) ? 1 : 0, restarts_seen: restartsSeen, was_active: found.wasActive ? 1 : 0 };
      } catch (err) {
        ctx.log.debug({ err }, "reading the unit's state failed");
      } finally {
        polling = false;
      }
    };
    await poll();
    const timer = setInterval(() => void poll(), measureEvery);
    timer.unref();
    const remove = revertOnce(() => restoreUnits(run, record, ctx.log));
    return {
      details: found.details,
      measure: () => last,
      revert() {
        clearInterval(timer);
        return remove();
      },
    };
  }

  return {
    kind: "service-stop",
    validate,
    async preview(plan, host): Promise<FaultPreviewResult> {
      return { details: (await inspect(plan, host)).details };
    },
    planRevert(plan) {
      // Completed by start() (updateRevert) with the unit's state, before anything is stopped.
      return toJson({ unit: plan.unit, mode: plan.mode, phase: "planned" });
    },
    start,
    async revertRecord(revert, { log }) {
      await revertServiceStopRecord(revert, { log }, run);
    },
  };
}

function toJson(record: ServiceStopRecord): JsonObject {
  return { ...record } as unknown as JsonObject;
}

/** The service-stop fault kind. */
export const serviceStop = createServiceStop();
