/**
 * The `firedrill` executable as a real process: a reader that goes away (`| head`), and relative
 * file arguments given to `pnpm firedrill` from another directory.
 */
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TEST_TOKEN, startFakeApi } from "./testing/fake-api.js";
import type { FakeApi } from "./testing/fake-api.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const BIN = join(ROOT, "packages/cli/src/bin.ts");

let api: FakeApi;
let dir: string;
const children = new Set<import("node:child_process").ChildProcess>();
beforeAll(async () => {
  api = await startFakeApi({ token: TEST_TOKEN });
});
afterAll(async () => {
  await api.close();
});
afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
  api.reset();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The environment of a CLI child: the fake API, its token, a config file no one else reads. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, FIREDRILL_SERVER: api.url, FIREDRILL_TOKEN: TEST_TOKEN, FIREDRILL_CONFIG: join(dir, "config.json"), NO_COLOR: "1", ...extra };
}

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command args` to its end. With `closeAfterFirstChunk`, the reading end of its stdout is
 * closed as soon as the first output arrives, as `| head -1` does.
 */
function run(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; closeAfterFirstChunk?: boolean }): Promise<Finished> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    if (options.closeAfterFirstChunk) child.stdout.destroy();
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 55_000);
  return new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

const node = (args: string[], closeAfterFirstChunk = false) =>
  run(process.execPath, ["--conditions=@firedrill/source", "--import", "tsx", BIN, ...args], { cwd: ROOT, env: env(), closeAfterFirstChunk });

describe("firedrill … | head", () => {
  it("exits quietly with status 0 when the reader of its output goes away, for every kind of output", async () => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-cli-epipe-"));
    const time = new Date().toISOString();
    const events = Array.from({ length: 4000 }, (_, i) => ({
      id: i + 1,
      time,
      type: "fault-reverted",
      step: "burn",
      agentId: "agt_1",
      faultId: `flt_${i}`,
      message: `cpu-burn reverted on web-${i}: a line long enough that a few thousand of them overflow any pipe buffer`,
      data: null,
    }));
    const runJson = { id: "run_1", name: "burn", state: "completed", reason: "every step ran", actor: "alice", createdAt: time, startedAt: time, endedAt: time };
    api.answer("GET", "/api/v1/runs/run_1", 200, { run: runJson, events });
    api.answer("GET", "/api/v1/runs", 200, { runs: Array.from({ length: 1000 }, (_, i) => ({ ...runJson, id: `run_${i}` })) });

    // Each prints far more than a pipe holds (~600 KB), one write per line or all at once.
    for (const args of [["run", "show", "run_1"], ["runs", "--json", "--limit", "1000"]]) {
      const result = await node(args, true);
      expect({ args, code: result.code, signal: result.signal, stderr: result.stderr }).toEqual({ args, code: 0, signal: null, stderr: "" });
      expect(result.stdout.length).toBeGreaterThan(0);
    }
  }, 120_000);
});

describe("pnpm firedrill from another directory", () => {
  it("reads relative file arguments (experiment, --token-file) from the directory it was run in", async () => {
    dir = mkdtempSync(join(tmpdir(), "firedrill-cli-initcwd-"));
    const here = join(dir, "here");
    mkdirSync(here);
    copyFileSync(join(ROOT, "examples/cpu-burn-web.yaml"), join(dir, "x.yaml"));
    writeFileSync(join(dir, "token"), `${TEST_TOKEN}\n`, { mode: 0o600 });
    const pnpm = (args: string[]) => run("pnpm", ["--dir", ROOT, "--silent", "firedrill", ...args], { cwd: here, env: env({ FIREDRILL_TOKEN: "" }) });

    const valid = await pnpm(["validate", "../x.yaml"]);
    expect(valid).toMatchObject({ code: 0, stderr: "" });
    expect(valid.stdout).toBe(`${join(dir, "x.yaml")} is a valid experiment: 1 target, 2 steps, 1 stop condition\n`);

    api.answer("POST", "/api/v1/plan", 422, { error: { code: "stop_here", message: "the fake control plane plans nothing" } });
    const plan = await pnpm(["--token-file", "../token", "plan", "../x.yaml"]);
    expect(plan.stderr).toContain("the fake control plane plans nothing");
    // The token came from ../token (the fake API refuses any other) and the spec from ../x.yaml.
    expect(api.asked).toMatchObject([{ method: "POST", url: "/api/v1/plan", authorization: `Bearer ${TEST_TOKEN}`, body: { spec: readFileSync(join(dir, "x.yaml"), "utf8") } }]);

    const missing = await pnpm(["validate", "nope.yaml"]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain(`cannot read ${join(here, "nope.yaml")}: no such file`);
  }, 120_000);
});
