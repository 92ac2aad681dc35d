/**
 * Cloud revert after a control-plane crash: an `ec2-stop` step holds an instance stopped in the
 * fake AWS (its own process, state on disk), the control plane is SIGKILLed, started again on the
 * same data dir, and we time, from the restart (the new process spawned): /healthz answering,
 * StartInstances reaching AWS (the fake's own log), and the revert confirmed in the journal
 * (GET /api/v1/runs/:id polled every 50 ms). Goal: confirmed < 10 s after the start.
 */
import { join } from "node:path";
import { api } from "../test/support/api.js";
import { fakeInstance } from "../test/support/fake-aws.js";
import { FAKE_AWS_ENV, startFakeAwsProcess } from "../test/support/fake-aws-process.js";
import { killAll, startServer, tempDir, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

const ID = "i-0be0c000000000001";
const GOAL_MS = 10_000;

const SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: bench-cloud-revert }
spec:
  hypothesis: "the instance comes back after a control-plane crash"
  targets:
    one: { selector: { aws: { region: eu-west-1, instanceIds: [${ID}] } }, mode: { all: true } }
  steps:
    - { name: stop, fault: ec2-stop, target: one, duration: 10m }
`;

export async function benchCloudRevert(trials = 3): Promise<void> {
  const rows: (string | number)[][] = [];
  const totals: number[] = [];
  for (let trial = 1; trial <= trials; trial++) {
    const dir = tempDir("bench-cloud-revert");
    try {
      const fake = await startFakeAwsProcess({ statePath: join(dir.path, "fake-aws.json"), transitionMs: 500 });
      await fake.setState({ instances: { [ID]: fakeInstance(ID) } });
      const args = ["--aws-endpoint", fake.url, "--log-level", "warn"];
      const server = await startServer({ dataDir: join(dir.path, "cp"), extraArgs: args, env: FAKE_AWS_ENV });
      const res = await api(server, "POST", "/api/v1/runs", { spec: SPEC });
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      const runId = res.body.run.id as string;
      await waitFor("the instance stopped", async () => (await fake.instanceState(ID)) === "stopped", 20_000, 50);
      server.proc.kill("SIGKILL");
      await server.proc.exited;
      const port = (addr: string) => Number(addr.split(":").at(-1));
      const restart = Date.now();
      const serverAgain = startServer({ dataDir: server.dataDir, grpcPort: port(server.grpcAddr), httpPort: port(server.httpUrl), extraArgs: args, env: FAKE_AWS_ENV });
      const again = await serverAgain;
      const healthy = Date.now();
      await waitFor(
        "the revert confirmed",
        async () => (await api(again, "GET", `/api/v1/runs/${runId}`)).body.cloudReverts?.[0]?.state === "confirmed",
        60_000,
        50,
      );
      const confirmed = Date.now();
      const start = (await fake.calls()).find((c) => c.action === "StartInstances" && c.status === 200 && c.time >= restart);
      totals.push(confirmed - restart);
      rows.push([
        trial,
        `${healthy - restart} ms`,
        start ? `${start.time - restart} ms` : "-",
        `${confirmed - restart} ms`,
        confirmed - restart < GOAL_MS ? "ok" : "MISSED",
      ]);
    } finally {
      await killAll();
      dir.cleanup();
    }
  }
  printTable(
    `cloud revert after SIGKILL of the control plane mid-ec2-stop (from the restart; goal: confirmed < ${GOAL_MS / 1000} s)`,
    ["trial", "→ /healthz", "→ StartInstances at AWS", "→ revert confirmed", "goal"],
    rows,
  );
  const sorted = [...totals].sort((a, b) => a - b);
  printTable("summary", ["trials", "median → confirmed", "slowest", "goal < 10 s"], [
    [totals.length, `${sorted[Math.floor(sorted.length / 2)] ?? 0} ms`, `${sorted.at(-1) ?? 0} ms`, (sorted.at(-1) ?? Infinity) < GOAL_MS ? "met" : "MISSED"],
  ]);
}
