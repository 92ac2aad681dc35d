/**
 * A run's report as one self-contained HTML file: the report JSON, the report's script and its
 * styles inline, nothing fetched. A Content-Security-Policy in the file allows exactly that script
 * and that stylesheet (by hash) and no network at all, so the file stays inert whatever strings the
 * report holds (host names, reasons, error messages) and opens offline.
 */
import { createHash } from "node:crypto";

/** What {@link renderReportHtml} puts together. */
export interface ReportHtmlInput {
  /** The report (`GET /api/v1/runs/:id/report`'s `report`). */
  report: unknown;
  /** report.css of the console's build. */
  css: string;
  /** report.js of the console's build: renders `#report-root` from `#firedrill-report`. */
  js: string;
}

/** The file: its text and the CSP that goes with it (also sent as a header). */
export interface ReportHtml {
  html: string;
  csp: string;
}

/**
 * JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&` (so neither
 * `</script>` nor `<!--` can appear) and U+2028 / U+2029 written as `\u` escapes; `JSON.parse` of
 * the element's text gives back the same value.
 */
export function jsonForScript(value: unknown): string {
  return (JSON.stringify(value) ?? "null").replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Script text that cannot end its `<script>` element early: `</script` and `<!--` written `<\/script` and `<\!--`. */
export function scriptForInline(js: string): string {
  return js.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

/** Style text that cannot end its `<style>` element early (`\/` is `/` in CSS). */
export function styleForInline(css: string): string {
  return css.replace(/<\/(style)/gi, "<\\/$1");
}

/** Text for an HTML text node or attribute (U+2028 and U+2029 as references too). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'\u2028\u2029]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const sha256 = (text: string): string => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/** The report's title: "firedrill report: <name> (<run id>)". */
function titleOf(report: unknown): string {
  const run = (report as { run?: { id?: unknown; name?: unknown } } | null)?.run;
  const id = typeof run?.id === "string" ? run.id : "";
  const name = typeof run?.name === "string" ? run.name : "";
  return `firedrill report${name ? `: ${name}` : ""}${id ? ` (${id})` : ""}`;
}

/** Builds the self-contained report file. */
export function renderReportHtml(input: ReportHtmlInput): ReportHtml {
  const style = styleForInline(input.css);
  const script = scriptForInline(input.js);
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(style)}`,
    "img-src data:",
    "font-src data:",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
  const html = [
    "<!doctype html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    `<title>${escapeHtml(titleOf(input.report))}</title>`,
    `<style>${style}</style>`,
    "</head>",
    "<body>",
    '<div id="report-root"></div>',
    `<script type="application/json" id="firedrill-report">${jsonForScript(input.report)}</script>`,
    `<script>${script}</script>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
  return { html, csp };
}
