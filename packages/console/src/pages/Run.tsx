/**
 * A run, live: its state, the step DAG, the timeline and every stop condition's samples streaming
 * in over server-sent events, the targets with their fault states, and ABORT.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type uPlot from "uplot";
import { ApiRequestError, get, post, seg } from "../api.js";
import type { FaultListJson, FaultJson, RunDetailJson, RunEventJson, RunStateWord, SampleConditionJson, SampleJson, SamplesJson, StopConditionState } from "../api.js";
import { Chart, MAX_CHART_POINTS, thin } from "../components/Chart.js";
import type { ChartWindow } from "../components/Chart.js";
import { Dag } from "../components/Dag.js";
import { ListTable } from "../components/ListTable.js";
import { ReasonDialog } from "../components/ReasonDialog.js";
import { MAX_TIMELINE, Timeline } from "../components/Timeline.js";
import { fmtDuration, fmtTime, plural, toMs } from "../format.js";
import { useAction, useErrors, usePoll } from "../hooks.js";

const TERMINAL: readonly string[] = ["completed", "aborted", "failed"];
/** The most faults the targets table loads. */
const MAX_TARGETS = 5000;

/** What the page knows of the run, updated in place as events arrive and rendered in batches. */
interface Feed {
  detail: RunDetailJson | null;
  state: RunStateWord | null;
  reason: string | null;
  events: RunEventJson[];
  dropped: number;
  lastId: number;
  steps: Map<string, "running" | "done">;
  /** Epoch ms when each step started and ended (shaded on the charts). */
  stepTimes: Map<string, { from: number; to: number | null }>;
  conditions: SampleConditionJson[];
  samples: SampleJson[][];
  /** Bumped per condition when its samples change. */
  sampleVersions: number[];
  /** Breaches by condition text. */
  breaches: Map<string, { at: number; reason: string }>;
  /** Health by condition text from stop-condition events (when no samples are streamed). */
  health: Map<string, boolean>;
  ended: boolean;
  live: "connecting" | "live" | "reconnecting" | "ended" | "closed";
}

function newFeed(): Feed {
  return {
    detail: null,
    state: null,
    reason: null,
    events: [],
    dropped: 0,
    lastId: 0,
    steps: new Map(),
    stepTimes: new Map(),
    conditions: [],
    samples: [],
    sampleVersions: [],
    breaches: new Map(),
    health: new Map(),
    ended: false,
    live: "connecting",
  };
}

function addEvent(feed: Feed, e: RunEventJson): boolean {
  if (e.id <= feed.lastId) return false;
  feed.lastId = e.id;
  feed.events.push(e);
  if (feed.events.length > MAX_TIMELINE + 500) {
    const cut = feed.events.length - MAX_TIMELINE;
    feed.events.splice(0, cut);
    feed.dropped += cut;
  }
  const at = toMs(e.time);
  const data = (e.data ?? {}) as Record<string, unknown>;
  switch (e.type) {
    case "state":
      if (typeof data.state === "string") {
        feed.state = data.state as RunStateWord;
        feed.reason = typeof data.reason === "string" ? data.reason : null;
      }
      break;
    case "step-started":
      if (e.step) {
        feed.steps.set(e.step, "running");
        feed.stepTimes.set(e.step, { from: at, to: null });
      }
      break;
    case "step-ended":
      if (e.step) {
        feed.steps.set(e.step, "done");
        const t = feed.stepTimes.get(e.step);
        if (t) t.to = at;
      }
      break;
    case "breach":
      if (typeof data.condition === "string") feed.breaches.set(data.condition, { at: typeof data.at === "number" ? data.at : at, reason: String(data.reason ?? e.message) });
      break;
    case "stop-condition":
      if (typeof data.condition === "string" && typeof data.healthy === "boolean") feed.health.set(data.condition, data.healthy);
      break;
  }
  return true;
}

function setSamples(feed: Feed, payload: SamplesJson): void {
  feed.conditions = payload.conditions;
  feed.samples = payload.conditions.map(() => []);
  for (const s of payload.samples) feed.samples[s.c]?.push(s);
  feed.samples = feed.samples.map((list) => (list.length > MAX_CHART_POINTS ? thin(list) : list));
  feed.sampleVersions = payload.conditions.map((_, i) => (feed.sampleVersions[i] ?? 0) + 1);
}

function addSample(feed: Feed, s: SampleJson): void {
  let list = feed.samples[s.c];
  if (!list) return;
  list.push(s);
  // Past the bound, every other point of the older half goes: the recent past stays dense.
  if (list.length > MAX_CHART_POINTS) {
    const half = Math.floor(list.length / 2);
    list = [...list.slice(0, half).filter((_, i) => i % 2 === 0), ...list.slice(half)];
    feed.samples[s.c] = list;
  }
  feed.sampleVersions[s.c] = (feed.sampleVersions[s.c] ?? 0) + 1;
}

function conditionState(feed: Feed, c: SampleConditionJson): StopConditionState {
  if (feed.breaches.has(c.condition)) return "breached";
  const list = feed.samples[c.index];
  const last = list?.[list.length - 1];
  if (last) return last.ok ? "healthy" : "unhealthy";
  const health = feed.health.get(c.condition);
  if (health !== undefined) return health ? "healthy" : "unhealthy";
  return c.state;
}

const UNIT_LABEL: Record<SampleConditionJson["unit"], string> = { ms: "ms", value: "", firing: "firing" };

function StopConditionCard({ feed, condition, version, windows }: { feed: Feed; condition: SampleConditionJson; version: number; windows: ChartWindow[] }) {
  const samples = feed.samples[condition.index] ?? [];
  const state = conditionState(feed, condition);
  const breach = feed.breaches.get(condition.condition);
  const data = useMemo((): uPlot.AlignedData => {
    const fallback = condition.threshold ?? 0;
    return [samples.map((s) => s.at / 1000), samples.map((s) => s.v), samples.map((s) => (s.ok ? null : (s.v ?? fallback)))];
  }, [version, samples]);
  const overlay = useMemo(
    () => ({
      threshold: condition.threshold === null ? null : { value: condition.threshold, label: condition.thresholdLabel },
      windows,
      marks: breach ? [{ at: breach.at / 1000, label: `breach: ${breach.reason}` }] : [],
    }),
    [condition.threshold, condition.thresholdLabel, windows, breach],
  );
  const last = samples[samples.length - 1];
  return (
    <section class={`card sc sc-${state}`} data-testid="stop-condition" data-state={state} data-index={condition.index}>
      <h3>
        <span class={`state state-${state}`}>{state}</span> {condition.condition}
      </h3>
      <p class="small">
        {condition.thresholdLabel && `Threshold: ${condition.thresholdLabel}. `}
        {last ? `Last sample ${fmtTime(last.at)}: ${last.v === null ? "no answer" : `${last.v}${UNIT_LABEL[condition.unit] ? ` ${UNIT_LABEL[condition.unit]}` : ""}`}.` : "No sample yet."}
        {breach && ` Breached at ${fmtTime(breach.at)}: ${breach.reason}`}
      </p>
      <Chart
        testid="sc-chart"
        label={`${condition.condition}: ${samples.length} samples`}
        series={[
          { label: condition.unit === "ms" ? "latency" : condition.unit === "firing" ? "firing" : "value", stroke: "#2563eb", unit: UNIT_LABEL[condition.unit] },
          { label: "unhealthy", stroke: "#dc2626", pointsOnly: true, unit: UNIT_LABEL[condition.unit] },
        ]}
        data={data}
        overlay={overlay}
        height={200}
        attrs={{ "data-samples": samples.length }}
      />
    </section>
  );
}

async function loadTargets(runId: string): Promise<{ faults: FaultJson[]; more: boolean }> {
  const faults: FaultJson[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ runId, state: "all", limit: "1000" });
    if (cursor !== null) q.set("cursor", cursor);
    const page: FaultListJson = await get<FaultListJson>(`/api/v1/faults?${q.toString()}`);
    faults.push(...page.faults);
    cursor = page.nextCursor;
  } while (cursor !== null && faults.length < MAX_TARGETS);
  return { faults, more: cursor !== null };
}

function Targets({ runId, active, hostnames, tick }: { runId: string; active: boolean; hostnames: ReadonlyMap<string, string>; tick: number }) {
  const targets = usePoll("run-targets", () => loadTargets(runId), active ? 3000 : null, [runId, active, tick]);
  const faults = targets.data?.faults ?? [];
  return (
    <>
      <ListTable testid="targets" columns={["Host", "Fault", "State", "Started", "Ended", "Last measurements / why"]}>
        {faults.map((f) => (
          <tr key={f.id} data-fault-id={f.id} data-state={f.state}>
            <td>
              <a href={`#/fleet/${seg(f.agentId)}`}>{hostnames.get(f.agentId) ?? f.agentId}</a>
            </td>
            <td>
              {f.kind}
              <div class="muted small">{f.id}</div>
            </td>
            <td>
              <span class={`state state-${f.state}`}>{f.state}</span>
              {f.reason && <div class="small">{f.reason}</div>}
            </td>
            <td class="small nowrap">{fmtTime(f.startedAt)}</td>
            <td class="small nowrap">{fmtTime(f.endedAt)}</td>
            <td class="small">
              {f.measurements &&
                Object.entries(f.measurements)
                  .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(2)}`)
                  .join(", ")}
              {f.error && <div class="bad">{f.error}</div>}
            </td>
          </tr>
        ))}
      </ListTable>
      {targets.loaded && faults.length === 0 && <p class="muted">No fault sent yet.</p>}
      {targets.data?.more && <p class="muted">Only the newest {MAX_TARGETS.toLocaleString("en")} faults are shown.</p>}
    </>
  );
}

export function RunPage({ runId }: { runId: string }) {
  const errors = useErrors();
  const feedRef = useRef<Feed>(newFeed());
  const feed = feedRef.current;
  const [, setVersion] = useState(0);
  const [aborting, setAborting] = useState(false);
  const [, runAbort] = useAction("abort");
  const [endTick, setEndTick] = useState(0);

  useEffect(() => {
    let stopped = false;
    let source: EventSource | null = null;
    let flushTimer: number | undefined;
    let retryTimer: number | undefined;
    let failures = 0;
    const flush = () => {
      flushTimer = undefined;
      if (!stopped) setVersion((v) => v + 1);
    };
    // Events come one message at a time: rendered together every 40 ms at most.
    const schedule = () => {
      if (flushTimer === undefined) flushTimer = window.setTimeout(flush, 40);
    };
    const parse = <T,>(m: MessageEvent): T | undefined => {
      try {
        return JSON.parse(m.data as string) as T;
      } catch {
        errors.report("run-stream", new Error(`the live stream sent data that is not JSON: ${String(m.data).slice(0, 100)}`));
        return undefined;
      }
    };
    const connect = async () => {
      try {
        const detail = await get<RunDetailJson>(`/api/v1/runs/${seg(runId)}`);
        if (stopped) return;
        if (!feed.detail) {
          feed.detail = detail;
          feed.state = detail.run.state;
          feed.reason = detail.run.reason;
          for (const e of detail.events) addEvent(feed, e);
          feed.state = detail.run.state;
        }
        errors.clear("run");
        schedule();
      } catch (err) {
        if (stopped) return;
        errors.report("run", err);
        if (err instanceof ApiRequestError && (err.status === 404 || err.status === 401 || err.status === 403)) return;
        retryTimer = window.setTimeout(() => void connect(), 5000);
        return;
      }
      const es = new EventSource(`/api/v1/runs/${seg(runId)}/events?samples=1&after=${feed.lastId}`);
      source = es;
      es.onopen = () => {
        feed.live = "live";
        failures = 0;
        errors.clear("run-stream");
        schedule();
      };
      es.addEventListener("run-event", (m) => {
        const e = parse<RunEventJson>(m);
        if (e && addEvent(feed, e)) schedule();
      });
      es.addEventListener("samples", (m) => {
        const p = parse<SamplesJson>(m);
        if (p) {
          setSamples(feed, p);
          schedule();
        }
      });
      es.addEventListener("sample", (m) => {
        const s = parse<SampleJson>(m);
        if (s) {
          addSample(feed, s);
          schedule();
        }
      });
      es.addEventListener("end", (m) => {
        const run = parse<{ state: RunStateWord; reason: string | null }>(m);
        if (run) {
          feed.state = run.state;
          feed.reason = run.reason;
        }
        feed.ended = true;
        feed.live = "ended";
        es.close();
        setEndTick((t) => t + 1);
        schedule();
      });
      es.onerror = () => {
        if (stopped || feed.ended) return;
        if (es.readyState === EventSource.CLOSED) {
          // Refused (the session ended, the run is gone…): the next GET says why; try again, slower each time.
          feed.live = "closed";
          failures += 1;
          errors.report("run-stream", new Error(`the live stream of run ${runId} closed; reconnecting (attempt ${failures})`));
          retryTimer = window.setTimeout(() => void connect(), Math.min(30_000, 2000 * failures));
        } else feed.live = "reconnecting";
        schedule();
      };
    };
    void connect();
    return () => {
      stopped = true;
      source?.close();
      window.clearTimeout(flushTimer);
      window.clearTimeout(retryTimer);
    };
  }, [runId]);

  const detail = feed.detail;
  const state = feed.state;
  const ended = feed.ended || (state !== null && TERMINAL.includes(state));
  const plan = detail?.run.plan;
  const hostnames = useMemo(() => {
    const map = new Map<string, string>();
    for (const s of plan?.steps ?? []) for (const h of s.hosts) map.set(h.id, h.hostname);
    return map;
  }, [plan]);

  const windows: ChartWindow[] = [];
  for (const s of plan?.steps ?? []) {
    const t = feed.stepTimes.get(s.name);
    if (s.type !== "wait" && t) windows.push({ from: t.from / 1000, to: (t.to ?? Date.now()) / 1000, label: s.name });
  }
  const windowsKey = windows.map((w) => `${w.label}:${w.from}:${Math.round(w.to)}`).join("|");
  const stableWindows = useMemo(() => windows, [windowsKey]);

  const conditions: SampleConditionJson[] =
    feed.conditions.length > 0
      ? feed.conditions
      : (plan?.stopConditions ?? []).map((condition, index) => ({ index, condition, kind: "", unit: "value" as const, threshold: null, thresholdLabel: "", state: "pending" as const }));

  return (
    <main>
      <p class="crumbs">
        <a href="#/runs">Runs</a> / {detail?.run.name ?? runId}
      </p>
      <h1>
        {detail?.run.name ?? runId}{" "}
        <span class={`state state-${state ?? "unknown"}`} data-testid="run-state">
          {state ?? "loading"}
        </span>
      </h1>
      {detail && (
        <>
          <p>
            <strong>Hypothesis:</strong> {detail.run.plan.hypothesis}
          </p>
          <p class="small">
            <code>{detail.run.id}</code> · started by {detail.run.actor} · created {fmtTime(detail.run.createdAt)}
            {detail.run.startedAt && ` · started ${fmtTime(detail.run.startedAt)}`}
            {detail.run.endedAt && ` · ended ${fmtTime(detail.run.endedAt)}`} · planned length {fmtDuration(detail.run.plan.estimatedDurationMs)} ·{" "}
            <span class="live" aria-live="polite">
              {feed.live === "live" ? "live" : feed.live === "ended" ? "run ended" : feed.live}
            </span>
          </p>
          {feed.reason && <p class={state === "completed" ? "" : "bad"}>{feed.reason}</p>}
        </>
      )}
      <div class="buttons no-print">
        {ended ? null : (
          <button type="button" class="danger" data-testid="abort" onClick={() => setAborting(true)}>
            ABORT run
          </button>
        )}
        <a data-testid="report-link" href={`#/runs/${seg(runId)}/report`}>
          Report
        </a>
        <a data-testid="report-download" href={`/api/v1/runs/${seg(runId)}/report.html`} download={`firedrill-report-${runId}.html`}>
          Download the report (HTML)
        </a>
      </div>
      <ReasonDialog
        open={aborting}
        testid="abort-dialog"
        confirmTestid="abort-confirm"
        title={`Abort run ${detail?.run.name ?? runId}`}
        confirmText="Abort the run"
        onClose={() => setAborting(false)}
        onConfirm={(reason) => runAbort(() => post(`/api/v1/runs/${seg(runId)}/abort`, { reason }))}
      >
        <p>Every fault of this run is reverted now and no further step starts.</p>
      </ReasonDialog>

      <h2>Steps</h2>
      {plan ? <Dag steps={plan.steps} progress={feed.steps} runEnded={ended} runCompleted={state === "completed"} /> : <div data-testid="dag" class="dag" />}

      <h2>Stop conditions</h2>
      {conditions.length === 0 && <p class="muted">This experiment has no stop condition.</p>}
      <div class="sc-list">
        {conditions.map((c) => (
          <StopConditionCard key={`${c.index}:${c.condition}`} feed={feed} condition={c} version={feed.sampleVersions[c.index] ?? 0} windows={stableWindows} />
        ))}
      </div>

      <h2>Targets</h2>
      <Targets runId={runId} active={!ended} hostnames={hostnames} tick={endTick} />

      {detail && detail.cloudReverts.length > 0 && (
        <>
          <h2>Cloud actions</h2>
          <ul>
            {detail.cloudReverts.map((c) => (
              <li key={c.id} class={c.unconfirmed ? "bad" : ""}>
                {c.step ?? "—"}: {c.action} {c.resource} ({c.region}): {c.text}
              </li>
            ))}
          </ul>
        </>
      )}

      <h2>Timeline</h2>
      <p class="hint">{plural(feed.events.length + feed.dropped, "event")}; new events are added at the end as they happen.</p>
      <Timeline events={feed.events.length > MAX_TIMELINE ? feed.events.slice(feed.events.length - MAX_TIMELINE) : feed.events} dropped={feed.dropped + Math.max(0, feed.events.length - MAX_TIMELINE)} />
    </main>
  );
}
