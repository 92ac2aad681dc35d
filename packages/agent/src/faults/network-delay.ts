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
import { parseFaultParams, InvalidFaultRequestError } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import { kernelQdiscSupport } from "../facts.js";
import type { ProbedQdisc } from "../facts.js";
import {
  LOOPBACK_EXCLUSIONS,
  NetCommandError,
  blockText,
  defaultRouteDevice,
  describeExclusions,
  faultExclusions,
  interfaceExists,
  kernelRelease,
  listInterfaces,
  parseExclusions,
  permissionHint,
  refuseExcludedTargets,
  runChecked,
  runCommand,
} from "./net-common.js";
import type { CommandRunner, SshPortScanner } from "./net-common.js";
import { DELAY_ROOT_HANDLE, buildTcPlan } from "./tc-plan.js";
import type { TcPlan } from "./tc-plan.js";
import { readQdiscs, removeDelay, revertNetworkDelayRecord } from "./network-delay-revert.js";
import type { DelayRevertRecord, QdiscInfo } from "./network-delay-revert.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, HostInfo, RunningFault } from "./types.js";

type NetworkDelayParams = FaultParamsByKind["network-delay"];

export type { DelayRevertRecord } from "./network-delay-revert.js";

/** Validated network-delay parameters, with the device resolved and the tc plan built. */
export interface NetworkDelayPlan extends NetworkDelayParams {
  device: string;
  tc: TcPlan;
  /** One line each: what it acts on, then every exclusion (sent with STARTED, shown by preview). */
  details: string[];
}

/** The ingress/clsact pseudo-qdiscs hang here; they are not part of the egress tree. */
const INGRESS_PARENT = "ffff:fff1";

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

function foreignMessage(device: string, q: QdiscInfo): string {
  const where = q.root ? "root qdisc" : `qdisc under ${q.parent ?? "?"}`;
  return (
    `${device} has a ${where} someone configured (${q.kind} ${q.handle}); network-delay replaces the root qdisc and could not restore it exactly afterwards, so it refuses. ` +
    `Use another interface, or remove that configuration first (it is not firedrill's)`
  );
}

/** What is on the device: ours (stale), someone else's, or the kernel's default. */
function classify(qdiscs: QdiscInfo[]): { state: "ours" } | { state: "foreign"; qdisc: QdiscInfo } | { state: "default"; root?: QdiscInfo } {
  const root = qdiscs.find((q) => q.root);
  if (root?.handle === DELAY_ROOT_HANDLE) return { state: "ours" };
  const configured = qdiscs.find((q) => q.parent !== INGRESS_PARENT && q.handle !== "0:");
  if (configured) return { state: "foreign", qdisc: configured };
  return root ? { state: "default", root } : { state: "default" };
}

/** Turns a tc failure into what the operator should know. */
function explainTcError(err: unknown, device: string): Error {
  if (!(err instanceof NetCommandError)) return err as Error;
  const said = err.stderr;
  if (/Specified qdisc kind is unknown/i.test(said)) {
    const kind: ProbedQdisc = err.command.includes("prio") ? "prio" : "netem";
    return new Error(missingQdiscMessage([kind]));
  }
  const perm = permissionHint(said);
  if (perm) return new Error(`${perm} (${err.message})`);
  if (/Exclusivity flag on|NLM_F_REPLACE needed/i.test(said)) {
    return new Error(`${device} got a root qdisc someone configured while network-delay was starting; it refuses to replace it. Nothing was changed`);
  }
  return err;
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

/** How validate() finds interfaces (seam for tests that act inside a network namespace). */
export interface InterfaceLookup {
  exists(name: string): boolean;
  list(): string[];
  defaultDevice(): string | undefined;
}

const HOST_INTERFACES: InterfaceLookup = { exists: interfaceExists, list: listInterfaces, defaultDevice: defaultRouteDevice };

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
    const tc = buildTcPlan({
      device,
      delayMs: parsed.delayMs,
      jitterMs: parsed.jitterMs,
      correlation: parsed.correlation,
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
    const jitter = parsed.jitterMs > 0 ? ` ± ${parsed.jitterMs} ms` : "";
    const details = [
      `acts on: ${where}${ports}, going out on ${device}: delayed ${parsed.delayMs} ms${jitter}`,
      ...describeExclusions(exclusions, { loopback: true, ssh }),
    ];
    return { ...parsed, device, tc, details };
  }

  async function start(plan: NetworkDelayPlan, ctx: FaultContext): Promise<RunningFault> {
    const { device } = plan;
    const record: DelayRevertRecord = { device, handle: plan.tc.handle, netemHandle: plan.tc.netemHandle, installed: false };
    const qdiscs = await readQdiscs(run, device);
    if (!qdiscs) throw new Error(`network interface ${device} does not exist (any more)`);
    const found = classify(qdiscs);
    if (found.state === "ours") throw new Error(staleMessage(device));
    if (found.state === "foreign") throw new Error(foreignMessage(device, found.qdisc));
    const missing = missingQdiscs();
    if (missing.length > 0) throw new Error(missingQdiscMessage(missing));

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
      ctx.log.error({ err: explained, device }, "network-delay could not be installed completely; removing what was added");
      await removeDelay(run, record, ctx.log).catch((undoErr: unknown) => ctx.log.error({ err: undoErr }, "removing the partial qdisc failed; the journal keeps the record"));
      throw explained;
    }
    ctx.log.info(
      { device, delayMs: plan.delayMs, jitterMs: plan.jitterMs, filters: plan.tc.install.length - 2, delaysEverything: plan.tc.delaysEverything, details: plan.details },
      "network delay running",
    );

    let last: Record<string, number> = { delay_ms_asked: plan.delayMs, jitter_ms_asked: plan.jitterMs };
    let polling = false;
    const poll = async () => {
      if (polling) return;
      polling = true;
      try {
        const netem = (await readQdiscs(run, device, true))?.find((q) => q.handle === plan.tc.netemHandle);
        last = {
          delay_ms_asked: plan.delayMs,
          jitter_ms_asked: plan.jitterMs,
          delayed_packets: netem?.packets ?? 0,
          netem_drops: netem?.drops ?? 0,
          netem_queue: netem?.qlen ?? 0,
          installed: netem ? 1 : 0,
        };
      } catch (err) {
        ctx.log.debug({ err }, "reading netem counters failed");
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
        reverted ??= removeDelay(run, record, ctx.log).catch((err: unknown) => {
          reverted = undefined; // let a retry run again
          throw err;
        });
        return reverted;
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

function toJson(record: DelayRevertRecord): JsonObject {
  return { ...record } as unknown as JsonObject;
}


/** The network-delay fault kind. */
export const networkDelay = createNetworkDelay();
