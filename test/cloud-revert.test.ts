/**
 * Cloud faults as durable as host faults, with real processes: a `firedrill server` process that
 * reaches a stateful fake AWS process (EC2 / Auto Scaling / CloudWatch wire protocols over HTTP on
 * loopback, state persisted to a file) through `--aws-endpoint`. The control plane is SIGKILLed
 * mid-`ec2-stop` and restarted: the cloud-revert journal starts the instance again. AWS answers 503
 * for 20 s during an abort: the run, `runs`, `run show`, the report and the metric say the revert is
 * not confirmed, `run --follow` exits 3, and the revert is confirmed once AWS answers.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { fakeInstance } from "./support/fake-aws.js";
import { FAKE_AWS_ENV, startFakeAwsProcess } from "./support/fake-aws-process.js";
import type { FakeAwsProcess } from "./support/fake-aws-process.js";
import { cliEnv, killAll, runCli, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";

const DB = "i-0db00000000000001";
const REGION = "eu-west-1";

function stopExperiment(opts: { duration: string; alarm?: boolean }): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: db-host-stops }
spec:
  hypothesis: "checkout keeps answering while its database host is stopped"
  targets:
    db:
      selector: { aws: { region: ${REGION}, instanceIds: [${DB}] } }
      mode: { all: true }
  steps:
    - { name: stop-db, fault: ec2-stop, target: db, duration: ${opts.duration} }
${opts.alarm ? `  stopConditions:\n    - { cloudwatchAlarm: { names: [checkout-5xx], region: ${REGION}, intervalMs: 1000 } }\n` : ""}`;
}

/** A fake AWS process with one opted-in instance (and an alarm in OK), and a control plane on it. */
async function setup(serverArgs: string[] = []): Promise<{ fake: FakeAwsProcess; server: ServerHandle; dir: string; cleanup: () => void }> {
  const dir = tempDir("cloud-revert");
  const fake = await startFakeAwsProcess({ statePath: join(dir.path, "fake-aws.json"), transitionMs: 500 });
  await fake.setState({
    instances: { [DB]: fakeInstance(DB, { region: REGION, tags: { app: "db" } }) },
    alarms: { [`${REGION}/checkout-5xx`]: { name: "checkout-5xx", region: REGION, state: "OK", reason: "Threshold not crossed", type: "metric" } },
  });
  const server = await startServer({ dataDir: join(dir.path, "cp"), extraArgs: ["--aws-endpoint", fake.url, ...serverArgs], env: FAKE_AWS_ENV });
  return { fake, server, dir: dir.path, cleanup: dir.cleanup };
}

async function metric(server: ServerHandle, name: string): Promise<string> {
  const res = await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  return (await res.text())
    .split("\n")
    .filter((l) => l.startsWith(name))
    .join("\n");
}

const portOf = (addr: string) => Number(addr.split(":").at(-1));

describe("the cloud-revert journal, with real processes", () => {
  let cleanup: (() => void) | undefined;
  afterEach(async () => {
    await killAll();
    cleanup?.();
    cleanup = undefined;
  });

  it("starts an instance again after the control plane is SIGKILLed mid-ec2-stop and restarted", async () => {
    const s = await setup();
    cleanup = s.cleanup;
    const { fake, server } = s;
    const res = await api(server, "POST", "/api/v1/runs", { spec: stopExperiment({ duration: "10m", alarm: true }) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    await waitFor("the instance stopped", async () => (await fake.instanceState(DB)) === "stopped", 20_000);
    const before = (await api(server, "GET", `/api/v1/runs/${id}`)).body;
    expect(before.cloudReverts).toMatchObject([{ action: "ec2-stop", resource: DB, state: "pending", step: "stop-db" }]);

    server.proc.kill("SIGKILL");
    await server.proc.exited;
    // Nothing else would ever start it: it stays stopped while the control plane is down.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await fake.instanceState(DB)).toBe("stopped");

    const restartAt = Date.now();
    const again = await startServer({
      dataDir: server.dataDir,
      grpcPort: portOf(server.grpcAddr),
      httpPort: portOf(server.httpUrl),
      extraArgs: ["--aws-endpoint", fake.url],
      env: FAKE_AWS_ENV,
    });
    const healthyAt = Date.now();
    await waitFor("the instance started again", async () => ["pending", "running"].includes((await fake.instanceState(DB)) ?? ""), 30_000, 50);
    const startedAt = Date.now();
    const shown = await waitFor(
      "the revert confirmed",
      async () => {
        const body = (await api(again, "GET", `/api/v1/runs/${id}`)).body;
        return body.cloudReverts?.[0]?.state === "confirmed" ? body : undefined;
      },
      30_000,
      50,
    );
    const confirmedAt = Date.now();
    console.log(
      `[cloud-revert] SIGKILL mid-ec2-stop: restart → /healthz ${healthyAt - restartAt} ms; → StartInstances seen (instance pending) ${startedAt - restartAt} ms; → revert confirmed in the journal ${confirmedAt - restartAt} ms`,
    );
    expect(shown.run.state).toBe("failed");
    expect(shown.run.reason).toMatch(/the control plane restarted during the run; its 1 cloud action \(ec2-stop i-0db00000000000001\) is reverted from the cloud-revert journal/);
    expect(shown.run.reason).not.toMatch(/lease/);
    expect(shown.run.cloudRevertsUnconfirmed).toBe(0);
    expect(shown.cloudReverts[0]).toMatchObject({ revertReason: `run ${id} failed`, detail: expect.stringMatching(/^i-0db00000000000001 is (pending|running)$/) });
    expect(shown.events.map((e: { type: string; message: string }) => `${e.type}: ${e.message}`)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^cloud-reverted: ec2-stop i-0db00000000000001 reverted: .* \(after the run ended\)$/)]),
    );
    // StartInstances reached AWS (the fake logged it), after the restart.
    const starts = (await fake.calls()).filter((c) => c.action === "StartInstances" && c.status === 200);
    expect(starts.length).toBe(1);
    expect(starts[0]!.time).toBeGreaterThanOrEqual(restartAt);
    const report = await runCli(["report", id], cliEnv(again));
    expect(report.stdout).toMatch(/Cloud reverts/);
    expect(report.stdout).toMatch(/confirmed\s+\d+\s+reverted: i-0db00000000000001 is/);
    expect(report.stdout).not.toMatch(/nothing: no fault was started/);
    expect(await metric(again, "firedrill_unreverted_cloud_actions")).toMatch(/state="reverting"} 0/);
  });

  it("keeps retrying while AWS answers 503 for 20 s during an abort, says NOT reverted meanwhile, and confirms after", async () => {
    const s = await setup(["--revert-wait", "3s"]);
    cleanup = s.cleanup;
    const { fake, server } = s;
    const env = cliEnv(server);
    const file = join(s.dir, "stop-db.yaml");
    writeFileSync(file, stopExperiment({ duration: "10m" }));
    const follow = runCli(["run", file, "--follow"], env);
    const id = await waitFor("the run", async () => (await api(server, "GET", "/api/v1/runs?state=active")).body.runs[0]?.id as string | undefined, 20_000);
    await waitFor("the instance stopped", async () => (await fake.instanceState(DB)) === "stopped", 20_000);

    await fake.outage(20);
    const outageAt = Date.now();
    const aborted = await api(server, "POST", `/api/v1/runs/${id}/abort`, { reason: "enough" });
    expect(aborted.status).toBe(200);
    expect(aborted.body.run.state).toBe("aborted");
    const reason = aborted.body.run.reason as string;
    expect(reason).toMatch(/^aborted by admin: enough; 1 cloud revert NOT confirmed: NOT reverted: i-0db00000000000001 stopped \(eu-west-1\), retrying since \d{4}-/);
    expect(reason).toMatch(/last error: DescribeInstances in eu-west-1 failed: Unavailable/);
    expect(reason).not.toMatch(/reverted \(confirmed/);

    // While AWS is down (CLI children started at once: each takes seconds to start from source).
    const [followed, runs, show, report, gauge] = await Promise.all([
      follow,
      runCli(["runs"], env),
      runCli(["run", "show", id], env),
      runCli(["report", id], env),
      metric(server, "firedrill_unreverted_cloud_actions"),
    ]);
    expect(Date.now() - outageAt, "the checks ran while AWS was still down").toBeLessThan(20_000);
    expect(await fake.instanceState(DB)).toBe("stopped");
    // run --follow ends with its own exit code, and says why.
    expect(followed.code).toBe(3);
    expect(followed.stderr).toMatch(/Cloud reverts NOT confirmed \(1\)/);
    expect(followed.stderr).toMatch(/#\d+ \[stop-db\] NOT reverted: i-0db00000000000001 stopped/);
    expect(runs.stdout).toMatch(/CLOUD REVERTS/);
    expect(runs.stdout).toMatch(new RegExp(`${id}.*1 NOT confirmed`));
    expect(show.code).toBe(3);
    expect(show.stdout).toMatch(/Cloud reverts NOT confirmed \(1\)/);
    expect(report.stdout).toMatch(/Cloud actions NOT reverted/);
    expect(report.stdout).toMatch(/NOT reverted: i-0db00000000000001 stopped \(eu-west-1\), retrying since .*last error: DescribeInstances in eu-west-1 failed: Unavailable/);
    expect(report.stdout).not.toMatch(/faults? (were |was )?reverted|cloud actions? (was |were )?reverted/);
    expect(gauge).toMatch(/state="reverting"} 1/);

    // AWS answers again: the reconciler confirms (backoff capped at 30 s).
    await waitFor(
      "the revert confirmed",
      async () => (await api(server, "GET", `/api/v1/runs/${id}`)).body.cloudReverts?.[0]?.state === "confirmed",
      60_000,
      100,
    );
    const confirmedAt = Date.now();
    expect(["pending", "running"]).toContain(await fake.instanceState(DB));
    const calls = await fake.calls();
    const refused = calls.filter((c) => c.status === 503).length;
    console.log(`[cloud-revert] 503 for 20 s during an abort: ${refused} calls answered 503; revert confirmed ${confirmedAt - outageAt} ms after the outage began (${confirmedAt - outageAt - 20_000} ms after it ended)`);
    const after = (await api(server, "GET", `/api/v1/runs/${id}`)).body;
    expect(after.run.cloudRevertsUnconfirmed).toBe(0);
    expect(after.cloudReverts[0].attempts).toBeGreaterThan(1);
    const reportAfter = await runCli(["report", id], env);
    expect(reportAfter.stdout).not.toMatch(/Cloud actions NOT reverted/);
    expect(reportAfter.stdout).toMatch(/Since the run ended, AWS confirmed the revert of ec2-stop i-0db00000000000001 \(\d{4}-/);
    expect(reportAfter.stdout).toMatch(/its cloud action was reverted \(confirmed by AWS\)/);
    expect((await runCli(["run", "show", id], env)).code).toBe(2);
    expect(await metric(server, "firedrill_unreverted_cloud_actions")).toMatch(/state="reverting"} 0/);
  });

  it("on the normal path, starts the instance at the step's end through the journal and completes (exit 0)", async () => {
    const s = await setup();
    cleanup = s.cleanup;
    const { fake, server } = s;
    const file = join(s.dir, "stop-db.yaml");
    writeFileSync(file, stopExperiment({ duration: "3s", alarm: true }));
    const followed = await runCli(["run", file, "--follow"], cliEnv(server));
    expect(followed.code, followed.stdout + followed.stderr).toBe(0);
    expect(followed.stdout).toMatch(/cloud-reverted\s+\[stop-db\]\s+ec2-stop i-0db00000000000001 reverted: i-0db00000000000001 is (pending|running)/);
    expect(followed.stdout).toMatch(/step-ended\s+\[stop-db\]\s+stopped 1 instance for 3s; started again \(confirmed by AWS\)/);
    expect(followed.stdout).toMatch(/completed: every step ran; every fault reverted/);
    expect(["pending", "running"]).toContain(await fake.instanceState(DB));
    const calls = (await fake.calls()).filter((c) => c.status === 200).map((c) => c.action);
    expect(calls.filter((a) => a === "StopInstances")).toHaveLength(1);
    expect(calls.filter((a) => a === "StartInstances")).toHaveLength(1);
  });
});
