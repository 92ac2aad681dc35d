/**
 * network-bandwidth: limits the rate of outgoing traffic on one device with tc htb, under a root
 * handle firedrill reserves (1f1b:). The plan (bandwidth-plan.ts) is built as data before anything
 * runs; the control plane, IMDS, DNS, SSH (port 22 and the ports sshd listens on, found at
 * validation, right before start), --management networks and ports, and loopback always go through
 * HTB's direct queue, never limited. What it acts on and leaves alone is reported as the fault's
 * details and preview.
 *
 * Safety, as network-delay:
 * - a root qdisc someone configured (non-zero handle, not ours) is refused: deleting ours could not
 *   restore it exactly. A default root (handle 0:, e.g. noqueue, fq_codel, pfifo_fast, mq) comes
 *   back by itself when ours is deleted.
 * - a firedrill root already on the device (a stale fault) is refused with how to clean it.
 * - the journal record (device, handle, what the root was, whether we installed) is written before
 *   the first tc command; revert deletes our root (by handle) if it is still there and checks it is
 *   gone. Nothing else on the device is touched.
 */
import { InvalidFaultRequestError, formatRate, parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import {
  LOOPBACK_EXCLUSIONS,
  NetCommandError,
  blockText,
  defaultRouteDevice,
  describeExclusions,
  faultExclusions,
  interfaceExists,
  listInterfaces,
  parseExclusions,
  permissionHint,
  refuseExcludedTargets,
  runChecked,
  runCommand,
} from "./net-common.js";
import type { CommandRunner, SshPortScanner } from "./net-common.js";
import { BANDWIDTH_CLASS, BANDWIDTH_ROOT_HANDLE, buildBandwidthPlan } from "./bandwidth-plan.js";
import type { BandwidthPlan } from "./bandwidth-plan.js";
import { readClassCounters, removeBandwidth, revertNetworkBandwidthRecord } from "./network-bandwidth-revert.js";
import type { BandwidthRevertRecord, ClassCounters } from "./network-bandwidth-revert.js";
import { readQdiscs } from "./network-delay-revert.js";
import type { QdiscInfo } from "./network-delay-revert.js";
import type { InterfaceLookup } from "./network-delay.js";
import { DELAY_ROOT_HANDLE } from "./tc-plan.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, HostInfo, RunningFault } from "./types.js";

type NetworkBandwidthParams = FaultParamsByKind["network-bandwidth"];

export type { BandwidthRevertRecord } from "./network-bandwidth-revert.js";

/** Validated network-bandwidth parameters, with the device resolved and the tc plan built. */
export interface NetworkBandwidthPlan extends NetworkBandwidthParams {
  device: string;
  tc: BandwidthPlan;
  /** One line each: what it acts on, then every exclusion (sent with STARTED, shown by preview). */
  details: string[];
}

/** The ingress/clsact pseudo-qdiscs hang here; they are not part of the egress tree. */
const INGRESS_PARENT = "ffff:fff1";

/** The message for a kernel without sch_htb. */
export const MISSING_HTB_MESSAGE =
  "network-bandwidth needs the sch_htb kernel module, which this kernel does not have: load it with `modprobe sch_htb` (it ships with every major distribution's kernel)";

function staleMessage(device: string, handle: string): string {
  const which = handle === BANDWIDTH_ROOT_HANDLE ? "network-bandwidth" : "network-delay";
  return (
    `a firedrill ${which} qdisc (root handle ${handle}) is already on ${device}: another network fault is running, or one was left behind by an agent that could not clean up. ` +
    `If no firedrill network fault is running on this host, run \`firedrill-agent recover\`; if it is still there afterwards, remove it with \`tc qdisc del dev ${device} root handle ${handle}\``
  );
}

function foreignMessage(device: string, q: QdiscInfo): string {
  const where = q.root ? "root qdisc" : `qdisc under ${q.parent ?? "?"}`;
  return (
    `${device} has a ${where} someone configured (${q.kind} ${q.handle}); network-bandwidth replaces the root qdisc and could not restore it exactly afterwards, so it refuses. ` +
    `Use another interface, or remove that configuration first (it is not firedrill's)`
  );
}

/** What is on the device: a firedrill root (stale), someone else's configuration, or the kernel's default. */
function classify(qdiscs: QdiscInfo[]): { state: "firedrill"; handle: string } | { state: "foreign"; qdisc: QdiscInfo } | { state: "default"; root?: QdiscInfo } {
  const root = qdiscs.find((q) => q.root);
  if (root && (root.handle === BANDWIDTH_ROOT_HANDLE || root.handle === DELAY_ROOT_HANDLE)) return { state: "firedrill", handle: root.handle };
  const configured = qdiscs.find((q) => q.parent !== INGRESS_PARENT && q.handle !== "0:");
  if (configured) return { state: "foreign", qdisc: configured };
  return root ? { state: "default", root } : { state: "default" };
}

/** Turns a tc failure into what the operator should know. */
function explainTcError(err: unknown, device: string): Error {
  if (!(err instanceof NetCommandError)) return err as Error;
  const said = err.stderr;
  if (/Specified qdisc kind is unknown/i.test(said)) return new Error(MISSING_HTB_MESSAGE);
  const perm = permissionHint(said);
  if (perm) return new Error(`${perm} (${err.message})`);
  if (/Exclusivity flag on|NLM_F_REPLACE needed/i.test(said)) {
    return new Error(`${device} got a root qdisc someone configured while network-bandwidth was starting; it refuses to replace it. Nothing was changed`);
  }
  return err;
}

/** Options of the network-bandwidth kind (seams for tests). */
export interface NetworkBandwidthOptions {
  /** Runs tc. @default runCommand */
  run?: CommandRunner;
  /** How often measurements are refreshed. @default 2000 */
  measureIntervalMs?: number;
  /** Looks up this host's interfaces. @default /sys/class/net and `ip -j route show default` */
  interfaces?: InterfaceLookup;
  /** Finds the ports sshd listens on. @default findSshListenPorts (this network namespace's /proc) */
  sshPorts?: SshPortScanner;
  /** The clock for the achieved rate (ms). @default performance.now */
  now?: () => number;
}

const HOST_INTERFACES: InterfaceLookup = { exists: interfaceExists, list: listInterfaces, defaultDevice: defaultRouteDevice };

/** Rounds to three decimals (a kbit/s in Mbit/s). */
function mbit(bitsPerSecond: number): number {
  return Math.round(bitsPerSecond / 1000) / 1000;
}

/** Creates the network-bandwidth kind. */
export function createNetworkBandwidth(options: NetworkBandwidthOptions = {}): FaultKindDefinition<NetworkBandwidthPlan> {
  const run = options.run ?? runCommand;
  const measureEvery = options.measureIntervalMs ?? 2000;
  const interfaces = options.interfaces ?? HOST_INTERFACES;
  const now = options.now ?? (() => performance.now());

  function validate(params: JsonObject, host: HostInfo): NetworkBandwidthPlan {
    const parsed = parseFaultParams("network-bandwidth", params);
    let device = parsed.interface;
    if (device === undefined) {
      device = interfaces.defaultDevice();
      if (!device) {
        throw new InvalidFaultRequestError([
          { field: "params.interface", message: `is required on this host: it has no default route to take the device from; name one of: ${interfaces.list().join(", ")}` },
        ]);
      }
    } else if (!interfaces.exists(device)) {
      throw new InvalidFaultRequestError([
        { field: "params.interface", message: `${JSON.stringify(device)}: no such network interface on this host; use one of: ${interfaces.list().join(", ")}` },
      ]);
    }
    // Read here, just before start(): sshd's ports as they are now.
    const { exclusions, ssh } = faultExclusions(host, options.sshPorts);
    refuseExcludedTargets(parsed.destinations, parsed.ports, [...exclusions, ...parseExclusions(LOOPBACK_EXCLUSIONS)]);
    const tc = buildBandwidthPlan({
      device,
      rateBitsPerSecond: parsed.rateBitsPerSecond,
      ...(parsed.burstBytes !== undefined ? { burstBytes: parsed.burstBytes } : {}),
      ...(parsed.destinations ? { destinations: parsed.destinations } : {}),
      ...(parsed.ports ? { ports: parsed.ports } : {}),
      exclusions: exclusions.map((e) => ({
        block: e.block,
        ...(e.port !== undefined ? { port: e.port } : {}),
        ...(e.localPort !== undefined ? { localPort: e.localPort } : {}),
        ...(e.protocol !== undefined ? { protocol: e.protocol } : {}),
      })),
    });
    const where = parsed.destinations ? parsed.destinations.map(blockText).join(", ") : "every address";
    const ports = parsed.ports ? `, remote ${parsed.ports.length === 1 ? "port" : "ports"} ${parsed.ports.join(", ")} (tcp, udp)` : "";
    const asked = parsed.rateText && !/^\d+(\.\d+)?\s*[kmg]?bit$/i.test(parsed.rateText) ? ` (${parsed.rateText})` : "";
    const details = [
      `acts on: ${where}${ports}, going out on ${device}: limited to ${formatRate(parsed.rateBitsPerSecond)}${asked}, burst ${tc.burstBytes} bytes`,
      ...describeExclusions(exclusions, { loopback: true, ssh }),
    ];
    return { ...parsed, device, tc, details };
  }

  async function start(plan: NetworkBandwidthPlan, ctx: FaultContext): Promise<RunningFault> {
    const { device } = plan;
    const record: BandwidthRevertRecord = { device, handle: plan.tc.handle, installed: false };
    const qdiscs = await readQdiscs(run, device);
    if (!qdiscs) throw new Error(`network interface ${device} does not exist (any more)`);
    const found = classify(qdiscs);
    if (found.state === "firedrill") throw new Error(staleMessage(device, found.handle));
    if (found.state === "foreign") throw new Error(foreignMessage(device, found.qdisc));

    if (found.root) record.previousRoot = { kind: found.root.kind, handle: found.root.handle };
    record.installed = true;
    ctx.updateRevert(toJson(record));
    const [root, ...rest] = plan.tc.install;
    try {
      await runChecked(run, "tc", root!);
    } catch (err) {
      // The root add is atomic: it failed, so nothing of ours is on the device.
      record.installed = false;
      ctx.updateRevert(toJson(record));
      throw explainTcError(err, device);
    }
    try {
      for (const args of rest) await runChecked(run, "tc", args);
    } catch (err) {
      const explained = explainTcError(err, device);
      ctx.log.error({ err: explained, device }, "network-bandwidth could not be installed completely; removing what was added");
      await removeBandwidth(run, record, ctx.log).catch((undoErr: unknown) => ctx.log.error({ err: undoErr }, "removing the partial qdisc failed; the journal keeps the record"));
      throw explained;
    }
    ctx.log.info(
      { device, rateBitsPerSecond: plan.rateBitsPerSecond, burstBytes: plan.tc.burstBytes, filters: plan.tc.install.length - 2, limitsEverything: plan.tc.limitsEverything, details: plan.details },
      "network bandwidth limit running",
    );

    const asked = mbit(plan.rateBitsPerSecond);
    let last: Record<string, number> = { rate_asked_mbit: asked, installed: 1 };
    let previous: { at: number; counters: ClassCounters } | undefined;
    let polling = false;
    const poll = async () => {
      if (polling) return;
      polling = true;
      try {
        const counters = await readClassCounters(run, device, BANDWIDTH_CLASS);
        const at = now();
        // The frame rate through the limited class since the last reading (kept when no time passed).
        const fresh = !previous || at > previous.at;
        const achieved =
          previous && counters && at > previous.at ? mbit(Math.max(((counters.bytes - previous.counters.bytes) * 8 * 1000) / (at - previous.at), 0)) : last.rate_achieved_mbit;
        last = {
          rate_asked_mbit: asked,
          ...(achieved !== undefined ? { rate_achieved_mbit: achieved } : {}),
          sent_bytes: counters?.bytes ?? 0,
          sent_packets: counters?.packets ?? 0,
          dropped_packets: counters?.dropped ?? 0,
          overlimits: counters?.overlimits ?? 0,
          backlog_bytes: counters?.backlogBytes ?? 0,
          installed: counters ? 1 : 0,
        };
        if (!counters) previous = undefined;
        else if (fresh) previous = { at, counters };
      } catch (err) {
        ctx.log.debug({ err }, "reading the htb class counters failed");
      } finally {
        polling = false;
      }
    };
    const timer = setInterval(() => void poll(), measureEvery);
    timer.unref();
    void poll();
    let reverted: Promise<void> | undefined;
    return {
      details: plan.details,
      measure: () => last,
      revert() {
        clearInterval(timer);
        reverted ??= removeBandwidth(run, record, ctx.log).catch((err: unknown) => {
          reverted = undefined; // let a retry run again
          throw err;
        });
        return reverted;
      },
    };
  }

  return {
    kind: "network-bandwidth",
    exclusiveGroup: "network",
    validate,
    preview(plan): FaultPreviewResult {
      return { details: plan.details };
    },
    planRevert(plan) {
      return toJson({ device: plan.device, handle: plan.tc.handle, installed: false });
    },
    start,
    async revertRecord(revert, { log }) {
      await revertNetworkBandwidthRecord(revert, { log }, run);
    },
  };
}

function toJson(record: BandwidthRevertRecord): JsonObject {
  return { ...record } as unknown as JsonObject;
}

/** The network-bandwidth fault kind. */
export const networkBandwidth = createNetworkBandwidth();
