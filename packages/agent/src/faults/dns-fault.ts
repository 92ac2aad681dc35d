/**
 * dns-fault: for domain globs (or every name), the host's lookups get NXDOMAIN, SERVFAIL, or no
 * answer at all (timeout), while every other name resolves as before.
 *
 * How: the agent starts a small DNS responder on loopback (dns-responder.ts), then an nftables
 * table of its own (`table inet firedrill_dns`, dns-plan.ts) redirects the UDP and TCP queries this
 * host sends to its resolvers — the nameservers /etc/resolv.conf lists, as the C library uses them —
 * to that responder, one listener per resolver. Matching names get the fault; every other query is
 * forwarded to the resolver it was sent to, from ports the rules let through. Queries sent to other
 * DNS servers (`dig @8.8.8.8`) are not steered.
 *
 * The control plane's name (when the agent reaches it by name) is never faulted: it is resolved
 * before the steering starts and its queries are always forwarded, so the agent's link never
 * depends on the fault. Resolvers inside the host's exclusions (--management networks) are left
 * alone.
 *
 * Revert: delete the table (then close the responder). The table alone decides: with it gone the
 * host's queries reach the resolvers again even if the responder died with the agent; the guard and
 * the journal delete it from the record (dns-fault-revert.ts).
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { InvalidFaultRequestError, matchDomainGlob, parseFaultParams } from "@firedrill/protocol";
import type { DnsFaultMode, DnsFaultParams, JsonObject } from "@firedrill/protocol";
import { DNS_NFT_TABLE, revertDnsFaultRecord } from "./dns-fault-revert.js";
import { buildDnsNftPlan } from "./dns-plan.js";
import { startDnsResponder } from "./dns-responder.js";
import type { DnsResolverTarget, DnsResponder, DnsResponderOptions } from "./dns-responder.js";
import { NetCommandError, blockText, excludedTarget, parseBlock, parseExclusions, permissionHint, runChecked, runCommand } from "./net-common.js";
import type { CommandRunner } from "./net-common.js";
import { findTable, removeTable } from "./nft-revert.js";
import type { NftRevertRecord } from "./nft-revert.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, HostInfo, RunningFault } from "./types.js";

/** The nameservers the C library asks (glibc's and musl's MAXNS): later ones are left alone. */
export const MAX_RESOLVERS = 3;
/** Local ports TCP forwards leave from: at most this many TCP forwards in flight. */
export const TCP_FORWARD_PORTS = 16;
/** How long resolving the control plane's name before the fault may take. */
const CONTROL_PLANE_LOOKUP_MS = 5000;

/** A validated dns-fault: its parameters, the resolvers it steers, and its detail lines. */
export interface DnsFaultPlan {
  params: DnsFaultParams;
  /** The resolvers whose queries are steered to the responder, in resolv.conf order. */
  resolvers: DnsResolverTarget[];
  /** The control plane's host names (lower case; one per replica address given by name), when the agent reaches it by name. */
  controlPlaneNames?: string[];
  /** What it acts on, then what it leaves alone, one line each. */
  details: string[];
}

/** Options of the dns-fault kind (seams for tests). */
export interface DnsFaultOptions {
  /** Runs nft. @default runCommand */
  run?: CommandRunner;
  /** Where the host's resolvers are listed. @default "/etc/resolv.conf" */
  resolvConfPath?: string;
  /** Resolves the control plane's name before the fault. @default node:dns lookup, every address */
  lookup?: (name: string) => Promise<string[]>;
  /** The local ports TCP forwards leave from. @default 16 ports outside ip_local_port_range */
  tcpForwardPorts?: () => number[];
  /** Bounds of the responder (forward timeout, in-flight limits). */
  responder?: Pick<DnsResponderOptions, "forwardTimeoutMs" | "maxUdpForwards" | "maxTcpConnections" | "tcpIdleMs">;
}

/** The nameserver addresses of a resolv.conf, in order (what follows `nameserver`). */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (words[0] === "nameserver" && words[1]) out.push(words[1]);
  }
  return out;
}

function modeText(mode: DnsFaultMode): string {
  return mode === "timeout" ? "no answer (timeout)" : mode;
}

function namesText(params: DnsFaultParams): string {
  return params.domains ? params.domains.join(", ") : "every name";
}

function hostProblem(message: string): InvalidFaultRequestError {
  return new InvalidFaultRequestError([{ field: "resolvers", message }]);
}

/**
 * The resolvers this fault steers, from resolv.conf: the first three nameservers, each an address
 * outside the host's exclusions (DNS's own exclusion aside: this fault is about DNS). Lines for
 * what is left alone.
 */
function steeredResolvers(path: string, host: HostInfo): { resolvers: DnsResolverTarget[]; leftAlone: string[] } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw hostProblem(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): dns-fault steers the queries this host sends to the resolvers listed there`);
  }
  const listed = parseResolvConf(text);
  if (listed.length === 0) {
    throw hostProblem(`${path} lists no nameserver: dns-fault steers the queries this host sends to the resolvers listed there, and there are none to steer`);
  }
  const exclusions = parseExclusions(host.networkExclusions.filter((e) => e.reason !== "DNS"));
  const resolvers: DnsResolverTarget[] = [];
  const leftAlone: string[] = [];
  listed.forEach((text, i) => {
    if (i >= MAX_RESOLVERS) {
      leftAlone.push(`left alone: nameserver ${text} (after the first ${MAX_RESOLVERS} in ${path}: the C library asks only those)`);
      return;
    }
    if (text.includes("%") || !isIP(text)) {
      leftAlone.push(`left alone: nameserver ${text} (${text.includes("%") ? "a link-local address with a zone" : "not an IP address"})`);
      return;
    }
    const block = parseBlock(text);
    const { excluded, reasons } = excludedTarget(block, [53], exclusions);
    if (excluded) {
      leftAlone.push(`left alone: resolver ${blockText(block)} (excluded: ${reasons.join("; ")})`);
      return;
    }
    const address = blockText(block);
    if (!resolvers.some((r) => r.address === address)) resolvers.push({ address, family: block.family });
  });
  if (resolvers.length === 0) {
    throw hostProblem(`none of the nameservers in ${path} can be steered (${leftAlone.map((l) => l.replace(/^left alone: /, "")).join("; ")}), so dns-fault would do nothing here`);
  }
  return { resolvers, leftAlone };
}

/** The control plane's host names (every replica's), lower case without a trailing dot; addresses left out. */
function controlPlaneNames(host: HostInfo): string[] {
  const hosts = [...(host.controlPlaneHost !== undefined ? [host.controlPlaneHost] : []), ...(host.controlPlaneHosts ?? [])];
  const names = hosts.map((h) => h.toLowerCase().replace(/\.$/, "")).filter((n) => n !== "" && isIP(n) === 0);
  return [...new Set(names)];
}

/**
 * Sixteen consecutive local ports the kernel never hands out on its own (outside
 * net.ipv4.ip_local_port_range), for the responder's TCP forwards: excluded from the steering as
 * a range.
 */
export function defaultTcpForwardPorts(): number[] {
  let low = 32768;
  let high = 60999;
  try {
    const [a, b] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (a !== undefined && b !== undefined && Number.isInteger(a) && Number.isInteger(b)) [low, high] = [a, b];
  } catch {
    // the usual range
  }
  let base: number;
  if (65535 - high >= TCP_FORWARD_PORTS) base = high + 1 + Math.floor(Math.random() * (65535 - high - TCP_FORWARD_PORTS + 1));
  else if (low - 1024 >= TCP_FORWARD_PORTS) base = 1024 + Math.floor(Math.random() * (low - 1024 - TCP_FORWARD_PORTS + 1));
  else base = 65535 - TCP_FORWARD_PORTS + 1;
  return Array.from({ length: TCP_FORWARD_PORTS }, (_, i) => base + i);
}

function staleMessage(): string {
  const { family, name } = DNS_NFT_TABLE;
  return (
    `the nftables table ${family} ${name} already exists: another dns-fault holds it, or one was left behind by an agent that could not clean up. ` +
    `If no dns-fault is running on this host, run \`firedrill-agent recover\`; if the table is still there afterwards, remove it with \`nft delete table ${family} ${name}\``
  );
}

function explainNftError(err: unknown): Error {
  if (!(err instanceof NetCommandError)) return err as Error;
  if (/File exists/i.test(err.stderr)) return new Error(staleMessage());
  const perm = permissionHint(err.stderr);
  if (perm) return new Error(`${perm} (${err.message})`);
  if (/Operation not supported|Protocol not supported|not supported|No such file or directory/i.test(err.stderr)) {
    return new Error(`dns-fault needs nftables NAT in the kernel (nf_tables, nft_nat, nft_redir), which this kernel does not provide: ${err.stderr.trim()}`);
  }
  return err;
}

function toJson(record: NftRevertRecord): JsonObject {
  return { ...record } as unknown as JsonObject;
}

async function resolveName(name: string, lookup: (name: string) => Promise<string[]>): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CONTROL_PLANE_LOOKUP_MS / 1000}s`)), CONTROL_PLANE_LOOKUP_MS);
  });
  try {
    return await Promise.race([lookup(name), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Creates the dns-fault kind. */
export function createDnsFault(options: DnsFaultOptions = {}): FaultKindDefinition<DnsFaultPlan> {
  const run = options.run ?? runCommand;
  const resolvConf = options.resolvConfPath ?? "/etc/resolv.conf";
  const lookup = options.lookup ?? (async (name: string) => (await dnsLookup(name, { all: true })).map((a) => a.address));
  const tcpPorts = options.tcpForwardPorts ?? defaultTcpForwardPorts;

  return {
    kind: "dns-fault",
    exclusiveGroup: "dns",
    validate(params: JsonObject, host: HostInfo): DnsFaultPlan {
      const parsed = parseFaultParams("dns-fault", params);
      const cpNames = controlPlaneNames(host);
      const named = cpNames.find((n) => parsed.domains?.includes(n));
      if (named) {
        throw new InvalidFaultRequestError([
          {
            field: "params.domains",
            message: `${named} is the control plane's name: dns-fault always forwards its queries so that the agent keeps its link; leave it out`,
          },
        ]);
      }
      const { resolvers, leftAlone } = steeredResolvers(resolvConf, host);
      const details = [
        `acts on: ${namesText(parsed)}: ${modeText(parsed.mode)}, for the queries this host sends to ${resolvers.length === 1 ? "its resolver" : "its resolvers"} ${resolvers.map((r) => r.address).join(", ")} (udp, tcp; from ${resolvConf})`,
        `forwarded to the resolver they were sent to: queries for every other name`,
        ...cpNames.map((n) => `excluded: the control plane's name ${n} — always forwarded`),
        ...leftAlone,
        "not steered: queries to DNS servers that are not the host's resolvers",
      ];
      return { params: parsed, resolvers, ...(cpNames.length > 0 ? { controlPlaneNames: cpNames } : {}), details };
    },
    preview(plan): FaultPreviewResult {
      return { details: plan.details };
    },
    planRevert() {
      return toJson({ family: DNS_NFT_TABLE.family, table: DNS_NFT_TABLE.name, created: false });
    },
    async start(plan, ctx: FaultContext): Promise<RunningFault> {
      const details = [...plan.details];
      const cpNames = plan.controlPlaneNames ?? [];
      // Before anything is steered (every replica's name at once): the agent's link never needs DNS while the fault runs.
      await Promise.all(
        cpNames.map(async (cpName) => {
          const index = details.indexOf(`excluded: the control plane's name ${cpName} — always forwarded`);
          let line: string;
          try {
            const addresses = await resolveName(cpName, lookup);
            line = `excluded: the control plane's name ${cpName} (${addresses.join(", ")}, resolved before the fault started) — always forwarded`;
          } catch (err) {
            line = `excluded: the control plane's name ${cpName} (not resolved before the fault started: ${(err as Error).message}) — always forwarded`;
          }
          if (index >= 0) details[index] = line;
        }),
      );
      const globs = plan.params.domains;
      const responder: DnsResponder = await startDnsResponder({
        matches: (name) => !cpNames.includes(name) && (!globs || globs.some((g) => matchDomainGlob(g, name))),
        mode: plan.params.mode,
        resolvers: plan.resolvers,
        tcpForwardPorts: tcpPorts(),
        log: ctx.log,
        ...options.responder,
      });
      const record: NftRevertRecord = { family: DNS_NFT_TABLE.family, table: DNS_NFT_TABLE.name, created: false };
      try {
        const ruleset = buildDnsNftPlan(responder.ports);
        let existing;
        try {
          existing = await findTable(run, record);
        } catch (err) {
          throw explainNftError(err);
        }
        if (existing) throw new Error(staleMessage());
        record.created = true;
        ctx.updateRevert(toJson(record));
        try {
          await runChecked(run, "nft", ["-f", "-"], { input: ruleset });
        } catch (err) {
          // One transaction: refused as a whole, so nothing of ours exists.
          record.created = false;
          ctx.updateRevert(toJson(record));
          throw explainNftError(err);
        }
        const table = await findTable(run, record).catch(() => undefined);
        if (table) {
          record.handle = table.handle;
          ctx.updateRevert(toJson(record));
        }
        ctx.log.info({ table: `${record.family} ${record.table}`, handle: record.handle, ports: responder.ports, details }, "dns-fault running");
      } catch (err) {
        await responder.close();
        throw err;
      }

      let reverted: Promise<void> | undefined;
      return {
        details,
        measure() {
          const c = responder.counters();
          return { queries_faulted: c.faulted, queries_forwarded: c.forwarded, forward_errors: c.forwardErrors, queries_dropped: c.dropped };
        },
        revert() {
          // The table first: from then on queries reach the resolvers. The responder stays up until
          // then, so that a failed delete leaves the host's DNS answered, not pointing at nothing.
          reverted ??= removeTable(run, record, ctx.log)
            .then(() => responder.close())
            .catch((err: unknown) => {
              reverted = undefined;
              throw err;
            });
          return reverted;
        },
      };
    },
    async revertRecord(revert, { log }) {
      await revertDnsFaultRecord(revert, { log }, run);
    },
  };
}

/** The dns-fault fault kind. */
export const dnsFault: FaultKindDefinition<DnsFaultPlan> = createDnsFault();
