/**
 * The self-contained HTML report: renders the report JSON embedded in the page
 * (`<script type="application/json" id="firedrill-report">`) into `#report-root`, with no network.
 */
import { render } from "preact";
import type { ReportJson } from "./api.js";
import { Report } from "./report/Report.js";
import "./styles/base.css";

function show(): void {
  const root = document.getElementById("report-root");
  const data = document.getElementById("firedrill-report");
  if (!root) return;
  try {
    if (!data?.textContent) throw new Error("the report data (#firedrill-report) is missing from this file");
    const report = JSON.parse(data.textContent) as ReportJson;
    document.title = `firedrill report: ${report.run.name} (${report.run.id})`;
    render(<Report report={report} />, root);
  } catch (err) {
    const p = document.createElement("p");
    p.setAttribute("role", "alert");
    p.textContent = `This report could not be shown: ${err instanceof Error ? err.message : String(err)}. Download it again with firedrill report RUN --html out.html.`;
    root.replaceChildren(p);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
else show();
