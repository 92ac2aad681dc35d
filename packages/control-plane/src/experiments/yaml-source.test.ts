/**
 * The limits of reading a YAML file (size, nodes, nesting, aliases, issues) and where problems are
 * reported: every hostile input ends in a named error with a line, never in an exception of the
 * yaml library, and the work stops at the limit.
 */
import { describe, expect, it } from "vitest";
import { HEAD, fill, maximalSpec } from "../test-support/spec-corpus.js";
import { ExperimentSpecError, parseExperiment } from "./spec.js";
import type { SpecIssue } from "./types.js";
import { countProblems, MAX_SPEC_BYTES, MAX_SPEC_ISSUES, readYaml } from "./yaml-source.js";

function issuesOf(text: string): SpecIssue[] {
  try {
    parseExperiment(text, "x.yaml");
  } catch (err) {
    if (err instanceof ExperimentSpecError) return err.issues;
    throw err;
  }
  throw new Error("the experiment was valid");
}

/** The 1-based line of the first `needle` in `text`. */
const lineOf = (text: string, needle: string) => text.slice(0, text.indexOf(needle)).split("\n").length;

describe("readYaml limits", () => {
  it("refuses a file over 256 KiB before reading it, saying its size and the limit", () => {
    const text = fill(HEAD, (i) => `  x${i}: 1\n`, MAX_SPEC_BYTES + 100);
    expect(issuesOf(text)).toEqual([
      {
        path: "(file)",
        message: `is 256.1 KiB (${Buffer.byteLength(text)} bytes); a file may be at most 256 KiB (262144 bytes): split the experiment into smaller ones, or move long text out of it`,
      },
    ]);
  });

  it("accepts an experiment at every limit at once (256 KiB, about 10,000 nodes, 200 steps, 50 target groups)", () => {
    const text = maximalSpec();
    expect(Buffer.byteLength(text)).toBeGreaterThan(MAX_SPEC_BYTES - 64);
    const experiment = parseExperiment(text);
    expect(experiment.spec.steps).toHaveLength(200);
    expect(Object.keys(experiment.spec.targets)).toHaveLength(50);
  });

  it("stops tokenizing at the node limit: 60,000 keys are refused at the line where the count passed 10,000", () => {
    const text = fill("a:\n", (i) => ` k${i}: 1\n`);
    const issues = issuesOf(text);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: "(file)", message: expect.stringMatching(/^has more than 10,000 YAML nodes/) });
    // Three node tokens per line (key, ":", value): the guard (2 x 10,000 + 64 tokens) trips near line 6,690, long before the end.
    expect(issues[0]!.line).toBeGreaterThan(6000);
    expect(issues[0]!.line).toBeLessThan(7000);
  });

  it("refuses nesting deeper than 32 levels where it happens, however deep it goes", () => {
    const nested = (n: number) => HEAD.replace("load: 50", `load: ${"[".repeat(n)}${"]".repeat(n)}`);
    expect(issuesOf(nested(25)).map((i) => i.message).join("\n")).not.toMatch(/deeper/);
    for (const n of [40, 100_000]) {
      expect(issuesOf(nested(n))).toEqual([
        { path: "(file)", line: 16, message: "nests lists and mappings deeper than 32 levels here; an experiment needs far fewer: flatten the structure" },
      ]);
    }
    expect(issuesOf(`${"- ".repeat(100_000)}x\n`)[0]).toMatchObject({ path: "(file)", line: 1, message: expect.stringMatching(/deeper than 32 levels/) });
  });

  it("reports the syntax errors, not the nesting, when broken indentation made the parser nest", () => {
    const text = `${HEAD}${Array.from({ length: 60 }, (_, i) => `${" ".repeat(4 + i)}k${i}: v`).join("\n")}\n`;
    const issues = issuesOf(text);
    expect(issues[0]).toMatchObject({ line: 17, message: expect.stringMatching(/^YAML syntax error/) });
    expect(issues.filter((i) => /deeper/.test(i.message))).toEqual([]);
    const few = issuesOf(`${HEAD}${Array.from({ length: 40 }, (_, i) => `${" ".repeat(4 + i)}k${i}: v`).join("\n")}\n`);
    expect(few.filter((i) => /deeper/.test(i.message))).toEqual([]);
    expect(few).toHaveLength(MAX_SPEC_ISSUES);
    expect(few.at(-1)).toMatchObject({
      path: "(file)",
      message: expect.stringMatching(/^reading stopped here, after the syntax errors above \(\d+ in all, the first 49 listed\): fix them and check again$/),
    });
  });

  it("counts aliases as what they expand to: a billion laughs is refused at the alias that passes 10,000 nodes", () => {
    const lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
    for (let i = 1; i < 8; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(", ")}]`);
    const issues = issuesOf(lines.join("\n"));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: "a4[0]", line: 5, message: expect.stringMatching(/^has more than 10,000 YAML nodes/) });
  });

  it("allows 100 aliases and refuses the 101st, with its line", () => {
    const aliases = (n: number) => `a: &a x\nb: [${Array.from({ length: n }, () => "*a").join(", ")}]\n`;
    expect(issuesOf(aliases(100)).map((i) => i.message).join("\n")).not.toMatch(/alias/);
    expect(issuesOf(aliases(101))).toEqual([
      { path: "b[100]", line: 2, message: "is alias number 101 (*a); a file may use at most 100 aliases: write the values out, or split the experiment" },
    ]);
  });

  it("names an alias without an anchor and an alias inside its own anchor, with their lines (no exception of the yaml library)", () => {
    const text = HEAD.replace("load: 50", "load: *nowhere");
    expect(issuesOf(text)).toEqual([
      {
        path: "steps[0].params.load",
        line: lineOf(text, "*nowhere"),
        message: "the alias *nowhere refers to no anchor: define &nowhere on a value before this line (an alias can only refer back to an anchor above it)",
      },
    ]);
    expect(issuesOf("a: 1\nb: &loop [1, *loop]\n")).toEqual([
      {
        path: "b[1]",
        line: 2,
        message: "the alias *loop is inside the value anchored as &loop (line 2), so that value would contain itself: refer to a value defined outside it",
      },
    ]);
  });

  it("finds duplicate keys with one index per mapping, each with the line of the first, and lists at most 50 problems", () => {
    const text = `${HEAD}${"  x: 1\n".repeat(61)}`;
    const issues = issuesOf(text);
    expect(issues).toHaveLength(MAX_SPEC_ISSUES + 1);
    expect(issues[0]).toEqual({ path: "x", line: 18, message: "is given twice in this mapping (first on line 17); keep one" });
    expect(issues.at(-1)).toEqual({
      path: "(file)",
      message: `and 10 more problems from line ${18 + 50} on (only the first 50 are listed): fix these and check again`,
      omitted: 10,
    });
    expect(countProblems(issues)).toBe(60);
  });

  it("says how many problems there are in all when it lists only the first 50", () => {
    let error: ExperimentSpecError | undefined;
    try {
      parseExperiment(`${HEAD}${Array.from({ length: 120 }, (_, i) => `  u${i}: 1\n`).join("")}`, "x.yaml");
    } catch (err) {
      error = err as ExperimentSpecError;
    }
    expect(error?.message.split("\n")[0]).toBe("x.yaml is not a valid experiment (120 problems):");
    expect(error?.issues).toHaveLength(51);
  });

  it("names the path so far of a syntax error, or (top level)", () => {
    expect(issuesOf(HEAD.replace("params: { load: 50 }", "params: { load: 50"))).toEqual([
      { path: "steps[0].params.load", line: 17, column: 1, message: "YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }" },
    ]);
    expect(issuesOf("apiVersion: firedrill/v1\nkind: Experiment\nmetadata:\n\tname: x\n")[0]).toMatchObject({ path: "(top level)", line: 4, column: 1 });
  });

  it("refuses a second document and keys that are lists", () => {
    const two = `${HEAD}---\n${HEAD}`;
    expect(issuesOf(two)).toEqual([
      {
        path: "(file)",
        line: lineOf(two, "---"),
        message: "a second YAML document starts here (after ---); an experiment file holds one document: remove the --- line, or split the file",
      },
    ]);
    expect(issuesOf("[a, b]: 1\n")).toEqual([{ path: "(top level)", line: 1, message: "has a list or mapping as a key; keys must be plain strings (e.g. name: value)" }]);
  });

  it("shortens long values in messages and refuses numbers YAML reads as infinite", () => {
    const issues = issuesOf(HEAD.replace("name: flood", `name: ${"n".repeat(200_000)}`));
    expect(issues[0]!.message).toMatch(/^"n{48}…" \(200000 characters\) is not a valid experiment name/);
    expect(issues[0]!.message.length).toBeLessThan(300);
    expect(issuesOf(HEAD.replace("load: 50", "load: 1e400"))).toEqual([
      { path: "steps[0].params.load", line: 16, message: ".inf is not a finite number; write the value as a plain number" },
    ]);
  });

  it("never throws for input, and locates every path of a readable file through its index", () => {
    const source = readYaml("a:\n  b: [1, 2, {c: 3}]\n  d: &x {e: 4}\nf: *x\n");
    expect(source.syntaxIssues).toEqual([]);
    expect(source.lineOf(["a", "b", 2, "c"])).toBe(2);
    expect(source.lineOf(["a", "d", "e"])).toBe(3);
    expect(source.lineOf(["f", "e"])).toBe(3);
    expect(source.lineOf(["a", "missing"])).toBe(1);
    for (const text of ["", "\u0000", "&", "*", "!!", "? ? ?", "- - - ", "{", "[", "'", '"', "%YAML 9\n---\n", "a: !!js/function x"]) {
      expect(() => readYaml(text)).not.toThrow();
    }
  });
});
