/**
 * A {@link FakeAwsPlugin} for the fake AWS (fake-aws.ts): VPCs, subnets and network ACLs with their
 * associations, for `aws-network-disrupt`. Its state lives under `state.ext.vpc` (persisted with
 * the rest). Actions: DescribeVpcs, DescribeSubnets, DescribeNetworkAcls, CreateNetworkAcl (with
 * TagSpecifications), ReplaceNetworkAclAssociation (a new association id each time),
 * DeleteNetworkAcl (refused while associated, and for a VPC's default NACL), CreateTags.
 */
import { randomBytes } from "node:crypto";
import { ec2Filters, FakeAwsError, listParam } from "./fake-aws.js";
import type { FakeAwsPlugin, FakeAwsState, FakeRequest } from "./fake-aws.js";

export interface FakeVpc {
  id: string;
  region: string;
  tags: Record<string, string>;
}
export interface FakeSubnet {
  id: string;
  vpcId: string;
  region: string;
  availabilityZone: string;
  tags: Record<string, string>;
}
export interface FakeNetworkAcl {
  id: string;
  vpcId: string;
  region: string;
  isDefault: boolean;
  tags: Record<string, string>;
  associations: { associationId: string; subnetId: string }[];
}
export interface FakeVpcState {
  vpcs: Record<string, FakeVpc>;
  subnets: Record<string, FakeSubnet>;
  acls: Record<string, FakeNetworkAcl>;
}

const hex = (n: number) => randomBytes(n).toString("hex").slice(0, 17);

/** The plugin's state in a fake's state (created empty when absent). */
export function vpcState(state: FakeAwsState): FakeVpcState {
  const s = (state.ext.vpc ??= { vpcs: {}, subnets: {}, acls: {} }) as FakeVpcState;
  return s;
}

/**
 * A VPC with its default NACL and one subnet per zone, each associated with the default NACL.
 * Returns the state to put under `ext.vpc` (merge several with {@link mergeVpcStates}).
 */
export function fakeVpc(opts: { vpcId: string; region?: string; tags?: Record<string, string>; subnets: { id: string; availabilityZone: string; tags?: Record<string, string> }[] }): FakeVpcState {
  const region = opts.region ?? "eu-west-1";
  const aclId = `acl-${opts.vpcId.slice(4)}`;
  return {
    vpcs: { [opts.vpcId]: { id: opts.vpcId, region, tags: opts.tags ?? {} } },
    subnets: Object.fromEntries(opts.subnets.map((s) => [s.id, { id: s.id, vpcId: opts.vpcId, region, availabilityZone: s.availabilityZone, tags: s.tags ?? {} }])),
    acls: {
      [aclId]: { id: aclId, vpcId: opts.vpcId, region, isDefault: true, tags: {}, associations: opts.subnets.map((s) => ({ associationId: `aclassoc-${hex(8)}`, subnetId: s.id })) },
    },
  };
}

export function mergeVpcStates(...states: FakeVpcState[]): FakeVpcState {
  const out: FakeVpcState = { vpcs: {}, subnets: {}, acls: {} };
  for (const s of states) {
    Object.assign(out.vpcs, s.vpcs);
    Object.assign(out.subnets, s.subnets);
    Object.assign(out.acls, s.acls);
  }
  return out;
}

/** Which NACL a subnet is associated with in a state (undefined: none). */
export function aclOfSubnet(state: FakeAwsState, subnetId: string): string | undefined {
  return Object.values(vpcState(state).acls).find((a) => a.associations.some((x) => x.subnetId === subnetId))?.id;
}

function dryRun(req: FakeRequest): void {
  if (req.params.get("DryRun") === "true") throw new FakeAwsError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412);
}

const tagSet = (tags: Record<string, string>) => Object.entries(tags).map(([key, value]) => ({ key, value }));

function tagFilter(tags: Record<string, string>, f: { name: string; values: string[] }): boolean | undefined {
  if (f.name === "tag-key") return f.values.some((k) => k in tags);
  if (f.name.startsWith("tag:")) {
    const v = tags[f.name.slice(4)];
    return v !== undefined && f.values.includes(v);
  }
  return undefined;
}

function unknownFilter(name: string, known: string): never {
  throw new FakeAwsError("InvalidParameterValue", `The filter '${name}' is invalid (this fake knows ${known})`);
}

function aclXml(a: FakeNetworkAcl) {
  return {
    networkAclId: a.id,
    vpcId: a.vpcId,
    default: a.isDefault,
    entrySet: [],
    associationSet: a.associations.map((x) => ({ networkAclAssociationId: x.associationId, networkAclId: a.id, subnetId: x.subnetId })),
    tagSet: tagSet(a.tags),
  };
}

/** Tags of `TagSpecification.N` for a resource type. */
function tagSpecs(req: FakeRequest, resourceType: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (let i = 1; req.params.has(`TagSpecification.${i}.ResourceType`); i++) {
    if (req.params.get(`TagSpecification.${i}.ResourceType`) !== resourceType) continue;
    for (let j = 1; req.params.has(`TagSpecification.${i}.Tag.${j}.Key`); j++) {
      tags[req.params.get(`TagSpecification.${i}.Tag.${j}.Key`)!] = req.params.get(`TagSpecification.${i}.Tag.${j}.Value`) ?? "";
    }
  }
  return tags;
}

export const fakeAwsVpcPlugin: FakeAwsPlugin = {
  ec2: {
    DescribeVpcs(req) {
      const s = vpcState(req.state);
      const ids = listParam(req.params, "VpcId");
      const missing = ids.filter((id) => s.vpcs[id]?.region !== req.region);
      if (missing.length) throw new FakeAwsError("InvalidVpcID.NotFound", `The vpc ID '${missing.join(", ")}' does not exist`);
      const vpcs = Object.values(s.vpcs).filter((v) => v.region === req.region && (ids.length === 0 || ids.includes(v.id)));
      return { vpcSet: vpcs.map((v) => ({ vpcId: v.id, state: "available", cidrBlock: "10.0.0.0/16", tagSet: tagSet(v.tags) })) };
    },
    DescribeSubnets(req) {
      const s = vpcState(req.state);
      const ids = listParam(req.params, "SubnetId");
      const filters = ec2Filters(req.params);
      const subnets = Object.values(s.subnets).filter(
        (n) =>
          n.region === req.region &&
          (ids.length === 0 || ids.includes(n.id)) &&
          filters.every((f) => {
            if (f.name === "availability-zone") return f.values.includes(n.availabilityZone);
            if (f.name === "vpc-id") return f.values.includes(n.vpcId);
            if (f.name === "subnet-id") return f.values.includes(n.id);
            return tagFilter(n.tags, f) ?? unknownFilter(f.name, "availability-zone, vpc-id, subnet-id, tag-key, tag:KEY");
          }),
      );
      return { subnetSet: subnets.map((n) => ({ subnetId: n.id, vpcId: n.vpcId, availabilityZone: n.availabilityZone, state: "available", cidrBlock: "10.0.1.0/24", tagSet: tagSet(n.tags) })) };
    },
    DescribeNetworkAcls(req) {
      const s = vpcState(req.state);
      const ids = listParam(req.params, "NetworkAclId");
      const filters = ec2Filters(req.params);
      const acls = Object.values(s.acls).filter(
        (a) =>
          a.region === req.region &&
          (ids.length === 0 || ids.includes(a.id)) &&
          filters.every((f) => {
            if (f.name === "association.subnet-id") return a.associations.some((x) => f.values.includes(x.subnetId));
            if (f.name === "vpc-id") return f.values.includes(a.vpcId);
            if (f.name === "network-acl-id") return f.values.includes(a.id);
            if (f.name === "default") return f.values.includes(String(a.isDefault));
            return tagFilter(a.tags, f) ?? unknownFilter(f.name, "association.subnet-id, vpc-id, network-acl-id, default, tag-key, tag:KEY");
          }),
      );
      return { networkAclSet: acls.map(aclXml) };
    },
    CreateNetworkAcl(req) {
      const s = vpcState(req.state);
      const vpcId = req.params.get("VpcId") ?? "";
      if (s.vpcs[vpcId]?.region !== req.region) throw new FakeAwsError("InvalidVpcID.NotFound", `The vpc ID '${vpcId}' does not exist`);
      dryRun(req);
      const acl: FakeNetworkAcl = { id: `acl-${hex(9)}`, vpcId, region: req.region, isDefault: false, tags: tagSpecs(req, "network-acl"), associations: [] };
      s.acls[acl.id] = acl;
      return { networkAcl: aclXml(acl) };
    },
    ReplaceNetworkAclAssociation(req) {
      const s = vpcState(req.state);
      const associationId = req.params.get("AssociationId") ?? "";
      const aclId = req.params.get("NetworkAclId") ?? "";
      const to = s.acls[aclId];
      if (!to || to.region !== req.region) throw new FakeAwsError("InvalidNetworkAclID.NotFound", `The networkAcl ID '${aclId}' does not exist`);
      const from = Object.values(s.acls).find((a) => a.region === req.region && a.associations.some((x) => x.associationId === associationId));
      if (!from) throw new FakeAwsError("InvalidAssociationID.NotFound", `The association ID '${associationId}' does not exist`);
      const subnetId = from.associations.find((x) => x.associationId === associationId)!.subnetId;
      if (s.subnets[subnetId]?.vpcId !== to.vpcId) throw new FakeAwsError("InvalidParameterValue", `${aclId} is not in the VPC of ${subnetId}`);
      dryRun(req);
      from.associations = from.associations.filter((x) => x.associationId !== associationId);
      const newAssociationId = `aclassoc-${hex(8)}`;
      to.associations.push({ associationId: newAssociationId, subnetId });
      return { newAssociationId };
    },
    DeleteNetworkAcl(req) {
      const s = vpcState(req.state);
      const aclId = req.params.get("NetworkAclId") ?? "";
      const acl = s.acls[aclId];
      if (!acl || acl.region !== req.region) throw new FakeAwsError("InvalidNetworkAclID.NotFound", `The networkAcl ID '${aclId}' does not exist`);
      if (acl.isDefault) throw new FakeAwsError("InvalidParameterValue", `cannot delete default network ACL ${aclId}`);
      if (acl.associations.length > 0) throw new FakeAwsError("DependencyViolation", `The networkAcl '${aclId}' has dependencies and cannot be deleted.`);
      dryRun(req);
      delete s.acls[aclId];
      return { return: true };
    },
    CreateTags(req) {
      const s = vpcState(req.state);
      const ids = listParam(req.params, "ResourceId");
      dryRun(req);
      const tags: Record<string, string> = {};
      for (let j = 1; req.params.has(`Tag.${j}.Key`); j++) tags[req.params.get(`Tag.${j}.Key`)!] = req.params.get(`Tag.${j}.Value`) ?? "";
      for (const id of ids) {
        const target = s.acls[id] ?? s.subnets[id] ?? s.vpcs[id] ?? req.state.instances[id];
        if (!target) throw new FakeAwsError("InvalidID", `The ID '${id}' is not valid`);
        Object.assign(target.tags, tags);
      }
      return { return: true };
    },
  },
};
