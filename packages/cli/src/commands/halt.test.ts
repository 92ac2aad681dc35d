import type { RunPlan } from "@firedrill/control-plane";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess as cli, useFakeApi } from "../testing/fake-api.js";

/** A stand-in control plane that checks the bearer token and records requests; FIREDRILL_* point at it. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-halt-" });

const HALT = { reason: "incident INC-42", actor: "alice", at: "2026-03-01T10:00:00.000Z" };

describe("firedrill halt", () => {
  it("halts, and says so", async () => {
    fake.api.answer("POST", "/api/v1/halt", 200, { halt: HALT, alreadyHalted: false });
    const run = await cli("halt", "--reason", "incident INC-42");
    expect(run).toEqual({
      code: 0,
      out: "halted by alice at 2026-03-01T10:00:00.000Z: incident INC-42\nevery run was aborted; new runs and faults are refused until firedrill unhalt\n",
      err: "",
    });
    expect(fake.asked[0]).toMatchObject({ method: "POST", url: "/api/v1/halt", body: { reason: "incident INC-42" } });
  });

  it("when already halted, says by whom, since when and why, and where the new reason went", async () => {
    fake.api.answer("POST", "/api/v1/halt", 200, { halt: HALT, alreadyHalted: true });
    const run = await cli("halt", "--reason", "incident INC-43");
    expect(run).toEqual({
      code: 0,
      out:
        "firedrill was already halted by alice since 2026-03-01T10:00:00.000Z: incident INC-42\n" +
        "that halt is kept (firedrill unhalt lifts it); your reason (incident INC-43) is recorded in the audit log, and every agent was told again to revert every fault\n",
      err: "",
    });
    const json = await cli("halt", "--reason", "incident INC-43", "--json");
    expect(JSON.parse(json.out)).toEqual({ ...HALT, alreadyHalted: true });
  });
});

describe("firedrill plan while halted", () => {
  it("shows the halt instead of a verdict of the guardrails, and exits 1", async () => {
    const file = join(fake.dir, "exp.yaml");
    writeFileSync(file, "apiVersion: firedrill/v1\n");
    const plan: RunPlan = {
      experiment: "burn",
      hypothesis: "the web tier stays up",
      targets: { web: { matching: 1, eligible: 1, selected: [{ id: "agt_1", hostname: "web-1" }], excluded: [] } },
      steps: [{ name: "burn", type: "fault", fault: "cpu-burn", target: "web", params: { load: 10 }, durationMs: 30_000, startAfter: [], hosts: [{ id: "agt_1", hostname: "web-1" }] }],
      stopConditions: [],
      guardrails: [
        { rule: "halt", ok: false, message: `halted by alice since ${HALT.at}: incident INC-42 — a run would be refused until an admin lifts the halt (firedrill unhalt)` },
        { rule: "targets", ok: true, message: "web: 1 of 1 matching selected" },
      ],
      allowed: false,
      halt: HALT,
      estimatedDurationMs: 30_000,
    };
    fake.api.answer("POST", "/api/v1/plan", 200, { experiment: { name: "burn", hypothesis: plan.hypothesis }, plan });
    const run = await cli("plan", file);
    expect(run.code).toBe(1);
    expect(run.out).not.toMatch(/allowed/);
    expect(run.out).toContain(`  REFUSED  halt: halted by alice since ${HALT.at}: incident INC-42 — a run would be refused`);
    expect(run.out.trimEnd().split("\n").at(-1)).toBe(
      `Verdict: HALTED — halted by alice since ${HALT.at}: incident INC-42 — a run would be refused until an admin lifts the halt (firedrill unhalt).`,
    );
  });
});
