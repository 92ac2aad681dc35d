/**
 * The report of a run: the hypothesis, the verdict, what was hit, what broke, and the timeline.
 */
import type { RunEvent, RunRecord } from "../store/run-store.js";
import type { FaultRecord } from "../store/types.js";
import type { RunPlan } from "./plan.js";

/** Whether the run supports the hypothesis. */
export type Verdict = "held" | "rejected" | "inconclusive";

/** A run's report. */
export interface RunReport {
  run: Pick<RunRecord, "id" | "name" | "state" | "reason" | "actor" | "createdAt" | "startedAt" | "endedAt">;
  hypothesis: string;
  verdict: Verdict;
  /** The verdict in one sentence. */
  summary: string;
  /** What was hit: every fault of the run, per step. */
  hits: { step: string | null; agentId: string; faultId: string; kind: string; state: string; reason: string | null; error: string | null; measurements: Record<string, number> | null }[];
  /** What broke: stop-condition breaches, refused or failed faults, lost agents. */
  broke: { time: number; type: string; message: string }[];
  /** Reverts that could not be confirmed. */
  unconfirmed: { time: number; agentId: string | null; faultId: string | null; message: string }[];
  /** The timeline without the periodic measurements (see `measurements` for their count). */
  timeline: RunEvent[];
  measurements: number;
}

/** Builds the report of a run from its record, timeline and faults. */
export function buildReport(run: RunRecord, events: RunEvent[], faults: FaultRecord[]): RunReport {
  const plan = run.plan as RunPlan;
  const stepOf = new Map(events.filter((e) => e.faultId).map((e) => [e.faultId!, e.step]));
  const broke = events
    .filter((e) => ["breach", "fault-refused", "fault-failed", "agent-lost"].includes(e.type))
    .map((e) => ({ time: e.time, type: e.type, message: e.message }));
  const breach = events.find((e) => e.type === "breach");
  let verdict: Verdict;
  let summary: string;
  if (run.state === "completed") {
    verdict = "held";
    summary = "The hypothesis held: every step ran and no stop condition breached.";
  } else if (breach) {
    verdict = "rejected";
    summary = `The hypothesis was rejected: ${breach.message}. The run was aborted and its faults reverted.`;
  } else if (run.state === "aborted" || run.state === "failed") {
    verdict = "inconclusive";
    summary = `Inconclusive: the run ${run.state === "aborted" ? "was aborted" : "failed"} (${run.reason ?? "no reason recorded"}).`;
  } else {
    verdict = "inconclusive";
    summary = `Inconclusive: the run is still ${run.state}.`;
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
    unconfirmed: events.filter((e) => e.type === "unconfirmed").map((e) => ({ time: e.time, agentId: e.agentId, faultId: e.faultId, message: e.message })),
    timeline: events.filter((e) => e.type !== "measurement"),
    measurements: events.filter((e) => e.type === "measurement").length,
  };
}
