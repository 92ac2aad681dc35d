import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { FAULT_KINDS } from "@firedrill/protocol";
import { describe, expect, it } from "vitest";
import { ExperimentSpecError, formatSpecIssue, parseExperiment } from "./spec.js";
import type { Experiment, SpecIssue } from "./types.js";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");

/** A valid experiment; each case below edits some of its lines (numbers are 1-based). */
const BASE = `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: demo
spec:
  hypothesis: web stays up
  targets:
    web:
      selector: { labels: { app: web } }
      mode: { count: 1 }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 80 }, duration: 2m }
    - { name: pause, wait: 30s, startAfter: [burn] }
    - { name: fill, fault: disk-fill, target: web, params: { path: /var/tmp, targetPercent: 80 }, duration: 1m, startAfter: [pause] }
  stopConditions:
    - { http: { url: "http://web/health" } }
  guardrails: { window: { days: mon-fri, hours: "10:00-16:00", tz: Europe/Berlin }, blackoutDates: ["2026-12-24"] }
`;

/** BASE with lines replaced (a replacement may hold several lines). */
function edit(lines: Record<number, string>): string {
  return BASE.split("\n")
    .map((line, i) => lines[i + 1] ?? line)
    .join("\n");
}

function issuesOf(text: string): SpecIssue[] {
  try {
    parseExperiment(text, "game-day.yaml");
  } catch (err) {
    if (err instanceof ExperimentSpecError) return err.issues;
    throw err;
  }
  throw new Error("expected the spec to be refused");
}

const STEP0 = (fields: string) => `    - { name: burn, fault: cpu-burn, target: web, ${fields} }`;
// Every agent fault kind the protocol knows, then the control plane's cloud kinds.
const KINDS = [...FAULT_KINDS, "ec2-terminate", "ec2-stop", "ec2-reboot", "aws-network-disrupt"].join(", ");
const AWS_WEB = "      selector: { aws: { autoScalingGroups: [web-asg] } }";

interface Case {
  name: string;
  text: string;
  issues: SpecIssue[];
}

const CASES: Case[] = [
  {
    name: "aws selector: bad region",
    text: edit({ 9: "      selector: { aws: { region: eu-west, tags: { app: web } } }" }),
    issues: [{ path: "targets.web.selector.aws.region", line: 9, message: '"eu-west" is not an AWS region; use a region name such as eu-west-1 or us-east-2' }],
  },
  {
    name: "aws selector: a region alone",
    text: edit({ 9: "      selector: { aws: { region: eu-west-1 } }" }),
    issues: [
      {
        path: "targets.web.selector.aws",
        line: 9,
        message: "needs at least one of tags, autoScalingGroups, instanceIds, filters; region alone would match every running instance in the region",
      },
    ],
  },
  {
    name: "aws selector: unknown field",
    text: edit({ 9: "      selector: { aws: { asg: web-asg } }" }),
    issues: [
      {
        path: "targets.web.selector.aws",
        line: 9,
        message: "needs at least one of tags, autoScalingGroups, instanceIds, filters (an empty aws selector would match every running instance)",
      },
      { path: "targets.web.selector.aws.asg", line: 9, message: 'unknown field "asg"; allowed: region, tags, autoScalingGroups, instanceIds, filters' },
    ],
  },
  {
    name: "aws selector: bad instance id",
    text: edit({ 9: "      selector: { aws: { instanceIds: [i-123] } }" }),
    issues: [{ path: "targets.web.selector.aws.instanceIds[0]", line: 9, message: '"i-123" is not an EC2 instance id; use i- and 8 or 17 hex digits, e.g. i-0abc123def4567890' }],
  },
  {
    name: "aws selector: a filter firedrill sets itself",
    text: edit({ 9: "      selector: { aws: { filters: [{ name: instance-state-name, values: [stopped] }] } }" }),
    issues: [{ path: "targets.web.selector.aws.filters[0].name", line: 9, message: '"instance-state-name" is set by firedrill (running instances only); remove this filter' }],
  },
  {
    name: "aws selector: a filter without values",
    text: edit({ 9: "      selector: { aws: { filters: [{ name: instance-type, values: [] }] } }" }),
    issues: [{ path: "targets.web.selector.aws.filters[0].values", line: 9, message: "must not be empty; list at least one entry" }],
  },
  {
    name: "aws selector: a tag value that YAML reads as a number",
    text: edit({ 9: "      selector: { aws: { tags: { port: 8080 } } }" }),
    issues: [{ path: "targets.web.selector.aws.tags.port", line: 9, message: '8080 is a number, but tag values are strings: quote it ("8080")' }],
  },
  {
    name: "ec2-terminate on a group without an aws selector",
    text: edit({ 12: "    - { name: burn, fault: ec2-terminate, target: web }" }),
    issues: [
      {
        path: "steps[0].target",
        line: 12,
        message:
          'ec2-terminate acts on EC2 instances, but target group "web" has no aws selector; add selector.aws (e.g. aws: { autoScalingGroups: [web-asg] }) or target a group that has one',
      },
    ],
  },
  {
    name: "ec2-terminate with params",
    text: edit({ 9: AWS_WEB, 12: "    - { name: burn, fault: ec2-terminate, target: web, params: { force: true } }" }),
    issues: [{ path: "steps[0].params", line: 12, message: "ec2-terminate takes no params; remove params (it acts on every instance the target group resolves to)" }],
  },
  {
    name: "ec2-stop without duration",
    text: edit({ 9: AWS_WEB, 12: "    - { name: burn, fault: ec2-stop, target: web }" }),
    issues: [{ path: "steps[0].duration", line: 12, message: "is required for ec2-stop: how long the instances stay stopped before they are started again, e.g. duration: 5m" }],
  },
  {
    name: "aws-network-disrupt without duration, with bad params",
    text: edit({ 9: AWS_WEB, 12: "    - { name: burn, fault: aws-network-disrupt, target: web, params: { maxSubnets: 0 } }" }),
    issues: [
      { path: "steps[0].duration", line: 12, message: "is required for aws-network-disrupt: how long the subnets stay cut off before their own network ACLs are restored, e.g. duration: 10m" },
      { path: "steps[0].params", line: 12, message: "aws-network-disrupt needs availabilityZone (e.g. eu-west-1a) or subnetTags (e.g. { tier: app }) to choose its subnets" },
      { path: "steps[0].params.maxSubnets", line: 12, message: "must be a whole number from 1 to 200" },
    ],
  },
  {
    name: "cloudwatchAlarm without names",
    text: edit({ 16: "    - { cloudwatchAlarm: { region: eu-west-1 } }" }),
    issues: [{ path: "stopConditions[0].cloudwatchAlarm.names", line: 16, message: "is required (a list)" }],
  },
  {
    name: "cloudwatchAlarm: interval too short, bad region",
    text: edit({ 16: "    - { cloudwatchAlarm: { names: [a], intervalMs: 100, region: eu-west } }" }),
    issues: [
      { path: "stopConditions[0].cloudwatchAlarm.intervalMs", line: 16, message: "100 is below the minimum 1000" },
      { path: "stopConditions[0].cloudwatchAlarm.region", line: 16, message: '"eu-west" is not an AWS region; use a region name such as eu-west-1 or us-east-2' },
    ],
  },
  {
    name: "bad AWS guardrails",
    text: edit({ 17: '  guardrails: { optInTag: chaos, excludeTags: ["tier=db", "a b"], minHealthy: -1, maxPercentOfGroup: 0, minTimeBetweenTerminations: 1d }' }),
    issues: [
      { path: "guardrails.optInTag", line: 17, message: '"chaos" is not a tag; use key=value, e.g. "firedrill:opt-in=true"' },
      { path: "guardrails.excludeTags[1]", line: 17, message: '"a b" is not a tag; use key=value (e.g. "tier=db") or a key alone for any value (e.g. "pci")' },
      { path: "guardrails.minHealthy", line: 17, message: "-1 is below the minimum 0" },
      { path: "guardrails.maxPercentOfGroup", line: 17, message: "0 is below the minimum 1" },
      { path: "guardrails.minTimeBetweenTerminations", line: 17, message: '"1d" is not a duration; use a number with a unit (ms, s, m, h), e.g. 30s, 2m, 1h30m' },
    ],
  },
  {
    name: "unknown top-level field",
    text: edit({ 17: `  guardrails: {}\nstatus: done` }),
    issues: [{ path: "status", line: 18, message: 'unknown field "status"; allowed: apiVersion, kind, metadata, spec' }],
  },
  {
    name: "unknown step field",
    text: edit({ 12: STEP0("params: { load: 80 }, duration: 2m, retries: 3") }),
    issues: [
      { path: "steps[0].retries", line: 12, message: 'unknown field "retries"; allowed: name, fault, target, params, duration, wait, startAfter' },
    ],
  },
  {
    name: "wrong apiVersion",
    text: edit({ 1: "apiVersion: firedrill/v2" }),
    issues: [{ path: "apiVersion", line: 1, message: '"firedrill/v2" is not allowed; use "firedrill/v1"' }],
  },
  {
    name: "wrong kind",
    text: edit({ 2: "kind: Experiments" }),
    issues: [{ path: "kind", line: 2, message: '"Experiments" is not allowed; use "Experiment"' }],
  },
  {
    name: "missing hypothesis (reported on the spec line)",
    text: edit({ 6: "  # no hypothesis" }),
    issues: [
      { path: "hypothesis", line: 5, message: 'is required: say what should stay true while the faults run, e.g. "checkout keeps >= 99% success"' },
    ],
  },
  {
    name: "unknown fault kind",
    text: edit({ 12: "    - { name: burn, fault: cpu-melt, target: web, duration: 2m }" }),
    issues: [{ path: "steps[0].fault", line: 12, message: `"cpu-melt" is not a known fault kind; use one of: ${KINDS}` }],
  },
  {
    name: "bad fault parameter (the protocol's parser)",
    text: edit({ 14: "    - { name: fill, fault: cpu-burn, target: web, params: { load: 150 }, duration: 1m, startAfter: [pause] }" }),
    issues: [{ path: "steps[2].params.load", line: 14, message: "150 is above the maximum 100" }],
  },
  {
    name: "unknown fault parameter",
    text: edit({ 12: STEP0("params: { load: 80, cpu: 2 }, duration: 2m") }),
    issues: [{ path: "steps[0].params.cpu", line: 12, message: "unknown parameter for cpu-burn; allowed: load, cores" }],
  },
  {
    name: "bad duration",
    text: edit({ 12: STEP0("params: { load: 80 }, duration: 2 minutes") }),
    issues: [
      { path: "steps[0].duration", line: 12, message: '"2 minutes" is not a duration; use a number with a unit (ms, s, m, h), e.g. 30s, 2m, 1h30m' },
    ],
  },
  {
    name: "duration without a unit",
    text: edit({ 12: STEP0("duration: 30") }),
    issues: [{ path: "steps[0].duration", line: 12, message: "30 is not a duration with a unit, e.g. 30s, 2m, 1h30m" }],
  },
  {
    name: "duration over 12h",
    text: edit({ 12: STEP0("duration: 13h") }),
    issues: [{ path: "steps[0].duration", line: 12, message: "13h is longer than the maximum 12h" }],
  },
  {
    name: "fault step without duration",
    text: edit({ 12: STEP0("params: { load: 80 }") }),
    issues: [{ path: "steps[0].duration", line: 12, message: "is required for a fault step: how long the fault lasts, e.g. duration: 2m" }],
  },
  {
    name: "duplicate step names",
    text: edit({ 14: "    - { name: burn, fault: disk-fill, target: web, params: { path: /var/tmp, targetPercent: 80 }, duration: 1m, startAfter: [pause] }" }),
    issues: [{ path: "steps[2].name", line: 14, message: 'duplicate step name "burn" (also steps[0]); step names must be unique' }],
  },
  {
    name: "unknown target",
    text: edit({ 12: "    - { name: burn, fault: cpu-burn, target: webz, duration: 2m }" }),
    issues: [{ path: "steps[0].target", line: 12, message: 'unknown target "webz"; target groups: web' }],
  },
  {
    name: "unknown startAfter",
    text: edit({ 13: "    - { name: pause, wait: 30s, startAfter: [burn, brun] }" }),
    issues: [{ path: "steps[1].startAfter[1]", line: 13, message: 'unknown step "brun"; steps: burn, pause, fill' }],
  },
  {
    name: "startAfter cycle",
    text: edit({ 12: STEP0("duration: 2m, startAfter: [fill]") }),
    issues: [
      {
        path: "steps",
        line: 12,
        message:
          "startAfter forms a cycle: burn -> fill -> pause -> burn (burn starts after fill, fill starts after pause, pause starts after burn); no step of it could ever start",
      },
    ],
  },
  {
    name: "a step that waits for itself",
    text: edit({ 13: "    - { name: pause, wait: 30s, startAfter: [pause] }" }),
    issues: [{ path: "steps", line: 13, message: "startAfter forms a cycle: pause -> pause (pause starts after pause); no step of it could ever start" }],
  },
  {
    name: "both fault and wait",
    text: edit({ 13: "    - { name: pause, wait: 30s, fault: cpu-burn, startAfter: [burn] }" }),
    issues: [
      {
        path: "steps[1]",
        line: 13,
        message: "has both fault and wait; a step either injects a fault (fault, target, params, duration) or waits (wait: 30s); split it into two steps",
      },
    ],
  },
  {
    name: "fault fields on a wait step",
    text: edit({ 13: "    - { name: pause, wait: 30s, target: web, startAfter: [burn] }" }),
    issues: [{ path: "steps[1].target", line: 13, message: "is not allowed on a wait step (its length is wait: 30s); remove it, or make this a fault step" }],
  },
  {
    name: "mode with two keys",
    text: edit({ 10: "      mode: { count: 1, percent: 30 }" }),
    issues: [{ path: "targets.web.mode", line: 10, message: "has count and percent; give exactly one of count, percent, all" }],
  },
  {
    name: "percent 150",
    text: edit({ 10: "      mode: { percent: 150 }" }),
    issues: [{ path: "targets.web.mode.percent", line: 10, message: "150 is above the maximum 100" }],
  },
  {
    name: "count 0",
    text: edit({ 10: "      mode: { count: 0 }" }),
    issues: [{ path: "targets.web.mode.count", line: 10, message: "0 is below the minimum 1" }],
  },
  {
    name: "empty selector",
    text: edit({ 9: "      selector: {}" }),
    issues: [
      {
        path: "targets.web.selector",
        line: 9,
        message: "is empty; give at least one of labels, facts, agentIds, aws (an empty selector would match every host)",
      },
    ],
  },
  {
    name: "label value that YAML reads as a number",
    text: edit({ 9: "      selector: { labels: { port: 8080 } }" }),
    issues: [{ path: "targets.web.selector.labels.port", line: 9, message: '8080 is a number, but label values are strings: quote it ("8080")' }],
  },
  {
    name: "bad hours",
    text: edit({ 17: '  guardrails: { window: { days: mon-fri, hours: "16:00-10:00" } }' }),
    issues: [
      {
        path: "guardrails.window.hours",
        line: 17,
        message:
          '"16:00-10:00" ends before it starts; a window must start before it ends on the same day (for a window across midnight, use two windows: "22:00-24:00" and "00:00-06:00")',
      },
    ],
  },
  {
    name: "bad days",
    text: edit({ 17: '  guardrails: { window: { days: mon-fry, hours: "10:00-16:00" } }' }),
    issues: [
      {
        path: "guardrails.window.days",
        line: 17,
        message: '"mon-fry" is not a day range; use day names (mon, tue, wed, thu, fri, sat, sun), ranges such as mon-fri, or lists such as sat,sun',
      },
    ],
  },
  {
    name: "bad time zone",
    text: edit({ 17: '  guardrails: { window: { days: mon-fri, hours: "10:00-16:00", tz: Europe/Berln } }' }),
    issues: [
      {
        path: "guardrails.window.tz",
        line: 17,
        message: '"Europe/Berln" is not a known IANA time zone; use a name such as UTC, Europe/Berlin or America/New_York',
      },
    ],
  },
  {
    name: "bad blackout date",
    text: edit({ 17: '  guardrails: { blackoutDates: ["2026-12-24", "2026-02-30"] }' }),
    issues: [{ path: "guardrails.blackoutDates[1]", line: 17, message: '"2026-02-30" is not a day of the calendar; use YYYY-MM-DD, e.g. "2026-12-24"' }],
  },
  {
    name: "window and windows together",
    text: edit({ 17: '  guardrails: { window: { days: sat, hours: "10:00-12:00" }, windows: [{ days: sun, hours: "10:00-12:00" }] }' }),
    issues: [{ path: "guardrails.windows", line: 17, message: "is given together with window; use either window (one window) or windows (a list), not both" }],
  },
  {
    name: "bad URL",
    text: edit({ 16: '    - { http: { url: "web/health" } }' }),
    issues: [
      { path: "stopConditions[0].http.url", line: 16, message: '"web/health" is not a URL; use an absolute http(s) URL such as "http://web.internal/health"' },
    ],
  },
  {
    name: "URL that is not http",
    text: edit({ 16: '    - { prometheus: { url: "ftp://prom:9090", query: "up == 0" } }' }),
    issues: [{ path: "stopConditions[0].prometheus.url", line: 16, message: '"ftp://prom:9090" uses ftp; only http and https URLs are allowed' }],
  },
  {
    name: "stop condition with two kinds",
    text: edit({ 16: '    - { http: { url: "http://web/health" }, alert: { matchLabels: { severity: page } } }' }),
    issues: [
      {
        path: "stopConditions[0]",
        line: 16,
        message: "has http and alert; each entry holds exactly one of http, prometheus, alert, cloudwatchAlarm: split it into 2 entries",
      },
    ],
  },
  {
    name: "expectStatus out of range",
    text: edit({ 16: '    - { http: { url: "http://web/health", expectStatus: [200, 700] } }' }),
    issues: [{ path: "stopConditions[0].http.expectStatus[1]", line: 16, message: "700 is above the maximum 599" }],
  },
  {
    name: "YAML syntax error (line and column)",
    text: edit({ 12: "    - { name: burn, fault: cpu-burn, target: web, params: { load: 80 }, duration: 2m" }),
    issues: [
      { path: "steps[0]", line: 13, column: 5, message: "YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }" },
    ],
  },
  {
    name: "tab indentation",
    text: edit({ 4: "\tname: demo" }),
    issues: [{ path: "(top level)", line: 4, column: 1, message: "YAML syntax error: Tabs are not allowed as indentation" }],
  },
  {
    name: "duplicate key",
    text: edit({ 4: "  name: demo\n  name: other" }),
    issues: [{ path: "metadata.name", line: 5, message: "is given twice in this mapping (first on line 4); keep one" }],
  },
];

describe("parseExperiment: malformed specs", () => {
  it.each(CASES)("$name", ({ text, issues }) => {
    expect(issuesOf(text)).toEqual(issues);
  });

  it("the base spec of the table is valid", () => {
    expect(() => parseExperiment(BASE)).not.toThrow();
  });

  it("reports every issue at once, in line order", () => {
    const text = edit({
      1: "apiVersion: v1",
      10: "      mode: { count: 1, all: true }",
      12: "    - { name: burn, fault: cpu-burn, target: db, params: { load: 0 }, duration: 0s }",
      16: '    - { alert: { matchLabels: {} } }',
    });
    expect(issuesOf(text).map((i) => `${i.line}: ${i.path}`)).toEqual([
      "1: apiVersion",
      "10: targets.web.mode",
      "12: steps[0].target",
      "12: steps[0].params.load",
      "12: steps[0].duration",
      "16: stopConditions[0].alert.matchLabels",
    ]);
  });

  it("points block-style fields at the key's own line", () => {
    const text = `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: demo
spec:
  hypothesis: web stays up
  targets:
    web:
      selector:
        labels:
          app: web
      mode:
        count: 1
  steps:
    - name: burn
      fault: cpu-burn
      target: web
      params:
        load: 150
        cores: lots
      duration: 2m
`;
    expect(issuesOf(text)).toEqual([
      { path: "steps[0].params.load", line: 19, message: "150 is above the maximum 100" },
      { path: "steps[0].params.cores", line: 20, message: '"lots" is not valid; use a whole number of cores >= 1, or "all"' },
    ]);
  });

  it("says so when the file is empty or not a mapping", () => {
    expect(issuesOf("")).toEqual([
      {
        path: "(file)",
        line: 1,
        message: "the file is empty; an experiment starts with apiVersion: firedrill/v1 and kind: Experiment (see docs/spec/experiment.md)",
      },
    ]);
    expect(issuesOf("- a\n- b\n")).toEqual([
      { path: "(top level)", line: 1, message: "a list is not a mapping; expected a mapping with: apiVersion, kind, metadata, spec" },
    ]);
  });

  it("throws a named error whose message lists each issue as file:line: path: message", () => {
    let error: unknown;
    try {
      parseExperiment(edit({ 1: "apiVersion: firedrill/v2", 12: STEP0("params: { load: 150 }, duration: 2m") }), "game-day.yaml");
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ExperimentSpecError);
    const e = error as ExperimentSpecError;
    expect(e.name).toBe("ExperimentSpecError");
    expect(e.file).toBe("game-day.yaml");
    expect(e.message).toBe(
      [
        "game-day.yaml is not a valid experiment (2 problems):",
        '  game-day.yaml:1: apiVersion: "firedrill/v2" is not allowed; use "firedrill/v1"',
        "  game-day.yaml:12: steps[0].params.load: 150 is above the maximum 100",
      ].join("\n"),
    );
    expect(formatSpecIssue({ path: "", line: 3, column: 7, message: "YAML syntax error: x" }, "f.yaml")).toBe("f.yaml:3:7: YAML syntax error: x");
  });
});

describe("parseExperiment: valid specs", () => {
  it("fills every default into the model", () => {
    const text = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: checkout-degrades-gracefully }
spec:
  hypothesis: "Killing recommendations leaves checkout at >= 99% success"
  targets:
    web: { selector: { labels: { app: web }, facts: { osPlatform: linux, hostname: "web-*" } }, mode: { count: 1 } }
    fleet: { selector: { agentIds: [agt_1, agt_2] }, mode: { percent: 30 } }
    all: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 80 }, duration: 2m }
    - { name: pause, wait: 30s, startAfter: [burn] }
    - { name: fill, fault: disk-fill, target: fleet, params: { path: /var/tmp, size: 1GiB }, duration: 1h30m, startAfter: [pause] }
  stopConditions:
    - { http: { url: "http://web/health" } }
    - { http: { url: "https://web/ready", method: HEAD, expectStatus: [200, 204], timeoutMs: 500, failuresToAbort: 2, intervalMs: 250 } }
    - { prometheus: { url: "http://prom:9090", query: "job:errors:ratio1m > 0.01" } }
    - { alert: { matchLabels: { severity: page } } }
  guardrails:
    maxTargets: 5
    maxPercent: 30
    windows:
      - { days: mon-fri, hours: "10:00-16:00", tz: Europe/Berlin }
      - { days: [sat, sun], hours: "12:00-13:30" }
    blackoutDates: ["2026-12-24"]
    optInLabel: "gameday=q4"
    excludeLabels: ["tier=db", "pci"]
    maxDuration: 2h
`;
    const expected: Experiment = {
      apiVersion: "firedrill/v1",
      kind: "Experiment",
      metadata: { name: "checkout-degrades-gracefully", labels: {}, description: "" },
      spec: {
        hypothesis: "Killing recommendations leaves checkout at >= 99% success",
        targets: {
          web: { selector: { labels: { app: "web" }, facts: { osPlatform: "linux", hostname: "web-*" } }, mode: { count: 1 } },
          fleet: { selector: { agentIds: ["agt_1", "agt_2"] }, mode: { percent: 30 } },
          all: { selector: { labels: { app: "web" } }, mode: { all: true } },
        },
        steps: [
          { type: "fault", name: "burn", fault: "cpu-burn", target: "web", params: { load: 80 }, durationMs: 120_000, startAfter: [] },
          { type: "wait", name: "pause", durationMs: 30_000, startAfter: ["burn"] },
          {
            type: "fault",
            name: "fill",
            fault: "disk-fill",
            target: "fleet",
            params: { path: "/var/tmp", size: "1GiB" },
            durationMs: 5_400_000,
            startAfter: ["pause"],
          },
        ],
        stopConditions: [
          {
            kind: "http",
            http: { url: "http://web/health", method: "GET", expectStatus: [200], timeoutMs: 1000, failuresToAbort: 3, intervalMs: 1000 },
          },
          {
            kind: "http",
            http: { url: "https://web/ready", method: "HEAD", expectStatus: [200, 204], timeoutMs: 500, failuresToAbort: 2, intervalMs: 250 },
          },
          { kind: "prometheus", prometheus: { url: "http://prom:9090", query: "job:errors:ratio1m > 0.01", intervalMs: 5000, timeoutMs: 3000 } },
          { kind: "alert", alert: { matchLabels: { severity: "page" } } },
        ],
        guardrails: {
          optInLabel: "gameday=q4",
          excludeLabels: ["tier=db", "pci"],
          maxTargets: 5,
          maxPercent: 30,
          windows: [
            { days: ["mon", "tue", "wed", "thu", "fri"], startMinute: 600, endMinute: 960, tz: "Europe/Berlin" },
            { days: ["sat", "sun"], startMinute: 720, endMinute: 810, tz: "UTC" },
          ],
          blackoutDates: ["2026-12-24"],
          maxDurationMs: 7_200_000,
        },
      },
    };
    expect(parseExperiment(text)).toEqual(expected);
  });

  it("accepts a single window, day lists with ranges, and 24:00 as an end", () => {
    const exp = parseExperiment(edit({ 17: '  guardrails: { window: { days: ["sat", "mon-wed"], hours: "20:00-24:00" } }' }));
    expect(exp.spec.guardrails.windows).toEqual([{ days: ["mon", "tue", "wed", "sat"], startMinute: 1200, endMinute: 1440, tz: "UTC" }]);
    expect(exp.spec.guardrails).not.toHaveProperty("blackoutDates");
  });

  it("parses every file in examples/", () => {
    const dir = join(ROOT, "examples");
    const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
    expect(files).toEqual(expect.arrayContaining(["cpu-burn-web.yaml", "network-blackhole.yaml", "full-game-day.yaml"]));
    for (const file of files) {
      const exp = parseExperiment(readFileSync(join(dir, file), "utf8"), `examples/${file}`);
      expect(exp.spec.steps.length).toBeGreaterThan(0);
    }
  });

  it("parses aws-network-disrupt with its params and ec2-reboot without a duration", () => {
    const exp = parseExperiment(readFileSync(join(ROOT, "examples", "aws-az-outage.yaml"), "utf8"), "examples/aws-az-outage.yaml");
    expect(exp.spec.steps.map((s) => (s.type === "fault" ? [s.fault, s.durationMs, s.params] : s.type))).toEqual([
      ["aws-network-disrupt", 600_000, { availabilityZone: "eu-west-1a", vpcId: "vpc-0abc123def4567890", maxSubnets: 3 }],
      ["ec2-reboot", 0, {}],
    ]);
  });

  it("parses AWS targets, ec2-terminate without a duration, ec2-stop, the cloudwatchAlarm condition and the AWS guardrails", () => {
    const exp = parseExperiment(`apiVersion: firedrill/v1
kind: Experiment
metadata: { name: aws }
spec:
  hypothesis: the group heals
  targets:
    fleet:
      selector:
        labels: { app: web }
        aws:
          region: eu-west-1
          tags: { app: web, "team": checkout }
          autoScalingGroups: [web-asg, web-asg-canary]
          instanceIds: [i-0abc123def4567890, i-12345678]
          filters: [{ name: instance-type, values: [t3.micro, t3.small] }]
      mode: { percent: 30 }
  steps:
    - { name: burn, fault: cpu-burn, target: fleet, params: { load: 50 }, duration: 1m }
    - { name: kill, fault: ec2-terminate, target: fleet, startAfter: [burn] }
    - { name: nap, fault: ec2-stop, target: fleet, duration: 5m, startAfter: [kill] }
  stopConditions:
    - { cloudwatchAlarm: { names: [checkout-5xx, checkout-health] } }
    - { cloudwatchAlarm: { names: [db-cpu], region: us-east-1, intervalMs: 10000 } }
  guardrails: { optInTag: "chaos=yes", excludeTags: [pci, "tier=db"], minHealthy: 2, maxPercentOfGroup: 25, minTimeBetweenTerminations: 2h30m }
`);
    expect(exp.spec.targets["fleet"]!.selector).toEqual({
      labels: { app: "web" },
      aws: {
        region: "eu-west-1",
        tags: { app: "web", team: "checkout" },
        autoScalingGroups: ["web-asg", "web-asg-canary"],
        instanceIds: ["i-0abc123def4567890", "i-12345678"],
        filters: [{ name: "instance-type", values: ["t3.micro", "t3.small"] }],
      },
    });
    expect(exp.spec.steps.map((s) => [s.name, s.type === "fault" ? s.fault : s.type, s.durationMs])).toEqual([
      ["burn", "cpu-burn", 60_000],
      ["kill", "ec2-terminate", 0],
      ["nap", "ec2-stop", 300_000],
    ]);
    expect(exp.spec.steps[1]).toMatchObject({ params: {} });
    expect(exp.spec.stopConditions).toEqual([
      { kind: "cloudwatchAlarm", cloudwatchAlarm: { names: ["checkout-5xx", "checkout-health"], intervalMs: 5000 } },
      { kind: "cloudwatchAlarm", cloudwatchAlarm: { names: ["db-cpu"], region: "us-east-1", intervalMs: 10_000 } },
    ]);
    expect(exp.spec.guardrails).toEqual({
      optInTag: "chaos=yes",
      excludeTags: ["pci", "tier=db"],
      minHealthy: 2,
      maxPercentOfGroup: 25,
      minTimeBetweenTerminationsMs: 9_000_000,
    });
  });

  it("examples/aws-asg-terminate.yaml targets an ASG by name and tags, with one ec2-terminate step, a cloudwatchAlarm stop condition and AWS guardrails", () => {
    const exp = parseExperiment(readFileSync(join(ROOT, "examples/aws-asg-terminate.yaml"), "utf8"));
    expect(exp.spec.targets["web-fleet"]!.selector.aws).toEqual({ region: "eu-west-1", autoScalingGroups: ["web-asg"], tags: { app: "web", env: "prod" } });
    expect(exp.spec.steps).toEqual([{ type: "fault", name: "kill-one", fault: "ec2-terminate", target: "web-fleet", params: {}, durationMs: 600_000, startAfter: [] }]);
    expect(exp.spec.stopConditions.map((c) => c.kind)).toEqual(["cloudwatchAlarm"]);
    expect(exp.spec.guardrails).toMatchObject({ optInTag: "firedrill:opt-in=true", minHealthy: 2, maxPercentOfGroup: 34, minTimeBetweenTerminationsMs: 14_400_000 });
  });

  it("examples/full-game-day.yaml has a DAG with a wait step, all three stop condition kinds and a windowed guardrail", () => {
    const exp = parseExperiment(readFileSync(join(ROOT, "examples/full-game-day.yaml"), "utf8"));
    expect(exp.spec.steps.some((s) => s.type === "wait")).toBe(true);
    expect(exp.spec.steps.some((s) => s.startAfter.length > 0)).toBe(true);
    expect(new Set(exp.spec.stopConditions.map((c) => c.kind))).toEqual(new Set(["http", "prometheus", "alert"]));
    expect(exp.spec.guardrails.windows?.[0]?.tz).toBe("Europe/Berlin");
  });
});
