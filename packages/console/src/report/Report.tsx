/**
 * The report of a run, as evidence: hypothesis and verdict, every stop condition's samples over the
 * whole run with the fault windows shaded and the breach marked, the measured effect per host, the
 * cloud actions, what was not reverted, and the timeline. Rendered from the report JSON only (no
 * network), in the console (`#/runs/<id>/report`) and in the self-contained HTML file.
 */
import { useMemo } from "preact/hooks";
import type uPlot from "uplot";
import type { FaultWindowJson, MeasurementPoint, ReportJson, ReportStopCondition } from "../api.js";
import { Chart, thin } from "../components/Chart.js";
import type { ChartWindow } from "../components/Chart.js";
import { ListTable } from "../components/ListTable.js";
import { lastEvents, Timeline } from "../components/Timeline.js";
import { fmtDuration, fmtNumber, fmtTime, fmtZone, plural } from "../format.js";
import "./report.css";

/** Chart width: fits an A4 page in print. */
const CHART_WIDTH = 680;
/** The most host rows the report renders. */
const MAX_HOST_ROWS = 2000;

/** The run's time range in epoch ms: from its start to its end (or when the report was made). */
function runRange(report: ReportJson): [number, number] {
  const start = report.run.startedAt ?? report.run.createdAt;
  const end = report.run.endedAt ?? report.generatedAt ?? Date.now();
  return [start, Math.max(end, start + 1000)];
}

/**
 * The fault windows merged per step (overlapping hosts' windows become one shaded span), in epoch
 * seconds; a window still open ends at `end`.
 */
export function mergeWindows(windows: readonly FaultWindowJson[], end: number): ChartWindow[] {
  const byStep = new Map<string, [number, number][]>();
  for (const w of windows) {
    if (w.startedAt === null) continue;
    const key = w.step ?? w.kind;
    const list = byStep.get(key) ?? [];
    list.push([w.startedAt, Math.max(w.startedAt, w.endedAt ?? end)]);
    byStep.set(key, list);
  }
  const out: ChartWindow[] = [];
  for (const [label, list] of byStep) {
    list.sort((a, b) => a[0] - b[0]);
    let current: [number, number] | null = null;
    for (const [from, to] of list) {
      if (current && from <= current[1]) current[1] = Math.max(current[1], to);
      else {
        if (current) out.push({ from: current[0] / 1000, to: current[1] / 1000, label });
        current = [from, to];
      }
    }
    if (current) out.push({ from: current[0] / 1000, to: current[1] / 1000, label });
  }
  return out.sort((a, b) => a.from - b.from);
}

const UNIT: Record<ReportStopCondition["unit"], string> = { ms: "ms", value: "", firing: "firing" };

function ConditionChart({ condition, windows, range }: { condition: ReportStopCondition; windows: ChartWindow[]; range: [number, number] }) {
  const points = useMemo(() => thin(condition.samples), [condition.samples]);
  const data = useMemo((): uPlot.AlignedData => {
    const fallback = condition.threshold ?? 0;
    return [points.map((s) => s.at / 1000), points.map((s) => s.v), points.map((s) => (s.ok ? null : (s.v ?? fallback)))];
  }, [points, condition.threshold]);
  const overlay = useMemo(
    () => ({
      threshold: condition.threshold === null ? null : { value: condition.threshold, label: condition.thresholdLabel },
      windows,
      marks: condition.breach ? [{ at: condition.breach.at / 1000, label: `breach ${fmtTime(condition.breach.at)}: ${condition.breach.reason}` }] : [],
    }),
    [condition, windows],
  );
  const unit = UNIT[condition.unit];
  return (
    <figure class="report-figure" data-state={condition.state}>
      <figcaption>
        <strong>{condition.condition}</strong> — <span class={`state state-${condition.state}`}>{condition.breach ? "breached" : condition.state}</span>
        {condition.thresholdLabel && `; threshold: ${condition.thresholdLabel}`}; {plural(condition.samples.length, "sample")}
        {condition.samples.length > points.length && ` (${points.length.toLocaleString("en")} plotted)`}
        {condition.breach && (
          <div class="bad">
            Breached at {fmtTime(condition.breach.at)}: {condition.breach.reason}
          </div>
        )}
      </figcaption>
      <Chart
        testid="report-chart"
        label={`${condition.condition} over the run`}
        series={[
          { label: condition.unit === "ms" ? "latency" : condition.unit === "firing" ? "firing" : "value", stroke: "#2563eb", unit },
          { label: "unhealthy", stroke: "#dc2626", pointsOnly: true, unit },
        ]}
        data={data}
        overlay={overlay}
        width={CHART_WIDTH}
        height={220}
        xRange={[range[0] / 1000, range[1] / 1000]}
        liveLegend={false}
        attrs={{ "data-samples": points.length, "data-index": condition.index }}
      />
    </figure>
  );
}

const SPARK_COLORS = ["#2563eb", "#dc2626", "#059669"];

/** A small line per measurement (at most 3), as SVG: crisp in print, no script needed to read it. */
function Sparkline({ series }: { series: readonly MeasurementPoint[] }) {
  // The measurements that moved first (a constant such as `cores 1` says little over time).
  const all = [...new Set(series.flatMap((p) => Object.keys(p.m)))].sort();
  const moves = (k: string) => new Set(series.map((p) => p.m[k])).size > 1;
  const keys = [...all.filter(moves), ...all.filter((k) => !moves(k))].slice(0, 3);
  if (series.length < 2 || keys.length === 0) return <span class="muted small">{series.length === 1 ? "one measurement" : "no measurements"}</span>;
  const points = thin(series, 200);
  const w = 160;
  const h = 32;
  const t0 = points[0]!.at;
  const t1 = Math.max(points[points.length - 1]!.at, t0 + 1);
  return (
    <span class="spark">
      {keys.map((k, i) => {
        const values = points.map((p) => p.m[k]).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
        const lo = Math.min(0, ...values);
        const hi = Math.max(lo + 1e-9, ...values);
        const d = points
          .filter((p) => typeof p.m[k] === "number")
          .map((p) => `${(((p.at - t0) / (t1 - t0)) * w).toFixed(1)},${(h - 2 - ((p.m[k]! - lo) / (hi - lo)) * (h - 4)).toFixed(1)}`)
          .join(" ");
        return (
          <svg key={k} width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${k}: ${fmtNumber(Math.min(...values))} to ${fmtNumber(Math.max(...values))}`}>
            <title>{`${k}: ${fmtNumber(Math.min(...values))} to ${fmtNumber(Math.max(...values))}`}</title>
            <polyline points={d} fill="none" stroke={SPARK_COLORS[i]} stroke-width="1.5" />
            <text x="2" y="9" class="spark-label">
              {k} max {fmtNumber(Math.max(...values))}
            </text>
          </svg>
        );
      })}
    </span>
  );
}

function HostsTable({ report }: { report: ReportJson }) {
  if (report.hosts) {
    const rows = report.hosts.flatMap((h) => h.faults.map((f) => ({ host: h, fault: f })));
    return (
      <>
        <ListTable testid="report-hosts" columns={["Host", "Step", "Fault", "State", "Measured effect", "Over time"]}>
          {rows.slice(0, MAX_HOST_ROWS).map(({ host, fault }) => (
            <tr key={fault.faultId} data-agent-id={host.agentId} data-fault-id={fault.faultId} data-state={fault.state}>
              <td>
                {host.hostname ?? host.agentId}
                <div class="muted small">{host.agentId}</div>
              </td>
              <td>{fault.step ?? "—"}</td>
              <td>{fault.kind}</td>
              <td>
                <span class={`state state-${fault.state}`}>{fault.state}</span>
              </td>
              <td>{fault.effect}</td>
              <td>
                <Sparkline series={fault.series} />
              </td>
            </tr>
          ))}
        </ListTable>
        {rows.length > MAX_HOST_ROWS && <p class="muted">{(rows.length - MAX_HOST_ROWS).toLocaleString("en")} more host faults not shown.</p>}
      </>
    );
  }
  // A report from a control plane without per-host effects: what was hit, with the last measurements.
  return (
    <ListTable testid="report-hosts" columns={["Host", "Step", "Fault", "State", "Last measurements"]}>
      {report.hits.slice(0, MAX_HOST_ROWS).map((h) => (
        <tr key={h.faultId} data-agent-id={h.agentId} data-fault-id={h.faultId} data-state={h.state}>
          <td>{h.agentId}</td>
          <td>{h.step ?? "—"}</td>
          <td>{h.kind}</td>
          <td>{h.state}</td>
          <td>
            {h.measurements
              ? Object.entries(h.measurements)
                  .map(([k, v]) => `${k} ${fmtNumber(v)}`)
                  .join(", ")
              : "—"}
          </td>
        </tr>
      ))}
    </ListTable>
  );
}

function NotReverted({ report }: { report: ReportJson }) {
  const none = report.unconfirmed.length === 0 && report.revertFailed.length === 0 && report.cloudNotReverted.length === 0;
  return (
    <section data-testid="not-reverted" class={none ? "" : "alarm"}>
      <h2>Not reverted</h2>
      {none ? (
        <p>Nothing: {report.reverts.text}.</p>
      ) : (
        <ul>
          {report.revertFailed.map((r) => (
            <li key={`f-${r.faultId}`} class="bad">
              REVERT FAILED: {r.kind} on {r.agentId} ({r.faultId}) at {fmtTime(r.time)}
              {r.error ? `: ${r.error}` : ""} — the effect may still be on the host.
            </li>
          ))}
          {report.unconfirmed.map((u, i) => (
            <li key={`u-${u.faultId ?? i}`}>
              {fmtTime(u.time)}: {u.message}
            </li>
          ))}
          {report.cloudNotReverted.map((text, i) => (
            <li key={`c-${i}`} class="bad">
              {text}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export interface ReportProps {
  report: ReportJson;
  /** Where the HTML file can be downloaded (the console); absent in the file itself. */
  downloadHref?: string;
}

export function Report({ report, downloadHref }: ReportProps) {
  const range = runRange(report);
  const windows = useMemo(() => mergeWindows(report.faultWindows ?? [], range[1]), [report, range[1]]);
  const timeline = lastEvents(report.timeline);
  const run = report.run;
  return (
    <article class="report" data-testid="report" data-run-id={run.id}>
      <header class="report-head">
        <p class="muted small">firedrill run report</p>
        <h1>{run.name}</h1>
        <p class="small">
          <code>{run.id}</code> · started by {run.actor} · {fmtTime(run.startedAt ?? run.createdAt)} to {fmtTime(run.endedAt)} ({fmtDuration(range[1] - range[0])}) · state {run.state}
          {run.reason ? `: ${run.reason}` : ""}
        </p>
        <div class="buttons no-print">
          <button type="button" onClick={() => window.print()}>
            Print
          </button>
          {downloadHref && (
            <a href={downloadHref} download>
              Download as one HTML file
            </a>
          )}
        </div>
      </header>
      <section class={`verdict verdict-${report.verdict}`} data-testid="verdict" data-verdict={report.verdict}>
        <p class="verdict-word">
          Verdict: <strong>{report.verdict}</strong>
        </p>
        <p>
          <strong>Hypothesis:</strong> {report.hypothesis}
        </p>
        <p>{report.summary}</p>
        <p class="small">Reverts: {report.reverts.text}.</p>
      </section>

      <section>
        <h2>Stop conditions</h2>
        {windows.length > 0 && <p class="hint">Shaded: when each step's faults were in effect. Red line: the breach. Dashed: the threshold.</p>}
        {(report.stopConditions ?? []).length === 0 && <p class="muted">{report.stopConditions ? "The experiment has no stop condition." : "This control plane's report has no stop-condition samples."}</p>}
        {(report.stopConditions ?? []).map((c) => (
          <ConditionChart key={c.index} condition={c} windows={windows} range={range} />
        ))}
      </section>

      {report.broke.length > 0 && (
        <section>
          <h2>What broke</h2>
          <ul>
            {report.broke.map((b, i) => (
              <li key={i} class="bad">
                {fmtTime(b.time)} {b.type}: {b.message}
              </li>
            ))}
          </ul>
        </section>
      )}

      <section>
        <h2>Hosts</h2>
        <HostsTable report={report} />
      </section>

      <section>
        <h2>Cloud actions</h2>
        {report.cloudActions.length === 0 && report.cloudReverts.length === 0 ? (
          <p class="muted">None.</p>
        ) : (
          <>
            {report.cloudActions.length > 0 && (
              <ListTable testid="report-cloud-actions" columns={["Time", "Step", "Action", "Instance", "Result"]}>
                {report.cloudActions.map((a, i) => (
                  <tr key={i} class={a.irreversible ? "bad" : ""}>
                    <td class="small nowrap">{fmtTime(a.time)}</td>
                    <td>{a.step ?? "—"}</td>
                    <td>{a.call ?? a.action}</td>
                    <td>
                      {a.instanceId}
                      {a.autoScalingGroup && <div class="small muted">{a.autoScalingGroup}</div>}
                    </td>
                    <td class="small">{a.text}</td>
                  </tr>
                ))}
              </ListTable>
            )}
            {report.cloudReverts.length > 0 && (
              <ul>
                {report.cloudReverts.map((c) => (
                  <li key={c.id}>
                    {c.step ?? "—"}: {c.action} {c.resource} ({c.region}): {c.text}
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
      </section>

      <NotReverted report={report} />

      <section class="report-timeline">
        <h2>Timeline</h2>
        {report.measurements > 0 && <p class="hint">{plural(report.measurements, "measurement event")} left out (see the hosts' effects).</p>}
        <Timeline events={timeline.events} dropped={timeline.dropped} label="Run timeline" />
      </section>
      <footer class="small muted">
        Times are local ({fmtZone(range[0])}). Report generated {fmtTime(report.generatedAt ?? null)} by firedrill.
      </footer>
    </article>
  );
}
