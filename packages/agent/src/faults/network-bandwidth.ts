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
import { formatRate, parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import { LOOPBACK_EXCLUSIONS, describeExclusions, faultExclusions, parseExclusions, refuseExcludedTargets, runCommand } from "./net-common.js";
import type { CommandRunner, SshPortScanner } from "./net-common.js";
import { BANDWIDTH_CLASS, BANDWIDTH_ROOT_HANDLE, buildBandwidthPlan } from "./bandwidth-plan.js";
import type { BandwidthPlan } from "./bandwidth-plan.js";
import { readClassCounters, removeBandwidth, revertNetworkBandwidthRecord } from "./network-bandwidth-revert.js";
import type { BandwidthRevertRecord, ClassCounters } from "./network-bandwidth-revert.js";
import { readQdiscs } from "./network-delay-revert.js";
import { pollEvery, revertOnce } from "./running.js";
import { HOST_INTERFACES, classifyQdiscs, explainTcError, foreignQdiscMessage, installTcPlan, resolveDevice, targetText, tcExclusions, toJson } from "./tc-common.js";
import type { InterfaceLookup } from "./tc-common.js";
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
    const device = resolveDevice(parsed.interface, interfaces);
    // Read here, just before start(): sshd's ports as they are now.
    const { exclusions, ssh } = faultExclusions(host, options.sshPorts);
    refuseExcludedTargets(parsed.destinations, parsed.ports, [...exclusions, ...parseExclusions(LOOPBACK_EXCLUSIONS)]);
    const tc = buildBandwidthPlan({
      device,
      rateBitsPerSecond: parsed.rateBitsPerSecond,
      ...(parsed.burstBytes !== undefined ? { burstBytes: parsed.burstBytes } : {}),
      ...(parsed.destinations ? { destinations: parsed.destinations } : {}),
      ...(parsed.ports ? { ports: parsed.ports } : {}),
      exclusions: tcExclusions(exclusions),
    });
    const asked = parsed.rateText && !/^\d+(\.\d+)?\s*[kmg]?bit$/i.test(parsed.rateText) ? ` (${parsed.rateText})` : "";
    const details = [
      `acts on: ${targetText(parsed.destinations, parsed.ports)}, going out on ${device}: limited to ${formatRate(parsed.rateBitsPerSecond)}${asked}, burst ${tc.burstBytes} bytes`,
      ...describeExclusions(exclusions, { loopback: true, ssh }),
    ];
    return { ...parsed, device, tc, details };
  }

  async function start(plan: NetworkBandwidthPlan, ctx: FaultContext): Promise<RunningFault> {
    const { device } = plan;
    const record: BandwidthRevertRecord = { device, handle: plan.tc.handle, installed: false };
    const qdiscs = await readQdiscs(run, device);
    if (!qdiscs) throw new Error(`network interface ${device} does not exist (any more)`);
    const found = classifyQdiscs(qdiscs, [BANDWIDTH_ROOT_HANDLE, DELAY_ROOT_HANDLE]);
    if (found.state === "firedrill") throw new Error(staleMessage(device, found.handle));
    if (found.state === "foreign") throw new Error(foreignQdiscMessage("network-bandwidth", device, found.qdisc));

    if (found.root) record.previousRoot = { kind: found.root.kind, handle: found.root.handle };
    await installTcPlan({
      kind: "network-bandwidth",
      run,
      install: plan.tc.install,
      record,
      ctx,
      explain: (err) => explainTcError(err, device, "network-bandwidth", () => MISSING_HTB_MESSAGE),
      remove: removeBandwidth,
    });
    ctx.log.info(
      { device, rateBitsPerSecond: plan.rateBitsPerSecond, burstBytes: plan.tc.burstBytes, filters: plan.tc.install.length - 2, limitsEverything: plan.tc.limitsEverything, details: plan.details },
      "network bandwidth limit running",
    );

    const asked = mbit(plan.rateBitsPerSecond);
    let last: Record<string, number> = { rate_asked_mbit: asked, installed: 1 };
    let previous: { at: number; counters: ClassCounters } | undefined;
    const { timer, poll } = pollEvery(
      measureEvery,
      async () => {
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
      },
      (err) => ctx.log.debug({ err }, "reading the htb class counters failed"),
    );
    void poll();
    const remove = revertOnce(() => removeBandwidth(run, record, ctx.log));
    return {
      details: plan.details,
      measure: () => last,
      revert() {
        clearInterval(timer);
        return remove();
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

/** The network-bandwidth fault kind. */
export const networkBandwidth = createNetworkBandwidth();
