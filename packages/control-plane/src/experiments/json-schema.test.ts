import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { experimentJsonSchema, policyJsonSchema, renderJsonSchema, SCHEMA_FILES } from "./json-schema.js";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");

describe("JSON Schema", () => {
  it.each(Object.entries(SCHEMA_FILES))("schemas/%s is up to date (regenerate with: pnpm schema)", (file, generate) => {
    const committed = readFileSync(join(ROOT, "schemas", file), "utf8");
    const fresh = renderJsonSchema(generate());
    if (committed !== fresh) {
      throw new Error(`schemas/${file} is stale: the zod schema changed since it was generated; run \`pnpm schema\` and commit the result`);
    }
  });

  it("has an $id, a title and field descriptions", () => {
    const schema = experimentJsonSchema();
    expect(schema["$schema"]).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(schema["$id"]).toBe("urn:firedrill:schema:experiment:v1");
    expect(schema["title"]).toBe("firedrill experiment");
    const spec = (schema["properties"] as Record<string, { properties: Record<string, { description?: string }> }>)["spec"]!;
    expect(spec.properties["hypothesis"]?.description).toMatch(/stay true/);
    expect(policyJsonSchema()["$id"]).toBe("urn:firedrill:schema:policy:v1");
  });

  it("accepts every example and refuses shape errors the way the parser does", () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    const validate = ajv.compile(experimentJsonSchema());
    const dir = join(ROOT, "examples");
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml"))) {
      const ok = validate(parse(readFileSync(join(dir, file), "utf8")));
      expect(ok, `${file}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
    const bad = parse(readFileSync(join(dir, "cpu-burn-web.yaml"), "utf8")) as { spec: { steps: Record<string, unknown>[]; targets: { web: { mode: unknown } } } };
    bad.spec.steps[0]!["retries"] = 3;
    bad.spec.steps[1]!["wait"] = "30s";
    bad.spec.targets.web.mode = { count: 1, percent: 20 };
    expect(validate(bad)).toBe(false);
    const paths = new Set(validate.errors?.map((e) => e.instancePath));
    expect(paths).toContain("/spec/steps/0");
    expect(paths).toContain("/spec/steps/1");
    expect(paths).toContain("/spec/targets/web/mode");
  });
});
