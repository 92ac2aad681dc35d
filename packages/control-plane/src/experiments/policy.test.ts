import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_POLICY, GuardrailPolicyError, loadPolicy, parsePolicy } from "./policy.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function issuesOf(text: string) {
  try {
    parsePolicy(text, "policy.yaml");
  } catch (err) {
    if (err instanceof GuardrailPolicyError) return err.issues;
    throw err;
  }
  throw new Error("expected the policy to be refused");
}

describe("policy files", () => {
  it("parse into guardrails, with the default opt-in label", () => {
    const policy = parsePolicy(`# firedrill server policy
maxConcurrentRuns: 2
maxTargets: 10
maxPercent: 25
excludeLabels: ["tier=db", pci]
windows:
  - { days: mon-thu, hours: "09:00-17:00", tz: Europe/Berlin }
blackoutDates: ["2026-12-24"]
maxDuration: 2h
`);
    expect(policy).toEqual({
      optInLabel: "firedrill:opt-in=true",
      optInTag: "firedrill:opt-in=true",
      excludeLabels: ["tier=db", "pci"],
      maxTargets: 10,
      maxPercent: 25,
      windows: [{ days: ["mon", "tue", "wed", "thu"], startMinute: 540, endMinute: 1020, tz: "Europe/Berlin" }],
      blackoutDates: ["2026-12-24"],
      maxDurationMs: 7_200_000,
      maxConcurrentRuns: 2,
    });
    expect(parsePolicy("optInLabel: chaos=yes\n").optInLabel).toBe("chaos=yes");
    expect(parsePolicy("optInTag: chaos=yes\nminHealthy: 2\nminTimeBetweenTerminations: 24h\n")).toMatchObject({
      optInTag: "chaos=yes",
      minHealthy: 2,
      minTimeBetweenTerminationsMs: 86_400_000,
    });
    expect(parsePolicy("")).toEqual(DEFAULT_POLICY);
  });

  it("are strict, with every issue's path and line", () => {
    expect(
      issuesOf(`maxConcurrentRuns: 0
maxTarget: 3
window: { days: mon-fri, hours: "9:00-17:00" }
optInLabel: opted-in
`),
    ).toEqual([
      { path: "maxConcurrentRuns", line: 1, message: "0 is below the minimum 1" },
      {
        path: "maxTarget",
        line: 2,
        message:
          'unknown field "maxTarget"; allowed: optInLabel, excludeLabels, maxTargets, maxPercent, window, windows, blackoutDates, maxDuration, optInTag, excludeTags, minHealthy, maxPercentOfGroup, minTimeBetweenTerminations, maxConcurrentRuns',
      },
      { path: "window.hours", line: 3, message: '"9:00-17:00" is not an hour range; use HH:MM-HH:MM in 24-hour time, e.g. "10:00-16:00"' },
      { path: "optInLabel", line: 4, message: '"opted-in" is not a label; use key=value, e.g. "firedrill:opt-in=true"' },
    ]);
  });

  it("loadPolicy reads a file, and says plainly when it is missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "firedrill-policy-"));
    dirs.push(dir);
    const file = join(dir, "policy.yaml");
    writeFileSync(file, "maxConcurrentRuns: 1\n");
    expect(loadPolicy(file)).toEqual({ optInLabel: "firedrill:opt-in=true", optInTag: "firedrill:opt-in=true", maxConcurrentRuns: 1 });
    expect(() => loadPolicy(join(dir, "nope.yaml"))).toThrow(/cannot read the guardrail policy file .*nope\.yaml: it does not exist; fix the path given to --policy/);
    writeFileSync(file, "maxTargets: many\n");
    expect(() => loadPolicy(file)).toThrow(`${file} is not a valid guardrail policy (1 problem):\n  ${file}:1: maxTargets: "many" is not a number`);
  });
});
