/**
 * What network-loss, network-blackhole and network-reject share: an nftables table owned by firedrill
 * (`table inet firedrill`), created in one atomic `nft -f -` transaction and deleted on revert.
 *
 * The journal record holds the table's family and name (and, once created, its kernel handle, so
 * revert never deletes a table of the same name that someone created later). `created` turns true
 * just before `nft -f -` runs; a refused transaction changes nothing, so it turns false again.
 *
 * What it leaves alone (the host's exclusions, SSH — port 22 and the ports sshd listens on, found
 * when the fault is validated, right before it starts — and loopback) is part of the plan, and
 * reported as the fault's details and preview, one line each.
 */
import type { JsonObject } from "@firedrill/protocol";
import { NetCommandError, blockText, describeExclusions, faultExclusions, permissionHint, refuseExcludedTargets, runChecked, runCommand } from "./net-common.js";
import type { CidrBlock, CommandRunner, SshPortScanner } from "./net-common.js";
import { NFT_TABLE, buildNftPlan } from "./nft-plan.js";
import type { NftAction, NftPlan } from "./nft-plan.js";
import { findTable, removeTable, revertNftRecord } from "./nft-revert.js";
import type { NftRevertRecord, NftTableInfo } from "./nft-revert.js";
import { pollEvery, revertOnce } from "./running.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, HostInfo, RunningFault } from "./types.js";

/** The parameters both kinds share, validated. */
export interface NftFaultParams {
  destinations?: CidrBlock[];
  ports?: number[];
  direction: "egress" | "ingress" | "both";
}

/** A validated nft fault: its parameters, the ruleset to load, and what it acts on and leaves alone. */
export interface NftFaultPlan<P extends NftFaultParams> {
  params: P;
  nft: NftPlan;
  /** One line each: what it acts on, then every exclusion (sent with STARTED, shown by preview). */
  details: string[];
}

const DIRECTION_TEXT = { egress: "going out", ingress: "coming in", both: "both ways" } as const;

/** The "acts on" line of an nft fault. */
function actsOn(params: NftFaultParams, action: NftAction): string {
  const where = params.destinations ? params.destinations.map(blockText).join(", ") : "every address";
  const ports = params.ports ? `, remote ${params.ports.length === 1 ? "port" : "ports"} ${params.ports.join(", ")} (tcp, udp)` : "";
  const what =
    action.kind === "loss"
      ? `${action.percent}% of packets dropped`
      : action.kind === "reject"
        ? `TCP refused (reset), UDP answered with ICMP ${action.with}; other protocols pass`
        : "every packet dropped";
  return `acts on: ${where}${ports}, ${DIRECTION_TEXT[params.direction]}: ${what}`;
}

function staleMessage(): string {
  const { family, name } = NFT_TABLE;
  return (
    `the nftables table ${family} ${name} already exists: another firedrill network fault holds it, or one was left behind by an agent that could not clean up. ` +
    `If no firedrill network fault is running on this host, run \`firedrill-agent recover\`; if the table is still there afterwards, remove it with \`nft delete table ${family} ${name}\``
  );
}

/** Turns an nft failure into what the operator should know. */
function explainNftError(err: unknown, kind: string): Error {
  if (!(err instanceof NetCommandError)) return err as Error;
  if (/File exists/i.test(err.stderr)) return new Error(staleMessage());
  const perm = permissionHint(err.stderr);
  if (perm) return new Error(`${perm} (${err.message})`);
  if (/Operation not supported|Protocol not supported|not supported/i.test(err.stderr)) {
    const modules = kind === "network-reject" ? "nf_tables, nft_reject_inet" : "nf_tables, nft_numgen";
    return new Error(`${kind} needs nftables support in the kernel (${modules}), which this kernel does not provide: ${err.stderr.trim()}`);
  }
  return err;
}

function toJson(record: NftRevertRecord): JsonObject {
  return { ...record } as unknown as JsonObject;
}

/** Counters of the fault's drop (or reject) rules. */
export interface DropCounters {
  matched: number;
  dropped: number;
  /** Packets each rule acted on, by the rule's comment (summed over chains and families). */
  byComment: Record<string, number>;
}

async function readCounters(run: CommandRunner): Promise<DropCounters | undefined> {
  const result = await run("nft", ["-j", "list", "table", NFT_TABLE.family, NFT_TABLE.name]);
  if (result.code !== 0) return undefined;
  const parsed = JSON.parse(result.stdout.trim() || "{}") as {
    nftables?: { rule?: { comment?: string; expr?: { counter?: { packets: number } }[] } }[];
  };
  const totals: DropCounters = { matched: 0, dropped: 0, byComment: {} };
  for (const entry of parsed.nftables ?? []) {
    const rule = entry.rule;
    if (!rule?.comment?.startsWith("firedrill ")) continue;
    const counters = (rule.expr ?? []).filter((e) => e.counter).map((e) => e.counter!.packets);
    // loss rules count twice: packets matched, then packets dropped; blackhole rules once.
    totals.matched += counters[0] ?? 0;
    totals.dropped += counters[counters.length - 1] ?? 0;
    totals.byComment[rule.comment] = (totals.byComment[rule.comment] ?? 0) + (counters[counters.length - 1] ?? 0);
  }
  return totals;
}

/** Options of an nft fault kind (seams for tests). */
export interface NftFaultOptions {
  /** Runs nft. @default runCommand */
  run?: CommandRunner;
  /** How often counters are read for progress reports. @default 2000 */
  measureIntervalMs?: number;
  /** Finds the ports sshd listens on. @default findSshListenPorts (this network namespace's /proc) */
  sshPorts?: SshPortScanner;
}

/** Creates an nft-based fault kind. */
export function createNftFaultKind<P extends NftFaultParams>(spec: {
  kind: string;
  parse: (params: JsonObject) => P;
  action: (params: P) => NftAction;
  /** Measurements from the drop rules' counters. */
  measurements: (params: P, counters: DropCounters) => Record<string, number>;
  options?: NftFaultOptions;
}): FaultKindDefinition<NftFaultPlan<P>> {
  const run = spec.options?.run ?? runCommand;
  const measureEvery = spec.options?.measureIntervalMs ?? 2000;

  return {
    kind: spec.kind,
    exclusiveGroup: "network",
    validate(params: JsonObject, host: HostInfo): NftFaultPlan<P> {
      const parsed = spec.parse(params);
      // Read here, just before start(): sshd's ports as they are now.
      const { exclusions, ssh } = faultExclusions(host, spec.options?.sshPorts);
      refuseExcludedTargets(parsed.destinations, parsed.ports, exclusions);
      const action = spec.action(parsed);
      const nft = buildNftPlan({
        action,
        ...(parsed.destinations ? { destinations: parsed.destinations } : {}),
        ...(parsed.ports ? { ports: parsed.ports } : {}),
        direction: parsed.direction,
        exclusions,
      });
      const details = [actsOn(parsed, action), ...describeExclusions(exclusions, { loopback: !parsed.destinations, ssh })];
      return { params: parsed, nft, details };
    },
    preview(plan): FaultPreviewResult {
      return { details: plan.details };
    },
    planRevert() {
      return toJson({ family: NFT_TABLE.family, table: NFT_TABLE.name, created: false });
    },
    async start(plan, ctx: FaultContext): Promise<RunningFault> {
      const record: NftRevertRecord = { family: NFT_TABLE.family, table: NFT_TABLE.name, created: false };
      let existing: NftTableInfo | undefined;
      try {
        existing = await findTable(run, record);
      } catch (err) {
        throw explainNftError(err, spec.kind);
      }
      if (existing) throw new Error(staleMessage());
      record.created = true;
      ctx.updateRevert(toJson(record));
      try {
        await runChecked(run, "nft", ["-f", "-"], { input: plan.nft.ruleset });
      } catch (err) {
        // One transaction: refused as a whole, so nothing of ours exists.
        record.created = false;
        ctx.updateRevert(toJson(record));
        throw explainNftError(err, spec.kind);
      }
      const table = await findTable(run, record).catch(() => undefined);
      if (table) {
        record.handle = table.handle;
        ctx.updateRevert(toJson(record));
      }
      ctx.log.info({ table: `${record.family} ${record.table}`, handle: record.handle, chains: plan.nft.chains, details: plan.details }, `${spec.kind} running`);

      let last: Record<string, number> = spec.measurements(plan.params, { matched: 0, dropped: 0, byComment: {} });
      const { timer } = pollEvery(
        measureEvery,
        async () => {
          const counters = await readCounters(run);
          if (counters) last = spec.measurements(plan.params, counters);
        },
        (err) => ctx.log.debug({ err }, "reading nft counters failed"),
      );
      const remove = revertOnce(() => removeTable(run, record, ctx.log));
      return {
        details: plan.details,
        measure: () => last,
        revert() {
          clearInterval(timer);
          return remove();
        },
      };
    },
    async revertRecord(revert, { log }) {
      await revertNftRecord(revert, { log }, run);
    },
  };
}
