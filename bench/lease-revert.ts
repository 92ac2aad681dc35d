/**
 * Lease revert time: a burn runs, the control plane is SIGKILLed, and we time how long until the
 * burner threads are gone from the agent process (polled from /proc every 20 ms).
 */
import { api } from "../test/support/api.js";
import { burnerThreads } from "../test/support/cpu.js";
import { connectedAgentId, killAll, startAgentProcess, startServer, tempDir, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

export async function benchLeaseRevert(trials = 3, ttl = "3s"): Promise<void> {
  const rows: (string | number)[][] = [];
  for (let trial = 1; trial <= trials; trial++) {
    const cp = tempDir("bench-cp");
    const st = tempDir("bench-agent");
    try {
      const server = await startServer({ dataDir: cp.path, leaseTtl: ttl });
      const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
      const agentId = await connectedAgentId(server);
      const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 50 }, duration: "10m" });
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      await waitFor("burner", () => burnerThreads(agent.pid).length > 0);
      // Let at least one renewal arrive so the lease was freshly renewed shortly before the kill.
      await new Promise((r) => setTimeout(r, 1500));
      server.proc.kill("SIGKILL");
      const t0 = performance.now();
      await waitFor("burn gone", () => burnerThreads(agent.pid).length === 0, 20_000, 20);
      const ms = performance.now() - t0;
      rows.push([trial, ttl, `${Math.round(ms)} ms`, `${ms - 3000 >= 0 ? "+" : ""}${Math.round(ms - 3000)} ms`]);
    } finally {
      await killAll();
      cp.cleanup();
      st.cleanup();
    }
  }
  printTable("revert time after SIGKILL of the control plane (lease TTL 3 s; bound: TTL + 1 s)", ["trial", "lease TTL", "kill → burn gone", "vs TTL"], rows);
}
