import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { callerDirectory, resolveCallerPath } from "./caller-path.js";

// A workspace root with the scripts as the repo's package.json writes them.
const ROOT = mkdtempSync(join(tmpdir(), "firedrill-caller-path-"));
const PACKAGE_JSON = join(ROOT, "package.json");
writeFileSync(
  PACKAGE_JSON,
  JSON.stringify({
    scripts: {
      firedrill: "exec node --conditions=@firedrill/source --import tsx packages/cli/src/bin.ts",
      "check-example": "node --import tsx packages/cli/src/bin.ts validate examples/x.yaml",
      test: "vitest run",
    },
  }),
);
const ENTRY = join(ROOT, "packages/cli/src/bin.ts");
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));

/** What pnpm sets for `pnpm <event> ARGS` typed in `initCwd` (npm_lifecycle_script carries ARGS appended). */
function pnpmEnv(event: string, initCwd: string, args: string): NodeJS.ProcessEnv {
  return { INIT_CWD: initCwd, npm_lifecycle_event: event, npm_package_json: PACKAGE_JSON, npm_lifecycle_script: `whatever ${args}` };
}

describe("callerDirectory", () => {
  it("is INIT_CWD in the process `pnpm firedrill ARGS` runs", () => {
    const env = pnpmEnv("firedrill", "/home/me/exps", "validate ../x.yaml");
    expect(callerDirectory({ env, cwd: ROOT, entry: ENTRY })).toBe("/home/me/exps");
    expect(resolveCallerPath("../x.yaml", { env, cwd: ROOT, entry: ENTRY })).toBe("/home/me/x.yaml");
    expect(resolveCallerPath("/abs/x.yaml", { env, cwd: ROOT, entry: ENTRY })).toBe("/abs/x.yaml");
  });

  it("is the working directory outside a package script", () => {
    expect(callerDirectory({ env: {}, cwd: ROOT, entry: ENTRY })).toBe(ROOT);
    expect(resolveCallerPath("x.yaml", { env: {}, cwd: ROOT, entry: ENTRY })).toBe("x.yaml");
  });

  it("is the working directory in a process another script started (pnpm test → vitest → the CLI)", () => {
    const env = pnpmEnv("test", join(ROOT, "packages/cli"), "");
    expect(callerDirectory({ env, cwd: ROOT, entry: ENTRY })).toBe(ROOT);
    expect(resolveCallerPath("examples/x.yaml", { env, cwd: ROOT, entry: ENTRY })).toBe("examples/x.yaml");
  });

  it("is the working directory when the script adds arguments of its own (they are relative to the package)", () => {
    const env = pnpmEnv("check-example", "/home/me", "");
    expect(callerDirectory({ env, cwd: ROOT, entry: ENTRY })).toBe(ROOT);
  });
});
