/**
 * Matching EC2 instances to agents: an agent reports the instance id it runs on (IMDSv2), so a
 * target group with an `aws` selector can take host faults on the agents of its instances as well
 * as ec2-terminate / ec2-stop on the instances themselves.
 */
import type { AgentRecord } from "../store/types.js";
import type { AwsInstance } from "./types.js";

/** The instance id an agent reports, or undefined when it has none (not on EC2, IMDS unreachable). */
export function agentInstanceId(agent: AgentRecord): string | undefined {
  return agent.instanceId || agent.facts.instanceId || undefined;
}

/**
 * The agents running on `instances`, and the instances no agent reports (host faults can't reach
 * those; cloud faults still can).
 */
export function matchAgentsToInstances(
  agents: readonly AgentRecord[],
  instances: readonly AwsInstance[],
): { agents: AgentRecord[]; withoutAgent: AwsInstance[] } {
  const byInstance = new Map<string, AgentRecord>();
  for (const a of agents) {
    const id = agentInstanceId(a);
    // A connected agent wins over a stale record of the same instance.
    if (id && (!byInstance.has(id) || (a.connected && !byInstance.get(id)!.connected))) byInstance.set(id, a);
  }
  const matched: AgentRecord[] = [];
  const withoutAgent: AwsInstance[] = [];
  for (const i of instances) {
    const agent = byInstance.get(i.instanceId);
    if (agent) matched.push(agent);
    else withoutAgent.push(i);
  }
  return { agents: matched, withoutAgent };
}
