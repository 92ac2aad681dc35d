/** The text of `firedrill report RUN`: the per-host effect and the stop conditions' samples in a line each. */
import { describe, expect, it } from "vitest";
import { renderReport } from "./report.js";

type Report = Parameters<typeof renderReport>[0];

const base: Report = {
  run: { id: "run_1", name: "web-burn", state: "aborted", reason: "stop condition breached", actor: "alice", createdAt: 1000, startedAt: 2000, endedAt: 9000 },
  hypothesis: "web keeps answering",
  verdict: "rejected",
  summary: "The hypothesis was rejected.",
  hits: [],
  broke: [],
  reverts: { started: 1, confirmed: 1, assumedByLease: 0, revertFailed: 0, pending: 0, text: "its fault was reverted (confirmed by its agent)" },
  unconfirmed: [],
  revertFailed: [],
  cloudReverts: [],
  cloudNotReverted: [],
  cloudActions: [],
  timeline: [],
  measurements: 0,
};

describe("report text", () => {
  it("shows each host's measured effect and a line per stop condition with its samples and breach", () => {
    const text = renderReport({
      ...base,
      hosts: [{ agentId: "agt_1", hostname: "web-1", faults: [{ faultId: "flt_1", kind: "cpu-burn", state: "reverted", step: "burn", effect: "cpu busy 81 % (asked 80 %)", series: [] }] }],
      stopConditions: [
        {
          index: 0,
          condition: "http GET http://web/health",
          kind: "http",
          unit: "ms",
          threshold: 1000,
          thresholdLabel: "timeout 1000 ms",
          state: "breached",
          samples: [
            { c: 0, at: 3000, v: 12, ok: true },
            { c: 0, at: 4000, v: null, ok: false },
            { c: 0, at: 5000, v: 230, ok: false },
          ],
          breach: { at: Date.UTC(2026, 2, 10, 12), reason: "HTTP 500 in 230 ms (expected 200) (2nd consecutive failure)" },
        },
      ],
    });
    expect(text).toContain("Measured effect\nHOST   KIND      FAULT  EFFECT\nweb-1  cpu-burn  flt_1  cpu busy 81 % (asked 80 %)\n");
    expect(text).toContain(
      "Stop conditions\n  http GET http://web/health: breached; 3 samples, 12-230 ms, 2 unhealthy; BREACHED at 2026-03-10T12:00:00.000Z: HTTP 500 in 230 ms (expected 200) (2nd consecutive failure)\n",
    );
  });

  it("leaves both out for a report of an older control plane", () => {
    const text = renderReport(base);
    expect(text).not.toContain("Measured effect");
    expect(text).not.toContain("Stop conditions");
  });
});
