import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DEFAULT_OPT_IN_TAG } from "./rules.js";
import { AWS_CALLS } from "./service.js";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string>>;
}

describe("infra/aws/iam-policy.json", () => {
  const policy = JSON.parse(readFileSync(resolve(ROOT, "infra/aws/iam-policy.json"), "utf8")) as { Statement: Statement[] };
  const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
  const granting = (action: string) => policy.Statement.filter((s) => s.Effect === "Allow" && actions(s).includes(action));

  it("grants every call the control plane makes, and nothing else", () => {
    expect(policy.Statement.flatMap(actions).sort()).toEqual(Object.values(AWS_CALLS).sort());
    for (const action of Object.values(AWS_CALLS)) expect(granting(action), action).toHaveLength(1);
  });

  it("lets terminate, stop, start and reboot act only on resources carrying the opt-in tag", () => {
    const [key, value] = DEFAULT_OPT_IN_TAG.split("=") as [string, string];
    for (const action of ["ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances", "ec2:RebootInstances"]) {
      expect(granting(action)[0]!.Condition).toEqual({ StringEquals: { [`aws:ResourceTag/${key}`]: value } });
    }
    expect(granting("autoscaling:TerminateInstanceInAutoScalingGroup")[0]!.Condition).toEqual({ StringEquals: { [`autoscaling:ResourceTag/${key}`]: value } });
    for (const action of ["ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups", "cloudwatch:DescribeAlarms", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkAcls"]) {
      expect(granting(action)[0]!.Resource).toBe("*");
    }
  });

  it("aws-network-disrupt: tags only at the creation of a NACL, deletes only NACLs firedrill tagged for a run", () => {
    expect(granting("ec2:CreateTags")[0]!.Condition).toEqual({ StringEquals: { "ec2:CreateAction": "CreateNetworkAcl" } });
    expect(granting("ec2:DeleteNetworkAcl")[0]!.Condition).toEqual({ Null: { "aws:ResourceTag/firedrill:run": "false" } });
    expect(granting("ec2:DeleteNetworkAcl")[0]!.Resource).toBe("arn:aws:ec2:*:*:network-acl/*");
  });
});
