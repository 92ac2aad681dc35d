/**
 * The global halt on a real control plane: `plan` shows it (a run would be refused), and halting
 * again keeps the halt as it was while the new reason goes to the audit log.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestControlPlane } from "../test-support/test-agent.js";
import type { TestControlPlane } from "../test-support/test-agent.js";

const SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: burn }
spec:
  hypothesis: the web tier stays up
  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 10 }, duration: 30s }
`;

interface Verdict {
  rule: string;
  ok: boolean;
  message: string;
}

describe("the global halt", () => {
  let tcp: TestControlPlane;
  let viewer: string;
  let operator: string;
  beforeAll(async () => {
    tcp = await startTestControlPlane();
    viewer = await tcp.tokenFor("viewer", { name: "vera" });
    operator = await tcp.tokenFor("operator", { name: "olga" });
  });
  afterAll(async () => {
    await tcp?.cleanup();
  });

  it("plan shows the halt: by whom, since when, why, and that a run would be refused", async () => {
    const before = await tcp.api("POST", "/api/v1/plan", { spec: SPEC }, operator);
    expect(before.status).toBe(200);
    expect(before.body.plan.halt).toBeUndefined();
    expect(before.body.plan.guardrails.map((v: Verdict) => v.rule)).not.toContain("halt");

    const halted = await tcp.api("POST", "/api/v1/halt", { reason: "incident INC-42" }, viewer);
    expect(halted.status).toBe(200);
    expect(halted.body).toMatchObject({ halt: { actor: "vera", reason: "incident INC-42" }, alreadyHalted: false });
    const at: string = halted.body.halt.at;

    const plan = await tcp.api("POST", "/api/v1/plan", { spec: SPEC }, operator);
    expect(plan.status).toBe(200);
    expect(plan.body.plan.allowed).toBe(false);
    expect(plan.body.plan.halt).toEqual({ actor: "vera", reason: "incident INC-42", at });
    expect(plan.body.plan.guardrails[0]).toEqual({
      rule: "halt",
      ok: false,
      message: `halted by vera since ${at}: incident INC-42 — a run would be refused until an admin lifts the halt (firedrill unhalt)`,
    });
    // And a run is refused, as the plan said.
    expect((await tcp.api("POST", "/api/v1/runs", { spec: SPEC }, operator)).status).toBe(409);

    // Halting again keeps the halt (who, since when, why) and audits the new reason.
    const again = await tcp.api("POST", "/api/v1/halt", { reason: "incident INC-43" }, operator);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ halt: { actor: "vera", reason: "incident INC-42", at }, alreadyHalted: true });
    expect((await tcp.api("GET", "/api/v1/halt")).body.halt).toEqual({ actor: "vera", reason: "incident INC-42", at });
    const audit = await tcp.api("GET", "/api/v1/audit?limit=20");
    const halts = audit.body.entries.filter((e: { method: string; path: string }) => e.method === "POST" && e.path === "/api/v1/halt");
    expect(halts.map((e: { principal: string; detail: string }) => [e.principal, e.detail])).toEqual(
      expect.arrayContaining([
        ["vera", "halt: incident INC-42"],
        ["olga", `halt again: incident INC-43 (already halted by vera since ${at}: incident INC-42; that halt is kept)`],
      ]),
    );

    // Lifted: the plan no longer mentions it.
    expect((await tcp.api("DELETE", "/api/v1/halt")).status).toBe(200);
    const after = await tcp.api("POST", "/api/v1/plan", { spec: SPEC }, operator);
    expect(after.body.plan.halt).toBeUndefined();
    expect(after.body.plan.guardrails.map((v: Verdict) => v.rule)).not.toContain("halt");
  });
});
