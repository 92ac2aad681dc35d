import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { runCli } from "../program.js";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  let out = "";
  let err = "";
  // No server is running: validate must not need one.
  const code = await runCli(["node", "firedrill", "--server", "http://127.0.0.1:9", ...args], {
    out: (t) => (out += t),
    err: (t) => (err += t),
  });
  return { code, out, err };
}

function tempFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "firedrill-validate-"));
  dirs.push(dir);
  const file = join(dir, "exp.yaml");
  writeFileSync(file, text);
  return file;
}

describe("firedrill validate", () => {
  it("accepts a valid experiment and says what it holds", async () => {
    const file = join(ROOT, "examples/full-game-day.yaml");
    expect(await cli("validate", file)).toEqual({
      code: 0,
      out: `${file} is a valid experiment: 2 targets, 4 steps, 3 stop conditions\n`,
      err: "",
    });
  });

  it("prints each issue as FILE:LINE: path: message and exits 1", async () => {
    const file = tempFile(`apiVersion: firedrill/v1
kind: Experiment
metadata: { name: demo }
spec:
  hypothesis: web stays up
  targets:
    web: { selector: { labels: { app: web } }, mode: { percent: 150 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 150 }, duration: 2m }
`);
    const result = await cli("validate", file);
    expect(result).toEqual({
      code: 1,
      out: "",
      err: [
        `${file}:7: targets.web.mode.percent: 150 is above the maximum 100`,
        `${file}:9: steps[0].params.load: 150 is above the maximum 100`,
        `${file} is not a valid experiment: 2 problems`,
        "",
      ].join("\n"),
    });
  });

  it("reports YAML syntax errors with line and column", async () => {
    const file = tempFile("apiVersion: firedrill/v1\nkind: Experiment\nmetadata:\n\tname: x\n");
    const result = await cli("validate", file);
    expect(result.code).toBe(1);
    expect(result.err.split("\n")[0]).toBe(`${file}:4:1: (top level): YAML syntax error: Tabs are not allowed as indentation`);
  });

  it("lists the first 50 problems, counts the rest, and refuses a file past the limits before reading it", async () => {
    const head = "apiVersion: firedrill/v1\nkind: Experiment\nmetadata: { name: demo }\nspec:\n  hypothesis: h\n";
    const many = tempFile(`${head}${Array.from({ length: 120 }, (_, i) => `  u${i}: 1\n`).join("")}`);
    const result = await cli("validate", many);
    const lines = result.err.trimEnd().split("\n");
    expect(result.code).toBe(1);
    expect(lines).toHaveLength(52);
    expect(lines[50]).toBe(`${many}: (file): and 72 more problems from line 54 on (only the first 50 are listed): fix these and check again`);
    expect(lines[51]).toBe(`${many} is not a valid experiment: 122 problems`);
    const big = tempFile(`${head}# ${"x".repeat(300 * 1024)}\n`);
    expect((await cli("validate", big)).err.split("\n")[0]).toMatch(
      new RegExp(`^${big.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: \\(file\\): is 300\\.1 KiB \\(\\d+ bytes\\); a file may be at most 256 KiB \\(262144 bytes\\)`),
    );
  });

  it("prints JSON with --json", async () => {
    const ok = await cli("validate", "--json", join(ROOT, "examples/cpu-burn-web.yaml"));
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toEqual({
      file: join(ROOT, "examples/cpu-burn-web.yaml"),
      valid: true,
      name: "cpu-burn-web",
      targets: 1,
      steps: 2,
      stopConditions: 1,
    });
    const file = tempFile("apiVersion: firedrill/v2\n");
    const bad = await cli("validate", "--json", file);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.out)).toEqual({
      file,
      valid: false,
      issues: [
        { path: "apiVersion", line: 1, message: '"firedrill/v2" is not allowed; use "firedrill/v1"' },
        { path: "kind", line: 1, message: 'is required; use "Experiment"' },
        { path: "metadata", line: 1, message: "is required (a mapping with: name, labels, description)" },
        { path: "spec", line: 1, message: "is required (a mapping with: hypothesis, targets, steps, stopConditions, guardrails)" },
      ],
    });
  });

  it("says plainly when the file cannot be read", async () => {
    const result = await cli("validate", "/nonexistent/exp.yaml");
    expect(result).toEqual({
      code: 1,
      out: "",
      err: "error: cannot read /nonexistent/exp.yaml: no such file; give the path of an experiment YAML file (see examples/)\n",
    });
  });
});
