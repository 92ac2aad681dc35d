/**
 * The AWS half of a plan on the real AWS service with mocked SDK clients (aws-sdk-client-mock):
 * `count` against the eligible instances (allowFewer) and the cloudwatchAlarm stop conditions'
 * alarms.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloudWatchClient, DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import type { DescribeAlarmsCommandInput } from "@aws-sdk/client-cloudwatch";
import { DescribeInstancesCommand, EC2Client, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import pino from "pino";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { createAwsClients } from "../aws/clients.js";
import { createAwsService } from "../aws/service.js";
import type { AwsServiceWithLedger } from "../aws/service.js";
import { awsError, ec2Instance } from "../aws/test-support.js";
import type { AwsService } from "../aws/types.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { planAws } from "./aws-plan.js";
import { DEFAULT_POLICY } from "./policy.js";
import { parseExperiment } from "./spec.js";
import { seededRandom } from "./targets.js";

const ec2 = mockClient(EC2Client);
const cw = mockClient(CloudWatchClient);
const OPT_IN = { "firedrill:opt-in": "true" };

let dir: string;
let store: Store;
let aws: AwsServiceWithLedger;

beforeEach(() => {
  ec2.reset();
  cw.reset();
  dir = mkdtempSync(join(tmpdir(), "firedrill-aws-plan-"));
  store = createStore({ dataDir: dir });
  aws = createAwsService({ clients: createAwsClients({ region: "eu-west-1" }), db: store.db, log: pino({ level: "silent" }), sleep: async () => {} });
  ec2.on(TerminateInstancesCommand).rejects(awsError("DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set."));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

afterAll(() => {
  ec2.restore();
  cw.restore();
});

const experiment = (target: string, stopConditions = "") =>
  parseExperiment(`apiVersion: firedrill/v1
kind: Experiment
metadata: { name: t }
spec:
  hypothesis: h
  targets:
    ${target}
  steps:
    - { name: kill, fault: ec2-terminate, target: fleet }
${stopConditions}`);

const plan = (exp: ReturnType<typeof parseExperiment>, service: { aws: AwsService | undefined } = { aws }) =>
  planAws({ experiment: exp, agents: [], policy: DEFAULT_POLICY, aws: service.aws, random: seededRandom(1) });

describe("planAws: count against the eligible instances", () => {
  beforeEach(() => {
    // Two running instances; only i-1 is opted in.
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [ec2Instance("i-1", { app: "web", ...OPT_IN }), ec2Instance("i-2", { app: "web" })] }] });
  });

  it("refuses count: 2 with one eligible instance, naming both numbers, instead of running on one", async () => {
    const part = await plan(experiment("fleet: { selector: { aws: { tags: { app: web } } }, mode: { count: 2 } }"));
    expect(part.verdicts.find((v) => v.rule === "aws-targets")).toEqual({
      rule: "aws-targets",
      ok: false,
      message:
        "target fleet: asks for 2 instances but only 1 of 2 running are eligible; 1 skipped for their tags (opt-in firedrill:opt-in=true, exclusions); make more instances eligible, lower count, or set allowFewer: true on the target group to run on fewer",
    });
  });

  it("with allowFewer: true runs on the one there is, and says it is fewer than asked", async () => {
    const part = await plan(experiment("fleet: { selector: { aws: { tags: { app: web } } }, mode: { count: 2 }, allowFewer: true }"));
    expect(part.instances["fleet"]!.map((i) => i.instanceId)).toEqual(["i-1"]);
    expect(part.verdicts.find((v) => v.rule === "aws-targets")).toEqual({
      rule: "aws-targets",
      ok: true,
      message: "target fleet: 1 (of the 2 asked for, allowFewer) of 2 running instances selected (i-1); 1 skipped for their tags (opt-in firedrill:opt-in=true, exclusions)",
    });
  });
});

describe("planAws: cloudwatchAlarm stop conditions", () => {
  const target = "fleet: { selector: { aws: { tags: { app: web } } }, mode: { count: 1 } }";
  const watching = `  stopConditions:
    - { cloudwatchAlarm: { names: [checkout-5xx, checkout-health, checkout-typo], region: us-west-2 } }
`;

  it("gives a verdict per alarm: it must exist and not be in ALARM", async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [ec2Instance("i-1", { app: "web", ...OPT_IN })] }] });
    const inputs: DescribeAlarmsCommandInput[] = [];
    cw.on(DescribeAlarmsCommand).callsFake((input: DescribeAlarmsCommandInput) => {
      inputs.push(structuredClone(input));
      return {
        MetricAlarms: [{ AlarmName: "checkout-5xx", StateValue: "OK", StateReason: "fine" }],
        CompositeAlarms: [{ AlarmName: "checkout-health", StateValue: "ALARM", StateReason: "checkout-latency in ALARM" }],
      };
    });
    const part = await plan(experiment(target, watching));
    expect(part.verdicts.filter((v) => v.rule === "aws-cloudwatch-alarm")).toEqual([
      { rule: "aws-cloudwatch-alarm", ok: true, message: "alarm checkout-5xx in us-west-2 exists and is OK" },
      {
        rule: "aws-cloudwatch-alarm",
        ok: false,
        message: "composite alarm checkout-health in us-west-2 is in ALARM now (checkout-latency in ALARM): the run would be aborted at its first poll; start when it is OK",
      },
      {
        rule: "aws-cloudwatch-alarm",
        ok: false,
        message:
          'alarm checkout-typo: no metric or composite alarm named "checkout-typo" exists in us-west-2; check the name and the stop condition\'s region (aws cloudwatch describe-alarms --alarm-names checkout-typo)',
      },
    ]);
    expect(inputs[0]!.AlarmNames).toEqual(["checkout-5xx", "checkout-health", "checkout-typo"]);
  });

  it("checks the alarms of an experiment without aws targets too, and refuses when they can't be read", async () => {
    cw.on(DescribeAlarmsCommand).rejects(awsError("AccessDenied", 403, "not authorized to perform cloudwatch:DescribeAlarms"));
    const hostOnly = parseExperiment(`apiVersion: firedrill/v1
kind: Experiment
metadata: { name: t }
spec:
  hypothesis: h
  targets:
    web: { selector: { labels: { app: web } }, mode: { count: 1 } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, duration: 1m }
  stopConditions:
    - { cloudwatchAlarm: { names: [checkout-5xx] } }
`);
    const part = await plan(hostOnly);
    expect(part.verdicts).toHaveLength(1);
    expect(part.verdicts[0]).toMatchObject({ rule: "aws-cloudwatch-alarm", ok: false });
    expect(part.verdicts[0]!.message).toMatch(/^alarm checkout-5xx: could not be read: DescribeAlarms in eu-west-1 failed: AccessDenied: .*the control plane lacks cloudwatch:DescribeAlarms/);
    expect((await plan(hostOnly, { aws: undefined })).verdicts).toEqual([
      {
        rule: "aws-cloudwatch-alarm",
        ok: false,
        message: "alarm checkout-5xx: can't be checked: the control plane has no AWS access configured (credentials and region from the SDK's default chain, --aws-region)",
      },
    ]);
  });
});
