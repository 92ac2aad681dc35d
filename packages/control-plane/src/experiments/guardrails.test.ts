import { describe, expect, it } from "vitest";
import type { AgentRecord } from "../store/types.js";
import { FULL_CAPABILITIES, testAgent } from "../test-support/agent-records.js";
import { evaluateGuardrails, GUARDRAIL_RULES, mergeGuardrails } from "./guardrails.js";
import type { GuardrailVerdict } from "./guardrails.js";
import { awsGuardrailsFrom, DEFAULT_POLICY } from "./policy.js";
import { parseExperiment } from "./spec.js";
import { resolveTargets, seededRandom } from "./targets.js";
import type { Experiment, GuardrailsSpec } from "./types.js";

/** Tuesday 2026-03-10, 12:00 UTC (13:00 in Berlin): inside ordinary business hours. */
const TUESDAY_NOON = new Date("2026-03-10T12:00:00Z");

/** An experiment from its `spec` lines (YAML, indented by 2). */
function exp(spec: string): Experiment {
  return parseExperiment(`apiVersion: firedrill/v1\nkind: Experiment\nmetadata: { name: t }\nspec:\n  hypothesis: h\n${spec}`);
}

const WEB_BURN = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 2 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
`);

const web = (n: number, extra: Partial<AgentRecord> = {}): AgentRecord[] =>
  Array.from({ length: n }, (_, i) => testAgent(`web-${i + 1}`, { labels: { app: "web", "firedrill:opt-in": "true" }, ...extra }));

interface PlanOptions {
  agents?: AgentRecord[];
  policy?: GuardrailsSpec;
  activeRuns?: number;
  hostFaults?: Map<string, string[]>;
  now?: Date;
}

function plan(experiment: Experiment, opts: PlanOptions = {}) {
  const guardrails = mergeGuardrails(opts.policy ?? DEFAULT_POLICY, experiment);
  const targets = resolveTargets(experiment, opts.agents ?? web(4), {
    optInLabel: guardrails.optInLabels,
    excludeLabels: guardrails.excludeLabels,
    random: seededRandom(1),
  });
  const verdicts = evaluateGuardrails({
    experiment,
    guardrails,
    targets,
    activeRuns: opts.activeRuns ?? 0,
    hostFaults: opts.hostFaults ?? new Map(),
    now: opts.now ?? TUESDAY_NOON,
  });
  const rule = (name: string): GuardrailVerdict => {
    const v = verdicts.find((x) => x.rule === name);
    if (!v) throw new Error(`no verdict for ${name}`);
    return v;
  };
  return { verdicts, rule, allowed: verdicts.every((v) => v.ok) };
}

describe("evaluateGuardrails", () => {
  it("gives one verdict per rule, and allows a compliant plan", () => {
    const p = plan(WEB_BURN);
    expect(p.verdicts.map((v) => v.rule)).toEqual([...GUARDRAIL_RULES]);
    expect(p.verdicts.filter((v) => !v.ok)).toEqual([]);
    expect(p.allowed).toBe(true);
    for (const v of p.verdicts) expect(v.message.length).toBeGreaterThan(10);
  });

  describe("targets", () => {
    it("refuses a group nothing matches, and one that comes up short", () => {
      expect(plan(WEB_BURN, { agents: [] }).rule("targets")).toEqual({
        rule: "targets",
        ok: false,
        message: "web: no agent matches the selector; check the labels and facts with firedrill agents",
      });
      const short = plan(WEB_BURN, { agents: [...web(1), testAgent("web-9", { labels: { app: "web", "firedrill:opt-in": "true" }, connected: false })] });
      expect(short.rule("targets")).toMatchObject({ ok: false });
      expect(short.rule("targets").message).toBe(
        "web: asks for 2 hosts but only 1 can be targeted (1 host left out: web-9 not connected); make more hosts eligible, lower count, or set allowFewer: true on the target group to run on fewer",
      );
    });

    it("with allowFewer: true runs on the fewer hosts there are (never on none), and says so", () => {
      const fewer = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 2 }, allowFewer: true }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
`);
      expect(fewer.spec.targets["web"]!.allowFewer).toBe(true);
      const one = plan(fewer, { agents: web(1) });
      expect(one.rule("targets")).toEqual({ rule: "targets", ok: true, message: "web: 1 of the 2 asked for (allowFewer), of 1 matching" });
      expect(one.allowed).toBe(true);
      expect(plan(fewer, { agents: [] }).rule("targets").ok).toBe(false);
      // Lacking the opt-in label is what leaves it short: still allowed with allowFewer.
      expect(plan(fewer, { agents: [...web(1), testAgent("web-2", { labels: { app: "web" } })] }).allowed).toBe(true);
    });
  });

  describe("opt-in", () => {
    it("refuses a group that comes up short because hosts lack the label, saying how many matched and lacked it", () => {
      const agents = [...web(1), testAgent("web-2", { labels: { app: "web" } }), testAgent("web-3", { labels: { app: "web" } })];
      const p = plan(WEB_BURN, { agents });
      expect(p.rule("opt-in")).toEqual({
        rule: "opt-in",
        ok: false,
        message:
          "web: 3 hosts match and 2 of them lack firedrill:opt-in=true, leaving 1 of the 2 asked for; label the hosts that may take part (firedrill-agent --labels firedrill:opt-in=true) or change the selector",
      });
      expect(p.allowed).toBe(false);
    });

    it("passes when enough hosts opted in, noting the ones left out", () => {
      const agents = [...web(2), testAgent("web-3", { labels: { app: "web" } })];
      expect(plan(WEB_BURN, { agents }).rule("opt-in")).toEqual({
        rule: "opt-in",
        ok: true,
        message: "web: 1 of 3 matching hosts lack firedrill:opt-in=true and are left out",
      });
      expect(plan(WEB_BURN).rule("opt-in").message).toBe("web: all 4 matching hosts carry firedrill:opt-in=true");
    });

    it("always requires the policy's label; an experiment may add another", () => {
      const withOwn = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 2 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
  guardrails: { optInLabel: "gameday=q4" }
`);
      const merged = mergeGuardrails(DEFAULT_POLICY, withOwn);
      expect(merged.optInLabels).toEqual(["firedrill:opt-in=true", "gameday=q4"]);
      const p = plan(withOwn);
      expect(p.rule("opt-in").ok).toBe(false);
      expect(p.rule("opt-in").message).toContain("4 of them lack firedrill:opt-in=true and gameday=q4");
      const labelled = web(2, { labels: { app: "web", "firedrill:opt-in": "true", gameday: "q4" } });
      expect(plan(withOwn, { agents: labelled }).rule("opt-in").ok).toBe(true);
    });

    it("refuses a selection made without the opt-in label", () => {
      const guardrails = mergeGuardrails(DEFAULT_POLICY, WEB_BURN);
      const agents = web(2, { labels: { app: "web" } });
      const targets = resolveTargets(WEB_BURN, agents, { optInLabel: undefined, excludeLabels: [] });
      const verdicts = evaluateGuardrails({ experiment: WEB_BURN, guardrails, targets, activeRuns: 0, hostFaults: new Map(), now: TUESDAY_NOON });
      expect(verdicts.find((v) => v.rule === "opt-in")).toEqual({
        rule: "opt-in",
        ok: false,
        message: "web: selected web-1, web-2 without firedrill:opt-in=true",
      });
    });
  });

  describe("exclusion-labels", () => {
    const policy: GuardrailsSpec = { ...DEFAULT_POLICY, excludeLabels: ["tier=db"] };

    it("reports who was excluded and passes while hosts remain", () => {
      const agents = [...web(2), testAgent("db-1", { labels: { app: "web", "firedrill:opt-in": "true", tier: "db" } })];
      const p = plan(WEB_BURN, { agents, policy });
      expect(p.rule("exclusion-labels")).toEqual({ rule: "exclusion-labels", ok: true, message: "web: excluded db-1 (tier=db)" });
      expect(p.allowed).toBe(true);
    });

    it("refuses when exclusions leave a group empty", () => {
      const agents = web(2, { labels: { app: "web", "firedrill:opt-in": "true", tier: "db" } });
      const p = plan(WEB_BURN, { agents, policy });
      expect(p.rule("exclusion-labels")).toEqual({
        rule: "exclusion-labels",
        ok: false,
        message: "web: every target left was excluded: web-1 (tier=db); web-2 (tier=db)",
      });
    });

    it("unites the policy's and the experiment's exclusions", () => {
      const own = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
  guardrails: { excludeLabels: [canary, "tier=db"] }
`);
      expect(mergeGuardrails(policy, own).excludeLabels).toEqual(["tier=db", "canary"]);
    });
  });

  describe("max-targets and max-percent", () => {
    const TEN = web(10);
    const group = (mode: string, guardrails = "") =>
      exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: ${mode} }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
${guardrails}`);

    it("refuses more hosts than maxTargets, taking the lower of policy and experiment", () => {
      const p = plan(group("{ count: 3 }", "  guardrails: { maxTargets: 2 }\n"), { agents: TEN, policy: { ...DEFAULT_POLICY, maxTargets: 5 } });
      expect(p.rule("max-targets")).toEqual({
        rule: "max-targets",
        ok: false,
        message: "web: 3 hosts selected, over the experiment's maxTargets 2; lower the group's mode",
      });
      const ok = plan(group("{ count: 2 }"), { agents: TEN, policy: { ...DEFAULT_POLICY, maxTargets: 5 } });
      expect(ok.rule("max-targets")).toEqual({ rule: "max-targets", ok: true, message: "hosts per group within the policy's maxTargets 5 (web: 2)" });
    });

    it("refuses more than maxPercent of the matching hosts", () => {
      const p = plan(group("{ percent: 30 }", "  guardrails: { maxPercent: 25 }\n"), { agents: TEN });
      expect(p.rule("max-percent")).toEqual({
        rule: "max-percent",
        ok: false,
        message: "web: 3 of 10 matching hosts (30%), over the experiment's maxPercent 25%; select fewer hosts",
      });
      const ok = plan(group("{ percent: 30 }", "  guardrails: { maxPercent: 30 }\n"), { agents: TEN });
      expect(ok.rule("max-percent")).toEqual({ rule: "max-percent", ok: true, message: "web: 3 of 10 matching hosts (30%): within the experiment's maxPercent 30%" });
    });

    it("counts percent against all matching hosts, not just the eligible ones", () => {
      const agents = [...web(2), ...Array.from({ length: 8 }, (_, i) => testAgent(`x-${i}`, { labels: { app: "web" } }))];
      const p = plan(group("{ all: true }", "  guardrails: { maxPercent: 20 }\n"), { agents });
      expect(p.rule("max-percent").ok).toBe(true);
      expect(p.rule("max-percent").message).toContain("2 of 10 matching hosts (20%)");
    });
  });

  describe("windows", () => {
    const windowed = (window: string) =>
      exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
  guardrails: { window: ${window} }
`);
    const BERLIN = windowed(`{ days: mon-fri, hours: "10:00-16:00", tz: Europe/Berlin }`);
    const UTC = windowed(`{ days: mon-fri, hours: "10:00-16:00" }`);
    // 09:30 UTC on a Tuesday is 10:30 in Berlin (CET, UTC+1).
    const T0930Z = new Date("2026-03-10T09:30:00Z");

    it("checks the time in the window's zone: inside in Berlin, outside in UTC", () => {
      expect(plan(BERLIN, { now: T0930Z }).rule("windows")).toEqual({
        rule: "windows",
        ok: true,
        message: "now is Tue 2026-03-10 10:30 Europe/Berlin, inside the experiment's window mon-fri 10:00-16:00 Europe/Berlin",
      });
      expect(plan(UTC, { now: T0930Z }).rule("windows")).toEqual({
        rule: "windows",
        ok: false,
        message: "now is Tue 2026-03-10 09:30 UTC, outside the experiment's window mon-fri 10:00-16:00 UTC; the next one opens Tue 2026-03-10 10:00 UTC",
      });
    });

    it("checks the day in the window's zone, and names the next opening", () => {
      // Friday 23:30 UTC is already Saturday 00:30 in Berlin.
      const p = plan(windowed(`{ days: mon-fri, hours: "00:00-24:00", tz: Europe/Berlin }`), { now: new Date("2026-03-13T23:30:00Z") });
      expect(p.rule("windows")).toEqual({
        rule: "windows",
        ok: false,
        message: "now is Sat 2026-03-14 00:30 Europe/Berlin, outside the experiment's window mon-fri 00:00-24:00 Europe/Berlin; the next one opens Mon 2026-03-16 00:00 Europe/Berlin",
      });
    });

    it("follows daylight saving time: Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29", () => {
      const early = windowed(`{ days: sun, hours: "03:00-04:00", tz: Europe/Berlin }`);
      // 01:15 UTC is 03:15 CEST (a fixed UTC+1 would say 02:15, outside).
      expect(plan(early, { now: new Date("2026-03-29T01:15:00Z") }).rule("windows")).toMatchObject({
        ok: true,
        message: "now is Sun 2026-03-29 03:15 Europe/Berlin, inside the experiment's window sun 03:00-04:00 Europe/Berlin",
      });
      // 00:59 UTC is 01:59 CET, before the jump.
      expect(plan(early, { now: new Date("2026-03-29T00:59:00Z") }).rule("windows")).toMatchObject({
        ok: false,
        message: "now is Sun 2026-03-29 01:59 Europe/Berlin, outside the experiment's window sun 03:00-04:00 Europe/Berlin; the next one opens Sun 2026-03-29 03:00 Europe/Berlin",
      });
      // A window the week before, in winter time: 10:00 Berlin is 09:00 UTC; after the switch, 08:00 UTC.
      const tenOClock = windowed(`{ days: [sun, mon], hours: "10:00-10:30", tz: Europe/Berlin }`);
      expect(plan(tenOClock, { now: new Date("2026-03-22T09:10:00Z") }).rule("windows").ok).toBe(true);
      expect(plan(tenOClock, { now: new Date("2026-03-29T09:10:00Z") }).rule("windows").ok).toBe(false);
      expect(plan(tenOClock, { now: new Date("2026-03-29T08:10:00Z") }).rule("windows").ok).toBe(true);
    });

    it("follows the autumn switch: 02:30 happens twice in Berlin on 2026-10-25", () => {
      const w = windowed(`{ days: sun, hours: "02:00-03:00", tz: Europe/Berlin }`);
      expect(plan(w, { now: new Date("2026-10-25T00:30:00Z") }).rule("windows").message).toContain("now is Sun 2026-10-25 02:30 Europe/Berlin, inside");
      expect(plan(w, { now: new Date("2026-10-25T01:30:00Z") }).rule("windows").message).toContain("now is Sun 2026-10-25 02:30 Europe/Berlin, inside");
      expect(plan(w, { now: new Date("2026-10-25T02:05:00Z") }).rule("windows").ok).toBe(false);
    });

    it("requires both the policy's and the experiment's windows", () => {
      const policy: GuardrailsSpec = {
        ...DEFAULT_POLICY,
        windows: [{ days: ["mon", "tue", "wed", "thu", "fri"], startMinute: 13 * 60, endMinute: 17 * 60, tz: "UTC" }],
      };
      const p = plan(BERLIN, { policy, now: new Date("2026-03-10T10:00:00Z") }); // 11:00 Berlin
      expect(p.rule("windows")).toEqual({
        rule: "windows",
        ok: false,
        message: "now is Tue 2026-03-10 10:00 UTC, outside the policy's window mon-fri 13:00-17:00 UTC; the next one opens Tue 2026-03-10 13:00 UTC",
      });
      const both = plan(BERLIN, { policy, now: new Date("2026-03-10T13:30:00Z") });
      expect(both.rule("windows")).toEqual({
        rule: "windows",
        ok: true,
        message:
          "now is Tue 2026-03-10 13:30 UTC, inside the policy's window mon-fri 13:00-17:00 UTC; now is Tue 2026-03-10 14:30 Europe/Berlin, inside the experiment's window mon-fri 10:00-16:00 Europe/Berlin",
      });
    });

    it("passes without windows", () => {
      expect(plan(WEB_BURN).rule("windows")).toEqual({ rule: "windows", ok: true, message: "no time window is set: a run may start at any time" });
    });
  });

  describe("blackout-dates", () => {
    const XMAS = "2026-12-24";
    const withWindow = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
  guardrails: { window: { days: [mon, tue, wed, thu, fri, sat, sun], hours: "00:00-24:00", tz: Europe/Berlin }, blackoutDates: ["${XMAS}"] }
`);
    const noWindow = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
  guardrails: { blackoutDates: ["${XMAS}"] }
`);
    // 23:30 UTC on the 23rd is already the 24th in Berlin.
    const EVE = new Date("2026-12-23T23:30:00Z");

    it("uses the windows' time zone", () => {
      expect(plan(withWindow, { now: EVE }).rule("blackout-dates")).toEqual({
        rule: "blackout-dates",
        ok: false,
        message: "today is 2026-12-24 in Europe/Berlin, a blackout date: no run may start until the day is over there",
      });
    });

    it("uses UTC without windows", () => {
      expect(plan(noWindow, { now: EVE }).rule("blackout-dates")).toEqual({
        rule: "blackout-dates",
        ok: true,
        message: "today is 2026-12-23 in UTC, not a blackout date (1 date set)",
      });
      expect(plan(noWindow, { now: new Date("2026-12-24T12:00:00Z") }).rule("blackout-dates").ok).toBe(false);
    });

    it("unites the policy's and the experiment's dates", () => {
      const policy: GuardrailsSpec = { ...DEFAULT_POLICY, blackoutDates: ["2026-12-31"] };
      expect(mergeGuardrails(policy, noWindow).blackoutDates).toEqual([XMAS, "2026-12-31"]);
      expect(plan(noWindow, { policy, now: new Date("2026-12-31T08:00:00Z") }).rule("blackout-dates").ok).toBe(false);
    });
  });

  describe("max-concurrent-runs", () => {
    it("refuses a run beyond the policy's limit", () => {
      const policy: GuardrailsSpec = { ...DEFAULT_POLICY, maxConcurrentRuns: 2 };
      expect(plan(WEB_BURN, { policy, activeRuns: 2 }).rule("max-concurrent-runs")).toEqual({
        rule: "max-concurrent-runs",
        ok: false,
        message: "2 runs are active and the policy allows 2 at once; wait for one to end (firedrill runs)",
      });
      expect(plan(WEB_BURN, { policy, activeRuns: 1 }).rule("max-concurrent-runs")).toEqual({
        rule: "max-concurrent-runs",
        ok: true,
        message: "1 run is active; this one makes 2 of at most 2",
      });
    });
  });

  describe("fault overlap on one host", () => {
    const twoNetwork = (second: string) =>
      exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: delay, fault: network-delay, target: web, params: { delayMs: 100 }, duration: 1m }
${second}`);

    it("refuses two network faults that may overlap on a host", () => {
      const p = plan(twoNetwork("    - { name: loss, fault: network-loss, target: web, params: { percent: 10 }, duration: 1m }\n"), { agents: web(1) });
      expect(p.rule("one-network-fault-per-host")).toEqual({
        rule: "one-network-fault-per-host",
        ok: false,
        message: "web-1: steps delay (network-delay) and loss (network-loss) may run at the same time; order them with startAfter or target different hosts",
      });
      expect(p.rule("one-fault-per-kind-per-host").ok).toBe(true);
    });

    it("allows them when startAfter orders them, directly or through a wait", () => {
      const ordered = twoNetwork(`    - { name: pause, wait: 10s, startAfter: [delay] }
    - { name: loss, fault: network-loss, target: web, params: { percent: 10 }, duration: 1m, startAfter: [pause] }
`);
      expect(plan(ordered).rule("one-network-fault-per-host")).toEqual({
        rule: "one-network-fault-per-host",
        ok: true,
        message: "no host gets two network faults at the same time",
      });
    });

    it("counts network faults already active on the host", () => {
      const single = twoNetwork("");
      const p = plan(single, { agents: web(2), hostFaults: new Map([["web-2", ["network-blackhole", "cpu-burn"]]]) });
      expect(p.rule("one-network-fault-per-host")).toEqual({
        rule: "one-network-fault-per-host",
        ok: false,
        message: "web-2: step delay (network-delay) while network-blackhole is already active there (another run or an ad-hoc fault)",
      });
    });

    it("refuses two faults of one kind that may overlap, from the experiment or already active", () => {
      const twoBurns = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
    one: { selector: { agentIds: [web-1] }, mode: { all: true } }
  steps:
    - { name: burn-all, fault: cpu-burn, target: web, duration: 1m }
    - { name: burn-one, fault: cpu-burn, target: one, duration: 1m }
    - { name: fill, fault: disk-fill, target: web, params: { path: /var/tmp, targetPercent: 50 }, duration: 1m }
`);
      const p = plan(twoBurns, { agents: web(2), hostFaults: new Map([["web-2", ["disk-fill"]]]) });
      expect(p.rule("one-fault-per-kind-per-host")).toEqual({
        rule: "one-fault-per-kind-per-host",
        ok: false,
        message:
          "web-1: steps burn-all (cpu-burn) and burn-one (cpu-burn) may run at the same time; order them with startAfter or target different hosts; web-2: step fill (disk-fill) while disk-fill is already active there (another run or an ad-hoc fault)",
      });
      const ordered = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: a, fault: cpu-burn, target: web, duration: 1m }
    - { name: b, fault: cpu-burn, target: web, duration: 1m, startAfter: [a] }
`);
      expect(plan(ordered).rule("one-fault-per-kind-per-host").ok).toBe(true);
    });
  });

  describe("max-duration", () => {
    const dag = (guardrails: string) =>
      exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 2m }
    - { name: pause, wait: 30s, startAfter: [burn] }
    - { name: fill, fault: disk-fill, target: web, params: { path: /var/tmp, targetPercent: 50 }, duration: 1m, startAfter: [pause] }
    - { name: side, fault: process-kill, target: web, params: { name: nginx }, duration: 3m }
  guardrails: { ${guardrails} }
`);

    it("measures the critical path of the DAG against the limit", () => {
      expect(plan(dag("maxDuration: 3m")).rule("max-duration")).toEqual({
        rule: "max-duration",
        ok: false,
        message: "the longest chain of steps (burn -> pause -> fill) takes 3m30s, longer than the experiment's maxDuration 3m; shorten or parallelize steps",
      });
      expect(plan(dag("maxDuration: 4m")).rule("max-duration")).toEqual({
        rule: "max-duration",
        ok: true,
        message: "the longest chain of steps (burn -> pause -> fill) takes 3m30s, within the experiment's maxDuration 4m",
      });
      expect(plan(dag("maxDuration: 1h"), { policy: { ...DEFAULT_POLICY, maxDurationMs: 60_000 } }).rule("max-duration").message).toContain(
        "longer than the policy's maxDuration 1m",
      );
    });
  });

  describe("capabilities", () => {
    const delay = exp(`  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: slow, fault: network-delay, target: web, params: { delayMs: 100 }, duration: 1m }
`);

    it("refuses hosts lacking what the fault kind needs, with the fix", () => {
      const agents = [
        ...web(1),
        testAgent("web-2", { labels: { app: "web", "firedrill:opt-in": "true" }, capabilities: { ...FULL_CAPABILITIES, netem: false } }),
        testAgent("web-3", { labels: { app: "web", "firedrill:opt-in": "true" }, capabilities: { ...FULL_CAPABILITIES, faultKinds: ["cpu-burn"] } }),
      ];
      expect(plan(delay, { agents }).rule("capabilities")).toEqual({
        rule: "capabilities",
        ok: false,
        message:
          "web-2 cannot run network-delay (step slow): the kernel lacks sch_netem or sch_prio (install the distribution's extra kernel modules, e.g. linux-modules-extra-$(uname -r), and run modprobe -a sch_netem sch_prio); web-3 cannot run network-delay (step slow): its agent does not offer it (offers cpu-burn); upgrade the agent",
      });
      expect(plan(delay, { agents: web(3) }).rule("capabilities")).toEqual({
        rule: "capabilities",
        ok: true,
        message: "every selected host can run the faults of its steps",
      });
    });
  });
});

describe("mergeGuardrails", () => {
  it("takes the stricter of each limit and remembers where it came from", () => {
    const policy: GuardrailsSpec = { optInLabel: "firedrill:opt-in=true", maxTargets: 10, maxPercent: 20, maxDurationMs: 3_600_000, maxConcurrentRuns: 2 };
    const own: GuardrailsSpec = { maxTargets: 3, maxPercent: 50, optInLabel: "firedrill:opt-in=true" };
    expect(mergeGuardrails(policy, own)).toEqual({
      optInLabels: ["firedrill:opt-in=true"],
      excludeLabels: [],
      maxTargets: 3,
      maxPercent: 20,
      maxDurationMs: 3_600_000,
      maxConcurrentRuns: 2,
      windowSets: [],
      blackoutDates: [],
      optInTags: [],
      excludeTags: [],
      minHealthy: 1,
      from: { maxTargets: "experiment", maxPercent: "policy", maxDurationMs: "policy", maxConcurrentRuns: "policy" },
    });
  });

  it("merges the AWS guardrails: both opt-in tags, all exclusion tags, the higher minHealthy, the lower maxPercentOfGroup, the longer interval", () => {
    const policy: GuardrailsSpec = { ...DEFAULT_POLICY, excludeTags: ["tier=db"], maxPercentOfGroup: 30, minTimeBetweenTerminationsMs: 3_600_000 };
    const own: GuardrailsSpec = { optInTag: "gameday=q4", excludeTags: ["pci", "tier=db"], minHealthy: 3, maxPercentOfGroup: 50, minTimeBetweenTerminationsMs: 7_200_000 };
    const merged = mergeGuardrails(policy, own);
    expect(merged).toMatchObject({
      optInTags: ["firedrill:opt-in=true", "gameday=q4"],
      excludeTags: ["tier=db", "pci"],
      minHealthy: 3,
      maxPercentOfGroup: 30,
      minTimeBetweenTerminationsMs: 7_200_000,
    });
    expect(merged.from).toMatchObject({ minHealthy: "experiment", maxPercentOfGroup: "policy", minTimeBetweenTerminationsMs: "experiment" });
    expect(awsGuardrailsFrom(merged)).toEqual({
      optInTag: "firedrill:opt-in=true",
      requiredTags: ["gameday=q4"],
      excludeTags: ["tier=db", "pci"],
      minHealthy: 3,
      maxPercentOfGroup: 30,
      minTimeBetweenTerminationsMs: 7_200_000,
    });
    // An experiment may not lower the policy's floor; the policy may (explicitly) go to 0.
    expect(mergeGuardrails(DEFAULT_POLICY, { minHealthy: 0 }).minHealthy).toBe(1);
    expect(mergeGuardrails({ ...DEFAULT_POLICY, minHealthy: 0 }, {}).minHealthy).toBe(0);
    expect(awsGuardrailsFrom(mergeGuardrails(DEFAULT_POLICY, {}))).toEqual({ optInTag: "firedrill:opt-in=true", excludeTags: [], minHealthy: 1 });
    expect(awsGuardrailsFrom(mergeGuardrails({}, {})).optInTag).toBe("firedrill:opt-in=true");
  });
});
