/** A run's report in the console (the same component as the downloaded HTML file). */
import { get, seg } from "../api.js";
import type { ReportJson } from "../api.js";
import { usePoll } from "../hooks.js";
import { Report } from "../report/Report.js";

export function ReportPage({ runId }: { runId: string }) {
  const report = usePoll("report", () => get<{ report: ReportJson }>(`/api/v1/runs/${seg(runId)}/report`), null, [runId]);
  return (
    <main class="report-page">
      <p class="crumbs no-print">
        <a href="#/runs">Runs</a> / <a href={`#/runs/${seg(runId)}`}>{report.data?.report.run.name ?? runId}</a> / report
      </p>
      {report.data ? <Report report={report.data.report} downloadHref={`/api/v1/runs/${seg(runId)}/report.html`} /> : !report.loaded && <p aria-busy="true">Loading the report…</p>}
    </main>
  );
}
