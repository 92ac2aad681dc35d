/**
 * Ad-hoc faults on one agent through the HTTP API, for end-to-end tests: start one and wait until
 * the agent reports it running, read it, wait for its revert.
 */
import { api } from "./api.js";
import type { ApiTarget } from "./api.js";
import { waitFor } from "./processes.js";

/** The fault calls of one agent; `agentId` is read at each call (tests learn it in beforeAll). */
export function faultApi(control: () => ApiTarget, agentId: () => string, opts: { runTimeoutMs?: number; revertTimeoutMs?: number } = {}) {
  const startFault = (kind: string, params: Record<string, unknown>, duration = "5m") =>
    api(control(), "POST", `/api/v1/agents/${agentId()}/faults`, { kind, params, duration });
  const getFault = async (faultId: string) => (await api(control(), "GET", `/api/v1/faults/${faultId}`)).body.fault;
  return {
    startFault,
    getFault,
    /** Starts a fault and waits until the agent reports it running (its effect is in place); its id. */
    async startRunning(kind: string, params: Record<string, unknown>, duration = "5m"): Promise<string> {
      const res = await startFault(kind, params, duration);
      if (res.status !== 201) throw new Error(`starting ${kind}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
      const id = res.body.fault.id as string;
      await waitFor(`${kind} ${id} to run`, async () => {
        const f = await getFault(id);
        if (f.state === "failed") throw new Error(`${kind} failed: ${f.error}`);
        return f.state === "running";
      }, opts.runTimeoutMs ?? 10_000, 50);
      return id;
    },
    /** Waits until the fault is recorded reverted; the fault. */
    waitReverted: (faultId: string, timeoutMs = opts.revertTimeoutMs ?? 10_000) =>
      waitFor(`${faultId} to be reverted`, async () => {
        const f = await getFault(faultId);
        return f.state === "reverted" ? f : undefined;
      }, timeoutMs, 50),
  };
}
