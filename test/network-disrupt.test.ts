/**
 * aws-network-disrupt (an Availability Zone outage made with a deny-all network ACL) with real
 * processes: a `firedrill server` on a fake AWS process (fake-aws.ts + the VPC plugin
 * fake-aws-vpc.ts, state persisted to a file). The control plane is SIGKILLed while the zone's
 * subnets are cut off and restarted: the cloud-revert journal restores their original NACL
 * associations and deletes the run's NACL. A run whose duration ends restores them too.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { fakeInstance } from "./support/fake-aws.js";
import type { FakeAwsState } from "./support/fake-aws.js";
import { aclOfSubnet, fakeVpc, vpcState } from "./support/fake-aws-vpc.js";
import { FAKE_AWS_ENV, startFakeAwsProcess } from "./support/fake-aws-process.js";
import type { FakeAwsProcess } from "./support/fake-aws-process.js";
import { killAll, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";

const REGION = "eu-west-1";
const VPC = "vpc-0a11ce000000000001";
const DEFAULT_ACL = `acl-${VPC.slice(4)}`;
const A1 = "subnet-0a000000000000001";
const A2 = "subnet-0a000000000000002";
const B1 = "subnet-0b000000000000001";
const WEB = "i-0eb00000000000001";

function experiment(duration: string): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: az-a-outage }
spec:
  hypothesis: "checkout keeps answering while eu-west-1a is cut off"
  targets:
    web:
      selector: { aws: { region: ${REGION}, instanceIds: [${WEB}] } }
      mode: { all: true }
  steps:
    - name: az-a-down
      fault: aws-network-disrupt
      target: web
      duration: ${duration}
      params: { availabilityZone: ${REGION}a }
`;
}

async function setup(): Promise<{ fake: FakeAwsProcess; server: ServerHandle; cleanup: () => void }> {
  const dir = tempDir("network-disrupt");
  const fake = await startFakeAwsProcess({ statePath: join(dir.path, "fake-aws.json"), transitionMs: 500 });
  await fake.setState({
    instances: { [WEB]: fakeInstance(WEB, { region: REGION, tags: { app: "web" } }) },
    ext: {
      vpc: fakeVpc({
        vpcId: VPC,
        region: REGION,
        tags: { "firedrill:opt-in": "true" },
        subnets: [
          { id: A1, availabilityZone: `${REGION}a` },
          { id: A2, availabilityZone: `${REGION}a` },
          { id: B1, availabilityZone: `${REGION}b` },
        ],
      }),
    },
  });
  const server = await startServer({ dataDir: join(dir.path, "cp"), extraArgs: ["--aws-endpoint", fake.url], env: FAKE_AWS_ENV });
  return { fake, server, cleanup: dir.cleanup };
}

/** The run's NACLs (tagged firedrill:run) left in the fake. */
const runAcls = (state: FakeAwsState) => Object.values(vpcState(state).acls).filter((a) => "firedrill:run" in a.tags);
const portOf = (addr: string) => Number(addr.split(":").at(-1));

describe("aws-network-disrupt, with real processes", () => {
  let cleanup: (() => void) | undefined;
  afterEach(async () => {
    await killAll();
    cleanup?.();
    cleanup = undefined;
  });

  it("restores the original NACL associations and deletes the run's NACL after the control plane is SIGKILLed mid-disruption and restarted", async () => {
    const s = await setup();
    cleanup = s.cleanup;
    const { fake, server } = s;
    const res = await api(server, "POST", "/api/v1/runs", { spec: experiment("10m") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    const cut = await waitFor(
      "both eu-west-1a subnets on the run's NACL",
      async () => {
        const st = await fake.state();
        const [acl] = runAcls(st);
        return acl && aclOfSubnet(st, A1) === acl.id && aclOfSubnet(st, A2) === acl.id ? acl.id : undefined;
      },
      20_000,
    );
    const st0 = await fake.state();
    expect(aclOfSubnet(st0, B1)).toBe(DEFAULT_ACL);
    expect(runAcls(st0)[0]!.tags["firedrill:run"]).toBe(id);
    const before = (await api(server, "GET", `/api/v1/runs/${id}`)).body;
    expect(before.cloudReverts.map((e: { kind: string; resource: string; state: string }) => `${e.kind} ${e.state}`).sort()).toEqual(["nacl-delete pending", "nacl-restore pending", "nacl-restore pending"]);

    server.proc.kill("SIGKILL");
    await server.proc.exited;
    await new Promise((r) => setTimeout(r, 1000));
    const down = await fake.state();
    expect([aclOfSubnet(down, A1), aclOfSubnet(down, A2)]).toEqual([cut, cut]);

    const restartAt = Date.now();
    const again = await startServer({
      dataDir: server.dataDir,
      grpcPort: portOf(server.grpcAddr),
      httpPort: portOf(server.httpUrl),
      extraArgs: ["--aws-endpoint", fake.url],
      env: FAKE_AWS_ENV,
    });
    const healthyAt = Date.now();
    await waitFor(
      "the original associations restored",
      async () => {
        const st = await fake.state();
        return aclOfSubnet(st, A1) === DEFAULT_ACL && aclOfSubnet(st, A2) === DEFAULT_ACL;
      },
      30_000,
      50,
    );
    const restoredAt = Date.now();
    await waitFor("the run's NACL deleted", async () => runAcls(await fake.state()).length === 0, 30_000, 50);
    const deletedAt = Date.now();
    const shown = await waitFor(
      "every revert confirmed",
      async () => {
        const body = (await api(again, "GET", `/api/v1/runs/${id}`)).body;
        return body.cloudReverts?.every((e: { state: string }) => e.state === "confirmed") ? body : undefined;
      },
      30_000,
      50,
    );
    const confirmedAt = Date.now();
    console.log(
      `[network-disrupt] SIGKILL mid-aws-network-disrupt: restart → /healthz ${healthyAt - restartAt} ms; → both subnets back on ${DEFAULT_ACL} ${restoredAt - restartAt} ms; → run's NACL deleted ${deletedAt - restartAt} ms; → all 3 reverts confirmed in the journal ${confirmedAt - restartAt} ms`,
    );
    expect(shown.run.state).toBe("failed");
    expect(shown.run.cloudRevertsUnconfirmed).toBe(0);
    const calls = await fake.calls();
    expect(calls.filter((c) => c.action === "DeleteNetworkAcl" && c.status === 200)).toHaveLength(1);
    expect(calls.filter((c) => c.action === "ReplaceNetworkAclAssociation" && c.status === 200 && c.time >= restartAt)).toHaveLength(2);
    expect(aclOfSubnet(await fake.state(), B1)).toBe(DEFAULT_ACL);
  });

  it("an abort mid-disruption restores the associations and deletes the run's NACL", async () => {
    const s = await setup();
    cleanup = s.cleanup;
    const { fake, server } = s;
    const res = await api(server, "POST", "/api/v1/runs", { spec: experiment("10m") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    await waitFor("the subnets cut off", async () => aclOfSubnet(await fake.state(), A2) !== DEFAULT_ACL, 20_000);
    const abortAt = Date.now();
    expect((await api(server, "POST", `/api/v1/runs/${id}/abort`, { reason: "enough" })).status).toBeLessThan(300);
    const run = await waitFor(
      "the run aborted with its reverts confirmed",
      async () => {
        const body = (await api(server, "GET", `/api/v1/runs/${id}`)).body;
        return body.run.state === "aborted" && body.cloudReverts.every((e: { state: string }) => e.state === "confirmed") ? body : undefined;
      },
      30_000,
      100,
    );
    console.log(`[network-disrupt] abort → every revert confirmed ${Date.now() - abortAt} ms`);
    expect(run.run.cloudRevertsUnconfirmed).toBe(0);
    const st = await fake.state();
    expect([aclOfSubnet(st, A1), aclOfSubnet(st, A2)]).toEqual([DEFAULT_ACL, DEFAULT_ACL]);
    expect(runAcls(st)).toHaveLength(0);
  });

  it("a run whose duration ends restores the associations and deletes its NACL before the step ends", async () => {
    const s = await setup();
    cleanup = s.cleanup;
    const { fake, server } = s;
    const startAt = Date.now();
    const res = await api(server, "POST", "/api/v1/runs", { spec: experiment("3s") });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const id = res.body.run.id as string;
    await waitFor("the subnets cut off", async () => aclOfSubnet(await fake.state(), A1) !== DEFAULT_ACL, 20_000);
    const run = await waitFor(
      "the run to end",
      async () => {
        const body = (await api(server, "GET", `/api/v1/runs/${id}`)).body;
        return ["completed", "failed", "aborted"].includes(body.run.state) ? body : undefined;
      },
      30_000,
      100,
    );
    console.log(`[network-disrupt] 3 s disruption: run ended after ${Date.now() - startAt} ms`);
    expect(run.run.state, run.run.reason).toBe("completed");
    const st = await fake.state();
    expect([aclOfSubnet(st, A1), aclOfSubnet(st, A2), aclOfSubnet(st, B1)]).toEqual([DEFAULT_ACL, DEFAULT_ACL, DEFAULT_ACL]);
    expect(runAcls(st)).toHaveLength(0);
    expect(run.cloudReverts.every((e: { state: string }) => e.state === "confirmed")).toBe(true);
    expect(run.events.map((e: { message: string }) => e.message)).toEqual(expect.arrayContaining([expect.stringMatching(/original network ACLs restored and the run's deleted/)]));
  });
});
