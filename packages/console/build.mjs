// Bundles the console (src/app.tsx) and the standalone report (src/report-main.tsx) into dist/:
// index.html, app.js, app.css, report.js, report.css. The output is committed; a test rebuilds it
// into a temporary directory and compares (`pnpm console:build` refreshes it).
//
//   node build.mjs            writes packages/console/dist
//   node build.mjs --out DIR  writes DIR instead
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const at = process.argv.indexOf("--out");
if (at >= 0 && !process.argv[at + 1]) {
  console.error("build.mjs: --out needs a directory, e.g. node build.mjs --out /tmp/console-dist");
  process.exit(2);
}
const out = at >= 0 ? resolve(process.argv[at + 1]) : join(here, "dist");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/app.tsx", report: "src/report-main.tsx" },
  outdir: out,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2022",
  minify: true,
  charset: "ascii",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "eof",
  sourcemap: false,
  metafile: false,
  logLevel: "warning",
});
await copyFile(join(here, "src", "index.html"), join(out, "index.html"));
