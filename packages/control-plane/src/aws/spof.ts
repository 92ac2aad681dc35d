/**
 * The SPOF finder (`firedrill spof`): single points of failure in the Auto Scaling groups of a
 * region and among the agents' label groups, each with why it is one, in plain words. Chaos
 * engineering starts here: find what can't fail before making it fail.
 */
import type { AgentRecord } from "../store/types.js";
import type { AwsGroupState, AwsService } from "./types.js";

/** What kind of single point of failure. */
export type SpofKind = "asg-single-instance" | "asg-max-size-one" | "asg-single-az" | "label-group-single-host";

/** One single point of failure. */
export interface Spof {
  kind: SpofKind;
  /** The group (`web-asg`) or the label group (`app=web`). */
  subject: string;
  /** Why it is a SPOF and what to do about it, in plain words. */
  why: string;
}

/** The label keys whose groups are checked by default. */
export const DEFAULT_SPOF_LABEL_KEYS: readonly string[] = ["app", "service", "role"];

/** Options of {@link findSpofs}. */
export interface FindSpofsOptions {
  /** AWS; without it only the agents' label groups are checked. */
  aws?: AwsService;
  /** Region of the Auto Scaling groups; the control plane's default when absent. */
  region?: string;
  /** The agents the control plane knows (connected or not). */
  agents: readonly AgentRecord[];
  /** Label keys whose groups must have more than one connected host. @default ["app","service","role"] */
  labelKeys?: readonly string[];
}

const KIND_ORDER: readonly SpofKind[] = ["asg-single-instance", "asg-max-size-one", "asg-single-az", "label-group-single-host"];

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** SPOFs of Auto Scaling groups as they are now. Groups scaled to zero on purpose are left out. */
export function groupSpofs(groups: readonly AwsGroupState[]): Spof[] {
  const out: Spof[] = [];
  for (const g of groups) {
    if (g.desiredCapacity === 0 && g.instances.length === 0) continue;
    const where = `${g.name} (${g.region})`;
    if (g.inService.length === 0) {
      out.push({
        kind: "asg-single-instance",
        subject: g.name,
        why: `${where} has no InService instance although its desired capacity is ${g.desiredCapacity}: it is down or still launching, so nothing stands behind it`,
      });
    } else if (g.inService.length === 1) {
      out.push({
        kind: "asg-single-instance",
        subject: g.name,
        why: `${where} has a single InService instance (${g.inService[0]!}): when it fails, nothing serves until the group has launched and warmed up a replacement; run at least 2`,
      });
    }
    if (g.maxSize === 1) {
      out.push({
        kind: "asg-max-size-one",
        subject: g.name,
        why: `${where} has MaxSize 1: it can never run a second instance, not even while replacing a failed one; raise MaxSize (and DesiredCapacity) to at least 2`,
      });
    }
    const inServiceAzs = [...new Set(g.instances.filter((i) => g.inService.includes(i.instanceId)).map((i) => i.availabilityZone))];
    if (g.inService.length >= 2 && inServiceAzs.length === 1) {
      out.push({
        kind: "asg-single-az",
        subject: g.name,
        why: `${where} runs all ${g.inService.length} InService instances in ${inServiceAzs[0]!}: an outage of that Availability Zone takes the whole group down${g.availabilityZones.length > 1 ? ` (the group may use ${g.availabilityZones.join(", ")}, but has not spread)` : ""}`,
      });
    } else if (g.availabilityZones.length === 1) {
      out.push({
        kind: "asg-single-az",
        subject: g.name,
        why: `${where} may only launch in ${g.availabilityZones[0]!}: however many instances it runs, an outage of that Availability Zone takes the whole group down; add subnets in other zones`,
      });
    }
  }
  return out;
}

/** Label groups (e.g. app=web) that have exactly one connected host. */
export function labelSpofs(agents: readonly AgentRecord[], labelKeys: readonly string[] = DEFAULT_SPOF_LABEL_KEYS): Spof[] {
  const out: Spof[] = [];
  for (const key of labelKeys) {
    const groups = new Map<string, { connected: AgentRecord[]; disconnected: AgentRecord[] }>();
    for (const a of agents) {
      const value = a.labels[key];
      if (value === undefined) continue;
      let g = groups.get(value);
      if (!g) groups.set(value, (g = { connected: [], disconnected: [] }));
      (a.connected ? g.connected : g.disconnected).push(a);
    }
    for (const [value, g] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
      if (g.connected.length !== 1) continue;
      const host = g.connected[0]!;
      const name = host.hostname || host.id;
      const az = host.availabilityZone ? ` in ${host.availabilityZone}` : "";
      const others = g.disconnected.length > 0 ? ` (${plural(g.disconnected.length, "more host carries", "more hosts carry")} it but ${g.disconnected.length === 1 ? "is" : "are"} not connected)` : "";
      out.push({
        kind: "label-group-single-host",
        subject: `${key}=${value}`,
        why: `only one connected host carries ${key}=${value}: ${name}${az}${others}; if it fails, nothing else does its work`,
      });
    }
  }
  return out;
}

/** Orders SPOFs by kind, then subject. */
export function sortSpofs(spofs: readonly Spof[]): Spof[] {
  return [...spofs].sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.subject.localeCompare(b.subject));
}

/**
 * Finds the single points of failure: Auto Scaling groups of the region whose InService count or
 * MaxSize is 1 or whose instances all sit in one Availability Zone, and agent label groups with a
 * single connected host.
 * Thrown when AWS can't be read: AwsCallError, AwsRegionError.
 */
export async function findSpofs(options: FindSpofsOptions): Promise<Spof[]> {
  const groups = options.aws ? await options.aws.listGroups(options.region) : [];
  return sortSpofs([...groupSpofs(groups), ...labelSpofs(options.agents, options.labelKeys)]);
}
