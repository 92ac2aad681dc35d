/**
 * aws-network-disrupt after a control-plane crash: two subnets of eu-west-1a sit on the run's
 * deny-all NACL in the fake AWS (its own process, with the VPC plugin, state on disk), the control
 * plane is SIGKILLed, started again on the same data dir, and we time, from the restart: /healthz
 * answering, both subnets back on their original NACL (the fake's state), the run's NACL deleted,
 * and every revert confirmed in the journal. Goal: confirmed < 10 s after the start.
 */
import { join } from "node:path";
import { api } from "../test/support/api.js";
import { fakeInstance } from "../test/support/fake-aws.js";
import { aclOfSubnet, fakeVpc, vpcState } from "../test/support/fake-aws-vpc.js";
import { FAKE_AWS_ENV, startFakeAwsProcess } from "../test/support/fake-aws-process.js";
import { killAll, startServer, tempDir, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

const ID = "i-0be0c000000000002";
const VPC = "vpc-0be0c00000000001";
const DEFAULT_ACL = `acl-${VPC.slice(4)}`;
const SUBNETS = ["subnet-0be0c0000000000a1", "subnet-0be0c0000000000a2"];
const GOAL_MS = 10_000;

const SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: bench-network-revert }
spec:
  hypothesis: "the zone comes back after a control-plane crash"
  targets:
    one: { selector: { aws: { region: eu-west-1, instanceIds: [${ID}] } }, mode: { all: true } }
  steps:
    - { name: az-down, fault: aws-network-disrupt, target: one, duration: 10m, params: { availabilityZone: eu-west-1a } }
`;

export async function benchNetworkRevert(trials = 3): Promise<void> {
  const rows: (string | number)[][] = [];
  const totals: number[] = [];
  for (let trial = 1; trial <= trials; trial++) {
    const dir = tempDir("bench-network-revert");
    try {
      const fake = await startFakeAwsProcess({ statePath: join(dir.path, "fake-aws.json"), transitionMs: 500 });
      await fake.setState({
        instances: { [ID]: fakeInstance(ID) },
        ext: { vpc: fakeVpc({ vpcId: VPC, tags: { "firedrill:opt-in": "true" }, subnets: SUBNETS.map((id) => ({ id, availabilityZone: "eu-west-1a" })) }) },
      });
      const args = ["--aws-endpoint", fake.url, "--log-level", "warn"];
      const server = await startServer({ dataDir: join(dir.path, "cp"), extraArgs: args, env: FAKE_AWS_ENV });
      const res = await api(server, "POST", "/api/v1/runs", { spec: SPEC });
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      const runId = res.body.run.id as string;
      await waitFor("the subnets cut off", async () => {
        const st = await fake.state();
        return SUBNETS.every((s) => aclOfSubnet(st, s) !== DEFAULT_ACL);
      }, 20_000, 50);
      server.proc.kill("SIGKILL");
      await server.proc.exited;
      const port = (addr: string) => Number(addr.split(":").at(-1));
      const restart = Date.now();
      const again = await startServer({ dataDir: server.dataDir, grpcPort: port(server.grpcAddr), httpPort: port(server.httpUrl), extraArgs: args, env: FAKE_AWS_ENV });
      const healthy = Date.now();
      let restored = 0;
      let deleted = 0;
      await waitFor(
        "everything restored and confirmed",
        async () => {
          const st = await fake.state();
          if (!restored && SUBNETS.every((s) => aclOfSubnet(st, s) === DEFAULT_ACL)) restored = Date.now();
          if (!deleted && !Object.values(vpcState(st).acls).some((a) => "firedrill:run" in a.tags)) deleted = Date.now();
          const reverts = (await api(again, "GET", `/api/v1/runs/${runId}`)).body.cloudReverts as { state: string }[] | undefined;
          return reverts?.length === 3 && reverts.every((e) => e.state === "confirmed");
        },
        60_000,
        50,
      );
      const confirmed = Date.now();
      totals.push(confirmed - restart);
      rows.push([trial, `${healthy - restart} ms`, `${(restored || confirmed) - restart} ms`, `${(deleted || confirmed) - restart} ms`, `${confirmed - restart} ms`, confirmed - restart < GOAL_MS ? "ok" : "MISSED"]);
    } finally {
      await killAll();
      dir.cleanup();
    }
  }
  printTable(
    `aws-network-disrupt revert after SIGKILL of the control plane (from the restart; goal: confirmed < ${GOAL_MS / 1000} s)`,
    ["trial", "→ /healthz", "→ subnets on their NACL", "→ run's NACL deleted", "→ all confirmed", "goal"],
    rows,
  );
  const sorted = [...totals].sort((a, b) => a - b);
  printTable("summary", ["trials", "median → confirmed", "slowest", "goal < 10 s"], [
    [totals.length, `${sorted[Math.floor(sorted.length / 2)] ?? 0} ms`, `${sorted.at(-1) ?? 0} ms`, (sorted.at(-1) ?? Infinity) < GOAL_MS ? "met" : "MISSED"],
  ]);
}
