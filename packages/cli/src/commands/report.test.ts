import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess as cli, useFakeApi } from "../testing/fake-api.js";

/** A stand-in control plane that checks the bearer token and records requests; FIREDRILL_* point at it. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-report-" });

const HTML = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>firedrill report</title></head><body><div id="report-root"></div></body></html>\n';
const PATH = "/api/v1/runs/run_1/report.html";

describe("firedrill report --html", () => {
  it("downloads the run's HTML report with the CLI's token and writes it, saying where and how big", async () => {
    fake.api.answerText("GET", PATH, 200, HTML, "text/html; charset=utf-8");
    const file = join(fake.dir, "out.html");
    const run = await cli("report", "run_1", "--html", file);
    expect(run).toEqual({ code: 0, out: `wrote the report of run_1 to ${file} (${Buffer.byteLength(HTML)} bytes); it opens in any browser, offline\n`, err: "" });
    expect(readFileSync(file, "utf8")).toBe(HTML);
    expect(fake.asked).toEqual([{ method: "GET", url: PATH, authorization: `Bearer ${TOKEN}`, body: undefined }]);
  });

  it("refuses to overwrite an existing file unless --force", async () => {
    fake.api.answerText("GET", PATH, 200, HTML, "text/html; charset=utf-8");
    const file = join(fake.dir, "out.html");
    writeFileSync(file, "keep me");
    const refused = await cli("report", "run_1", "--html", file);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain(`${file} already exists; pass --force to overwrite it`);
    expect(readFileSync(file, "utf8")).toBe("keep me");
    const forced = await cli("report", "run_1", "--html", file, "--force");
    expect(forced.code).toBe(0);
    expect(readFileSync(file, "utf8")).toBe(HTML);
  });

  it("shows the server's error for an unknown run and writes nothing", async () => {
    fake.api.answer("GET", "/api/v1/runs/run_nope/report.html", 404, { error: { code: "run_not_found", message: 'run "run_nope" does not exist; list runs with GET /api/v1/runs (firedrill runs)' } });
    const file = join(fake.dir, "nope.html");
    const run = await cli("report", "run_nope", "--html", file);
    expect(run.code).not.toBe(0);
    expect(run.err).toContain('run "run_nope" does not exist');
    expect(existsSync(file)).toBe(false);
  });

  it("refuses an answer that is not HTML (another server), and --html with --json", async () => {
    fake.api.answer("GET", PATH, 200, { not: "html" });
    const file = join(fake.dir, "out.html");
    const run = await cli("report", "run_1", "--html", file);
    expect(run.code).not.toBe(0);
    expect(run.err).toContain("not HTML");
    expect(existsSync(file)).toBe(false);
    const both = await cli("report", "run_1", "--html", file, "--json");
    expect(both.code).not.toBe(0);
    expect(both.err).toContain("--html and --json");
  });
});
