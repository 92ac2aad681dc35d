/**
 * `aws-network-disrupt`: an Availability Zone outage (or a chosen set of subnets) made with a
 * network ACL. For the subnets selected (by Availability Zone or by tags, in one VPC), the control
 * plane creates a deny-all network ACL for the run (a new NACL denies everything: it has only the
 * default deny rules), tagged `firedrill:run=<run id>`, and replaces each subnet's NACL association
 * with it. Every step is written to the cloud-revert journal BEFORE its call:
 *
 * - `nacl-delete` (one per step, before CreateNetworkAcl): delete the run's NACLs in the VPC (found
 *   by their tag, so a crash between the create and any later write leaves nothing unknown), once
 *   no subnet is associated with them any more;
 * - `nacl-restore` (one per subnet, before its ReplaceNetworkAclAssociation): associate the subnet
 *   with its original NACL again, confirmed when DescribeNetworkAcls shows it so.
 *
 * Guardrails, checked again on each subnet right before its replace: the opt-in tag on the subnet
 * or its VPC, the exclusion tags, never a protected subnet (the control plane's own,
 * `--aws-protect-subnets`), at most `maxSubnets` subnets, one VPC.
 */
import {
  CreateNetworkAclCommand,
  DeleteNetworkAclCommand,
  DescribeNetworkAclsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  ReplaceNetworkAclAssociationCommand,
} from "@aws-sdk/client-ec2";
import type { Filter, NetworkAcl, Subnet } from "@aws-sdk/client-ec2";
import type { Logger } from "pino";
import type { AwsClients } from "./clients.js";
import type { CloudJournal, CloudRevertCheck, CloudRevertContext, CloudRevertEntry, CloudReverter } from "./cloud-journal.js";
import { AwsCallError, describeAwsError, errorCode, isDefinitiveRefusal } from "./errors.js";
import { withRetry } from "./retry.js";
import type { RetryOptions } from "./retry.js";
import { tagRefusal } from "./rules.js";
import type { AwsGuardrails, InstanceActionResult } from "./types.js";

/** The fault kind. */
export const NETWORK_DISRUPT_KIND = "aws-network-disrupt";
/** The revert kind that associates a subnet with its original NACL again. */
export const NACL_RESTORE_REVERT = "nacl-restore";
/** The revert kind that deletes the run's deny-all NACL. */
export const NACL_DELETE_REVERT = "nacl-delete";
/** The tag on the run's NACL: `firedrill:run=<run id>`. */
export const RUN_TAG_KEY = "firedrill:run";
/** Default most subnets one step may disrupt. */
export const DEFAULT_MAX_SUBNETS = 3;

/** The step's params. */
export interface NetworkDisruptParams {
  /** e.g. eu-west-1a: every subnet of that zone (in the VPC). */
  availabilityZone?: string;
  /** Subnets carrying all these tags. */
  subnetTags?: Record<string, string>;
  /** The VPC; inferred when every selected subnet is in one. */
  vpcId?: string;
  /** The region; default: the target group's, else the control plane's. */
  region?: string;
  /** @default 3 */
  maxSubnets: number;
}

/** A problem with the params, for the spec's messages. */
export interface ParamIssue {
  path: string[];
  message: string;
}

const PARAM_KEYS = ["availabilityZone", "subnetTags", "vpcId", "region", "maxSubnets"];

/** Reads and checks the params of an aws-network-disrupt step. */
export function parseNetworkDisruptParams(params: unknown): { ok: true; value: NetworkDisruptParams } | { ok: false; issues: ParamIssue[] } {
  const issues: ParamIssue[] = [];
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    return { ok: false, issues: [{ path: [], message: "must be a mapping, e.g. params: { availabilityZone: eu-west-1a }" }] };
  }
  const p = params as Record<string, unknown>;
  for (const key of Object.keys(p)) {
    if (!PARAM_KEYS.includes(key)) issues.push({ path: [key], message: `is not a param of ${NETWORK_DISRUPT_KIND}; it takes ${PARAM_KEYS.join(", ")}` });
  }
  const value: NetworkDisruptParams = { maxSubnets: DEFAULT_MAX_SUBNETS };
  for (const key of ["availabilityZone", "vpcId", "region"] as const) {
    const v = p[key];
    if (v === undefined) continue;
    if (typeof v !== "string" || v.trim() === "") issues.push({ path: [key], message: "must be a non-empty string" });
    else value[key] = v;
  }
  if (value.vpcId !== undefined && !/^vpc-[0-9a-f]+$/.test(value.vpcId)) issues.push({ path: ["vpcId"], message: `${JSON.stringify(value.vpcId)} is not a VPC id (vpc-0abc…)` });
  if (p.subnetTags !== undefined) {
    const t = p.subnetTags;
    if (typeof t !== "object" || t === null || Array.isArray(t) || Object.keys(t).length === 0 || !Object.values(t).every((v) => typeof v === "string")) {
      issues.push({ path: ["subnetTags"], message: "must be a mapping of tag keys to string values, e.g. subnetTags: { tier: app }" });
    } else value.subnetTags = { ...(t as Record<string, string>) };
  }
  if (value.availabilityZone === undefined && value.subnetTags === undefined) {
    issues.push({ path: [], message: `${NETWORK_DISRUPT_KIND} needs availabilityZone (e.g. eu-west-1a) or subnetTags (e.g. { tier: app }) to choose its subnets` });
  }
  if (p.maxSubnets !== undefined) {
    const m = p.maxSubnets;
    if (typeof m !== "number" || !Number.isInteger(m) || m < 1 || m > 200) issues.push({ path: ["maxSubnets"], message: "must be a whole number from 1 to 200" });
    else value.maxSubnets = m;
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value };
}

/** One subnet the step would disrupt (or refuses to). */
export interface SubnetTarget {
  subnetId: string;
  vpcId: string;
  availabilityZone: string;
  tags: Record<string, string>;
  /** Its NACL now, and the association to replace. */
  networkAclId: string;
  associationId: string;
  /** Why a guardrail refuses it, if one does. */
  refusal?: { rule: string; reason: string };
}

/** The subnets of a step, read from AWS. `error` when the step as a whole is refused. */
export interface SubnetSelection {
  region: string;
  vpcId?: string;
  subnets: SubnetTarget[];
  error?: { rule: string; reason: string };
}

/** The payload of a {@link NACL_RESTORE_REVERT} entry. */
export interface NaclRestorePayload {
  subnetId: string;
  vpcId: string;
  /** The subnet's NACL before the run. */
  originalAclId: string;
  /** Its association before the run. */
  originalAssociationId: string;
  /** The run's NACL; the association the replace made, once known. */
  disruptAclId: string;
}

/** The payload of a {@link NACL_DELETE_REVERT} entry: the run's NACLs are found by their tag. */
export interface NaclDeletePayload {
  vpcId: string;
  runTag: string;
}

function tagsOf(tags: { Key?: string | undefined; Value?: string | undefined }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? "";
  return out;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Options of {@link createNetworkDisrupter}. */
export interface NetworkDisrupterOptions {
  clients: AwsClients;
  journal: CloudJournal;
  log: Logger;
  /** Subnets never disrupted: the control plane's own (`--aws-protect-subnets`). */
  protectSubnets?: readonly string[];
  /** The control plane's own subnets as it finds them (IMDS on EC2), asked once, never disrupted either. */
  ownSubnets?: () => Promise<string[]>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  retry?: RetryOptions;
}

/** What a disrupt step is acting for. */
export interface DisruptContext {
  actor: string;
  runId: string;
  step: string;
  guardrails: AwsGuardrails;
  /** The end of the step: the reverts fall due then even if nothing asks. */
  revertDueAt?: number;
}

/** aws-network-disrupt's AWS side. */
export interface NetworkDisrupter {
  /** The subnets the params choose, each with its NACL now and any guardrail refusal. Thrown: AwsCallError. */
  select(params: NetworkDisruptParams, region: string, guardrails: AwsGuardrails): Promise<SubnetSelection>;
  /** DryRun of CreateNetworkAcl and of each ReplaceNetworkAclAssociation: one result per call (ok = DryRunOperation). */
  dryRun(selection: SubnetSelection): Promise<InstanceActionResult[]>;
  /**
   * Creates the run's deny-all NACL and moves each subnet onto it, each journaled before its call;
   * each subnet is read again (tags, association) right before. One result per subnet (and one
   * for the create when it fails).
   */
  disrupt(selection: SubnetSelection, ctx: DisruptContext): Promise<InstanceActionResult[]>;
}

/** Creates the disrupter. */
export function createNetworkDisrupter(options: NetworkDisrupterOptions): NetworkDisrupter {
  const { clients, journal } = options;
  const log = options.log.child({ component: "aws", fault: NETWORK_DISRUPT_KIND });
  const now = options.now ?? Date.now;
  const protectedSubnets = new Set(options.protectSubnets ?? []);
  const ownSubnetsSource = options.ownSubnets;
  let own: Promise<void> | undefined;
  /** Adds the control plane's own subnets (asked once) to the protected ones. */
  const protectOwn = () =>
    (own ??= (async () => {
      if (!ownSubnetsSource) return;
      try {
        const found = await ownSubnetsSource();
        for (const s of found) protectedSubnets.add(s);
        if (found.length > 0) log.info({ subnets: found }, "the control plane's own subnets are never disrupted");
      } catch (err) {
        log.warn({ err }, "could not read the control plane's own subnets; only --aws-protect-subnets protects it");
      }
    })());
  const retry = <T>(call: string, region: string, fn: () => Promise<T>): Promise<T> =>
    withRetry(fn, {
      sleep: options.sleep ?? defaultSleep,
      random: options.random ?? Math.random,
      options: options.retry ?? {},
      onRetry: ({ attempt, delayMs, error }) => log.warn({ call, region, attempt, delayMs, error }, "AWS call failed; retrying"),
    });
  const read = async <T>(call: string, region: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await retry(call, region, fn);
    } catch (err) {
      throw new AwsCallError(call, region, errorCode(err), describeAwsError(err), { cause: err });
    }
  };

  async function subnets(region: string, filters: Filter[]): Promise<Subnet[]> {
    return read("DescribeSubnets", region, async () => (await clients.ec2(region).send(new DescribeSubnetsCommand({ Filters: filters }))).Subnets ?? []);
  }
  async function aclsOf(region: string, subnetIds: string[]): Promise<NetworkAcl[]> {
    if (subnetIds.length === 0) return [];
    return read("DescribeNetworkAcls", region, async () => (await clients.ec2(region).send(new DescribeNetworkAclsCommand({ Filters: [{ Name: "association.subnet-id", Values: subnetIds }] }))).NetworkAcls ?? []);
  }
  async function vpcTags(region: string, vpcId: string): Promise<Record<string, string>> {
    return read("DescribeVpcs", region, async () => tagsOf((await clients.ec2(region).send(new DescribeVpcsCommand({ VpcIds: [vpcId] }))).Vpcs?.[0]?.Tags));
  }
  const associationOf = (acls: NetworkAcl[], subnetId: string) => {
    for (const acl of acls) for (const a of acl.Associations ?? []) if (a.SubnetId === subnetId) return { networkAclId: acl.NetworkAclId ?? "", associationId: a.NetworkAclAssociationId ?? "" };
    return undefined;
  };

  function refusalOf(subnet: Subnet, tags: Record<string, string>, guardrails: AwsGuardrails): SubnetTarget["refusal"] {
    const id = subnet.SubnetId ?? "";
    if (protectedSubnets.has(id)) return { rule: "protected-subnet", reason: `${id} is the control plane's own subnet (--aws-protect-subnets, or IMDS on EC2); firedrill never cuts itself off` };
    const tagged = tagRefusal({ tags }, guardrails);
    if (tagged?.rule === "opt-in-tag") return { rule: "opt-in-tag", reason: `${id} lacks the opt-in tag ${tagged.reason.replace(/^lacks the opt-in tag (\S+);.*$/, "$1")} on the subnet and on its VPC; tag the subnet or the VPC to let firedrill disrupt it` };
    if (tagged) return { rule: tagged.rule, reason: `${id} (or its VPC) ${tagged.reason}` };
    return undefined;
  }

  return {
    async select(params, region, guardrails) {
      await protectOwn();
      const filters: Filter[] = [];
      if (params.availabilityZone) filters.push({ Name: "availability-zone", Values: [params.availabilityZone] });
      for (const [k, v] of Object.entries(params.subnetTags ?? {})) filters.push({ Name: `tag:${k}`, Values: [v] });
      if (params.vpcId) filters.push({ Name: "vpc-id", Values: [params.vpcId] });
      const found = (await subnets(region, filters)).filter((s) => s.SubnetId).sort((a, b) => a.SubnetId!.localeCompare(b.SubnetId!));
      const what = [params.availabilityZone && `in ${params.availabilityZone}`, params.subnetTags && `tagged ${Object.entries(params.subnetTags).map(([k, v]) => `${k}=${v}`).join(", ")}`, params.vpcId && `in ${params.vpcId}`].filter(Boolean).join(" ");
      if (found.length === 0) return { region, subnets: [], error: { rule: "aws-subnets", reason: `no subnet ${what} in ${region}; check the params (aws ec2 describe-subnets --region ${region})` } };
      const vpcs = [...new Set(found.map((s) => s.VpcId ?? ""))];
      if (vpcs.length > 1) {
        return { region, subnets: [], error: { rule: "aws-subnets", reason: `the subnets ${what} span ${vpcs.length} VPCs (${vpcs.join(", ")}); name one with params.vpcId` } };
      }
      const vpcId = vpcs[0]!;
      if (found.length > params.maxSubnets) {
        return {
          region,
          vpcId,
          subnets: [],
          error: { rule: "max-subnets", reason: `${found.length} subnets ${what} (${found.map((s) => s.SubnetId).join(", ")}), more than maxSubnets ${params.maxSubnets}; narrow the selection or raise params.maxSubnets` },
        };
      }
      const vpc = await vpcTags(region, vpcId);
      const acls = await aclsOf(region, found.map((s) => s.SubnetId!));
      const targets = found.map((s): SubnetTarget => {
        const tags = tagsOf(s.Tags);
        const assoc = associationOf(acls, s.SubnetId!);
        const refusal = refusalOf(s, { ...vpc, ...tags }, guardrails) ?? (assoc ? undefined : { rule: "aws-subnets", reason: `${s.SubnetId} has no network ACL association` });
        return { subnetId: s.SubnetId!, vpcId, availabilityZone: s.AvailabilityZone ?? "", tags, networkAclId: assoc?.networkAclId ?? "", associationId: assoc?.associationId ?? "", ...(refusal ? { refusal } : {}) };
      });
      return { region, vpcId, subnets: targets };
    },

    async dryRun(selection) {
      const out: InstanceActionResult[] = [];
      const check = async (resource: string, call: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
          out.push({ instanceId: resource, action: "disrupt", call, ok: true, note: "AWS accepted the dry run without answering DryRunOperation" });
        } catch (err) {
          if (errorCode(err) === "DryRunOperation") out.push({ instanceId: resource, action: "disrupt", call, ok: true });
          else out.push({ instanceId: resource, action: "disrupt", call, ok: false, refusedBy: "aws", error: `${call} (DryRun) failed: ${describeAwsError(err)}` });
        }
      };
      if (!selection.vpcId) return out;
      const ec2 = clients.ec2(selection.region);
      await check(selection.vpcId, "CreateNetworkAcl", () => ec2.send(new CreateNetworkAclCommand({ VpcId: selection.vpcId, DryRun: true })));
      for (const s of selection.subnets) {
        // The replace is checked with the subnet's own NACL (the run's does not exist yet).
        await check(s.subnetId, "ReplaceNetworkAclAssociation", () => ec2.send(new ReplaceNetworkAclAssociationCommand({ AssociationId: s.associationId, NetworkAclId: s.networkAclId, DryRun: true })));
      }
      return out;
    },

    async disrupt(selection, ctx) {
      await protectOwn();
      const region = selection.region;
      const vpcId = selection.vpcId;
      if (selection.error || !vpcId) return [{ instanceId: vpcId ?? "-", action: "disrupt", ok: false, refusedBy: "guardrail", error: selection.error ? `${selection.error.rule}: ${selection.error.reason}` : "no VPC" }];
      const ec2 = clients.ec2(region);
      const runTag = ctx.runId;
      const common = { runId: ctx.runId, step: ctx.step, action: NETWORK_DISRUPT_KIND, region, actor: ctx.actor, ...(ctx.revertDueAt !== undefined ? { dueAt: ctx.revertDueAt } : {}) };
      // 1. The NACL's deletion is journaled before it exists (found later by its tag).
      const deleteId = journal.record({ ...common, kind: NACL_DELETE_REVERT, resource: `network ACL of run ${ctx.runId} in ${vpcId}`, payload: { vpcId, runTag } satisfies NaclDeletePayload, now: now() });
      let aclId: string;
      try {
        const out = await retry("CreateNetworkAcl", region, () =>
          ec2.send(new CreateNetworkAclCommand({ VpcId: vpcId, TagSpecifications: [{ ResourceType: "network-acl", Tags: [{ Key: RUN_TAG_KEY, Value: runTag }, { Key: "Name", Value: `firedrill deny-all (run ${ctx.runId})` }] }] })),
        );
        aclId = out.NetworkAcl?.NetworkAclId ?? "";
        if (!aclId) throw new Error("CreateNetworkAcl answered no NetworkAclId");
        journal.markActed(deleteId, now());
      } catch (err) {
        const error = `CreateNetworkAcl in ${vpcId} failed: ${describeAwsError(err)}`;
        if (isDefinitiveRefusal(err)) journal.cancel(deleteId, error, now());
        else journal.markActed(deleteId, now());
        log.warn({ vpcId, error }, "could not create the run's network ACL");
        return [{ instanceId: vpcId, action: "disrupt", call: "CreateNetworkAcl", ok: false, refusedBy: "aws", error }];
      }
      log.info({ vpcId, networkAclId: aclId, runId: ctx.runId }, "created the run's deny-all network ACL");

      const results: InstanceActionResult[] = [];
      for (const target of selection.subnets) {
        const base = { instanceId: target.subnetId, action: "disrupt" as const, call: "ReplaceNetworkAclAssociation" };
        if (target.refusal) {
          results.push({ ...base, ok: false, refusedBy: "guardrail", error: `${target.refusal.rule}: ${target.refusal.reason}` });
          continue;
        }
        // 2. The subnet as it is now: its tags (and its VPC's) and its association, right before.
        let current: SubnetTarget;
        try {
          const [subnet] = await subnets(region, [{ Name: "subnet-id", Values: [target.subnetId] }]);
          if (!subnet) throw new Error(`${target.subnetId} no longer exists`);
          const tags = tagsOf(subnet.Tags);
          const assoc = associationOf(await aclsOf(region, [target.subnetId]), target.subnetId);
          if (!assoc) throw new Error(`${target.subnetId} has no network ACL association now`);
          const refusal = refusalOf(subnet, { ...(await vpcTags(region, vpcId)), ...tags }, ctx.guardrails);
          current = { ...target, tags, ...assoc, ...(refusal ? { refusal } : {}) };
        } catch (err) {
          results.push({ ...base, ok: false, refusedBy: "guardrail", error: `subnet-state: could not read ${target.subnetId} right before the disruption (${(err as Error).message}); firedrill does not act without checking its tags at that moment` });
          continue;
        }
        if (current.refusal) {
          results.push({ ...base, ok: false, refusedBy: "guardrail", error: `${current.refusal.rule}: ${current.refusal.reason} (tags read at the moment of the action)` });
          continue;
        }
        if (current.networkAclId === aclId) {
          results.push({ ...base, ok: true, note: "already on the run's network ACL" });
          continue;
        }
        // 3. The original association, journaled before the replace.
        const payload: NaclRestorePayload = { subnetId: target.subnetId, vpcId, originalAclId: current.networkAclId, originalAssociationId: current.associationId, disruptAclId: aclId };
        let revertId: number;
        try {
          revertId = journal.record({ ...common, kind: NACL_RESTORE_REVERT, resource: target.subnetId, payload, now: now() });
        } catch (err) {
          results.push({ ...base, ok: false, refusedBy: "guardrail", error: `journal: could not record the original association of ${target.subnetId} before the call (${(err as Error).message}); firedrill does not act without a record` });
          continue;
        }
        try {
          await retry("ReplaceNetworkAclAssociation", region, () => ec2.send(new ReplaceNetworkAclAssociationCommand({ AssociationId: current.associationId, NetworkAclId: aclId })));
          journal.markActed(revertId, now());
          results.push({ ...base, ok: true, note: `${current.networkAclId} → ${aclId}` });
          log.info({ subnetId: target.subnetId, from: current.networkAclId, to: aclId, runId: ctx.runId }, "subnet moved to the run's deny-all network ACL");
        } catch (err) {
          const error = `ReplaceNetworkAclAssociation of ${target.subnetId} failed: ${describeAwsError(err)}`;
          if (isDefinitiveRefusal(err)) journal.cancel(revertId, error, now());
          else journal.markActed(revertId, now());
          results.push({ ...base, ok: false, refusedBy: "aws", error });
        }
      }
      return results;
    },
  };
}

function restorePayload(entry: CloudRevertEntry): NaclRestorePayload {
  const p = entry.payload as Partial<NaclRestorePayload> | null;
  if (!p || typeof p.subnetId !== "string" || typeof p.originalAclId !== "string" || typeof p.disruptAclId !== "string") {
    throw new Error(`cloud revert #${entry.id}: its payload is not a NACL restore (${JSON.stringify(entry.payload)})`);
  }
  return p as NaclRestorePayload;
}

function deletePayload(entry: CloudRevertEntry): NaclDeletePayload {
  const p = entry.payload as Partial<NaclDeletePayload> | null;
  if (!p || typeof p.vpcId !== "string" || typeof p.runTag !== "string") throw new Error(`cloud revert #${entry.id}: its payload is not a NACL delete (${JSON.stringify(entry.payload)})`);
  return p as NaclDeletePayload;
}

/** The reverter of each subnet's disruption: its original NACL association back. */
export function createNaclRestoreReverter(options: { clients: AwsClients; log: Logger }): CloudReverter {
  const { clients } = options;
  const log = options.log.child({ component: "aws", revert: NACL_RESTORE_REVERT });
  async function associationNow(entry: CloudRevertEntry, signal: AbortSignal): Promise<{ networkAclId: string; associationId: string } | undefined> {
    const p = restorePayload(entry);
    try {
      const out = await clients.ec2(entry.region).send(new DescribeNetworkAclsCommand({ Filters: [{ Name: "association.subnet-id", Values: [p.subnetId] }] }), { abortSignal: signal });
      for (const acl of out.NetworkAcls ?? []) for (const a of acl.Associations ?? []) if (a.SubnetId === p.subnetId) return { networkAclId: acl.NetworkAclId ?? "", associationId: a.NetworkAclAssociationId ?? "" };
      return undefined;
    } catch (err) {
      throw new AwsCallError("DescribeNetworkAcls", entry.region, errorCode(err), describeAwsError(err), { cause: err });
    }
  }
  return {
    kind: NACL_RESTORE_REVERT,
    call: "ReplaceNetworkAclAssociation",
    describe(entry) {
      const p = entry.payload as Partial<NaclRestorePayload> | null;
      return `${p?.subnetId ?? entry.resource} cut off (on ${p?.disruptAclId ?? "the run's network ACL"} instead of ${p?.originalAclId ?? "its own"}, ${entry.region})`;
    },
    async confirm({ entry, signal }): Promise<CloudRevertCheck> {
      const p = restorePayload(entry);
      const now = await associationNow(entry, signal);
      if (!now) return { confirmed: false, gone: true, detail: `${p.subnetId} has no network ACL association (the subnet no longer exists?): nothing to restore` };
      if (now.networkAclId === p.originalAclId) return { confirmed: true, detail: `${p.subnetId} is on ${p.originalAclId} again` };
      if (now.networkAclId !== p.disruptAclId) {
        return { confirmed: false, gone: true, detail: `${p.subnetId} is on ${now.networkAclId}, neither its original ${p.originalAclId} nor the run's ${p.disruptAclId}: someone else moved it; left alone` };
      }
      return { confirmed: false, detail: `${p.subnetId} is on the run's ${p.disruptAclId}` };
    },
    async revert({ entry, signal }: CloudRevertContext): Promise<void> {
      const p = restorePayload(entry);
      const now = await associationNow(entry, signal);
      if (!now || now.networkAclId !== p.disruptAclId) return; // confirm says what it is
      try {
        await clients.ec2(entry.region).send(new ReplaceNetworkAclAssociationCommand({ AssociationId: now.associationId, NetworkAclId: p.originalAclId }), { abortSignal: signal });
        log.info({ subnetId: p.subnetId, networkAclId: p.originalAclId, revertId: entry.id }, "subnet's original network ACL association restored");
      } catch (err) {
        throw new AwsCallError("ReplaceNetworkAclAssociation", entry.region, errorCode(err), describeAwsError(err), { cause: err });
      }
    },
  };
}

/** How long one attempt of nacl-delete waits for the subnets to leave the run's NACL. */
const ASSOCIATION_WAIT_MS = 3000;

/** The reverter of the run's NACL: DeleteNetworkAcl once no subnet is associated with it. */
export function createNaclDeleteReverter(options: { clients: AwsClients; log: Logger; /** @default 3000 */ associationWaitMs?: number }): CloudReverter {
  const associationWaitMs = options.associationWaitMs ?? ASSOCIATION_WAIT_MS;
  const { clients } = options;
  const log = options.log.child({ component: "aws", revert: NACL_DELETE_REVERT });
  async function runAcls(entry: CloudRevertEntry, signal: AbortSignal): Promise<NetworkAcl[]> {
    const p = deletePayload(entry);
    try {
      const out = await clients.ec2(entry.region).send(
        new DescribeNetworkAclsCommand({ Filters: [{ Name: "vpc-id", Values: [p.vpcId] }, { Name: `tag:${RUN_TAG_KEY}`, Values: [p.runTag] }] }),
        { abortSignal: signal },
      );
      return out.NetworkAcls ?? [];
    } catch (err) {
      throw new AwsCallError("DescribeNetworkAcls", entry.region, errorCode(err), describeAwsError(err), { cause: err });
    }
  }
  return {
    kind: NACL_DELETE_REVERT,
    call: "DeleteNetworkAcl",
    describe(entry) {
      const p = entry.payload as Partial<NaclDeletePayload> | null;
      return `the deny-all network ACL of run ${p?.runTag ?? entry.runId ?? "?"} still exists (${p?.vpcId ?? "?"}, ${entry.region})`;
    },
    async confirm({ entry, signal }): Promise<CloudRevertCheck> {
      const acls = await runAcls(entry, signal);
      if (acls.length === 0) return { confirmed: true, detail: `no network ACL tagged ${RUN_TAG_KEY}=${deletePayload(entry).runTag} is left` };
      return { confirmed: false, detail: acls.map((a) => `${a.NetworkAclId} exists${a.Associations?.length ? ` (still associated with ${a.Associations.map((x) => x.SubnetId).join(", ")})` : ""}`).join("; ") };
    },
    async revert({ entry, signal }): Promise<void> {
      // The subnets' restores usually run beside this attempt: wait for them a little (bounded)
      // rather than a whole backoff.
      let acls = await runAcls(entry, signal);
      for (let waited = 0; waited < associationWaitMs && acls.some((a) => (a.Associations ?? []).length > 0) && !signal.aborted; waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        acls = await runAcls(entry, signal);
      }
      for (const acl of acls) {
        const still = (acl.Associations ?? []).map((a) => a.SubnetId ?? "?");
        // The subnets' restores come first: a NACL in use can't be deleted. The reconciler asks again.
        if (still.length > 0) throw new Error(`${acl.NetworkAclId} is still associated with ${still.join(", ")}; waiting for their original associations to be restored`);
        try {
          await clients.ec2(entry.region).send(new DeleteNetworkAclCommand({ NetworkAclId: acl.NetworkAclId }), { abortSignal: signal });
          log.info({ networkAclId: acl.NetworkAclId, revertId: entry.id }, "the run's network ACL deleted");
        } catch (err) {
          if (errorCode(err) === "InvalidNetworkAclID.NotFound") continue;
          throw new AwsCallError("DeleteNetworkAcl", entry.region, errorCode(err), describeAwsError(err), { cause: err });
        }
      }
    },
  };
}
