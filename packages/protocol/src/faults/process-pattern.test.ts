import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { validateFaultRequest } from "../fault-kinds.js";
import { InvalidFaultRequestError } from "../params.js";
import { PATTERN_MAX_LENGTH, ProcessPatternError, compileProcessPattern } from "./process-pattern.js";

const message = (pattern: string) => {
  try {
    compileProcessPattern(pattern);
  } catch (err) {
    if (err instanceof ProcessPatternError) return err.message;
    throw err;
  }
  return undefined;
};

describe("process patterns (RE2)", () => {
  it("match like RegExp.prototype.test: unanchored, on the whole text given", () => {
    const p = compileProcessPattern("nginx: worker");
    expect(p.test("nginx: worker process")).toBe(true);
    expect(p.test("nginx: master process")).toBe(false);
    expect(compileProcessPattern("^/usr/bin/java .*-Dapp=billing( |$)").test("/usr/bin/java -Xmx1g -Dapp=billing")).toBe(true);
    expect(compileProcessPattern("(?i)POSTGRES").test("postgres: checkpointer")).toBe(true);
    expect(compileProcessPattern("(?P<w>work)er|(?<x>x)").test("worker")).toBe(true);
  });

  it.each([
    ["(a)\\1", "backreferences (\\1) are not supported"],
    ["(?<n>a)\\k<n>", "named backreferences (\\k<name>) are not supported"],
    ["java(?=.*prod)", "lookahead ((?=…), (?!…)) is not supported"],
    ["java(?!.*test)", "lookahead ((?=…), (?!…)) is not supported"],
    ["(?<=x)java", "lookbehind ((?<=…), (?<!…)) is not supported"],
    ["(?>a+)b", "atomic groups ((?>…)) are not supported"],
    ["a++", "possessive quantifiers (a*+, a++) are not supported"],
  ])("refuses %s: %s, and says RE2 has no backtracking", (pattern, what) => {
    expect(message(pattern)).toBe(
      `${what}: patterns run on RE2, which matches in linear time and has no backtracking constructs; rewrite it without them (see https://github.com/google/re2/wiki/Syntax)`,
    );
  });

  it("refuses invalid syntax, long patterns and huge programs with what to change", () => {
    expect(message("worker(")).toBe("is not a valid RE2 regular expression: missing closing ): `worker(` (see https://github.com/google/re2/wiki/Syntax)");
    expect(message("a{1001}")).toMatch(/^is not a valid RE2 regular expression: invalid repeat count/);
    expect(message("a".repeat(PATTERN_MAX_LENGTH))).toBeUndefined();
    expect(message("a".repeat(PATTERN_MAX_LENGTH + 1))).toBe(
      "is 257 characters long, more than the 256 allowed; match a distinctive part of the command line, or select by name",
    );
    expect(message("(.|a|b){1000}z")).toMatch(/^compiles to \d+ RE2 instructions, more than the 500 allowed/);
  });

  it("the control plane's validation uses the same engine: the same pattern is refused with the field", () => {
    const attempt = () => validateFaultRequest({ kind: "process-kill", params: { pattern: "x(?=y)" }, duration: "30s" });
    expect(attempt).toThrow(InvalidFaultRequestError);
    expect(attempt).toThrow('params.pattern: "x(?=y)" lookahead ((?=…), (?!…)) is not supported');
    expect(() => validateFaultRequest({ kind: "process-stop", params: { pattern: "^(a+)+$" }, duration: "30s" })).not.toThrow();
  });

  it("catastrophic backtracking patterns run in linear time on long inputs", () => {
    const inputs = ["a".repeat(4096), `${"a".repeat(19)}${"b".repeat(4077)}`, `${"x".repeat(4095)}!`];
    for (const source of ["^(a+)+$", "^([^X]+)+X", "(a|aa)+$", "(.*a){20}", "^(\\w+\\s?)*$"]) {
      const pattern = compileProcessPattern(source);
      for (const text of inputs) {
        const t0 = performance.now();
        pattern.test(text);
        // Bounded wait, not a benchmark: a backtracking engine takes years here.
        expect(performance.now() - t0, `${source} on ${text.slice(0, 8)}…`).toBeLessThan(1000);
      }
    }
  });
});
