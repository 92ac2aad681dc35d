/**
 * `firedrill plan` and `firedrill run` print the control plane's refusal of an experiment file
 * once: each problem on its own line as FILE:LINE: path: message (like `firedrill validate`), not
 * the API's one-line message and then the issues again.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess, useFakeApi } from "../testing/fake-api.js";

const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-experiment-errors-" });

/** The body the control plane answers for an invalid experiment (spec-pool.ts, parseExperimentForApi). */
const INVALID = {
  error: {
    code: "invalid_experiment",
    message:
      "invalid experiment: line 24: (top level): YAML syntax error: Implicit keys need to be on a single line; line 30: steps[0].params.load: 150 is above the maximum 100",
    issues: [
      { field: "(top level)", message: "YAML syntax error: Implicit keys need to be on a single line", line: 24 },
      { field: "steps[0].params.load", message: "150 is above the maximum 100", line: 30 },
      { field: "(file)", message: "and 3 more problems from line 31 on (only the first 50 are listed): fix these and check again" },
    ],
  },
};

function experimentFile(): string {
  const file = join(fake.dir, "exp.yaml");
  writeFileSync(file, "apiVersion: firedrill/v1\n");
  return file;
}

describe("plan and run print each problem of a refused experiment once", () => {
  for (const [command, path] of [
    ["plan", "/api/v1/plan"],
    ["run", "/api/v1/runs"],
  ] as const) {
    it(`${command}: FILE:LINE: path: message, one line per problem`, async () => {
      const file = experimentFile();
      fake.api.answer("POST", path, 400, INVALID);
      const result = await runCliInProcess(command, file);
      expect(result).toEqual({
        code: 1,
        out: "",
        err: [
          `error: ${file} is not a valid experiment (the control plane's check; \`firedrill validate ${file}\` checks it without one):`,
          `  ${file}:24: (top level): YAML syntax error: Implicit keys need to be on a single line`,
          `  ${file}:30: steps[0].params.load: 150 is above the maximum 100`,
          `  ${file}: (file): and 3 more problems from line 31 on (only the first 50 are listed): fix these and check again`,
          "",
        ].join("\n"),
      });
    });
  }

  it("names the file when it is over the size limit", async () => {
    const file = experimentFile();
    fake.api.answer("POST", "/api/v1/plan", 413, {
      error: {
        code: "experiment_too_large",
        message: "the experiment is 300 KiB (307200 bytes); an experiment may be at most 256 KiB (262144 bytes): split it into smaller experiments",
      },
    });
    const result = await runCliInProcess("plan", file);
    expect(result.code).toBe(1);
    expect(result.err).toBe(`error: ${file} is 300 KiB (307200 bytes); an experiment may be at most 256 KiB (262144 bytes): split it into smaller experiments\n`);
  });
});
