/**
 * What the tc fault kinds (network-delay, network-bandwidth) share on the agent side: finding the
 * device, reading what is already on it, the exclusions as tc matches, explaining tc's errors and
 * installing a plan with the journal record kept up to date. The revert half (readQdiscs,
 * removeRootQdisc) stays in network-delay-revert.ts, which the guard loads.
 */
import { InvalidFaultRequestError } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";
import type { Logger } from "pino";
import { NetCommandError, blockText, defaultRouteDevice, interfaceExists, listInterfaces, permissionHint, runChecked } from "./net-common.js";
import type { CidrBlock, CommandRunner, ParsedExclusion } from "./net-common.js";
import type { QdiscInfo } from "./network-delay-revert.js";
import type { TcMatch } from "./tc-plan.js";
import type { FaultContext } from "./types.js";

/** How validate() finds interfaces (seam for tests that act inside a network namespace). */
export interface InterfaceLookup {
  exists(name: string): boolean;
  list(): string[];
  defaultDevice(): string | undefined;
}

/** This host's interfaces: /sys/class/net and `ip -j route show default`. */
export const HOST_INTERFACES: InterfaceLookup = { exists: interfaceExists, list: listInterfaces, defaultDevice: defaultRouteDevice };

/** The device a fault acts on: the one asked for (it must exist), else the default route's. */
export function resolveDevice(asked: string | undefined, interfaces: InterfaceLookup): string {
  if (asked === undefined) {
    const device = interfaces.defaultDevice();
    if (!device) {
      throw new InvalidFaultRequestError([
        { field: "params.interface", message: `is required on this host: it has no default route to take the device from; name one of: ${interfaces.list().join(", ")}` },
      ]);
    }
    return device;
  }
  if (!interfaces.exists(asked)) {
    throw new InvalidFaultRequestError([
      { field: "params.interface", message: `${JSON.stringify(asked)}: no such network interface on this host; use one of: ${interfaces.list().join(", ")}` },
    ]);
  }
  return asked;
}

/** The host's exclusions as tc matches (what must never be shaped). */
export function tcExclusions(exclusions: readonly ParsedExclusion[]): TcMatch[] {
  return exclusions.map((e) => ({
    block: e.block,
    ...(e.port !== undefined ? { port: e.port } : {}),
    ...(e.localPort !== undefined ? { localPort: e.localPort } : {}),
    ...(e.protocol !== undefined ? { protocol: e.protocol } : {}),
  }));
}

/** What the fault acts on, for its details line: "10.0.0.0/8, remote port 443 (tcp, udp)". */
export function targetText(destinations: readonly CidrBlock[] | undefined, ports: readonly number[] | undefined): string {
  const where = destinations ? destinations.map(blockText).join(", ") : "every address";
  const portText = ports ? `, remote ${ports.length === 1 ? "port" : "ports"} ${ports.join(", ")} (tcp, udp)` : "";
  return `${where}${portText}`;
}

/** The ingress/clsact pseudo-qdiscs hang here; they are not part of the egress tree. */
const INGRESS_PARENT = "ffff:fff1";

/**
 * What is on the device: a firedrill root (one of `firedrillHandles`, a stale fault), someone
 * else's configuration, or the kernel's default.
 */
export function classifyQdiscs(
  qdiscs: QdiscInfo[],
  firedrillHandles: readonly string[],
): { state: "firedrill"; handle: string } | { state: "foreign"; qdisc: QdiscInfo } | { state: "default"; root?: QdiscInfo } {
  const root = qdiscs.find((q) => q.root);
  if (root && firedrillHandles.includes(root.handle)) return { state: "firedrill", handle: root.handle };
  const configured = qdiscs.find((q) => q.parent !== INGRESS_PARENT && q.handle !== "0:");
  if (configured) return { state: "foreign", qdisc: configured };
  return root ? { state: "default", root } : { state: "default" };
}

/** The refusal for a qdisc someone configured on the device. */
export function foreignQdiscMessage(kind: string, device: string, q: QdiscInfo): string {
  const where = q.root ? "root qdisc" : `qdisc under ${q.parent ?? "?"}`;
  return (
    `${device} has a ${where} someone configured (${q.kind} ${q.handle}); ${kind} replaces the root qdisc and could not restore it exactly afterwards, so it refuses. ` +
    `Use another interface, or remove that configuration first (it is not firedrill's)`
  );
}

/**
 * Turns a tc failure into what the operator should know: `missingModule` says which kernel module
 * lacks when tc does not know a qdisc kind; permission and a root added meanwhile are explained here.
 */
export function explainTcError(err: unknown, device: string, kind: string, missingModule: (err: NetCommandError) => string): Error {
  if (!(err instanceof NetCommandError)) return err as Error;
  const said = err.stderr;
  if (/Specified qdisc kind is unknown/i.test(said)) return new Error(missingModule(err));
  const perm = permissionHint(said);
  if (perm) return new Error(`${perm} (${err.message})`);
  if (/Exclusivity flag on|NLM_F_REPLACE needed/i.test(said)) {
    return new Error(`${device} got a root qdisc someone configured while ${kind} was starting; it refuses to replace it. Nothing was changed`);
  }
  return err;
}

/**
 * Runs a tc plan's install commands: marks the record installed in the journal before the first,
 * unmarks it when the (atomic) root add fails, and removes what was added when a later one fails.
 */
export async function installTcPlan<R extends { device: string; installed: boolean }>(opts: {
  kind: string;
  run: CommandRunner;
  install: readonly string[][];
  record: R;
  ctx: FaultContext;
  explain: (err: unknown) => Error;
  remove: (run: CommandRunner, record: R, log: Logger) => Promise<void>;
}): Promise<void> {
  const { kind, run, record, ctx, explain } = opts;
  record.installed = true;
  ctx.updateRevert(toJson(record));
  const [root, ...rest] = opts.install;
  try {
    await runChecked(run, "tc", root!);
  } catch (err) {
    // The root add is atomic: it failed, so nothing of ours is on the device.
    record.installed = false;
    ctx.updateRevert(toJson(record));
    throw explain(err);
  }
  try {
    for (const args of rest) await runChecked(run, "tc", args);
  } catch (err) {
    const explained = explain(err);
    ctx.log.error({ err: explained, device: record.device }, `${kind} could not be installed completely; removing what was added`);
    await opts.remove(run, record, ctx.log).catch((undoErr: unknown) => ctx.log.error({ err: undoErr }, "removing the partial qdisc failed; the journal keeps the record"));
    throw explained;
  }
}

/** A revert record as the journal stores it. */
export function toJson(record: object): JsonObject {
  return { ...record } as unknown as JsonObject;
}
