/** Helpers for tests of the AWS side: SDK-shaped errors and mocked responses. */
import type { AutoScalingGroup } from "@aws-sdk/client-auto-scaling";
import { EC2ServiceException } from "@aws-sdk/client-ec2";
import type { Instance } from "@aws-sdk/client-ec2";
import type { AwsGuardrails, AwsInstance } from "./types.js";

/** An error as the SDK throws it for an AWS error response. */
export function awsError(name: string, status: number, message = `${name} (test)`): EC2ServiceException {
  return new EC2ServiceException({ name, $fault: status >= 500 ? "server" : "client", $metadata: { httpStatusCode: status }, message });
}

/** A running EC2 instance as DescribeInstances returns it. */
export function ec2Instance(id: string, tags: Record<string, string>, az = "eu-west-1a", state = "running"): Instance {
  return {
    InstanceId: id,
    State: { Name: state as "running", Code: 16 },
    Placement: { AvailabilityZone: az },
    Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
  };
}

/** An Auto Scaling group as DescribeAutoScalingGroups returns it. */
export function asgGroup(
  name: string,
  opts: { min?: number; max?: number; desired?: number; inService?: string[]; other?: { id: string; state: string }[]; azs?: string[]; instanceAz?: (id: string) => string },
): AutoScalingGroup {
  const az = opts.instanceAz ?? (() => "eu-west-1a");
  const inService = opts.inService ?? [];
  return {
    AutoScalingGroupName: name,
    MinSize: opts.min ?? 1,
    MaxSize: opts.max ?? 10,
    DesiredCapacity: opts.desired ?? inService.length,
    DefaultCooldown: 300,
    HealthCheckType: "EC2",
    CreatedTime: new Date(0),
    AvailabilityZones: opts.azs ?? ["eu-west-1a", "eu-west-1b"],
    Instances: [
      ...inService.map((id) => ({ InstanceId: id, AvailabilityZone: az(id), LifecycleState: "InService" as const, HealthStatus: "Healthy", ProtectedFromScaleIn: false })),
      ...(opts.other ?? []).map((o) => ({ InstanceId: o.id, AvailabilityZone: az(o.id), LifecycleState: o.state as "Terminating", HealthStatus: "Healthy", ProtectedFromScaleIn: false })),
    ],
  };
}

/** An instance as DescribeInstances returns it (for the read right before each action). */
export function ec2InstanceOf(i: AwsInstance, state = "running"): Instance {
  return ec2Instance(i.instanceId, i.tags, i.availabilityZone, state);
}

/** Answers DescribeInstances from `live` (by the instance-id filter, every instance without one). */
export function describeFrom(live: ReadonlyMap<string, Instance>): (input: { Filters?: { Name?: string | undefined; Values?: string[] | undefined }[] | undefined }) => { Reservations: { Instances: Instance[] }[] } {
  return (input) => {
    const ids = input.Filters?.find((f) => f.Name === "instance-id")?.Values;
    const found = ids ? ids.flatMap((id) => (live.has(id) ? [live.get(id)!] : [])) : [...live.values()];
    return { Reservations: [{ Instances: found.map((i) => structuredClone(i)) }] };
  };
}

/** The default AWS guardrails. */
export const GUARDRAILS: AwsGuardrails = { optInTag: "firedrill:opt-in=true", excludeTags: [], minHealthy: 1 };

/** An opted-in instance, optionally in a group. */
export function instance(id: string, group?: string, tags: Record<string, string> = {}): AwsInstance {
  return {
    instanceId: id,
    region: "eu-west-1",
    availabilityZone: "eu-west-1a",
    state: "running",
    tags: { "firedrill:opt-in": "true", ...(group ? { "aws:autoscaling:groupName": group } : {}), ...tags },
    ...(group ? { autoScalingGroup: group } : {}),
  };
}
