/**
 * One line saying what a fault would do, from its parameters: what the plan shows beside each
 * step ("dns-fault: NXDOMAIN for *.payments.internal"), before any agent is asked.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { parseFaultParams, isFaultKind } from "./fault-kinds.js";
import type { FaultParamsByKind } from "./fault-kinds.js";
import type { CidrBlock } from "./faults/net-params.js";

const MIB = 1024 * 1024;

/** "512 MiB", "1.5 GiB". */
function bytes(n: number): string {
  if (n >= 1024 * MIB) return `${Number((n / 1024 / MIB).toFixed(1))} GiB`;
  if (n >= MIB) return `${Number((n / MIB).toFixed(1))} MiB`;
  return `${Math.round(n / 1024)} KiB`;
}

/** "to 10.0.0.0/8, 192.168.1.5/32 port 443, 8443" or "to everything". */
function where(destinations: readonly CidrBlock[] | undefined, ports: readonly number[] | undefined): string {
  const to = destinations && destinations.length > 0 ? destinations.slice(0, 3).map((d) => d.text).join(", ") + (destinations.length > 3 ? ` and ${destinations.length - 3} more` : "") : "everything";
  const on = ports && ports.length > 0 ? ` port ${ports.slice(0, 5).join(", ")}${ports.length > 5 ? ` and ${ports.length - 5} more` : ""}` : "";
  return `${to}${on}`;
}

const SUMMARIES: { [K in keyof FaultParamsByKind]: (p: FaultParamsByKind[K]) => string } = {
  "cpu-burn": (p) => `${p.load} % of ${p.cores === "all" ? "every core" : p.cores === 1 ? "1 core" : `${p.cores} cores`}`,
  "disk-fill": (p) => `fill ${p.path} ${p.targetPercent !== undefined ? `to ${p.targetPercent} %` : `by ${bytes(p.size ?? 0)}`}`,
  "process-kill": (p) => `${p.signal} to ${p.name ?? p.pattern ?? `pid ${p.pid}`}${p.repeatEveryMs !== undefined ? `, again every ${p.repeatEveryMs} ms` : ""}`,
  "process-stop": (p) => `SIGSTOP ${p.name ?? p.pattern ?? `pid ${p.pid}`}`,
  "network-delay": (p) => `+${p.delayMs} ms${p.jitterMs > 0 ? ` ± ${p.jitterMs} ms` : ""} to ${where(p.destinations, p.ports)}`,
  "network-loss": (p) => `${p.percent} % loss ${p.direction} to ${where(p.destinations, p.ports)}`,
  "network-blackhole": (p) => `drop ${p.direction} to ${where(p.destinations, p.ports)}`,
  "network-bandwidth": (p) => `limit to ${p.rateText} to ${where(p.destinations, p.ports)}`,
  "network-reject": (p) => `refuse (${p.with === "port-unreachable" ? "TCP reset, ICMP port unreachable" : `TCP reset, ICMP ${p.with}`}) ${p.direction} to ${where(p.destinations, p.ports)}`,
  "dns-fault": (p) => `${p.mode} for ${p.domains && p.domains.length > 0 && !(p.domains.length === 1 && p.domains[0] === "*") ? p.domains.slice(0, 3).join(", ") + (p.domains.length > 3 ? ` and ${p.domains.length - 3} more` : "") : "every name"}`,
  "memory-stress": (p) => `hold ${p.percent !== undefined ? `${p.percent} % of RAM` : bytes(p.size ?? 0)}`,
  "io-stress": (p) => `${p.mbps === "max" ? "as much IO as it can" : `${p.mbps} MB/s of IO`} on ${p.path} (${p.readPercent} % reads, ${bytes(p.blockSize)} blocks)`,
  "service-stop": (p) => `${p.mode === "kill" ? "kill (SIGKILL)" : "stop"} ${p.unit}`,
};

/**
 * What a fault of `kind` with `params` would do, in one line without the kind's name, or undefined
 * when the kind is unknown or the parameters do not parse (the plan says why elsewhere).
 */
export function describeFaultParams(kind: string, params: JsonObject): string | undefined {
  if (!isFaultKind(kind)) return undefined;
  try {
    const parsed = parseFaultParams(kind, params);
    return (SUMMARIES[kind] as (p: unknown) => string)(parsed);
  } catch {
    return undefined;
  }
}
