/**
 * network-delay: delays outgoing traffic on one device with tc netem, under a root handle firedrill
 * reserves (1f1d:). The plan (tc-plan.ts) is built as data before anything runs; the control plane,
 * IMDS, DNS, SSH (port 22 and the ports sshd listens on, found at validation, right before start),
 * --management networks and ports, and loopback are always sent around the delay. What it acts on
 * and leaves alone is reported as the fault's details and preview.
 *
 * Safety:
 * - a root qdisc someone configured (non-zero handle, not ours) is refused: deleting ours could not
 *   restore it exactly. A default root (handle 0:, e.g. noqueue, fq_codel, pfifo_fast, mq) comes
 *   back by itself when ours is deleted.
 * - our handle already on the device (a stale fault) is refused with how to clean it.
 * - a kernel without sch_netem (or sch_prio) is refused before anything is touched, saying so.
 * - the journal record (device, handle, what the root was, whether we installed) is written before
 *   the first tc command; revert deletes our root if it is still there and checks it is gone.
 */
import { parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import { kernelQdiscSupport } from "../facts.js";
import type { ProbedQdisc } from "../facts.js";
import { LOOPBACK_EXCLUSIONS, describeExclusions, faultExclusions, kernelRelease, parseExclusions, refuseExcludedTargets, runCommand } from "./net-common.js";
import type { CommandRunner, SshPortScanner } from "./net-common.js";
import { DELAY_ROOT_HANDLE, buildTcPlan } from "./tc-plan.js";
import type { TcPlan } from "./tc-plan.js";
import { readQdiscs, removeDelay, revertNetworkDelayRecord } from "./network-delay-revert.js";
import type { DelayRevertRecord } from "./network-delay-revert.js";
import { pollEvery, revertOnce } from "./running.js";
import { HOST_INTERFACES, classifyQdiscs, explainTcError, foreignQdiscMessage, installTcPlan, resolveDevice, targetText, tcExclusions, toJson } from "./tc-common.js";
import type { InterfaceLookup } from "./tc-common.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, HostInfo, RunningFault } from "./types.js";

type NetworkDelayParams = FaultParamsByKind["network-delay"];

export type { DelayRevertRecord } from "./network-delay-revert.js";
export type { InterfaceLookup } from "./tc-common.js";

/** Validated network-delay parameters, with the device resolved and the tc plan built. */
export interface NetworkDelayPlan extends NetworkDelayParams {
  device: string;
  tc: TcPlan;
  /** One line each: what it acts on, then every exclusion (sent with STARTED, shown by preview). */
  details: string[];
}

/** The message for a kernel without the qdiscs network-delay needs. */
export function missingQdiscMessage(missing: ProbedQdisc[], release = kernelRelease()): string {
  const modules = missing.map((m) => `sch_${m}`);
  const names = modules.length === 1 ? `the ${modules[0]} kernel module` : `the ${modules.join(" and ")} kernel modules`;
  return (
    `network-delay needs ${names}, which this kernel (${release}) does not have: install your distribution's extra kernel modules ` +
    `(Ubuntu: linux-modules-extra-${release}; RHEL, Fedora, Amazon Linux: kernel-modules-extra) and run \`modprobe ${modules.length > 1 ? "-a " : ""}${modules.join(" ")}\``
  );
}

function staleMessage(device: string): string {
  return (
    `a firedrill network-delay qdisc (root handle ${DELAY_ROOT_HANDLE}) is already on ${device}: another network-delay is running, or one was left behind by an agent that could not clean up. ` +
    `If no firedrill network fault is running on this host, run \`firedrill-agent recover\`; if it is still there afterwards, remove it with \`tc qdisc del dev ${device} root handle ${DELAY_ROOT_HANDLE}\``
  );
}

/** Options of the network-delay kind (seams for tests). */
export interface NetworkDelayOptions {
  /** Runs tc. @default runCommand */
  run?: CommandRunner;
  /** Which of netem and prio the kernel lacks, for sure; [] when present or unknown. @default a real probe */
  missingQdiscs?: () => ProbedQdisc[];
  /** How often measurements are refreshed. @default 2000 */
  measureIntervalMs?: number;
  /** Looks up this host's interfaces. @default /sys/class/net and `ip -j route show default` */
  interfaces?: InterfaceLookup;
  /** Finds the ports sshd listens on. @default findSshListenPorts (this network namespace's /proc) */
  sshPorts?: SshPortScanner;
}

function probeMissingQdiscs(): ProbedQdisc[] {
  return (["netem", "prio"] as const).filter((kind) => {
    // A cached "missing" is probed again: a `modprobe` since then fixes it without a restart.
    let support = kernelQdiscSupport(kind);
    if (!support.available) support = kernelQdiscSupport(kind, { refresh: true });
    return support.definitive && !support.available;
  });
}

/** Creates the network-delay kind. */
export function createNetworkDelay(options: NetworkDelayOptions = {}): FaultKindDefinition<NetworkDelayPlan> {
  const run = options.run ?? runCommand;
  const missingQdiscs = options.missingQdiscs ?? probeMissingQdiscs;
  const measureEvery = options.measureIntervalMs ?? 2000;
  const interfaces = options.interfaces ?? HOST_INTERFACES;

  function validate(params: JsonObject, host: HostInfo): NetworkDelayPlan {
    const parsed = parseFaultParams("network-delay", params);
    const device = resolveDevice(parsed.interface, interfaces);
    // Read here, just before start(): sshd's ports as they are now.
    const { exclusions, ssh } = faultExclusions(host, options.sshPorts);
    refuseExcludedTargets(parsed.destinations, parsed.ports, [...exclusions, ...parseExclusions(LOOPBACK_EXCLUSIONS)]);
    const tc = buildTcPlan({
      device,
      delayMs: parsed.delayMs,
      jitterMs: parsed.jitterMs,
      correlation: parsed.correlation,
      ...(parsed.destinations ? { destinations: parsed.destinations } : {}),
      ...(parsed.ports ? { ports: parsed.ports } : {}),
      exclusions: tcExclusions(exclusions),
    });
    const jitter = parsed.jitterMs > 0 ? ` ± ${parsed.jitterMs} ms` : "";
    const details = [
      `acts on: ${targetText(parsed.destinations, parsed.ports)}, going out on ${device}: delayed ${parsed.delayMs} ms${jitter}`,
      ...describeExclusions(exclusions, { loopback: true, ssh }),
    ];
    return { ...parsed, device, tc, details };
  }

  async function start(plan: NetworkDelayPlan, ctx: FaultContext): Promise<RunningFault> {
    const { device } = plan;
    const record: DelayRevertRecord = { device, handle: plan.tc.handle, netemHandle: plan.tc.netemHandle, installed: false };
    const qdiscs = await readQdiscs(run, device);
    if (!qdiscs) throw new Error(`network interface ${device} does not exist (any more)`);
    const found = classifyQdiscs(qdiscs, [DELAY_ROOT_HANDLE]);
    if (found.state === "firedrill") throw new Error(staleMessage(device));
    if (found.state === "foreign") throw new Error(foreignQdiscMessage("network-delay", device, found.qdisc));
    const missing = missingQdiscs();
    if (missing.length > 0) throw new Error(missingQdiscMessage(missing));

    if (found.root) record.previousRoot = { kind: found.root.kind, handle: found.root.handle };
    await installTcPlan({
      kind: "network-delay",
      run,
      install: plan.tc.install,
      record,
      ctx,
      explain: (err) => explainTcError(err, device, "network-delay", (e) => missingQdiscMessage([e.command.includes("prio") ? "prio" : "netem"])),
      remove: removeDelay,
    });
    ctx.log.info(
      { device, delayMs: plan.delayMs, jitterMs: plan.jitterMs, filters: plan.tc.install.length - 2, delaysEverything: plan.tc.delaysEverything, details: plan.details },
      "network delay running",
    );

    let last: Record<string, number> = { delay_ms_asked: plan.delayMs, jitter_ms_asked: plan.jitterMs };
    const { timer, poll } = pollEvery(
      measureEvery,
      async () => {
        const netem = (await readQdiscs(run, device, true))?.find((q) => q.handle === plan.tc.netemHandle);
        last = {
          delay_ms_asked: plan.delayMs,
          jitter_ms_asked: plan.jitterMs,
          delayed_packets: netem?.packets ?? 0,
          netem_drops: netem?.drops ?? 0,
          netem_queue: netem?.qlen ?? 0,
          installed: netem ? 1 : 0,
        };
      },
      (err) => ctx.log.debug({ err }, "reading netem counters failed"),
    );
    void poll();
    const remove = revertOnce(() => removeDelay(run, record, ctx.log));
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
    kind: "network-delay",
    exclusiveGroup: "network",
    validate,
    preview(plan): FaultPreviewResult {
      return { details: plan.details };
    },
    planRevert(plan) {
      return toJson({ device: plan.device, handle: plan.tc.handle, netemHandle: plan.tc.netemHandle, installed: false });
    },
    start,
    async revertRecord(revert, { log }) {
      await revertNetworkDelayRecord(revert, { log }, run);
    },
  };
}


/** The network-delay fault kind. */
export const networkDelay = createNetworkDelay();
