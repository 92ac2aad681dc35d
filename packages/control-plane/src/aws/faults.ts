/**
 * Cloud fault kinds: steps the control plane carries out itself through the AWS API, on the EC2
 * instances of a target group with an `aws` selector (agents carry out every other kind).
 */

/** The cloud fault kinds, in the order messages list them. */
export const CLOUD_FAULT_KINDS = ["ec2-terminate", "ec2-stop", "ec2-reboot", "aws-network-disrupt"] as const;

/** A cloud fault kind. */
export type CloudFaultKind = (typeof CLOUD_FAULT_KINDS)[number];

/** Whether `kind` is carried out by the control plane on EC2 instances. */
export function isCloudFaultKind(kind: string): kind is CloudFaultKind {
  return (CLOUD_FAULT_KINDS as readonly string[]).includes(kind);
}

/** What each cloud kind does, for messages and docs. */
export const CLOUD_FAULT_HINTS: Record<CloudFaultKind, string> = {
  "ec2-terminate":
    "terminates the instances (in an Auto Scaling group without decrementing its desired capacity, so the group replaces them); no params, and duration is optional (how long the step lasts after the kill)",
  "ec2-stop": "stops the instances and starts them again when its duration ends or the run aborts; no params, duration required",
  "ec2-reboot":
    "reboots the instances (RebootInstances; each comes back by itself, so there is nothing to revert); no params, and duration is optional (how long the step lasts after the reboot)",
  "aws-network-disrupt":
    "cuts the chosen subnets (params.availabilityZone or params.subnetTags, in one VPC) off the network with a deny-all network ACL and restores their own NACLs when its duration ends or the run stops; duration required (see docs/faults/aws-network-disrupt.md)",
};
