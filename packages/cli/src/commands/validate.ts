/** `firedrill validate`: check an experiment file locally, without a control plane. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { CommanderError } from "commander";
import { countProblems, ExperimentSpecError, formatSpecIssue, parseExperiment } from "@firedrill/control-plane";
import type { Experiment, SpecIssue } from "@firedrill/control-plane";
import { callerPath } from "../caller-path.js";
import type { CommandContext } from "../context.js";
import { printJson } from "../context.js";
import { CliError } from "../errors.js";

/** The result of validating one file, as `--json` prints it. */
export type ValidateResult =
  | { file: string; valid: true; name: string; targets: number; steps: number; stopConditions: number }
  | { file: string; valid: false; issues: SpecIssue[] };

/** Validates experiment text. */
export function validateExperimentText(text: string, file: string): ValidateResult {
  let experiment: Experiment;
  try {
    experiment = parseExperiment(text, file);
  } catch (err) {
    if (err instanceof ExperimentSpecError) return { file, valid: false, issues: err.issues };
    throw err;
  }
  return {
    file,
    valid: true,
    name: experiment.metadata.name,
    targets: Object.keys(experiment.spec.targets).length,
    steps: experiment.spec.steps.length,
    stopConditions: experiment.spec.stopConditions.length,
  };
}

const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? "" : "s"}`;

/** Registers `validate`. */
export function registerValidateCommand(program: Command, ctx: CommandContext): void {
  program
    .command("validate")
    .description("check an experiment file (no control plane needed): every problem with its line, path and what is allowed")
    .argument("<file>", "the experiment YAML file", callerPath)
    .option("--json", "print the result as JSON")
    .action((file: string, options: { json?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const reason = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : (err as Error).message;
        throw new CliError(`cannot read ${file}: ${reason}; give the path of an experiment YAML file (see examples/)`);
      }
      const result = validateExperimentText(text, file);
      if (options.json) printJson(ctx.io, result);
      else if (result.valid) {
        ctx.io.out(
          `${file} is a valid experiment: ${count(result.targets, "target")}, ${count(result.steps, "step")}, ${count(result.stopConditions, "stop condition")}\n`,
        );
      } else {
        for (const issue of result.issues) ctx.io.err(`${formatSpecIssue(issue, file)}\n`);
        ctx.io.err(`${file} is not a valid experiment: ${count(countProblems(result.issues), "problem")}\n`);
      }
      // Exit 1 without a second error line: the problems are printed above.
      if (!result.valid) throw new CommanderError(1, "firedrill.invalidExperiment", "");
    });
}
