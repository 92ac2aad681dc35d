/**
 * Writes the JSON Schemas of the experiment and policy files to schemas/, generated from the zod
 * schemas the parser uses. Run after changing the spec:
 *
 *   pnpm schema
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { renderJsonSchema, SCHEMA_FILES } from "@firedrill/control-plane";

const dir = join(resolve(import.meta.dirname, ".."), "schemas");
mkdirSync(dir, { recursive: true });
for (const [file, generate] of Object.entries(SCHEMA_FILES)) {
  writeFileSync(join(dir, file), renderJsonSchema(generate()));
  process.stdout.write(`wrote schemas/${file}\n`);
}
