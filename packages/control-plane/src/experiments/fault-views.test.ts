/** What the report says each fault did to its host, and each fault's window. */
import { describe, expect, it } from "vitest";
import type { RunEvent } from "../store/run-store.js";
import type { FaultRecord } from "../store/types.js";
import { describeEffect } from "./effects.js";
import type { MeasurementPoint } from "./effects.js";
import { MAX_SERIES_POINTS, buildFaultViews, thinSeries } from "./report.js";

const at = (...ms: Record<string, number>[]): MeasurementPoint[] => ms.map((m, i) => ({ at: 1000 * (i + 1), m }));

describe("describeEffect", () => {
  it("says what each agent fault kind did, from the measurements its agent reports", () => {
    const cpu = at(
      { load_asked: 80, cpu_percent_selected: 40, cores: 2 }, // the first, partial interval
      { load_asked: 80, cpu_percent_selected: 81 },
      { load_asked: 80, cpu_percent_selected: 81.24 },
      { load_asked: 80, cpu_percent_selected: 83 },
    );
    expect(describeEffect("cpu-burn", cpu)).toBe("cpu busy 81.1 % (asked 80 %)");
    expect(describeEffect("disk-fill", at({ usage_percent: 88, target_percent: 90 }, { usage_percent: 91, target_percent: 90 }, { usage_percent: 40, target_percent: 90 }))).toBe(
      "filled to 91 % (asked 90 %)",
    );
    expect(describeEffect("network-loss", at({ loss_percent_asked: 30, packets_matched: 1000, packets_dropped: 301, loss_percent_measured: 30.1 }))).toBe(
      "loss seen 30.1 % (asked 30 %), 301 of 1000 packets dropped",
    );
    expect(describeEffect("network-blackhole", at({ packets_dropped: 1 }))).toBe("1 packet dropped");
    expect(describeEffect("network-delay", at({ delay_ms_asked: 100, jitter_ms_asked: 10, delayed_packets: 5000, netem_drops: 0, netem_queue: 0, installed: 1 }))).toBe(
      "5000 packets delayed by 100 ms ± 10 ms",
    );
    expect(
      describeEffect(
        "network-bandwidth",
        at(
          { rate_asked_mbit: 10, installed: 1 },
          { rate_asked_mbit: 10, rate_achieved_mbit: 9.83, sent_bytes: 2_400_000, dropped_packets: 0, overlimits: 300 },
          { rate_asked_mbit: 10, rate_achieved_mbit: 4.1, sent_bytes: 48_210_000, dropped_packets: 12, overlimits: 900 },
        ),
      ),
    ).toBe("limited to 10 Mbit/s, up to 9.8 Mbit/s achieved, 48.2 MB sent through the limit, 12 packets dropped by its queue");
    expect(describeEffect("network-bandwidth", at({ rate_asked_mbit: 0.5, installed: 1 }))).toBe("limited to 0.5 Mbit/s");
    expect(describeEffect("network-reject", at({ packets_rejected: 35, tcp_packets_reset: 30, udp_packets_rejected: 5 }))).toBe(
      "35 packets rejected (30 TCP resets, 5 UDP answered with ICMP)",
    );
    expect(describeEffect("network-reject", at({ packets_rejected: 0, tcp_packets_reset: 0, udp_packets_rejected: 0 }))).toBe("0 packets rejected");
    expect(describeEffect("process-kill", at({ killed: 3, processes: 3, came_back: 3, last_pids: 1, rounds: 1 }))).toBe("3 processes killed, 3 came back");
    expect(describeEffect("process-kill", at({ killed: 1, came_back: 0 }))).toBe("1 process killed, 0 came back");
    expect(describeEffect("process-stop", at({ processes: 2, stopped: 2, gone: 0 }, { processes: 2, stopped: 1, gone: 1 }))).toBe("2 of 2 processes stopped, 1 gone");
    const down = { active: 0, restarts_seen: 0, was_active: 1 };
    expect(describeEffect("service-stop", at(down, down), { unit: "fd-demo.service" })).toBe("fd-demo.service stopped, down for the whole fault; started again on revert");
    expect(describeEffect("service-stop", at(down, { ...down, active: 1 }), { unit: "web.service" })).toBe(
      "web.service stopped, but up again during the fault (started by something else: a socket, a timer, a dependency, by hand); started again on revert if down",
    );
    expect(describeEffect("service-stop", at({ ...down, active: 1, restarts_seen: 1 }), { unit: "web.service", mode: "kill" })).toBe(
      "web.service killed (SIGKILL); systemd restarted it 1 time; started again on revert if down",
    );
    expect(describeEffect("service-stop", at({ active: 0, restarts_seen: 0, was_active: 0 }), { unit: "fd-idle.service" })).toBe("fd-idle.service was not active: nothing stopped, left as it was");
  });

  it("lists the last measurements of a kind it has no words for, and says when there are none", () => {
    expect(describeEffect("mystery", at({ z: 1, a: 2.345 }))).toBe("a=2.3 z=1");
    expect(describeEffect("cpu-burn", at({ load_asked: 80 }))).toBe("load_asked=80");
    expect(describeEffect("cpu-burn", [])).toBe("no measurement reported");
  });
});

const fault = (id: string, over: Partial<FaultRecord>): FaultRecord =>
  ({
    id,
    agentId: "agent-1",
    runId: "run_1",
    kind: "cpu-burn",
    params: {},
    durationMs: 10_000,
    state: "reverted",
    reason: "duration",
    error: null,
    createdAt: 1000,
    startedAt: 2000,
    endedAt: 12_000,
    measurements: null,
    updatedAt: 12_000,
    ...over,
  }) as FaultRecord;

const event = (id: number, over: Partial<RunEvent>): RunEvent => ({ id, runId: "run_1", time: 0, type: "state", step: null, agentId: null, faultId: null, message: "", data: null, ...over });

describe("buildFaultViews", () => {
  it("gives each fault its window and step, and each host its faults' effects and series", () => {
    const faults = [
      fault("f2", { agentId: "agent-2", startedAt: 3000, measurements: { load_asked: 50, cpu_percent_selected: 52 } }),
      fault("f1", { startedAt: 2000, measurements: { load_asked: 50, cpu_percent_selected: 49 } }),
      fault("f3", { agentId: "gone", state: "failed", startedAt: null, endedAt: 2500, error: "refused" }),
    ];
    const events = [
      event(1, { type: "fault-acked", step: "burn", faultId: "f1", agentId: "agent-1" }),
      event(2, { type: "fault-acked", step: "burn", faultId: "f2", agentId: "agent-2" }),
      event(3, { type: "measurement", time: 5000, step: "burn", faultId: "f1", data: { load_asked: 50, cpu_percent_selected: 51 } }),
      event(4, { type: "measurement", time: 5000, step: "burn", faultId: "f2", data: { load_asked: 50, cpu_percent_selected: 52 } }),
      event(5, { type: "fault-reverted", faultId: "f1" }), // after the run ended: no step
    ];
    const names: Record<string, string> = { "agent-1": "web-1", "agent-2": "web-2" };
    const { faultWindows, hosts } = buildFaultViews(events, faults, (id) => names[id] ?? null);
    expect(faultWindows).toEqual([
      { faultId: "f1", agentId: "agent-1", hostname: "web-1", step: "burn", kind: "cpu-burn", state: "reverted", startedAt: 2000, endedAt: 12_000 },
      { faultId: "f2", agentId: "agent-2", hostname: "web-2", step: "burn", kind: "cpu-burn", state: "reverted", startedAt: 3000, endedAt: 12_000 },
      { faultId: "f3", agentId: "gone", hostname: null, step: null, kind: "cpu-burn", state: "failed", startedAt: null, endedAt: 2500 },
    ]);
    expect(hosts.map((h) => [h.agentId, h.hostname])).toEqual([
      ["gone", null],
      ["agent-1", "web-1"],
      ["agent-2", "web-2"],
    ]);
    // f1: the timeline's measurement, then the fault's last (newer, different) ones.
    expect(hosts[1]!.faults).toEqual([
      {
        faultId: "f1",
        kind: "cpu-burn",
        state: "reverted",
        step: "burn",
        effect: "cpu busy 50 % (asked 50 %)",
        series: [
          { at: 5000, m: { load_asked: 50, cpu_percent_selected: 51 } },
          { at: 12_000, m: { load_asked: 50, cpu_percent_selected: 49 } },
        ],
      },
    ]);
    // f2: its last measurements are the timeline's last: not twice.
    expect(hosts[2]!.faults[0]!.series).toEqual([{ at: 5000, m: { load_asked: 50, cpu_percent_selected: 52 } }]);
    expect(hosts[0]!.faults[0]).toMatchObject({ faultId: "f3", effect: "no measurement reported", series: [] });
  });

  it("thins a long series evenly, keeping the first and the last point", () => {
    const points = Array.from({ length: 1000 }, (_, i) => i);
    const thin = thinSeries(points, MAX_SERIES_POINTS);
    expect(thin).toHaveLength(MAX_SERIES_POINTS);
    expect(thin[0]).toBe(0);
    expect(thin.at(-1)).toBe(999);
    expect(thinSeries([1, 2, 3], MAX_SERIES_POINTS)).toEqual([1, 2, 3]);
  });
});
