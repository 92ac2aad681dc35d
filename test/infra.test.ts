/**
 * infra/: the Terraform example validated and its `terraform test` run against the mocked AWS
 * provider, offline, where a terraform binary and a local copy of the AWS provider exist (no
 * registry is reachable from the tests). Skipped elsewhere, saying why.
 *
 * infra/ha: the HAProxy example's two backends balance the same replicas and check them on
 * /healthz, and `haproxy -c` accepts it where haproxy is installed (skipped elsewhere).
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

describe("infra/ha", () => {
  const cfgFile = join(ROOT, "infra/ha/haproxy.cfg");
  const cfg = readFileSync(cfgFile, "utf8");
  /** The config's sections (`frontend x`, `backend y`, …) → their lines, comments dropped. */
  const sections = new Map<string, string[]>();
  let current: string[] = [];
  for (const raw of cfg.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    if (/^(global|defaults|frontend|backend|listen)\b/.test(raw)) sections.set(line, (current = []));
    else current.push(line);
  }

  it("passes both ports through as TCP to the same replicas, checked on /healthz against the firedrill CA", () => {
    expect(sections.get("frontend firedrill_grpc")).toContain("bind :7070");
    expect(sections.get("frontend firedrill_http")).toContain("bind :7080");
    const hosts = (backend: string) => {
      const lines = sections.get(`backend ${backend}`)!;
      expect(lines, backend).toContain("option httpchk");
      expect(lines.find((l) => l.startsWith("http-check send")), backend).toMatch(/^http-check send meth GET uri \/healthz ver HTTP\/1\.1 hdr Host \S+$/);
      expect(lines.find((l) => l.startsWith("default-server")), backend).toMatch(/\bcheck-ssl verify required ca-file \S+/);
      return lines.filter((l) => l.startsWith("server ")).map((l) => l.split(/\s+/).slice(1, 3).join(" ").replace(/:\d+$/, ""));
    };
    const grpc = hosts("firedrill_grpc");
    expect(grpc.length).toBeGreaterThanOrEqual(2);
    expect(hosts("firedrill_http")).toEqual(grpc);
    expect(sections.get("defaults")).toContain("mode tcp");
    expect(cfg).not.toMatch(/^\s*mode http\b/m);
    // The grpc backend's health is the replica's HTTP port.
    expect(sections.get("backend firedrill_grpc")!.find((l) => l.startsWith("default-server"))).toMatch(/\bcheck port 7080\b/);
    // Linked from infra/README.md; the server unit documents the store settings of its EnvironmentFile.
    expect(readFileSync(join(ROOT, "infra/README.md"), "utf8")).toContain("(ha/README.md)");
    const unit = readFileSync(join(ROOT, "infra/systemd/firedrill-server.service"), "utf8");
    for (const word of ["FIREDRILL_STORE=postgres://", "PGPASSWORD=", "EnvironmentFile=-/etc/firedrill/server.env", "0600"]) expect(unit, word).toContain(word);
  });

  const haproxy = spawnSync("haproxy", ["-v"], { encoding: "utf8", timeout: 30_000 });
  const noHaproxy = haproxy.error !== undefined || haproxy.status !== 0;
  if (noHaproxy) console.log("skipping `haproxy -c` of infra/ha/haproxy.cfg: no haproxy binary on PATH");

  it.skipIf(noHaproxy)("haproxy -c accepts it", () => {
    // The CA it names, as the README says to put it there: any PEM certificate will do for the check.
    const dir = mkdtempSync(join(tmpdir(), "firedrill-haproxy-"));
    try {
      const ca = join(dir, "ca.pem");
      const made = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "ca.key"), "-out", ca, "-days", "1", "-subj", "/CN=test"], { encoding: "utf8" });
      expect(made.status, made.stderr).toBe(0);
      const copy = join(dir, "haproxy.cfg");
      writeFileSync(copy, cfg.replaceAll("/etc/haproxy/firedrill-ca.pem", ca));
      const res = spawnSync("haproxy", ["-c", "-f", copy], { encoding: "utf8", timeout: 30_000 });
      expect(res.status, `${res.stdout}${res.stderr}`).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
