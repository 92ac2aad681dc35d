import { describe, expect, it } from "vitest";
import { testAgent } from "../test-support/agent-records.js";
import { globMatch, resolveTargets, seededRandom } from "./targets.js";
import type { Experiment, TargetSpec } from "./types.js";

function experiment(targets: Record<string, TargetSpec>): Experiment {
  return {
    apiVersion: "firedrill/v1",
    kind: "Experiment",
    metadata: { name: "t", labels: {}, description: "" },
    spec: { hypothesis: "h", targets, steps: [], stopConditions: [], guardrails: {} },
  };
}

const OPT_IN = "firedrill:opt-in=true";
const ids = (agents: readonly { id: string }[]) => agents.map((a) => a.id);

const fleet = [
  testAgent("a1", { labels: { app: "web", "firedrill:opt-in": "true" }, facts: { hostname: "web-1", availabilityZone: "eu-central-1a" } }),
  testAgent("a2", { labels: { app: "web", "firedrill:opt-in": "true" }, facts: { hostname: "web-2", availabilityZone: "eu-central-1b" } }),
  testAgent("a3", { labels: { app: "web", "firedrill:opt-in": "true", tier: "db" }, facts: { hostname: "web-3", osPlatform: "darwin" } }),
  testAgent("a4", { labels: { app: "web" }, facts: { hostname: "web-4" } }),
  testAgent("a5", { labels: { app: "web", "firedrill:opt-in": "true" }, connected: false, facts: { hostname: "web-5" } }),
  testAgent("a6", { labels: { app: "api", "firedrill:opt-in": "true" }, facts: { hostname: "api-1" } }),
];

describe("resolveTargets", () => {
  it("matches labels exactly, facts exactly or by glob, and agent ids; all criteria must hold", () => {
    const exp = experiment({
      byLabel: { selector: { labels: { app: "web" } }, mode: { all: true } },
      byFact: { selector: { facts: { hostname: "web-*", osPlatform: "linux" } }, mode: { all: true } },
      byZone: { selector: { facts: { availabilityZone: "eu-central-1?" } }, mode: { all: true } },
      byZoneGlob: { selector: { facts: { availabilityZone: "*-1b" } }, mode: { all: true } },
      byId: { selector: { agentIds: ["a2", "a6", "nope"] }, mode: { all: true } },
      both: { selector: { labels: { app: "web" }, agentIds: ["a2", "a6"] }, mode: { all: true } },
      none: { selector: { labels: { app: "WEB" } }, mode: { all: true } },
    });
    const r = resolveTargets(exp, fleet, { optInLabel: undefined, excludeLabels: [] });
    expect(ids(r["byLabel"]!.matching)).toEqual(["a1", "a2", "a3", "a4", "a5"]);
    expect(ids(r["byFact"]!.matching)).toEqual(["a1", "a2", "a4", "a5"]);
    expect(ids(r["byZone"]!.matching)).toEqual([]); // ? is literal, not a wildcard
    expect(ids(r["byZoneGlob"]!.matching)).toEqual(["a2"]);
    expect(ids(r["byId"]!.matching)).toEqual(["a2", "a6"]);
    expect(ids(r["both"]!.matching)).toEqual(["a2"]);
    expect(ids(r["none"]!.matching)).toEqual([]);
  });

  it("keeps eligible only connected, opted-in, non-excluded hosts and says why the others were left out", () => {
    const exp = experiment({ web: { selector: { labels: { app: "web" } }, mode: { all: true } } });
    const r = resolveTargets(exp, fleet, { optInLabel: OPT_IN, excludeLabels: ["tier=db"] })["web"]!;
    expect(ids(r.matching)).toEqual(["a1", "a2", "a3", "a4", "a5"]);
    expect(ids(r.eligible)).toEqual(["a1", "a2"]);
    expect(ids(r.selected)).toEqual(["a1", "a2"]);
    expect(r.excluded.map((e) => [e.agent.id, e.why])).toEqual([
      ["a3", "carries the exclusion label tier=db"],
      ["a4", "lacks the opt-in label firedrill:opt-in=true"],
      ["a5", "not connected"],
    ]);
  });

  it("requires every opt-in label given, and a key-only exclusion matches any value", () => {
    const exp = experiment({ web: { selector: { labels: { app: "web" } }, mode: { all: true } } });
    const agents = [
      testAgent("b1", { labels: { app: "web", "firedrill:opt-in": "true", gameday: "q4" } }),
      testAgent("b2", { labels: { app: "web", "firedrill:opt-in": "true" } }),
      testAgent("b3", { labels: { app: "web", "firedrill:opt-in": "true", gameday: "q4", pci: "yes" } }),
    ];
    const r = resolveTargets(exp, agents, { optInLabel: [OPT_IN, "gameday=q4"], excludeLabels: ["pci"] })["web"]!;
    expect(ids(r.eligible)).toEqual(["b1"]);
    expect(r.excluded.map((e) => e.why)).toEqual(["lacks the opt-in label gameday=q4", "carries the exclusion label pci"]);
  });

  it("selects per mode: count n, percent rounded up (at least 1), all", () => {
    const many = Array.from({ length: 10 }, (_, i) => testAgent(`h${String(i).padStart(2, "0")}`, { labels: { app: "web", "firedrill:opt-in": "true" } }));
    const sel = { labels: { app: "web" } };
    const exp = experiment({
      three: { selector: sel, mode: { count: 3 } },
      tooMany: { selector: sel, mode: { count: 50 } },
      p25: { selector: sel, mode: { percent: 25 } },
      p1: { selector: sel, mode: { percent: 1 } },
      p100: { selector: sel, mode: { percent: 100 } },
      all: { selector: sel, mode: { all: true } },
      empty: { selector: { labels: { app: "none" } }, mode: { percent: 50 } },
    });
    const r = resolveTargets(exp, many, { optInLabel: OPT_IN, excludeLabels: [], random: seededRandom(1) });
    expect(r["three"]!.selected).toHaveLength(3);
    expect(r["tooMany"]!.selected).toHaveLength(10);
    expect(r["p25"]!.selected).toHaveLength(3); // ceil(2.5)
    expect(r["p1"]!.selected).toHaveLength(1); // ceil(0.1), at least 1
    expect(r["p100"]!.selected).toHaveLength(10);
    expect(r["all"]!.selected).toHaveLength(10);
    expect(r["empty"]!.selected).toHaveLength(0);
    for (const t of Object.values(r)) {
      expect(new Set(ids(t.selected)).size).toBe(t.selected.length);
      for (const a of t.selected) expect(t.eligible).toContain(a);
    }
  });

  it("picks with the injected random: the same seed gives the same hosts, whatever the input order", () => {
    const many = Array.from({ length: 20 }, (_, i) => testAgent(`h${String(i).padStart(2, "0")}`, { labels: { app: "web" } }));
    const exp = experiment({ web: { selector: { labels: { app: "web" } }, mode: { count: 4 } } });
    const pickWith = (seed: number, agents = many) =>
      ids(resolveTargets(exp, agents, { optInLabel: undefined, excludeLabels: [], random: seededRandom(seed) })["web"]!.selected);
    expect(pickWith(42)).toEqual(pickWith(42));
    expect(pickWith(42, [...many].reverse())).toEqual(pickWith(42));
    const seen = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((s) => pickWith(s).join(",")));
    expect(seen.size).toBeGreaterThan(1);
    // A random that always answers 0 takes the first hosts in id order.
    expect(ids(resolveTargets(exp, many, { optInLabel: undefined, excludeLabels: [], random: () => 0 })["web"]!.selected)).toEqual([
      "h00",
      "h01",
      "h02",
      "h03",
    ]);
  });

  it("spreads picks over every eligible host", () => {
    const many = Array.from({ length: 5 }, (_, i) => testAgent(`h${i}`, { labels: { app: "web" } }));
    const exp = experiment({ web: { selector: { labels: { app: "web" } }, mode: { count: 1 } } });
    const random = seededRandom(7);
    const counts = new Map<string, number>();
    for (let i = 0; i < 500; i++) {
      const [pick] = resolveTargets(exp, many, { optInLabel: undefined, excludeLabels: [], random })["web"]!.selected;
      counts.set(pick!.id, (counts.get(pick!.id) ?? 0) + 1);
    }
    expect(counts.size).toBe(5);
    for (const n of counts.values()) expect(n).toBeGreaterThan(60);
  });
});

describe("globMatch", () => {
  it("treats * as any characters and everything else literally", () => {
    expect(globMatch("web-*", "web-12")).toBe(true);
    expect(globMatch("web-*", "api-1")).toBe(false);
    expect(globMatch("*.internal", "db.internal")).toBe(true);
    expect(globMatch("a.c", "abc")).toBe(false);
    expect(globMatch("*", "")).toBe(true);
    expect(globMatch("linux", "linux")).toBe(true);
  });
});
