/**
 * infra/: the Terraform example validated and its `terraform test` run against the mocked AWS
 * provider, offline, where a terraform binary and a local copy of the AWS provider exist (no
 * registry is reachable from the tests). Skipped elsewhere, saying why.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./support/processes.js";

/** Where a provider mirror is looked for (`terraform init -plugin-dir`); FIREDRILL_TF_PLUGIN_DIR overrides. */
const PLUGIN_DIR = process.env.FIREDRILL_TF_PLUGIN_DIR ?? "/opt/tf-plugins";

function skipReason(): string | undefined {
  const version = spawnSync("terraform", ["version"], { encoding: "utf8", timeout: 30_000 });
  if (version.error || version.status !== 0) return "no terraform binary on PATH (it cannot be downloaded here)";
  if (!existsSync(join(PLUGIN_DIR, "registry.terraform.io/hashicorp/aws"))) {
    return `no local copy of the hashicorp/aws provider in ${PLUGIN_DIR} (set FIREDRILL_TF_PLUGIN_DIR; the registry is not reachable)`;
  }
  return undefined;
}
const skip = skipReason();
if (skip) console.log(`skipping the Terraform example's checks: ${skip}`);

describe.skipIf(!!skip)("infra/terraform/aws", () => {
  const work = mkdtempSync(join(tmpdir(), "firedrill-tf-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function terraform(args: string[], cwd: string) {
    const res = spawnSync("terraform", args, {
      cwd,
      encoding: "utf8",
      timeout: 240_000,
      env: { ...process.env, TF_IN_AUTOMATION: "1", TF_INPUT: "0", CHECKPOINT_DISABLE: "1", TF_DATA_DIR: join(work, ".terraform") },
    });
    return { code: res.status, out: `${res.stdout}${res.stderr}` };
  }

  it("is formatted, validates and passes its own tests against the mocked provider", () => {
    // A copy, so that the checkout gets no .terraform dir; the policy file it reads is beside it.
    cpSync(join(ROOT, "infra"), join(work, "infra"), { recursive: true });
    const dir = join(work, "infra/terraform/aws");
    for (const args of [
      ["fmt", "-check", "-recursive"],
      ["init", "-backend=false", `-plugin-dir=${PLUGIN_DIR}`, "-no-color"],
      ["validate", "-no-color"],
      ["test", "-no-color"],
    ]) {
      const res = terraform(args, dir);
      expect(res.code, `terraform ${args.join(" ")}:\n${res.out}`).toBe(0);
      if (args[0] === "test") console.log(`terraform test: ${/Success!.*|\d+ passed.*/.exec(res.out)?.[0] ?? res.out.trim()}`);
    }
  }, 600_000);
});
