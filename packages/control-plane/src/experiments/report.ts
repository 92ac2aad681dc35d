/**
 * The report of a run: the hypothesis, the verdict, what was hit, what broke, and the timeline.
 */
import type { CloudRevertEntry } from "../aws/cloud-journal.js";
import { describeUnconfirmed } from "../aws/cloud-journal.js";
import type { RunEvent, RunRecord } from "../store/run-store.js";
import { cloudActionsOf, isRefusedCloudAction } from "./cloud-actions.js";
import type { ReportCloudAction } from "./cloud-actions.js";
import { LEASE_ASSUMED_REASON } from "../store/types.js";
import type { FaultRecord } from "../store/types.js";
import type { RunPlan } from "./plan.js";
import { describeEffect } from "./effects.js";
import type { MeasurementPoint } from "./effects.js";

/** Whether the run supports the hypothesis. */
export type Verdict = "held" | "rejected" | "inconclusive";

/** How the faults of a run ended, counted. */
export interface RevertSummary {
  /** Faults started on their hosts (every fault of the run but those refused or failed to start). */
  started: number;
  /** Reverted, as their agents confirmed. */
  confirmed: number;
  /** Closed as reverted by their agents' leases, never confirmed (reason `lease-assumed`). */
  assumedByLease: number;
  /** The agent gave the revert up: the effect may still be on the host. */
  revertFailed: number;
  /** Not ended yet: the stop is sent again until the agent confirms or its lease must have ended it. */
  pending: number;
}

/** Counts how the faults of a run ended. */
export function summarizeReverts(faults: readonly FaultRecord[]): RevertSummary {
  const summary: RevertSummary = { started: 0, confirmed: 0, assumedByLease: 0, revertFailed: 0, pending: 0 };
  for (const f of faults) {
    if (f.state === "failed") continue;
    summary.started += 1;
    if (f.state === "revert_failed") summary.revertFailed += 1;
    else if (f.endedAt === null) summary.pending += 1;
    else if (f.reason === LEASE_ASSUMED_REASON) summary.assumedByLease += 1;
    else summary.confirmed += 1;
  }
  return summary;
}

/** The summary in words; it claims every fault reverted only when each agent confirmed it. */
export function describeReverts(s: RevertSummary): string {
  if (s.started === 0) return "no fault was started";
  const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
  if (s.confirmed === s.started) {
    return s.started === 1 ? "its fault was reverted (confirmed by its agent)" : `all ${s.started} faults reverted (confirmed by their agents)`;
  }
  const parts = [`${s.confirmed} of ${s.started} reverts confirmed`];
  if (s.revertFailed > 0) parts.push(`${plural(s.revertFailed, "revert", "reverts")} FAILED (the effect may still be on the host)`);
  if (s.pending > 0) parts.push(`${s.pending} not confirmed yet (the stop is sent again until the agent confirms or its lease must have ended the fault)`);
  if (s.assumedByLease > 0) parts.push(`${s.assumedByLease} assumed reverted by the agent's lease, not confirmed`);
  return parts.join(", ");
}

/** What a cloud action left, for people: "i-0abc stopped" for an ec2-stop. */
export function cloudActionLeft(e: CloudRevertEntry): string {
  return e.action === "ec2-stop" ? `${e.resource} stopped (${e.region})` : `${e.action} on ${e.resource} (${e.region})`;
}

/**
 * Whether a cloud action's revert is wanted and not confirmed. Pending ones count once their run
 * has ended (`ended`): until then their step simply still holds them.
 */
export function isCloudRevertUnconfirmed(e: CloudRevertEntry, ended: boolean): boolean {
  return e.state === "reverting" || e.state === "failed" || (e.state === "pending" && ended);
}

/** "1 cloud revert NOT confirmed: NOT reverted: i-… stopped, retrying since …, last error …". Empty input: "". */
export function describeCloudReverts(unconfirmed: readonly CloudRevertEntry[]): string {
  if (unconfirmed.length === 0) return "";
  const n = unconfirmed.length;
  return `${n} cloud revert${n === 1 ? "" : "s"} NOT confirmed: ${unconfirmed.map((e) => describeUnconfirmed(e, cloudActionLeft(e))).join("; ")}`;
}

/**
 * How a run's faults and cloud actions ended, in words. It says "reverted" of faults only while no
 * cloud revert is unconfirmed; `ended`: the run has ended (see {@link isCloudRevertUnconfirmed}).
 */
export function describeAllReverts(s: RevertSummary, cloud: readonly CloudRevertEntry[], ended: boolean): string {
  const unconfirmed = cloud.filter((e) => isCloudRevertUnconfirmed(e, ended));
  const confirmed = cloud.filter((e) => e.state === "confirmed").length;
  const parts: string[] = [];
  if (unconfirmed.length > 0) {
    if (s.started > 0) {
      const host = describeReverts(s);
      parts.push(s.confirmed === s.started ? `host faults: ${s.confirmed} of ${s.started} reverts confirmed by their agents` : host);
    }
    parts.push(describeCloudReverts(unconfirmed));
    return parts.join("; ");
  }
  if (s.started > 0 || cloud.length === 0) parts.push(describeReverts(s));
  if (confirmed > 0) parts.push(`${confirmed === 1 ? "its cloud action was" : `all ${confirmed} cloud actions`} reverted (confirmed by AWS)`);
  return parts.join("; ");
}

/** A cloud action of the run with its revert, as the report lists it. */
export interface ReportCloudRevert {
  id: number;
  step: string | null;
  action: string;
  resource: string;
  region: string;
  state: CloudRevertEntry["state"];
  time: number;
  attempts: number;
  revertRequestedAt: number | null;
  endedAt: number | null;
  lastError: string | null;
  detail: string | null;
  /** In words: "reverted: i-… is running", "NOT reverted: i-… stopped, retrying since …". */
  text: string;
}

/** A run's report. */
export interface RunReport {
  run: Pick<RunRecord, "id" | "name" | "state" | "reason" | "actor" | "createdAt" | "startedAt" | "endedAt">;
  hypothesis: string;
  verdict: Verdict;
  /** The verdict in one sentence. */
  summary: string;
  /** What was hit: every fault of the run, per step. */
  hits: { step: string | null; agentId: string; faultId: string; kind: string; state: string; reason: string | null; error: string | null; measurements: Record<string, number> | null }[];
  /** What broke: stop-condition breaches, refused or failed faults, lost agents, reverts that failed. */
  broke: { time: number; type: string; message: string }[];
  /** How the run's faults ended, counted (`describeReverts` words it). */
  reverts: RevertSummary & { text: string };
  /**
   * Reverts not confirmed by their agent: still pending (the stop is re-sent until confirmed), or
   * assumed done by the agent's lease.
   */
  unconfirmed: { time: number; agentId: string | null; faultId: string | null; message: string }[];
  /** Reverts the agent gave up: the fault's effect may still be on its host. */
  revertFailed: { time: number; agentId: string; faultId: string; kind: string; error: string | null }[];
  /** Every reversible cloud action of the run (e.g. ec2-stop) with the state of its revert. */
  cloudReverts: ReportCloudRevert[];
  /** Cloud actions whose revert is not confirmed: "NOT reverted: i-… stopped, retrying since …". */
  cloudNotReverted: string[];
  /**
   * Every cloud action of the run (terminate, stop, …): when, which step, which instance, the
   * result and why; `irreversible` marks the terminations AWS accepted.
   */
  cloudActions: ReportCloudAction[];
  /** The timeline without the periodic measurements (see `measurements` for their count). */
  timeline: RunEvent[];
  measurements: number;
}

/** A fault's window on the run's time axis (the report shades it on each stop condition's chart). */
export interface ReportFaultWindow {
  faultId: string;
  agentId: string;
  /** The agent's host name, null when the agent is not known any more. */
  hostname: string | null;
  step: string | null;
  kind: string;
  state: string;
  /** Epoch ms; null: it never started. */
  startedAt: number | null;
  /** Epoch ms; null: not ended (yet). */
  endedAt: number | null;
}

/** A fault of a run on one host with what it measurably did there. */
export interface ReportHostFault {
  faultId: string;
  kind: string;
  state: string;
  step: string | null;
  /** One line, e.g. "cpu busy 81 % (asked 80 %)" (see describeEffect). */
  effect: string;
  /** Its measurements over time, oldest first (at most {@link MAX_SERIES_POINTS}). */
  series: MeasurementPoint[];
}

/** A host a run hit, with its faults. */
export interface ReportHost {
  agentId: string;
  hostname: string | null;
  faults: ReportHostFault[];
}

/** Points of a fault's measurement series in a report (evenly thinned past that, first and last kept). */
export const MAX_SERIES_POINTS = 120;

/** The step that started each fault, from the timeline (outcomes recorded after the run ended carry no step). */
export function stepsOfFaults(events: readonly RunEvent[]): Map<string, string | null> {
  const stepOf = new Map<string, string | null>();
  for (const e of events) if (e.faultId && e.step !== null && !stepOf.has(e.faultId)) stepOf.set(e.faultId, e.step);
  return stepOf;
}

function isMeasurements(value: unknown): value is Record<string, number> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  for (const v of Object.values(value)) if (typeof v !== "number") return false;
  return true;
}

function sameMeasurements(a: Record<string, number>, b: Record<string, number>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** At most `max` points, evenly spread, the first and the last kept. */
export function thinSeries<T>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return [...points];
  const out: T[] = [];
  const step = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * step)]!);
  return out;
}

/**
 * Each fault's window and, per host, each fault's effect and measurement series (from the run's
 * measurement events and the fault's last measurements). `hostnameOf`: the agent's host name.
 */
export function buildFaultViews(
  events: readonly RunEvent[],
  faults: readonly FaultRecord[],
  hostnameOf: (agentId: string) => string | null,
): { faultWindows: ReportFaultWindow[]; hosts: ReportHost[] } {
  const stepOf = stepsOfFaults(events);
  const seriesOf = new Map<string, MeasurementPoint[]>();
  for (const e of events) {
    if (e.type !== "measurement" || e.faultId === null || !isMeasurements(e.data)) continue;
    let series = seriesOf.get(e.faultId);
    if (!series) seriesOf.set(e.faultId, (series = []));
    series.push({ at: e.time, m: e.data });
  }
  const names = new Map<string, string | null>();
  const nameOf = (agentId: string): string | null => {
    if (!names.has(agentId)) names.set(agentId, hostnameOf(agentId));
    return names.get(agentId)!;
  };
  const ordered = [...faults].sort((a, b) => (a.startedAt ?? Infinity) - (b.startedAt ?? Infinity) || a.id.localeCompare(b.id));
  const faultWindows: ReportFaultWindow[] = ordered.map((f) => ({
    faultId: f.id,
    agentId: f.agentId,
    hostname: nameOf(f.agentId),
    step: stepOf.get(f.id) ?? null,
    kind: f.kind,
    state: f.state,
    startedAt: f.startedAt,
    endedAt: f.endedAt,
  }));
  const byAgent = new Map<string, ReportHost>();
  for (const f of ordered) {
    let host = byAgent.get(f.agentId);
    if (!host) byAgent.set(f.agentId, (host = { agentId: f.agentId, hostname: nameOf(f.agentId), faults: [] }));
    const series = (seriesOf.get(f.id) ?? []).sort((a, b) => a.at - b.at);
    // The fault keeps its latest measurements, newer than the timeline's (throttled) ones.
    const lastPoint = series.at(-1);
    if (f.measurements && Object.keys(f.measurements).length > 0 && (!lastPoint || !sameMeasurements(lastPoint.m, f.measurements))) {
      series.push({ at: Math.max(lastPoint?.at ?? 0, f.endedAt ?? f.updatedAt), m: f.measurements });
    }
    host.faults.push({ faultId: f.id, kind: f.kind, state: f.state, step: stepOf.get(f.id) ?? null, effect: describeEffect(f.kind, series, f.params), series: thinSeries(series, MAX_SERIES_POINTS) });
  }
  const hosts = [...byAgent.values()].sort((a, b) => (a.hostname ?? a.agentId).localeCompare(b.hostname ?? b.agentId) || a.agentId.localeCompare(b.agentId));
  return { faultWindows, hosts };
}

/** Builds the report of a run from its record, timeline and faults. */
export function buildReport(run: RunRecord, events: RunEvent[], faults: FaultRecord[], now: number = Date.now(), cloud: readonly CloudRevertEntry[] = []): RunReport {
  const plan = run.plan as RunPlan;
  const stepOf = stepsOfFaults(events);
  const broke = events
    .filter((e) => ["breach", "fault-refused", "fault-failed", "agent-lost", "revert-failed"].includes(e.type) || isRefusedCloudAction(e))
    .map((e) => ({ time: e.time, type: e.type, message: e.message }));
  const breach = events.find((e) => e.type === "breach");
  const reverts = summarizeReverts(faults);
  const ended = run.state === "completed" || run.state === "aborted" || run.state === "failed";
  const cloudUnconfirmed = cloud.filter((e) => isCloudRevertUnconfirmed(e, ended));
  const allConfirmed = reverts.confirmed === reverts.started && cloudUnconfirmed.length === 0;
  const revertsText = describeAllReverts(reverts, cloud, ended);
  let verdict: Verdict;
  let summary: string;
  if (run.state === "completed") {
    verdict = "held";
    summary = "The hypothesis held: every step ran and no stop condition breached.";
  } else if (breach) {
    verdict = "rejected";
    summary = `The hypothesis was rejected: ${breach.message}. The run was aborted; ${allConfirmed ? "its faults were reverted" : revertsText}.`;
  } else if (run.state === "aborted" || run.state === "failed") {
    verdict = "inconclusive";
    summary = `Inconclusive: the run ${run.state === "aborted" ? "was aborted" : "failed"} (${run.reason ?? "no reason recorded"}).`;
  } else {
    verdict = "inconclusive";
    summary = `Inconclusive: the run is still ${run.state}.`;
  }
  if (cloudUnconfirmed.length > 0) summary += ` ${describeCloudReverts(cloudUnconfirmed)}.`;
  // The reason was written when the run ended; what the journal confirmed since is said here.
  const confirmedLate = cloud.filter((e) => e.state === "confirmed" && run.endedAt !== null && e.endedAt !== null && e.endedAt > run.endedAt);
  if (confirmedLate.length > 0) {
    summary += ` Since the run ended, AWS confirmed the revert of ${confirmedLate.map((e) => `${e.action} ${e.resource} (${new Date(e.endedAt!).toISOString()})`).join(", ")}.`;
  }
  const terminated = cloudActionsOf(events).filter((a) => a.irreversible);
  if (terminated.length > 0) summary += ` ${terminated.length === 1 ? "1 instance was" : `${terminated.length} instances were`} terminated (irreversible): ${terminated.map((a) => a.instanceId).join(", ")}.`;
  const unconfirmed: RunReport["unconfirmed"] = [];
  const revertFailed: RunReport["revertFailed"] = [];
  for (const f of faults) {
    if (f.state === "revert_failed") {
      revertFailed.push({ time: f.endedAt ?? f.updatedAt, agentId: f.agentId, faultId: f.id, kind: f.kind, error: f.error });
    } else if (f.state === "reverted" && f.reason === LEASE_ASSUMED_REASON) {
      unconfirmed.push({ time: f.endedAt ?? f.updatedAt, agentId: f.agentId, faultId: f.id, message: `${f.kind} on ${f.agentId} (${f.id}): assumed reverted by the agent's lease, never confirmed by the agent` });
    } else if (ended && f.endedAt === null && f.state !== "failed") {
      const since = f.stopRequestedAt !== null ? ` since ${new Date(f.stopRequestedAt).toISOString()}` : "";
      unconfirmed.push({
        time: f.stopRequestedAt ?? now,
        agentId: f.agentId,
        faultId: f.id,
        message: `${f.kind} on ${f.agentId} (${f.id}): revert not confirmed yet; the stop is wanted${since} and sent again until the agent confirms, or its lease must have ended it`,
      });
    }
  }
  return {
    run: { id: run.id, name: run.name, state: run.state, reason: run.reason, actor: run.actor, createdAt: run.createdAt, startedAt: run.startedAt, endedAt: run.endedAt },
    hypothesis: plan.hypothesis,
    verdict,
    summary,
    hits: faults.map((f) => ({
      step: stepOf.get(f.id) ?? null,
      agentId: f.agentId,
      faultId: f.id,
      kind: f.kind,
      state: f.state,
      reason: f.reason,
      error: f.error,
      measurements: f.measurements,
    })),
    broke,
    reverts: { ...reverts, text: revertsText },
    unconfirmed,
    revertFailed,
    cloudReverts: cloud.map((e) => ({
      id: e.id,
      step: e.step,
      action: e.action,
      resource: e.resource,
      region: e.region,
      state: e.state,
      time: e.createdAt,
      attempts: e.attempts,
      revertRequestedAt: e.revertRequestedAt,
      endedAt: e.endedAt,
      lastError: e.lastError,
      detail: e.detail,
      text: isCloudRevertUnconfirmed(e, ended)
        ? describeUnconfirmed(e, cloudActionLeft(e))
        : e.state === "confirmed"
          ? `reverted: ${e.detail ?? "confirmed by AWS"}`
          : e.state === "cancelled"
            ? `nothing to revert: ${e.detail ?? "AWS refused the action"}`
            : `in effect (${cloudActionLeft(e)}) while its step runs`,
    })),
    cloudNotReverted: cloudUnconfirmed.map((e) => describeUnconfirmed(e, cloudActionLeft(e))),
    cloudActions: cloudActionsOf(events),
    timeline: events.filter((e) => e.type !== "measurement"),
    measurements: events.filter((e) => e.type === "measurement").length,
  };
}
