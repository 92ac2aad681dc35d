/**
 * The spec-check pool: experiments parsed in worker threads give what parseExperiment gives; a
 * job past its time budget stops its worker; a full queue is refused; the API errors are 4xx/503.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiError } from "../errors.js";
import { HEAD, maximalSpec } from "../test-support/spec-corpus.js";
import { ExperimentSpecError, parseExperiment } from "./spec.js";
import { createSpecCheckPool, parseExperimentForApi, SpecCheckBusyError, SpecCheckTimeoutError } from "./spec-pool.js";
import type { SpecCheckPool } from "./spec-pool.js";

describe("spec-check pool", () => {
  let pool: SpecCheckPool;
  beforeAll(async () => {
    pool = createSpecCheckPool({ workers: 1, maxQueued: 1 });
    await pool.warmUp();
  });
  afterAll(async () => {
    await pool.close();
  });

  it("gives what parseExperiment gives: the experiment, or every issue with its line", async () => {
    const text = maximalSpec(3);
    expect(await pool.parse(text)).toEqual(parseExperiment(text));
    const bad = HEAD.replace("load: 50", "load: *nowhere");
    const error = await pool.parse(bad, "bad.yaml").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ExperimentSpecError);
    expect((error as ExperimentSpecError).file).toBe("bad.yaml");
    expect((error as ExperimentSpecError).issues).toEqual([
      {
        path: "steps[0].params.load",
        line: 16,
        message: "the alias *nowhere refers to no anchor: define &nowhere on a value before this line (an alias can only refer back to an anchor above it)",
      },
    ]);
  });

  it("refuses a job when the queue is full, and runs the ones it took", async () => {
    const running = pool.parse(maximalSpec(4));
    const queued = pool.parse(HEAD);
    await expect(pool.parse(HEAD)).rejects.toBeInstanceOf(SpecCheckBusyError);
    const api = await parseExperimentForApi(HEAD, pool).catch((err: unknown) => err);
    expect(api).toMatchObject({ statusCode: 503, code: "busy", message: "1 experiment is already waiting to be checked, the control plane's limit; retry in a few seconds" });
    expect((await running).spec.steps).toHaveLength(200);
    expect((await queued).metadata.name).toBe("flood");
  });

  it("answers the API with 413 past 256 KiB (nothing queued) and 400 with every issue and its line", async () => {
    const big = `${HEAD}# ${"x".repeat(256 * 1024)}\n`;
    const tooLarge = await parseExperimentForApi(big, pool).catch((err: unknown) => err);
    expect(tooLarge).toBeInstanceOf(ApiError);
    expect(tooLarge).toMatchObject({ statusCode: 413, code: "experiment_too_large" });
    expect((tooLarge as ApiError).message).toMatch(/^the experiment is 256\.\d KiB \(\d+ bytes\); an experiment may be at most 256 KiB \(262144 bytes\)/);
    expect(pool.stats().queued).toBe(0);
    const invalid = await parseExperimentForApi("a: &x [*x]\n", pool).catch((err: unknown) => err);
    expect(invalid).toMatchObject({
      statusCode: 400,
      code: "invalid_experiment",
      issues: [{ field: "a[0]", line: 1, message: expect.stringMatching(/^the alias \*x is inside the value anchored as &x/) }],
    });
  });
});

describe("spec-check pool time budget", () => {
  it("stops a worker that takes longer than the budget, refuses that job as too complex, and starts a new worker for the next", async () => {
    const pool = createSpecCheckPool({ workers: 1, timeBudgetMs: 1 });
    try {
      await pool.warmUp();
      const error = await pool.parse(maximalSpec(5)).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(SpecCheckTimeoutError);
      expect(pool.stats()).toEqual({ workers: 0, busy: 0, queued: 0 });
      const api = await parseExperimentForApi(maximalSpec(6), pool).catch((err: unknown) => err);
      expect(api).toMatchObject({ statusCode: 400, code: "experiment_too_complex" });
      expect((api as ApiError).message).toMatch(/^checking the experiment did not finish within 0\.001 s, the control plane's limit/);
    } finally {
      await pool.close();
    }
  });
});
