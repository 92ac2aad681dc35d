import type { RunPlan } from "@firedrill/control-plane";
import { describe, expect, it } from "vitest";
import { renderPlan } from "./plan.js";

const base: RunPlan = {
  experiment: "kill-workers",
  hypothesis: "web survives",
  targets: { web: { matching: 2, eligible: 2, selected: [{ id: "agt_1", hostname: "web-1" }, { id: "agt_2", hostname: "web-2" }], excluded: [] } },
  steps: [],
  stopConditions: [],
  guardrails: [{ rule: "opt-in", ok: true, message: "every host opted in" }],
  allowed: true,
  estimatedDurationMs: 30_000,
};

describe("renderPlan: the dry run on the hosts", () => {
  it("lists the processes, what is left alone, refusals and hosts without an answer, and warns of refusals", () => {
    const plan: RunPlan = {
      ...base,
      steps: [
        {
          name: "kill-workers",
          type: "fault",
          fault: "process-kill",
          target: "web",
          params: { pattern: "gunicorn: worker" },
          durationMs: 30_000,
          startAfter: [],
          hosts: [
            { id: "agt_1", hostname: "web-1" },
            { id: "agt_2", hostname: "web-2" },
            { id: "agt_3", hostname: "web-3" },
          ],
          previews: [
            {
              hostId: "agt_1",
              hostname: "web-1",
              status: "ok",
              details: ["sends SIGTERM to 22 processes matching pattern /gunicorn: worker/", "leaves alone 812 (sshd): sshd (SSH access to the host)"],
              processes: Array.from({ length: 21 }, (_, i) => ({ pid: 40200 + i, name: "gunicorn", cmdline: "gunicorn: worker [app:app]" })),
              matched: 22,
            },
            { hostId: "agt_2", hostname: "web-2", status: "refused", error: "params.pattern: 1200 processes match pattern /gunicorn: worker/, more than maxProcesses 100: …", details: [] },
            { hostId: "agt_3", hostname: "web-3", status: "unavailable", error: "agent agt_3 did not answer the preview within 3000ms", details: [] },
          ],
        },
        {
          name: "burn",
          type: "fault",
          fault: "cpu-burn",
          target: "web",
          params: { load: 5 },
          durationMs: 10_000,
          startAfter: ["kill-workers"],
          hosts: [{ id: "agt_1", hostname: "web-1" }],
          previews: [{ hostId: "agt_1", hostname: "web-1", status: "ok", details: [] }],
        },
      ],
    };
    const text = renderPlan(plan);
    expect(text).toContain(
      [
        "On the hosts (a dry run on each agent; nothing was touched)",
        "  kill-workers on web-1 (agt_1):",
        "      sends SIGTERM to 22 processes matching pattern /gunicorn: worker/",
        "      leaves alone 812 (sshd): sshd (SSH access to the host)",
        "      PID    NAME      COMMAND",
        "      40200  gunicorn  gunicorn: worker [app:app]",
      ].join("\n"),
    );
    expect(text).toContain("      40219  gunicorn  gunicorn: worker [app:app]\n      … and 2 more\n");
    expect(text).not.toContain("40220");
    expect(text).toContain("  kill-workers on web-2 (agt_2): REFUSED by the agent: params.pattern: 1200 processes match pattern /gunicorn: worker/, more than maxProcesses 100: …\n");
    expect(text).toContain("  kill-workers on web-3 (agt_3): no preview: agent agt_3 did not answer the preview within 3000ms\n");
    expect(text).toContain("  burn on web-1 (agt_1): ok (the agent accepts the parameters)\n");
    expect(text).toContain(
      'Verdict: allowed — `firedrill run` would start this plan.\nWarning: the agent would refuse kill-workers on web-2 (see "On the hosts"): the run would fail at that step.\n',
    );
  });

  it("a plan without previews has no such section", () => {
    expect(renderPlan(base)).not.toContain("On the hosts");
  });
});
