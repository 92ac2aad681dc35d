/** Conversions from protocol messages to store records. */
import type { Capabilities, FaultEvent, Hello, HostFacts } from "@firedrill/protocol";
import { faultEventTypeName, revertReasonName, timestampToMs } from "@firedrill/protocol";
import { FAULT_DETAILS_BOUNDS } from "../store/types.js";
import type { AgentHello, CapabilitiesJson, FaultEventInput, HostFactsJson } from "../store/types.js";

/** Host facts as plain JSON (uint64 sizes become numbers; they stay far below 2^53). */
export function hostFactsToJson(facts: HostFacts | undefined): HostFactsJson {
  return {
    hostname: facts?.hostname ?? "",
    osPlatform: facts?.osPlatform ?? "",
    osDistro: facts?.osDistro ?? "",
    osRelease: facts?.osRelease ?? "",
    kernel: facts?.kernel ?? "",
    arch: facts?.arch ?? "",
    cpuCount: facts?.cpuCount ?? 0,
    cpuModel: facts?.cpuModel ?? "",
    memoryBytes: Number(facts?.memoryBytes ?? 0n),
    filesystems: (facts?.filesystems ?? []).map((fs) => ({
      device: fs.device,
      type: fs.type,
      mount: fs.mount,
      sizeBytes: Number(fs.sizeBytes),
      usedBytes: Number(fs.usedBytes),
    })),
    interfaces: (facts?.interfaces ?? []).map((i) => ({
      name: i.name,
      mac: i.mac,
      addresses: [...i.addresses],
      internal: i.internal,
      defaultRoute: i.defaultRoute,
    })),
    instanceId: facts?.instanceId ?? "",
    availabilityZone: facts?.availabilityZone ?? "",
    region: facts?.region ?? "",
  };
}

/** Capabilities as plain JSON. */
export function capabilitiesToJson(capabilities: Capabilities | undefined): CapabilitiesJson {
  return {
    faultKinds: [...(capabilities?.faultKinds ?? [])],
    root: capabilities?.root ?? false,
    netem: capabilities?.netem ?? false,
    nftables: capabilities?.nftables ?? false,
    tc: capabilities?.tc ?? false,
    systemd: capabilities?.systemd ?? false,
  };
}

/** The agent record fields carried by a Hello. */
export function agentFromHello(hello: Hello): AgentHello {
  const facts = hostFactsToJson(hello.facts);
  return {
    id: hello.agentId,
    hostname: facts.hostname,
    version: hello.version,
    facts,
    labels: { ...hello.labels },
    capabilities: capabilitiesToJson(hello.capabilities),
    instanceId: facts.instanceId || null,
    availabilityZone: facts.availabilityZone || null,
  };
}

/** A FaultEvent as a store event, or undefined when its type is unspecified. */
export function faultEventFromProto(agentId: string, event: FaultEvent, now: number): FaultEventInput | undefined {
  const type = faultEventTypeName(event.type);
  if (type === "unknown") return undefined;
  const measurements = Object.keys(event.measurements).length > 0 ? { ...event.measurements } : null;
  const details = boundFaultDetails(event.details);
  return {
    faultId: event.faultId,
    agentId,
    type,
    time: timestampToMs(event.time) ?? now,
    reason:
      type === "reverted" ? revertReasonName(event.reason) : type === "revert_failed" && event.reason ? revertReasonName(event.reason) : null,
    error: event.error || null,
    message: event.message || null,
    measurements,
    ...(details.length > 0 ? { details } : {}),
  };
}

// C0 and C1 control characters (ESC among them): an agent's text must not drive the terminal it is shown in.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * An agent's fault details, bounded: at most {@link FAULT_DETAILS_BOUNDS}.lines lines (the last
 * says how many more were dropped), each cut to lineLength characters, control characters replaced,
 * empty lines dropped.
 */
export function boundFaultDetails(details: readonly string[]): string[] {
  const { lines, lineLength } = FAULT_DETAILS_BOUNDS;
  const kept: string[] = [];
  let dropped = 0;
  for (const raw of details) {
    if (kept.length >= lines) {
      dropped += 1;
      continue;
    }
    const text = raw.slice(0, lineLength * 2).replace(CONTROL_CHARACTERS, " ").trim();
    if (text === "") continue;
    kept.push(text.length > lineLength ? `${text.slice(0, lineLength - 1)}…` : text);
  }
  if (dropped > 0) kept[lines - 1] = `… and ${dropped + 1} more lines`;
  return kept;
}
