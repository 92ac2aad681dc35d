/** The fake AWS (fake-aws.ts) started as its own process by a test or a benchmark. */
import { join, resolve } from "node:path";
import { fakeAwsClient } from "./fake-aws.js";
import type { FakeAwsProcessClient } from "./fake-aws.js";
import { spawnNode, waitFor } from "./processes.js";
import type { TestProcess } from "./processes.js";

const FAKE_AWS_BIN = join(resolve(import.meta.dirname), "fake-aws-bin.ts");

/** A fake AWS process and its control client. */
export interface FakeAwsProcess extends FakeAwsProcessClient {
  proc: TestProcess;
}

/**
 * Starts the fake AWS as a process (killed by `killAll()` like every process a test starts),
 * persisting its state to `statePath`; resolves once it listens.
 */
export async function startFakeAwsProcess(opts: { statePath: string; port?: number; transitionMs?: number }): Promise<FakeAwsProcess> {
  const proc = spawnNode(FAKE_AWS_BIN, ["--state", opts.statePath, "--port", String(opts.port ?? 0), "--transition-ms", String(opts.transitionMs ?? 500)]);
  const url = await waitFor(
    `the fake AWS to listen (output: ${proc.output().slice(-1000)})`,
    () => {
      if (proc.child.exitCode !== null) throw new Error(`fake AWS exited: ${proc.output()}`);
      return /fake-aws listening on (\S+)/.exec(proc.output())?.[1];
    },
    20_000,
  );
  return { ...fakeAwsClient(url), proc };
}

/** The environment a `firedrill server` needs to reach the fake: static test credentials and a region. */
export const FAKE_AWS_ENV: Record<string, string> = {
  AWS_ACCESS_KEY_ID: "AKIAFAKEFAKEFAKEFAKE",
  AWS_SECRET_ACCESS_KEY: "fake-secret-for-tests",
  AWS_REGION: "eu-west-1",
  // Never read a profile or IMDS of whoever runs the tests.
  AWS_CONFIG_FILE: "/dev/null",
  AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
  AWS_EC2_METADATA_DISABLED: "true",
};
