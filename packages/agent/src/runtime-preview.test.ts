/**
 * FaultRuntime.preview: the same validation as a start, then the kind's dry run; nothing journaled,
 * nothing signalled, and every refusal is the answer's error.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { PreviewFaultSchema } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDefaultFaultRegistry } from "./faults/index.js";
import { readProcess } from "./faults/process-select.js";
import { Journal } from "./journal.js";
import { readProcessStartTime } from "./proc.js";
import { FaultRuntime } from "./runtime.js";

describe("FaultRuntime.preview", () => {
  let dir: string;
  let name: string;
  const children: ChildProcess[] = [];
  let runtime: FaultRuntime;
  let journal: Journal;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fd-preview-"));
    name = `fdp${randomBytes(3).toString("hex")}`;
    copyFileSync("/bin/sleep", join(dir, name));
    chmodSync(join(dir, name), 0o755);
    for (let i = 0; i < 3; i++) children.push(spawn(join(dir, name), ["1000"], { stdio: "ignore" }));
    const stateDir = join(dir, "state");
    journal = new Journal(stateDir);
    runtime = new FaultRuntime({
      registry: createDefaultFaultRegistry(),
      journal,
      host: { cpuCount: 2, stateDir, protectedPids: () => [1, process.pid, process.ppid], networkExclusions: [] },
      log: pino({ level: "silent" }),
      holder: { pid: process.pid, startTime: readProcessStartTime(process.pid)! },
      emit: () => {},
    });
    await new Promise((r) => setTimeout(r, 100));
  });
  afterAll(() => {
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  const preview = (kind: string, params: JsonObject) =>
    runtime.preview(create(PreviewFaultSchema, { requestId: "prv_1", kind, params }));

  it("process-stop: the processes it would stop, echoing the request id; nothing journaled or stopped", async () => {
    const answer = await preview("process-stop", { name });
    expect(answer.requestId).toBe("prv_1");
    expect(answer.error).toBe("");
    expect(answer.matched).toBe(3);
    expect(answer.processes.map((p) => p.pid).sort()).toEqual(children.map((c) => c.pid).sort());
    expect(answer.processes[0]).toMatchObject({ name, cmdline: `${join(dir, name)} 1000` });
    expect(answer.details).toEqual([`stops (SIGSTOP) 3 processes matching name "${name}"; SIGCONT resumes them on revert`]);
    expect(journal.readAll().records).toEqual([]);
    expect(runtime.activeCount).toBe(0);
    for (const c of children) expect(readProcess(c.pid!)!.state).toBe("S");
  });

  it("refusals are the answer's error: too many matches, bad parameters, an unknown kind", async () => {
    expect((await preview("process-kill", { name, maxProcesses: 2 })).error).toMatch(
      new RegExp(`^params\\.name: 3 processes match name "${name}", more than maxProcesses 2: `),
    );
    expect((await preview("process-kill", { pattern: "(?=x)" })).error).toContain("lookahead ((?=…), (?!…)) is not supported");
    expect((await preview("cpu-burn", { load: 150 })).error).toBe("params.load: 150 is above the maximum 100");
    expect((await preview("cpu-melt", {})).error).toMatch(/^kind: unknown fault kind "cpu-melt"; this agent runs: cpu-burn, /);
    for (const c of children) expect(readProcess(c.pid!)).toBeDefined();
  });

  it("a kind without a preview of its own answers with the validation alone", async () => {
    const answer = await preview("cpu-burn", { load: 10 });
    expect(answer).toMatchObject({ requestId: "prv_1", error: "", details: [], processes: [], matched: 0 });
    expect(runtime.activeCount).toBe(0);
  });
});
