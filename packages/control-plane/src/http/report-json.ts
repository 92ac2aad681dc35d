/**
 * The report of a run as JSON (`GET /api/v1/runs/:id/report`, the console's report page and the
 * self-contained report.html): the report (experiments/report.ts) with its timeline's times in
 * ISO-8601, every stop condition's samples with its breach, each fault's window and, per host,
 * what each fault measurably did there.
 */
import type { CloudJournal } from "../aws/cloud-journal.js";
import { ApiError } from "../errors.js";
import { buildFaultViews, buildReport } from "../experiments/report.js";
import type { ReportFaultWindow, ReportHost, RunReport } from "../experiments/report.js";
import { breachOf, sampleConditionsOf, toSampleJson } from "../experiments/run-samples.js";
import type { SampleConditionJson, SampleJson } from "../experiments/run-samples.js";
import type { RunEvent, RunStore } from "../store/run-store.js";
import { createListings } from "../store/listings.js";
import type { Store } from "../store/store.js";
import type { FaultRecord } from "../store/types.js";

/** A run event as the API gives it: its time in ISO-8601. */
export type RunEventJson = Omit<RunEvent, "time"> & { time: string };

/** JSON of a run event. */
export function toRunEventJson(event: RunEvent): RunEventJson {
  return { ...event, time: new Date(event.time).toISOString() };
}

/** A stop condition in the report: its chart, every sample of the run, and its breach. */
export interface ReportStopConditionJson extends SampleConditionJson {
  samples: SampleJson[];
  /** When and why it breached (the run was aborted); null when it did not. */
  breach: { at: number; reason: string } | null;
}

/** `GET /api/v1/runs/:id/report` → `{ report }`. Times are epoch ms but the timeline's (ISO-8601). */
export type ReportJson = Omit<RunReport, "timeline"> & {
  timeline: RunEventJson[];
  /** Every stop condition of the run, in spec order. */
  stopConditions: ReportStopConditionJson[];
  /** Every fault of the run, by start time. */
  faultWindows: ReportFaultWindow[];
  /** Every host the run hit, by host name, with each fault's effect and measurements. */
  hosts: ReportHost[];
  /** When this report was made (epoch ms). */
  generatedAt: number;
};

/** What {@link createReportJson} reads. */
export interface ReportJsonDeps {
  store: Store;
  runs: RunStore;
  /** The cloud-revert journal (the run's cloud actions and their reverts). */
  cloud?: CloudJournal;
  /** Clock. @default Date.now */
  now?: () => number;
}

/**
 * A function making the report JSON of a run. Its faults are read a page at a time with a turn of
 * the event loop between pages (a run on 10,000 hosts does not stall the server).
 * Thrown (rejected): ApiError 404 `run_not_found` when there is no such run.
 */
export function createReportJson(deps: ReportJsonDeps): (runId: string) => Promise<ReportJson> {
  const { store, runs, cloud } = deps;
  const now = deps.now ?? Date.now;
  const listings = createListings(store.db);
  const hostname = store.db.prepare<[string], { hostname: string }>("SELECT hostname FROM agents WHERE id = ?");

  const faultsOfRun = async (runId: string): Promise<FaultRecord[]> => {
    const all: FaultRecord[] = [];
    for (const page of listings.faultPages({ runId })) {
      all.push(...page);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return all;
  };

  return async (runId) => {
    if (runs.runState(runId) === undefined) {
      throw new ApiError(404, "run_not_found", `run ${JSON.stringify(runId)} does not exist; list runs with GET /api/v1/runs (firedrill runs)`);
    }
    const faults = await faultsOfRun(runId);
    // Read after the faults: the run as it is now, with every event up to now.
    const run = runs.getRun(runId)!;
    const events = runs.listEvents(runId);
    const generatedAt = now();
    const report = buildReport(run, events, faults, generatedAt, cloud?.list({ runId }) ?? []);
    const { faultWindows, hosts } = buildFaultViews(events, faults, (agentId) => hostname.get(agentId)?.hostname ?? null);
    const breaches = runs.listBreaches(runId);
    const samplesByCondition = new Map<number, SampleJson[]>();
    for (const s of runs.listSamples(runId)) {
      let list = samplesByCondition.get(s.condition);
      if (!list) samplesByCondition.set(s.condition, (list = []));
      list.push(toSampleJson(s));
    }
    const stopConditions = sampleConditionsOf(run, runs).map((c): ReportStopConditionJson => {
      const breach = breachOf(breaches, c.index, c.condition);
      return { ...c, samples: samplesByCondition.get(c.index) ?? [], breach: breach ? { at: breach.at, reason: breach.reason } : null };
    });
    return { ...report, timeline: report.timeline.map(toRunEventJson), stopConditions, faultWindows, hosts, generatedAt };
  };
}
