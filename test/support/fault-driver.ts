/**
 * Runs one fault through the agent's real fault runtime (journal, validate, start, revert), without
 * a control plane, and prints its events as JSON lines. For faults the control plane would refuse
 * to send to this host (network-delay where the agent reports no netem), so that the agent's own
 * checks can be tested on the real system:
 *
 *   ip netns exec <host> node --import tsx test/support/fault-driver.ts \
 *     --state-dir DIR --server HOST:PORT --kind network-delay --params '{"delayMs":100}' [--hold-ms 1000]
 *
 * A fault that starts is held for --hold-ms (default 0), then stopped.
 */
import { RevertReason, durationFromMs, faultEventTypeName } from "@firedrill/protocol";
import type { JsonObject, StartFault } from "@firedrill/protocol";
import { createDefaultFaultRegistry, Journal } from "@firedrill/agent";
import { createLogger } from "../../packages/agent/src/log.js";
import { computeNetworkExclusions } from "../../packages/agent/src/network-exclusions.js";
import { selfProcess } from "../../packages/agent/src/identity.js";
import { FaultRuntime } from "../../packages/agent/src/runtime.js";

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const stateDir = opt("state-dir")!;
const server = opt("server")!;
const kind = opt("kind")!;
const params = JSON.parse(opt("params") ?? "{}") as JsonObject;
const holdMs = Math.min(Number(opt("hold-ms") ?? 0), 60_000);

const runtime = new FaultRuntime({
  registry: createDefaultFaultRegistry(),
  journal: new Journal(stateDir),
  host: { cpuCount: 1, stateDir, protectedPids: () => [process.pid], networkExclusions: await computeNetworkExclusions(server), controlPlaneHost: server.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1") },
  log: createLogger("silent"),
  holder: selfProcess(),
  progressIntervalMs: 60_000,
  revertAttempts: 1,
  emit(event) {
    console.log(JSON.stringify({ type: faultEventTypeName(event.type), error: event.error, message: event.message }));
  },
});

const faultId = `drv_${process.pid}`;
await runtime.start({ faultId, kind, params, duration: durationFromMs(60_000), runId: "" } as StartFault);
if (runtime.activeCount > 0) {
  await new Promise((r) => setTimeout(r, holdMs));
  await runtime.stop(faultId, RevertReason.STOPPED);
}
