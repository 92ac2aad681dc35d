/**
 * JSON Schemas of the experiment file and the policy file, generated from the zod schemas, for
 * editors (yaml-language-server) and other tools. The committed copies in `schemas/` are
 * regenerated with `pnpm schema`; a test fails when they are stale.
 */
import { z } from "zod";
import { experimentSchema, policySchema } from "./spec-schema.js";

/** Schema file names under `schemas/`, with their generators. */
export const SCHEMA_FILES = {
  "experiment.schema.json": experimentJsonSchema,
  "policy.schema.json": policyJsonSchema,
} as const;

function generate(schema: z.ZodType, head: { $id: string; title: string; description: string }): Record<string, unknown> {
  const body = z.toJSONSchema(schema, { io: "input", target: "draft-2020-12" }) as Record<string, unknown>;
  const { $schema, ...rest } = body;
  return { $schema, ...head, ...rest };
}

/** The JSON Schema of an experiment file (`apiVersion: firedrill/v1`, `kind: Experiment`). */
export function experimentJsonSchema(): Record<string, unknown> {
  return generate(experimentSchema, {
    $id: "urn:firedrill:schema:experiment:v1",
    title: "firedrill experiment",
    description:
      "A firedrill chaos experiment: target groups, fault and wait steps (a DAG), stop conditions and guardrails. Reference: docs/spec/experiment.md. Cross-field rules (unique step names, known targets, no startAfter cycles, fault parameters) are checked by `firedrill validate`.",
  });
}

/** The JSON Schema of the server's guardrail policy file. */
export function policyJsonSchema(): Record<string, unknown> {
  return generate(policySchema, {
    $id: "urn:firedrill:schema:policy:v1",
    title: "firedrill guardrail policy",
    description: "The firedrill server's guardrail policy (firedrill server --policy FILE). Reference: docs/guardrails.md.",
  });
}

/** The text of a schema file as committed: indented JSON and a final newline. */
export function renderJsonSchema(schema: Record<string, unknown>): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}
