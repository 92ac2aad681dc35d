/** Agent records for experiment tests. */
import type { AgentRecord, CapabilitiesJson } from "../store/types.js";

/** Every fault kind with every capability: a fully able host. */
export const FULL_CAPABILITIES: CapabilitiesJson = {
  faultKinds: ["cpu-burn", "disk-fill", "process-kill", "process-stop", "network-delay", "network-loss", "network-blackhole"],
  root: true,
  netem: true,
  nftables: true,
  tc: true,
  systemd: true,
};

/** An agent record: connected, opted in (`firedrill:opt-in=true`), fully capable, unless overridden. */
export function testAgent(
  id: string,
  overrides: Partial<Omit<AgentRecord, "facts">> & { facts?: Partial<AgentRecord["facts"]> } = {},
): AgentRecord {
  const { facts, ...rest } = overrides;
  return {
    id,
    hostname: id,
    version: "0.1.0",
    facts: {
      hostname: overrides.hostname ?? id,
      osPlatform: "linux",
      osDistro: "Debian GNU/Linux",
      osRelease: "12",
      kernel: "6.1.0",
      arch: "x64",
      cpuCount: 2,
      cpuModel: "test",
      memoryBytes: 4 * 1024 ** 3,
      filesystems: [],
      interfaces: [],
      instanceId: "",
      availabilityZone: "",
      region: "",
      ...facts,
    },
    labels: { "firedrill:opt-in": "true" },
    capabilities: FULL_CAPABILITIES,
    instanceId: null,
    availabilityZone: null,
    connected: true,
    firstSeen: 0,
    lastSeen: 0,
    connectedAt: 0,
    activeFaults: 0,
    enrolled: true,
    certificateNotAfter: null,
    revokedAt: null,
    ...rest,
  };
}
