import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from "@aws-sdk/client-auto-scaling";
import type { DescribeAutoScalingGroupsCommandInput } from "@aws-sdk/client-auto-scaling";
import { mockClient } from "aws-sdk-client-mock";
import Fastify from "fastify";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installErrorHandlers } from "../http/errors.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { testAgent } from "../test-support/agent-records.js";
import { createAwsClients } from "./clients.js";
import { registerSpofRoutes } from "./routes.js";
import { createAwsService } from "./service.js";
import type { AwsServiceWithLedger } from "./service.js";
import { findSpofs, groupSpofs, labelSpofs } from "./spof.js";
import { asgGroup, awsError } from "./test-support.js";

const asg = mockClient(AutoScalingClient);
const log = pino({ level: "silent" });

let dir: string;
let store: Store;
let aws: AwsServiceWithLedger;

beforeEach(() => {
  asg.reset();
  dir = mkdtempSync(join(tmpdir(), "firedrill-spof-"));
  store = createStore({ dataDir: dir });
  aws = createAwsService({ clients: createAwsClients({ region: "eu-west-1" }), db: store.db, log, sleep: async () => {}, retry: { attempts: 1 } });
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const az = (map: Record<string, string>) => (id: string) => map[id] ?? "eu-west-1a";

const GROUPS = [
  // Healthy: 3 instances over 2 zones.
  asgGroup("web-asg", { max: 6, inService: ["i-1", "i-2", "i-3"], instanceAz: az({ "i-2": "eu-west-1b" }) }),
  // One instance, MaxSize 1.
  asgGroup("cron-asg", { max: 1, inService: ["i-4"] }),
  // Two instances, both in eu-west-1a although the group may use two zones.
  asgGroup("api-asg", { inService: ["i-5", "i-6"] }),
  // Configured for a single zone.
  asgGroup("batch-asg", { inService: ["i-7", "i-8"], azs: ["eu-west-1c"], instanceAz: () => "eu-west-1c" }),
  // Desired 2, nothing InService (one Pending).
  asgGroup("search-asg", { desired: 2, inService: [], other: [{ id: "i-9", state: "Pending" }], instanceAz: az({ "i-9": "eu-west-1b" }) }),
  // Scaled to zero on purpose: not a SPOF.
  asgGroup("idle-asg", { desired: 0, inService: [] }),
];

describe("SPOF finder", () => {
  it("finds ASGs with one InService instance, MaxSize 1, or all instances in one zone, with why", () => {
    const spofs = groupSpofs(GROUPS.map((g) => ({
      name: g.AutoScalingGroupName!,
      region: "eu-west-1",
      minSize: g.MinSize!,
      maxSize: g.MaxSize!,
      desiredCapacity: g.DesiredCapacity!,
      inService: g.Instances!.filter((i) => i.LifecycleState === "InService").map((i) => i.InstanceId!),
      instances: g.Instances!.map((i) => ({ instanceId: i.InstanceId!, availabilityZone: i.AvailabilityZone!, lifecycleState: i.LifecycleState!, healthStatus: i.HealthStatus! })),
      availabilityZones: g.AvailabilityZones!,
    })));
    expect(spofs).toEqual([
      {
        kind: "asg-single-instance",
        subject: "cron-asg",
        why: "cron-asg (eu-west-1) has a single InService instance (i-4): when it fails, nothing serves until the group has launched and warmed up a replacement; run at least 2",
      },
      {
        kind: "asg-max-size-one",
        subject: "cron-asg",
        why: "cron-asg (eu-west-1) has MaxSize 1: it can never run a second instance, not even while replacing a failed one; raise MaxSize (and DesiredCapacity) to at least 2",
      },
      {
        kind: "asg-single-az",
        subject: "api-asg",
        why: "api-asg (eu-west-1) runs all 2 InService instances in eu-west-1a: an outage of that Availability Zone takes the whole group down (the group may use eu-west-1a, eu-west-1b, but has not spread)",
      },
      {
        kind: "asg-single-az",
        subject: "batch-asg",
        why: "batch-asg (eu-west-1) runs all 2 InService instances in eu-west-1c: an outage of that Availability Zone takes the whole group down",
      },
      {
        kind: "asg-single-instance",
        subject: "search-asg",
        why: "search-asg (eu-west-1) has no InService instance although its desired capacity is 2: it is down or still launching, so nothing stands behind it",
      },
    ]);
  });

  it("finds label groups with a single connected host", () => {
    const agents = [
      testAgent("web-1", { labels: { app: "web" }, availabilityZone: "eu-west-1a" }),
      testAgent("web-2", { labels: { app: "web" } }),
      testAgent("db-1", { labels: { app: "db", role: "primary" }, availabilityZone: "eu-west-1b" }),
      testAgent("db-2", { labels: { app: "db", role: "replica" }, connected: false }),
      testAgent("cache-1", { labels: { app: "cache" } }),
      testAgent("cache-2", { labels: { app: "cache" }, connected: false }),
      testAgent("queue-1", { labels: { service: "queue" }, connected: false }),
      testAgent("misc", { labels: { team: "x" } }),
    ];
    expect(labelSpofs(agents)).toEqual([
      {
        kind: "label-group-single-host",
        subject: "app=cache",
        why: "only one connected host carries app=cache: cache-1 (1 more host carries it but is not connected); if it fails, nothing else does its work",
      },
      { kind: "label-group-single-host", subject: "app=db", why: "only one connected host carries app=db: db-1 in eu-west-1b (1 more host carries it but is not connected); if it fails, nothing else does its work" },
      { kind: "label-group-single-host", subject: "role=primary", why: "only one connected host carries role=primary: db-1 in eu-west-1b; if it fails, nothing else does its work" },
    ]);
    expect(labelSpofs(agents, ["team"]).map((s) => s.subject)).toEqual(["team=x"]);
  });

  it("findSpofs lists every group of the region (all pages) and the agents, ordered by kind", async () => {
    const seen: (string | undefined)[] = [];
    asg.on(DescribeAutoScalingGroupsCommand).callsFake((input: DescribeAutoScalingGroupsCommandInput) => {
      seen.push(input.NextToken);
      return input.NextToken ? { AutoScalingGroups: GROUPS.slice(3) } : { AutoScalingGroups: GROUPS.slice(0, 3), NextToken: "p2" };
    });
    const spofs = await findSpofs({ aws, region: "eu-west-1", agents: [testAgent("solo", { labels: { app: "pay" } })] });
    expect(seen).toEqual([undefined, "p2"]);
    expect(spofs.map((s) => `${s.kind} ${s.subject}`)).toEqual([
      "asg-single-instance cron-asg",
      "asg-single-instance search-asg",
      "asg-max-size-one cron-asg",
      "asg-single-az api-asg",
      "asg-single-az batch-asg",
      "label-group-single-host app=pay",
    ]);
    expect(await findSpofs({ agents: [] })).toEqual([]);
  });
});

describe("GET /api/v1/spof", () => {
  async function app(withAws: boolean) {
    const a = Fastify();
    installErrorHandlers(a);
    const fakeStore = { listAgents: () => [testAgent("solo", { labels: { app: "pay" } }), testAgent("web-1", { labels: { app: "web" } }), testAgent("web-2", { labels: { app: "web" } })] } as unknown as Store;
    registerSpofRoutes(a, { store: fakeStore, ...(withAws ? { aws } : {}) });
    await a.ready();
    return a;
  }

  it("answers the SPOFs of the region and the agents", async () => {
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [asgGroup("cron-asg", { max: 1, inService: ["i-4"] })] });
    const a = await app(true);
    const res = await a.inject({ method: "GET", url: "/api/v1/spof?region=us-east-2" });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      region: "us-east-2",
      groupsChecked: 1,
      hostsChecked: 3,
      labelKeys: ["app", "service", "role"],
      spofs: [{ kind: "asg-single-instance", subject: "cron-asg" }, { kind: "asg-max-size-one", subject: "cron-asg" }, { kind: "label-group-single-host", subject: "app=pay" }],
    });
    await a.close();
  });

  it("checks only the agents without AWS, and says so", async () => {
    const a = await app(false);
    const body = (await a.inject({ method: "GET", url: "/api/v1/spof" })).json();
    expect(body).toEqual({
      spofs: [{ kind: "label-group-single-host", subject: "app=pay", why: "only one connected host carries app=pay: solo; if it fails, nothing else does its work" }],
      region: null,
      groupsChecked: null,
      hostsChecked: 3,
      labelKeys: ["app", "service", "role"],
      note: "the control plane has no AWS access configured: only agent label groups were checked",
    });
    await a.close();
  });

  it("refuses a bad region or parameter, and answers 502 naming the call when AWS fails", async () => {
    const a = await app(true);
    const bad = await a.inject({ method: "GET", url: "/api/v1/spof?region=mars" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toBe('region: "mars" is not an AWS region; use a region name such as eu-west-1 or us-east-2');
    expect((await a.inject({ method: "GET", url: "/api/v1/spof?zone=a" })).statusCode).toBe(400);
    asg.on(DescribeAutoScalingGroupsCommand).rejects(awsError("AccessDenied", 403, "User is not authorized to perform: autoscaling:DescribeAutoScalingGroups"));
    const denied = await a.inject({ method: "GET", url: "/api/v1/spof" });
    expect(denied.statusCode).toBe(502);
    expect(denied.json().error).toEqual({
      code: "aws_error",
      message:
        "DescribeAutoScalingGroups in eu-west-1 failed: AccessDenied: User is not authorized to perform: autoscaling:DescribeAutoScalingGroups; the control plane lacks autoscaling:DescribeAutoScalingGroups (see infra/aws/iam-policy.json)",
      call: "DescribeAutoScalingGroups",
      awsCode: "AccessDenied",
    });
    await a.close();
  });
});
