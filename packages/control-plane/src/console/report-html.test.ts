import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { jsonForScript, renderReportHtml } from "./report-html.js";

const EVIL = "</script><script>alert(1)</script> <!-- <script> \u2028 \u2029 </SCRIPT > & \"quotes\" 'single'";

/**
 * The elements an HTML parser sees: a `<script>` or `<style>` element's text runs to the first
 * `</script` / `</style` (any case), whatever it holds; no character reference is decoded there.
 */
function rawElements(html: string, tag: "script" | "style"): { attrs: string; text: string }[] {
  const found: { attrs: string; text: string }[] = [];
  const open = new RegExp(`<${tag}(\\s[^>]*)?>`, "gi");
  let m: RegExpExecArray | null;
  while ((m = open.exec(html)) !== null) {
    const start = m.index + m[0].length;
    const end = html.toLowerCase().indexOf(`</${tag}`, start);
    found.push({ attrs: m[1] ?? "", text: html.slice(start, end) });
    open.lastIndex = end;
  }
  return found;
}

describe("the self-contained report file", () => {
  const report = { run: { id: "run_1", name: EVIL, reason: EVIL }, hosts: [{ hostname: EVIL, effect: "cpu busy 81 %" }], n: [1, 2.5, null] };
  const js = 'var s="</script><!-- x";document.getElementById("report-root").textContent=s;';
  const css = "body{color:black}/* </style><b>x</b> */";
  const { html, csp } = renderReportHtml({ report, css, js });

  it("keeps the report's strings inert: two scripts, one style, whatever the strings hold", () => {
    const scripts = rawElements(html, "script");
    expect(scripts.map((s) => s.attrs)).toEqual([' type="application/json" id="firedrill-report"', ""]);
    expect(rawElements(html, "style")).toHaveLength(1);
    expect(html).not.toContain("\u2028");
    expect(html).not.toContain("\u2029");
    expect(html.match(/<script/gi)).toHaveLength(2);
    expect(html.toLowerCase().match(/<\/script/g)).toHaveLength(2);
  });

  it("gives back the same report from the JSON element", () => {
    const data = rawElements(html, "script")[0]!.text;
    expect(JSON.parse(data)).toEqual(report);
    expect(jsonForScript("a\u2028b<c>&")).toBe('"a\\u2028b\\u003cc\\u003e\\u0026"');
  });

  it("runs only its own script and style (CSP hashes), with no network at all", () => {
    const [, script] = rawElements(html, "script");
    const style = rawElements(html, "style")[0]!.text;
    const hash = (t: string) => `'sha256-${createHash("sha256").update(t).digest("base64")}'`;
    expect(csp).toContain(`script-src ${hash(script!.text)}`);
    expect(csp).toContain(`style-src ${hash(style)}`);
    expect(csp).toMatch(/^default-src 'none'/);
    expect(csp).not.toMatch(/connect-src|'self'|https?:/);
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="${csp.replace(/'/g, "&#39;")}">`);
    expect(html).not.toMatch(/\s(src|href)\s*=/i);
    // The script and style are whole: only their end tags were escaped.
    expect(script!.text).toBe('var s="<\\/script><\\!-- x";document.getElementById("report-root").textContent=s;');
    expect(style).toBe("body{color:black}/* <\\/style><b>x</b> */");
  });
});
