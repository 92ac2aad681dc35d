import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateNetworkAclCommand,
  DeleteNetworkAclCommand,
  DescribeNetworkAclsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
  ReplaceNetworkAclAssociationCommand,
} from "@aws-sdk/client-ec2";
import type { Filter } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createStore } from "../store/store.js";
import type { Store } from "../store/store.js";
import { createAwsClients } from "./clients.js";
import { createCloudJournal } from "./cloud-journal.js";
import type { CloudJournal } from "./cloud-journal.js";
import { createNaclDeleteReverter, createNaclRestoreReverter, createNetworkDisrupter, parseNetworkDisruptParams } from "./network-disrupt.js";
import type { NetworkDisruptParams } from "./network-disrupt.js";
import { awsError, GUARDRAILS } from "./test-support.js";

const ec2 = mockClient(EC2Client);
const log = pino({ level: "silent" });
const REGION = "eu-west-1";

interface Model {
  vpcs: Record<string, Record<string, string>>;
  subnets: { id: string; vpc: string; az: string; tags: Record<string, string> }[];
  acls: { id: string; vpc: string; tags: Record<string, string>; assoc: { id: string; subnet: string }[] }[];
}
let model: Model;
let calls: string[];
let dir: string;
let store: Store;
let journal: CloudJournal;
let n = 0;

const tagList = (t: Record<string, string>) => Object.entries(t).map(([Key, Value]) => ({ Key, Value }));
const values = (filters: Filter[] | undefined, name: string) => filters?.find((f) => f.Name === name)?.Values;
const aclOf = (subnet: string) => model.acls.find((a) => a.assoc.some((x) => x.subnet === subnet))?.id;

function seed(): void {
  model = {
    vpcs: { "vpc-1": { "firedrill:opt-in": "true" }, "vpc-2": {} },
    subnets: [
      { id: "subnet-a1", vpc: "vpc-1", az: "eu-west-1a", tags: { tier: "app" } },
      { id: "subnet-a2", vpc: "vpc-1", az: "eu-west-1a", tags: { tier: "db" } },
      { id: "subnet-b1", vpc: "vpc-1", az: "eu-west-1b", tags: { tier: "app" } },
      { id: "subnet-c1", vpc: "vpc-2", az: "eu-west-1a", tags: { tier: "app", "firedrill:opt-in": "true" } },
    ],
    acls: [
      { id: "acl-default1", vpc: "vpc-1", tags: {}, assoc: [{ id: "aa-1", subnet: "subnet-a1" }, { id: "aa-2", subnet: "subnet-a2" }, { id: "aa-3", subnet: "subnet-b1" }] },
      { id: "acl-default2", vpc: "vpc-2", tags: {}, assoc: [{ id: "aa-4", subnet: "subnet-c1" }] },
    ],
  };
}

function answerFromModel(): void {
  ec2.on(DescribeSubnetsCommand).callsFake((input: { Filters?: Filter[] }) => {
    calls.push("DescribeSubnets");
    const az = values(input.Filters, "availability-zone");
    const vpc = values(input.Filters, "vpc-id");
    const id = values(input.Filters, "subnet-id");
    const tags = (input.Filters ?? []).filter((f) => f.Name?.startsWith("tag:"));
    const found = model.subnets.filter((s) => (!az || az.includes(s.az)) && (!vpc || vpc.includes(s.vpc)) && (!id || id.includes(s.id)) && tags.every((f) => f.Values!.includes(s.tags[f.Name!.slice(4)] ?? "\u0000")));
    return { Subnets: found.map((s) => ({ SubnetId: s.id, VpcId: s.vpc, AvailabilityZone: s.az, Tags: tagList(s.tags) })) };
  });
  ec2.on(DescribeVpcsCommand).callsFake((input: { VpcIds?: string[] }) => {
    calls.push("DescribeVpcs");
    return { Vpcs: (input.VpcIds ?? []).map((id) => ({ VpcId: id, Tags: tagList(model.vpcs[id] ?? {}) })) };
  });
  ec2.on(DescribeNetworkAclsCommand).callsFake((input: { Filters?: Filter[] }) => {
    calls.push("DescribeNetworkAcls");
    const subnets = values(input.Filters, "association.subnet-id");
    const vpc = values(input.Filters, "vpc-id");
    const run = values(input.Filters, "tag:firedrill:run");
    const found = model.acls.filter((a) => (!subnets || a.assoc.some((x) => subnets.includes(x.subnet))) && (!vpc || vpc.includes(a.vpc)) && (!run || run.includes(a.tags["firedrill:run"] ?? "\u0000")));
    return { NetworkAcls: found.map((a) => ({ NetworkAclId: a.id, VpcId: a.vpc, Tags: tagList(a.tags), Associations: a.assoc.map((x) => ({ NetworkAclAssociationId: x.id, NetworkAclId: a.id, SubnetId: x.subnet })) })) };
  });
  ec2.on(CreateNetworkAclCommand).callsFake((input: { VpcId: string; DryRun?: boolean; TagSpecifications?: { Tags?: { Key?: string; Value?: string }[] }[] }) => {
    calls.push(`CreateNetworkAcl${input.DryRun ? " (DryRun)" : ""} [journal: ${journal.list().map((e) => `${e.kind} ${e.resource}`).join(", ")}]`);
    if (input.DryRun) throw awsError("DryRunOperation", 412);
    const tags = Object.fromEntries((input.TagSpecifications?.[0]?.Tags ?? []).map((t) => [t.Key!, t.Value!]));
    const id = `acl-run${++n}`;
    model.acls.push({ id, vpc: input.VpcId, tags, assoc: [] });
    return { NetworkAcl: { NetworkAclId: id, VpcId: input.VpcId } };
  });
  ec2.on(ReplaceNetworkAclAssociationCommand).callsFake((input: { AssociationId: string; NetworkAclId: string; DryRun?: boolean }) => {
    const from = model.acls.find((a) => a.assoc.some((x) => x.id === input.AssociationId))!;
    const subnet = from.assoc.find((x) => x.id === input.AssociationId)!.subnet;
    calls.push(`Replace${input.DryRun ? " (DryRun)" : ""} ${subnet} → ${input.NetworkAclId} [journal: ${journal.list().filter((e) => e.resource === subnet).map((e) => e.kind).join(", ")}]`);
    if (input.DryRun) throw awsError("DryRunOperation", 412);
    from.assoc = from.assoc.filter((x) => x.id !== input.AssociationId);
    const newId = `aa-new${++n}`;
    model.acls.find((a) => a.id === input.NetworkAclId)!.assoc.push({ id: newId, subnet });
    return { NewAssociationId: newId };
  });
  ec2.on(DeleteNetworkAclCommand).callsFake((input: { NetworkAclId: string }) => {
    calls.push(`DeleteNetworkAcl ${input.NetworkAclId}`);
    model.acls = model.acls.filter((a) => a.id !== input.NetworkAclId);
    return {};
  });
}

function disrupter(protectSubnets: string[] = []) {
  return createNetworkDisrupter({ clients: createAwsClients({ region: REGION }), journal, log, protectSubnets, sleep: async () => {}, random: () => 0.5 });
}
const params = (p: Partial<NetworkDisruptParams>): NetworkDisruptParams => ({ maxSubnets: 3, ...p });
const ctx = { actor: "test", runId: "run_1", step: "az-down", guardrails: GUARDRAILS };

beforeEach(() => {
  ec2.reset();
  seed();
  calls = [];
  n = 0;
  dir = mkdtempSync(join(tmpdir(), "firedrill-nacl-"));
  store = createStore({ dataDir: dir });
  journal = createCloudJournal(store.db);
  answerFromModel();
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("params", () => {
  it("needs an Availability Zone or subnet tags, and checks each param", () => {
    expect(parseNetworkDisruptParams({ availabilityZone: "eu-west-1a" })).toEqual({ ok: true, value: { availabilityZone: "eu-west-1a", maxSubnets: 3 } });
    const bad = parseNetworkDisruptParams({ vpcId: "x", maxSubnets: 0, colour: "red" });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.issues.map((i) => `${i.path.join(".")}: ${i.message}`)).toEqual([
      "colour: is not a param of aws-network-disrupt; it takes availabilityZone, subnetTags, vpcId, region, maxSubnets",
      'vpcId: "x" is not a VPC id (vpc-0abc…)',
      ": aws-network-disrupt needs availabilityZone (e.g. eu-west-1a) or subnetTags (e.g. { tier: app }) to choose its subnets",
      "maxSubnets: must be a whole number from 1 to 200",
    ]);
  });
});

describe("selection and guardrails", () => {
  it("an Availability Zone spanning two VPCs is refused unless vpcId names one; the opt-in tag of the VPC counts for its subnets", async () => {
    const d = disrupter();
    const spans = await d.select(params({ availabilityZone: "eu-west-1a" }), REGION, GUARDRAILS);
    expect(spans.error).toEqual({ rule: "aws-subnets", reason: "the subnets in eu-west-1a span 2 VPCs (vpc-1, vpc-2); name one with params.vpcId" });
    const one = await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, GUARDRAILS);
    expect(one.error).toBeUndefined();
    expect(one.subnets.map((s) => [s.subnetId, s.networkAclId, s.associationId, s.refusal])).toEqual([
      ["subnet-a1", "acl-default1", "aa-1", undefined],
      ["subnet-a2", "acl-default1", "aa-2", undefined],
    ]);
  });

  it("by tags; an opt-in tag on neither the subnet nor its VPC, an exclusion tag, the control plane's own subnet: each refused with why", async () => {
    model.subnets[0]!.tags["firedrill:exclude"] = "true";
    const d = disrupter(["subnet-b1"]);
    const inVpc1 = await d.select(params({ subnetTags: { tier: "app" }, vpcId: "vpc-1" }), REGION, { ...GUARDRAILS, excludeTags: ["firedrill:exclude"] });
    expect(inVpc1.subnets.map((s) => [s.subnetId, s.refusal?.rule])).toEqual([
      ["subnet-a1", "exclusion-tags"],
      ["subnet-b1", "protected-subnet"],
    ]);
    model.subnets[3]!.tags = { tier: "app" };
    const inVpc2 = await d.select(params({ subnetTags: { tier: "app" }, vpcId: "vpc-2" }), REGION, GUARDRAILS);
    expect(inVpc2.subnets[0]!.refusal).toEqual({ rule: "opt-in-tag", reason: "subnet-c1 lacks the opt-in tag firedrill:opt-in=true on the subnet and on its VPC; tag the subnet or the VPC to let firedrill disrupt it" });
  });

  it("the control plane's own subnet found by IMDS (asked once) is refused like a --aws-protect-subnets one", async () => {
    let asked = 0;
    const d = createNetworkDisrupter({
      clients: createAwsClients({ region: REGION }),
      journal,
      log,
      ownSubnets: async () => (asked++, ["subnet-a2"]),
      sleep: async () => {},
    });
    const selection = await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, GUARDRAILS);
    expect(selection.subnets.map((s) => [s.subnetId, s.refusal?.rule])).toEqual([
      ["subnet-a1", undefined],
      ["subnet-a2", "protected-subnet"],
    ]);
    const results = await d.disrupt(selection, ctx);
    expect(results.map((r) => [r.instanceId, r.ok])).toEqual([
      ["subnet-a1", true],
      ["subnet-a2", false],
    ]);
    expect(aclOf("subnet-a2")).toBe("acl-default1");
    expect(asked).toBe(1);
  });

  it("more subnets than maxSubnets, or none: the step is refused naming them", async () => {
    const d = disrupter();
    const many = await d.select(params({ vpcId: "vpc-1", subnetTags: { tier: "app" }, maxSubnets: 1 }), REGION, GUARDRAILS);
    expect(many.error?.rule).toBe("max-subnets");
    expect(many.error?.reason).toMatch(/^2 subnets tagged tier=app in vpc-1 \(subnet-a1, subnet-b1\), more than maxSubnets 1/);
    const none = await d.select(params({ availabilityZone: "eu-west-1z" }), REGION, GUARDRAILS);
    expect(none.error?.reason).toMatch(/^no subnet in eu-west-1z in eu-west-1/);
  });
});

describe("disrupt", () => {
  it("journals the NACL's deletion before creating it and each original association before its replace; moves only the chosen subnets", async () => {
    const d = disrupter();
    const selection = await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, GUARDRAILS);
    const results = await d.disrupt(selection, ctx);
    expect(results.map((r) => [r.instanceId, r.ok, r.note])).toEqual([
      ["subnet-a1", true, "acl-default1 → acl-run1"],
      ["subnet-a2", true, "acl-default1 → acl-run1"],
    ]);
    expect(calls.filter((c) => !c.startsWith("Describe"))).toEqual([
      "CreateNetworkAcl [journal: nacl-delete network ACL of run run_1 in vpc-1]",
      "Replace subnet-a1 → acl-run1 [journal: nacl-restore]",
      "Replace subnet-a2 → acl-run1 [journal: nacl-restore]",
    ]);
    expect([aclOf("subnet-a1"), aclOf("subnet-a2"), aclOf("subnet-b1")]).toEqual(["acl-run1", "acl-run1", "acl-default1"]);
    expect(model.acls.find((a) => a.id === "acl-run1")!.tags["firedrill:run"]).toBe("run_1");
    const entries = journal.list({ runId: "run_1" });
    expect(entries.map((e) => [e.kind, e.state, e.actedAt !== null])).toEqual(
      expect.arrayContaining([
        ["nacl-delete", "pending", true],
        ["nacl-restore", "pending", true],
        ["nacl-restore", "pending", true],
      ]),
    );
    expect(entries.find((e) => e.resource === "subnet-a1")!.payload).toEqual({ subnetId: "subnet-a1", vpcId: "vpc-1", originalAclId: "acl-default1", originalAssociationId: "aa-1", disruptAclId: "acl-run1" });
  });

  it("reads each subnet again right before: an exclusion tag added since the selection refuses that subnet, nothing replaced", async () => {
    const d = disrupter();
    const selection = await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, { ...GUARDRAILS, excludeTags: ["firedrill:exclude"] });
    model.subnets[1]!.tags["firedrill:exclude"] = "";
    const results = await d.disrupt(selection, { ...ctx, guardrails: { ...GUARDRAILS, excludeTags: ["firedrill:exclude"] } });
    expect(results.map((r) => [r.instanceId, r.ok, r.error])).toEqual([
      ["subnet-a1", true, undefined],
      ["subnet-a2", false, "exclusion-tags: subnet-a2 (or its VPC) carries the exclusion tag firedrill:exclude (tags read at the moment of the action)"],
    ]);
    expect(aclOf("subnet-a2")).toBe("acl-default1");
    expect(journal.list().filter((e) => e.kind === "nacl-restore").map((e) => e.resource)).toEqual(["subnet-a1"]);
  });

  it("a refused CreateNetworkAcl cancels its journal entry and touches no subnet", async () => {
    ec2.on(CreateNetworkAclCommand).rejects(awsError("UnauthorizedOperation", 403, "You are not authorized to perform this operation."));
    const d = disrupter();
    const results = await d.disrupt(await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, GUARDRAILS), ctx);
    expect(results).toMatchObject([{ instanceId: "vpc-1", ok: false, refusedBy: "aws", call: "CreateNetworkAcl" }]);
    expect(journal.list().map((e) => [e.kind, e.state])).toEqual([["nacl-delete", "cancelled"]]);
    expect(ec2.commandCalls(ReplaceNetworkAclAssociationCommand)).toHaveLength(0);
  });

  it("dryRun: CreateNetworkAcl and each ReplaceNetworkAclAssociation with DryRun; nothing changes", async () => {
    const d = disrupter();
    const results = await d.dryRun(await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, GUARDRAILS));
    expect(results.map((r) => [r.instanceId, r.call, r.ok])).toEqual([
      ["vpc-1", "CreateNetworkAcl", true],
      ["subnet-a1", "ReplaceNetworkAclAssociation", true],
      ["subnet-a2", "ReplaceNetworkAclAssociation", true],
    ]);
    expect(model.acls).toHaveLength(2);
    expect(journal.list()).toHaveLength(0);
  });
});

describe("reverters", () => {
  it("restore puts each subnet back on its original NACL (confirmed by DescribeNetworkAcls); delete waits until no subnet uses the run's NACL", async () => {
    const d = disrupter();
    await d.disrupt(await d.select(params({ availabilityZone: "eu-west-1a", vpcId: "vpc-1" }), REGION, GUARDRAILS), ctx);
    const clients = createAwsClients({ region: REGION });
    const restore = createNaclRestoreReverter({ clients, log });
    const del = createNaclDeleteReverter({ clients, log, associationWaitMs: 0 });
    const entries = journal.list({ runId: "run_1" });
    const deleteEntry = entries.find((e) => e.kind === "nacl-delete")!;
    const signal = new AbortController().signal;

    // While the subnets are on it, the run's NACL is not deleted.
    await expect(del.revert({ entry: deleteEntry, signal })).rejects.toThrow(/acl-run1 is still associated with subnet-a1, subnet-a2; waiting for their original associations to be restored/);
    expect(await del.confirm({ entry: deleteEntry, signal })).toMatchObject({ confirmed: false });

    for (const e of entries.filter((x) => x.kind === "nacl-restore")) {
      expect(await restore.confirm({ entry: e, signal })).toEqual({ confirmed: false, detail: `${e.resource} is on the run's acl-run1` });
      await restore.revert({ entry: e, signal });
      expect(await restore.confirm({ entry: e, signal })).toEqual({ confirmed: true, detail: `${e.resource} is on acl-default1 again` });
    }
    expect([aclOf("subnet-a1"), aclOf("subnet-a2")]).toEqual(["acl-default1", "acl-default1"]);
    await del.revert({ entry: deleteEntry, signal });
    expect(await del.confirm({ entry: deleteEntry, signal })).toEqual({ confirmed: true, detail: "no network ACL tagged firedrill:run=run_1 is left" });
    expect(calls).toContain("DeleteNetworkAcl acl-run1");

    // Someone moved a subnet to a NACL of their own meanwhile: left alone, said so.
    model.acls.push({ id: "acl-theirs", vpc: "vpc-1", tags: {}, assoc: [] });
    model.acls[0]!.assoc = model.acls[0]!.assoc.filter((x) => x.subnet !== "subnet-a1");
    model.acls.at(-1)!.assoc.push({ id: "aa-x", subnet: "subnet-a1" });
    const a1 = entries.find((e) => e.resource === "subnet-a1")!;
    expect(await restore.confirm({ entry: a1, signal })).toMatchObject({ confirmed: false, gone: true, detail: expect.stringMatching(/someone else moved it; left alone$/) });
  });
});
