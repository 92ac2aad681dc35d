/**
 * The server's guardrail policy file (`firedrill server --policy FILE`): YAML with the fields of an
 * experiment's `spec.guardrails` plus `maxConcurrentRuns`. Where both set a rule, the stricter wins
 * (see guardrails.ts).
 */
import { readFileSync } from "node:fs";
import { DEFAULT_OPT_IN_TAG } from "../aws/rules.js";
import type { AwsGuardrails } from "../aws/types.js";
import type { MergedGuardrails } from "./guardrails.js";
import { checkGuardrailFields, toGuardrailsSpec } from "./spec.js";
import { policySchema, specErrorMap } from "./spec-schema.js";
import type { GuardrailsSpec, SpecIssue } from "./types.js";
import { formatSpecIssue, fromZodIssues, readYaml, toSpecIssues } from "./yaml-source.js";

/** The opt-in label required when the policy names none. */
export const DEFAULT_OPT_IN_LABEL = "firedrill:opt-in=true";

export { DEFAULT_OPT_IN_TAG } from "../aws/rules.js";

/**
 * The policy in force without a policy file: targets must carry {@link DEFAULT_OPT_IN_LABEL}, EC2
 * instances {@link DEFAULT_OPT_IN_TAG} (and Auto Scaling groups keep at least 1 InService instance,
 * the merge's default).
 */
export const DEFAULT_POLICY: Readonly<GuardrailsSpec> = Object.freeze({ optInLabel: DEFAULT_OPT_IN_LABEL, optInTag: DEFAULT_OPT_IN_TAG });

/**
 * The AWS guardrails of merged guardrails (see mergeGuardrails), as the AWS service takes them:
 * the first opt-in tag (the policy's; {@link DEFAULT_OPT_IN_TAG} when none is set) and the others
 * as further required tags.
 */
export function awsGuardrailsFrom(merged: MergedGuardrails): AwsGuardrails {
  const [optInTag = DEFAULT_OPT_IN_TAG, ...requiredTags] = merged.optInTags;
  return {
    optInTag,
    excludeTags: [...merged.excludeTags],
    minHealthy: merged.minHealthy,
    ...(requiredTags.length > 0 ? { requiredTags } : {}),
    ...(merged.maxPercentOfGroup !== undefined ? { maxPercentOfGroup: merged.maxPercentOfGroup } : {}),
    ...(merged.minTimeBetweenTerminationsMs !== undefined ? { minTimeBetweenTerminationsMs: merged.minTimeBetweenTerminationsMs } : {}),
  };
}

/** Thrown when the policy file cannot be read or is invalid: `issues` lists every problem. */
export class GuardrailPolicyError extends Error {
  override readonly name = "GuardrailPolicyError";
  constructor(
    readonly file: string,
    readonly issues: SpecIssue[],
    options?: { cause?: unknown; message?: string },
  ) {
    super(
      options?.message ??
        `${file} is not a valid guardrail policy (${issues.length} ${issues.length === 1 ? "problem" : "problems"}):\n${issues
          .map((i) => `  ${formatSpecIssue(i, file)}`)
          .join("\n")}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
  }
}

/**
 * Parses policy YAML. The opt-in label defaults to {@link DEFAULT_OPT_IN_LABEL}, the opt-in tag to
 * {@link DEFAULT_OPT_IN_TAG}.
 * Thrown when invalid: {@link GuardrailPolicyError} with every issue's path and line.
 */
export function parsePolicy(text: string, file = "<policy>"): GuardrailsSpec {
  const source = readYaml(text);
  if (source.syntaxIssues.length > 0) throw new GuardrailPolicyError(file, source.syntaxIssues);
  // An empty file is the default policy.
  const data = source.data ?? {};
  const result = policySchema.safeParse(data, { error: specErrorMap, reportInput: true });
  const issues = [...(result.success ? [] : fromZodIssues(result.error.issues)), ...checkGuardrailFields(data, [])];
  if (issues.length > 0 || !result.success) throw new GuardrailPolicyError(file, toSpecIssues(source, issues));
  const policy = toGuardrailsSpec(result.data);
  policy.optInLabel ??= DEFAULT_OPT_IN_LABEL;
  policy.optInTag ??= DEFAULT_OPT_IN_TAG;
  return policy;
}

/**
 * Reads and parses the policy file.
 * Thrown when the file cannot be read or is invalid: {@link GuardrailPolicyError}.
 */
export function loadPolicy(file: string): GuardrailsSpec {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "it does not exist" : (err as Error).message;
    throw new GuardrailPolicyError(file, [], {
      cause: err,
      message: `cannot read the guardrail policy file ${file}: ${reason}; fix the path given to --policy, or leave it out for the default policy (opt-in label ${DEFAULT_OPT_IN_LABEL})`,
    });
  }
  return parsePolicy(text, file);
}
