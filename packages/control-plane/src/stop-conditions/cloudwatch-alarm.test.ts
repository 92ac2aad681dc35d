import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CloudWatchClient, DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import type { DescribeAlarmsCommandInput, DescribeAlarmsCommandOutput } from "@aws-sdk/client-cloudwatch";
import { mockClient } from "aws-sdk-client-mock";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createAwsClients } from "../aws/clients.js";
import { createAwsService } from "../aws/service.js";
import { awsError } from "../aws/test-support.js";
import type { AwsService } from "../aws/types.js";
import type { CloudWatchAlarmStopConditionSpec } from "../experiments/types.js";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { createAlertReceiver } from "./alert-receiver.js";
import { CLOUDWATCH_ERRORS_TO_ABORT, cloudwatchAlarmStopCondition } from "./cloudwatch-alarm.js";
import { createWatcher, describeStopCondition } from "./index.js";
import type { Breach, StopConditionStatus, StopConditionWatcher } from "./types.js";

const cw = mockClient(CloudWatchClient);
const log = pino({ level: "silent" });
const alerts = createAlertReceiver({ log });

let dir: string;
let store: Store;
let aws: AwsService;
const watchers: StopConditionWatcher[] = [];

/** The alarms the mocked CloudWatch holds: name → [type, state, reason]. */
let alarms: Record<string, ["metric" | "composite", string, string]>;

beforeEach(() => {
  cw.reset();
  alarms = {};
  cw.on(DescribeAlarmsCommand).callsFake((input: DescribeAlarmsCommandInput): Partial<DescribeAlarmsCommandOutput> => {
    const wanted = Object.entries(alarms).filter(([name]) => input.AlarmNames?.includes(name));
    const alarm = ([name, [, state, reason]]: (typeof wanted)[number]) => ({ AlarmName: name, StateValue: state as "OK", StateReason: reason });
    return {
      MetricAlarms: wanted.filter(([, [type]]) => type === "metric").map(alarm),
      CompositeAlarms: wanted.filter(([, [type]]) => type === "composite").map(alarm),
    };
  });
  dir = mkdtempSync(join(tmpdir(), "firedrill-cw-"));
  store = createStore({ dataDir: dir });
  aws = createAwsService({ clients: createAwsClients({ region: "eu-west-1" }), db: store.db, log, sleep: async () => {}, retry: { attempts: 2 } });
});

afterEach(() => {
  for (const w of watchers.splice(0)) w.stop();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const spec = (names: string[], overrides: Partial<CloudWatchAlarmStopConditionSpec> = {}): CloudWatchAlarmStopConditionSpec => ({ names, intervalMs: 20, ...overrides });

function watch(s: CloudWatchAlarmStopConditionSpec, withAws: AwsService | undefined = aws) {
  const w = cloudwatchAlarmStopCondition.create(s, { log, alerts, ...(withAws ? { aws: withAws } : {}) });
  watchers.push(w);
  const breaches: Breach[] = [];
  const statuses: StopConditionStatus[] = [];
  return { w, breaches, statuses, start: () => w.start((b) => breaches.push(b), (st) => statuses.push(st)) };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("cloudwatchAlarm stop condition", () => {
  it("is healthy while the alarms are OK and breaches when one flips to ALARM, naming it and its reason", async () => {
    alarms = { "checkout-5xx": ["metric", "OK", "Threshold Crossed: 0 datapoints"], "checkout-latency": ["metric", "INSUFFICIENT_DATA", "no data"] };
    const s = spec(["checkout-5xx", "checkout-latency"], { region: "eu-west-1" });
    expect(describeStopCondition({ kind: "cloudwatchAlarm", cloudwatchAlarm: s })).toBe("cloudwatchAlarm checkout-5xx, checkout-latency (eu-west-1)");
    const t = watch(s);
    expect(await t.w.check()).toEqual({ healthy: true, detail: "no alarm in ALARM (checkout-5xx OK, checkout-latency INSUFFICIENT_DATA)", value: 0 });

    t.start();
    await until("three healthy observations", () => t.statuses.length >= 3);
    expect(t.breaches).toEqual([]);
    alarms["checkout-5xx"] = ["metric", "ALARM", "Threshold Crossed: 1 datapoint [7.0 (03/03/26 10:01:00)] was greater than the threshold (5.0)."];
    await until("a breach", () => t.breaches.length > 0);
    expect(t.breaches[0]).toMatchObject({
      condition: "cloudwatchAlarm checkout-5xx, checkout-latency (eu-west-1)",
      reason: "alarm checkout-5xx is in ALARM: Threshold Crossed: 1 datapoint [7.0 (03/03/26 10:01:00)] was greater than the threshold (5.0).",
    });
    expect(cw.commandCalls(DescribeAlarmsCommand)[0]!.args[0].input).toMatchObject({ AlarmTypes: ["MetricAlarm", "CompositeAlarm"] });
  });

  it("watches composite alarms too", async () => {
    alarms = { "checkout-health": ["composite", "ALARM", "ALARM(checkout-5xx) OR ALARM(checkout-latency)"] };
    const t = watch(spec(["checkout-health"]));
    expect(await t.w.check()).toEqual({ healthy: false, detail: "composite alarm checkout-health is in ALARM: ALARM(checkout-5xx) OR ALARM(checkout-latency)", value: 1 });
    t.start();
    await until("a breach", () => t.breaches.length > 0);
    expect(t.breaches).toHaveLength(1);
  });

  it("a missing alarm is unhealthy, and a breach after 3 consecutive observations", async () => {
    alarms = { "checkout-5xx": ["metric", "OK", ""] };
    const t = watch(spec(["checkout-5xx", "chekout-latency"]));
    expect(await t.w.check()).toEqual({
      healthy: false,
      detail: 'no metric or composite alarm named "chekout-latency" exists in eu-west-1; check the name and the region',
      value: 0,
    });
    t.start();
    await until("a breach", () => t.breaches.length > 0);
    expect(t.statuses.slice(0, CLOUDWATCH_ERRORS_TO_ABORT).map((s) => s.detail.replace(/.*\(/, "("))).toEqual([
      "(1st consecutive error; 3 abort the run)",
      "(2nd consecutive error; 3 abort the run)",
      "(3rd consecutive error; 3 abort the run)",
    ]);
  });

  it("an API error is unhealthy; one success resets the count", async () => {
    cw.reset();
    cw.on(DescribeAlarmsCommand)
      .rejectsOnce(awsError("Throttling", 400, "Rate exceeded"))
      .rejectsOnce(awsError("Throttling", 400, "Rate exceeded"))
      .resolvesOnce({ MetricAlarms: [{ AlarmName: "a", StateValue: "OK" }] })
      .rejects(awsError("AccessDenied", 403, "User is not authorized to perform: cloudwatch:DescribeAlarms"));
    const t = watch(spec(["a"]));
    t.start();
    await until("a breach", () => t.breaches.length > 0);
    // Two throttles are one failed observation after the retry (attempts: 2), then OK, then three denials.
    expect(t.statuses.map((s) => s.healthy)).toEqual([false, true, false, false, false]);
    // A failed read has no value; a read with none in ALARM is 0.
    expect(t.statuses.map((s) => s.value)).toEqual([null, 0, null, null, null]);
    expect(t.breaches[0]!.reason).toBe(
      "DescribeAlarms in eu-west-1 failed: AccessDenied: User is not authorized to perform: cloudwatch:DescribeAlarms; the control plane lacks cloudwatch:DescribeAlarms (see infra/aws/iam-policy.json) (3rd consecutive error; 3 abort the run)",
    );
  });

  it("without AWS access it is unhealthy and says so", async () => {
    const w = createWatcher({ kind: "cloudwatchAlarm", cloudwatchAlarm: spec(["a"]) }, { log, alerts });
    watchers.push(w);
    expect(await w.check()).toEqual({ healthy: false, detail: "the control plane has no AWS access configured", value: null });
  });
});
