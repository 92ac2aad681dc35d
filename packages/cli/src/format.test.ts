import { describe, expect, it } from "vitest";
import type { AgentJson, FaultJson } from "@firedrill/control-plane";
import { renderAgents } from "./commands/agents.js";
import { renderFaults, revertFailedWarning } from "./commands/fault-list.js";
import { renderFault } from "./commands/fault-show.js";
import { formatLabels, formatMeasurements, formatParams, formatRelativeTime, renderTable } from "./format.js";

const NOW = Date.parse("2025-06-01T12:00:00.000Z");
const ago = (ms: number) => new Date(NOW - ms).toISOString();

describe("format helpers", () => {
  it("aligns table columns and leaves no trailing spaces", () => {
    expect(renderTable(["ID", "NAME", "X"], [["a", "longer name", "1"], ["bbbb", "n", ""]])).toBe(
      ["ID    NAME         X", "a     longer name  1", "bbbb  n"].join("\n") + "\n",
    );
  });

  it("renders relative times", () => {
    expect(formatRelativeTime(null, NOW)).toBe("-");
    expect(formatRelativeTime("not a time", NOW)).toBe("-");
    expect(formatRelativeTime(ago(300), NOW)).toBe("just now");
    expect(formatRelativeTime(ago(42_000), NOW)).toBe("42s ago");
    expect(formatRelativeTime(ago(5 * 60_000 + 59_000), NOW)).toBe("5m ago");
    expect(formatRelativeTime(ago(3 * 3_600_000), NOW)).toBe("3h ago");
    expect(formatRelativeTime(ago(2 * 86_400_000), NOW)).toBe("2d ago");
    expect(formatRelativeTime(ago(-30_000), NOW)).toBe("in 30s");
  });

  it("renders labels, measurements and params briefly", () => {
    expect(formatLabels({ tier: "front", app: "web" })).toBe("app=web,tier=front");
    expect(formatLabels({})).toBe("-");
    expect(formatMeasurements({ cpu_percent: 79.5432, cores: 2 })).toBe("cores=2 cpu_percent=79.5");
    expect(formatMeasurements(null)).toBe("-");
    expect(formatParams({ load: 50, cores: "all", on: true })).toBe("load=50 cores=all on=true");
  });

  it("renders the agents table", () => {
    const agent = (id: string, connected: boolean, lastSeenMsAgo: number, activeFaults: number): AgentJson => ({
      id,
      hostname: `${id}.example`,
      version: "0.1.0",
      labels: { app: "web" },
      connected,
      firstSeenAt: ago(86_400_000),
      lastSeenAt: ago(lastSeenMsAgo),
      connectedAt: ago(3_600_000),
      instanceId: null,
      availabilityZone: null,
      facts: {} as AgentJson["facts"],
      capabilities: { faultKinds: ["cpu-burn"], root: true, netem: false, nftables: false, tc: false, systemd: false },
      activeFaults,
      enrolled: false,
      certificateNotAfter: null,
      revokedAt: null,
      stale: false,
    });
    expect(renderAgents([agent("web-1", true, 500, 2), agent("db-1", false, 7 * 60_000, 0)], NOW)).toBe(
      [
        "ID     HOSTNAME       CONNECTED  LAST SEEN  CERT EXPIRES  LABELS   FAULTS",
        "web-1  web-1.example  yes        now        -             app=web  2",
        "db-1   db-1.example   no         7m ago     -             app=web  0",
        "",
      ].join("\n"),
    );
  });

  it("renders the fault list and a fault with its timeline", () => {
    const fault: FaultJson = {
      id: "flt_0123456789abcdef",
      agentId: "web-1",
      runId: null,
      kind: "cpu-burn",
      params: { load: 80 },
      durationMs: 120_000,
      state: "reverted",
      reason: "stopped",
      error: null,
      createdAt: ago(65_000),
      startedAt: ago(64_000),
      endedAt: ago(4_000),
      measurements: { cpu_percent: 79.52 },
      actor: "alice",
      policyOverride: null,
      details: [],
      stopRequestedAt: null,
      stopReason: null,
      stopRequestedBy: null,
    };
    expect(renderFaults([fault], NOW)).toBe(
      [
        "ID                    AGENT  KIND      STATE     REASON   STARTED  DURATION  MEASURED",
        "flt_0123456789abcdef  web-1  cpu-burn  reverted  stopped  1m ago   2m        cpu_percent=79.5",
        "",
      ].join("\n"),
    );
    const shown = renderFault(
      fault,
      [
        { id: 1, faultId: fault.id, agentId: "web-1", type: "started", time: ago(64_000), reason: null, error: null, message: "burning 1 core", measurements: null },
        { id: 2, faultId: fault.id, agentId: "web-1", type: "reverted", time: ago(4_000), reason: "stopped", error: null, message: null, measurements: { cpu_percent: 79.52 } },
      ],
      NOW,
    );
    expect(shown).toContain("State     reverted (stopped)");
    expect(shown).toContain("Params    load=80");
    expect(shown).toContain("By        alice");
    expect(shown).toContain(`Ended     ${ago(4_000)} (4s ago)`);
    expect(shown).toMatch(/Timeline\n {2}TIME +EVENT +DETAILS\n {2}\S+ +started +burning 1 core\n {2}\S+ +reverted +reason=stopped; cpu_percent=79.5\n/);
  });

  it("shows why a refused fault failed, a revert that failed loudly, a stop not confirmed yet, and the agent's details", () => {
    const base: FaultJson = {
      id: "flt_0000000000000001",
      agentId: "web-1",
      runId: "run_0123456789ab",
      kind: "disk-fill",
      params: { path: "/srv" },
      durationMs: 60_000,
      state: "failed",
      reason: null,
      error: "params.cores: 9 is more than the 2 CPUs of this host\nsecond line",
      createdAt: ago(65_000),
      startedAt: null,
      endedAt: ago(64_000),
      measurements: null,
      actor: "alice",
      policyOverride: null,
      details: [],
      stopRequestedAt: null,
      stopReason: null,
      stopRequestedBy: null,
    };
    const failedRevert: FaultJson = { ...base, id: "flt_0000000000000002", state: "revert_failed", reason: "stopped", error: "could not remove /srv/.firedrill/fill: EPERM", startedAt: ago(60_000) };
    const stopping: FaultJson = {
      ...base,
      id: "flt_0000000000000003",
      kind: "network-blackhole",
      state: "running",
      error: null,
      endedAt: null,
      startedAt: ago(30_000),
      stopRequestedAt: ago(5_000),
      stopReason: "aborted",
      stopRequestedBy: "run run_0123456789ab aborting: breach",
      details: ["Leaves alone: tcp port 22 (ssh), port 2222 (sshd listens there)", "Leaves alone: 10.0.0.0/8 (management)"],
    };
    const table = renderFaults([base, failedRevert, stopping], NOW);
    expect(table).toMatch(/ failed +params\.cores: 9 is more than the 2 CPUs of this host… +- /);
    expect(table).toMatch(/ REVERT FAILED +could not remove \/srv\/\.firedrill\/fill: EPERM +1m ago /);
    expect(table).toMatch(/ running \(stopping\) +- +30s ago /);
    expect(revertFailedWarning([base, failedRevert, stopping])).toMatch(/^warning: the revert of 1 fault FAILED: flt_0000000000000002 \(disk-fill on web-1\)\. Its effect may still be on the host/);
    expect(revertFailedWarning([base])).toBe("");

    const refused = renderFault(base, [], NOW);
    expect(refused).toContain("Refused   params.cores: 9 is more than the 2 CPUs of this host");
    const failed = renderFault(failedRevert, [], NOW);
    expect(failed).toContain("State     REVERT FAILED: the agent gave the revert up; the fault's effect may still be on the host");
    expect(failed).toContain("Error     could not remove /srv/.firedrill/fill: EPERM");
    expect(failed).toMatch(/Fix       remove the cause named in Error, then firedrill fault stop flt_0000000000000002 \(the agent tries the revert again\) or firedrill-agent recover on the host/);
    const shown = renderFault(stopping, [], NOW);
    expect(shown).toContain("State     running, stopping: the revert is not confirmed yet");
    expect(shown).toContain(`Stop      wanted since ${ago(5_000)} (5s ago) (aborted: run run_0123456789ab aborting: breach); not confirmed yet: sent again whenever the agent reconnects`);
    expect(shown).toContain("Details   Leaves alone: tcp port 22 (ssh), port 2222 (sshd listens there)\n          Leaves alone: 10.0.0.0/8 (management)\n");
    const assumed = renderFault({ ...stopping, state: "reverted", reason: "lease-assumed", endedAt: ago(1_000) }, [], NOW);
    expect(assumed).toContain("State     reverted (lease-assumed): NOT confirmed by the agent");
    expect(assumed).toMatch(/Stop +wanted since .*; never confirmed by the agent/);
  });
});
