/**
 * The revert half of service-stop: starts again, from the journal record alone (restart,
 * `recover`, the guard), the unit a service-stop took down — and the units its stop took down with
 * it — when they were active before. Only node:child_process and the protocol's core: the guard
 * loads this without the rest of the agent. See service-stop.ts.
 */
import { spawn } from "node:child_process";
import { protectedUnitReason, unitNameProblem } from "@firedrill/protocol/core";
import type { JsonObject } from "@firedrill/protocol/core";
import type { Logger } from "pino";
import { findExecutable } from "../executables.js";
import { collectChild } from "./net-command.js";

/** What a finished systemctl printed, and its exit code. */
export interface SystemctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs systemctl with an argument array. Seam for tests. */
export type SystemctlRunner = (args: readonly string[], opts?: { timeoutMs?: number }) => Promise<SystemctlResult>;

/** How long a `systemctl show` may take. */
export const SHOW_TIMEOUT_MS = 10_000;
/**
 * How long a `systemctl stop` / `start` may take: a job waits for the unit's own timeouts
 * (TimeoutStopSec= / TimeoutStartSec=, 90 s by default), so a little more.
 */
export const JOB_TIMEOUT_MS = 120_000;

/** Thrown when systemctl cannot be run, times out, or a unit cannot be started again. */
export class ServiceStopError extends Error {
  override readonly name = "ServiceStopError";
}

/** Runs systemctl (argv, never a shell), killed after `timeoutMs`. Rejects only when it cannot run or times out. */
export const runSystemctl: SystemctlRunner = (args, opts = {}) => {
  const timeoutMs = opts.timeoutMs ?? SHOW_TIMEOUT_MS;
  const path = findExecutable("systemctl");
  if (!path) return Promise.reject(new ServiceStopError("systemctl is not installed: service-stop needs a host that runs systemd"));
  // In the executor: a spawn that throws rejects.
  return new Promise((resolve) => {
    // No pager, no colours, no password prompt (polkit): the agent is root, or it fails plainly.
    const child = spawn(path, ["--no-pager", "--no-ask-password", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SYSTEMD_PAGER: "", SYSTEMD_COLORS: "0", LC_ALL: "C" },
    });
    resolve(
      collectChild(child, timeoutMs).then((r) => {
        if (r.end === "error") throw new ServiceStopError(`could not run systemctl: ${r.error.message}`);
        if (r.end === "timeout") throw new ServiceStopError(`systemctl ${args.join(" ")} did not finish within ${timeoutMs / 1000}s`);
        return { code: r.code, stdout: r.stdout, stderr: r.stderr };
      }),
    );
  });
};

/** What systemctl said, on one line. */
export function said(res: SystemctlResult): string {
  return (res.stderr.trim() || res.stdout.trim() || `exit code ${res.code}`).replace(/\s*\n\s*/g, " ");
}

/** Properties of units, from one `systemctl show`; in the order asked, by the name asked. */
export async function showUnits(run: SystemctlRunner, units: readonly string[], properties: readonly string[]): Promise<Map<string, Record<string, string>>> {
  const res = await run(["show", `--property=${properties.join(",")}`, "--", ...units]);
  if (res.code !== 0) throw new ServiceStopError(`systemctl show ${units.join(" ")} failed: ${said(res)}`);
  // One block per unit, separated by an empty line.
  const blocks = res.stdout.split(/\n\n/);
  const out = new Map<string, Record<string, string>>();
  units.forEach((unit, i) => {
    const props: Record<string, string> = {};
    for (const line of (blocks[i] ?? "").split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) props[line.slice(0, eq)] = line.slice(eq + 1);
    }
    out.set(unit, props);
  });
  return out;
}

/** Whether an ActiveState counts as running (started again on revert when it was this before). */
export function isUp(activeState: string | undefined): boolean {
  return activeState === "active" || activeState === "activating" || activeState === "reloading";
}

/** The journal record of a service-stop (JSON). */
export interface ServiceStopRecord {
  /** The unit (its canonical name, systemd's `Id`). */
  unit: string;
  mode: "stop" | "kill";
  /** `planned`: nothing touched yet. `stopping`: the state below is known, the stop may have run. */
  phase: "planned" | "stopping";
  /** Whether it was up (active, activating, reloading) before: only then is it started again. */
  wasActive?: boolean;
  activeState?: string;
  subState?: string;
  /** `systemctl is-enabled`'s answer before (enabled, disabled, static…): never changed. */
  unitFileState?: string;
  /** NRestarts before (services), to count restarts systemd made during the fault. */
  nRestarts?: number;
  /** Active units the stop takes down with it (they require, bind to or are part of it): started again too. */
  alsoStopped?: string[];
}

/** Reads and checks a service-stop record; thrown when it is malformed (nothing is touched then). */
export function parseServiceStopRecord(revert: JsonObject): ServiceStopRecord {
  const bad = (why: string) => new ServiceStopError(`the service-stop journal record ${why}: ${JSON.stringify(revert)}`);
  const { unit, mode, phase, wasActive, alsoStopped } = revert as Record<string, unknown>;
  if (typeof unit !== "string" || unitNameProblem(unit) !== undefined) throw bad("does not name a unit");
  if (protectedUnitReason(unit) !== undefined) throw bad("names a protected unit");
  if (mode !== "stop" && mode !== "kill") throw bad("has no mode");
  if (phase !== "planned" && phase !== "stopping") throw bad("has no phase");
  if (phase === "stopping" && typeof wasActive !== "boolean") throw bad("does not say whether the unit was active");
  if (alsoStopped !== undefined && (!Array.isArray(alsoStopped) || alsoStopped.some((u) => typeof u !== "string" || unitNameProblem(u) !== undefined))) {
    throw bad("holds a bad unit list");
  }
  return revert as unknown as ServiceStopRecord;
}

/**
 * Starts the unit (and the units its stop took down) again when it was up before; leaves it as it
 * is otherwise. Idempotent: starting an active unit does nothing. Thrown (ServiceStopError, with
 * systemctl's words) when it does not come up: the revert is retried, then reported revert_failed.
 */
export async function restoreUnits(run: SystemctlRunner, record: ServiceStopRecord, log: Logger): Promise<void> {
  if (record.phase === "planned") {
    log.info({ unit: record.unit }, "service-stop had not touched the unit yet: nothing to revert");
    return;
  }
  if (!record.wasActive) {
    log.info({ unit: record.unit, activeState: record.activeState }, "the unit was not active before the fault: left as it is");
    return;
  }
  const units = [record.unit, ...(record.alsoStopped ?? [])];
  const res = await run(["start", "--", ...units], { timeoutMs: JOB_TIMEOUT_MS });
  if (res.code !== 0) {
    throw new ServiceStopError(
      `could not start ${units.join(", ")} again: systemctl start said: ${said(res)}; see systemctl status ${record.unit} and journalctl -u ${record.unit}, fix the cause (the revert is retried)`,
    );
  }
  const state = (await showUnits(run, [record.unit], ["ActiveState", "SubState", "Result"])).get(record.unit) ?? {};
  if (!isUp(state.ActiveState)) {
    throw new ServiceStopError(
      `${record.unit} was started again but is ${state.ActiveState ?? "?"} (${state.SubState ?? "?"}, result ${state.Result ?? "?"}) right after: see systemctl status ${record.unit} and journalctl -u ${record.unit}, fix the cause (the revert is retried)`,
    );
  }
  log.info({ units, activeState: state.ActiveState }, "started the stopped units again");
}

/** Reverts a service-stop from its journal record alone. Idempotent. */
export async function revertServiceStopRecord(revert: JsonObject, { log }: { log: Logger }, run: SystemctlRunner = runSystemctl): Promise<void> {
  await restoreUnits(run, parseServiceStopRecord(revert), log);
}
