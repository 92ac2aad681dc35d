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
  Resource: string;
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

  it("lets terminate, stop and start act only on resources carrying the opt-in tag", () => {
    const [key, value] = DEFAULT_OPT_IN_TAG.split("=") as [string, string];
    for (const action of ["ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances"]) {
      expect(granting(action)[0]!.Condition).toEqual({ StringEquals: { [`aws:ResourceTag/${key}`]: value } });
    }
    expect(granting("autoscaling:TerminateInstanceInAutoScalingGroup")[0]!.Condition).toEqual({ StringEquals: { [`autoscaling:ResourceTag/${key}`]: value } });
    for (const action of ["ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups", "cloudwatch:DescribeAlarms"]) {
      expect(granting(action)[0]!.Resource).toBe("*");
    }
  });
});
