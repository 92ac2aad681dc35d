/**
 * cpu-burn accuracy: for several load levels on one core, what the agent was asked, what it
 * reported, and what /proc says independently (agent process CPU, the pinned core, the machine).
 */
import { cpus } from "node:os";
import { api } from "../test/support/api.js";
import { machineCpu, processCpu } from "../test/support/cpu.js";
import { connectedAgentId, killAll, sleep, startAgentProcess, startServer, tempDir, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

export async function benchBurnAccuracy(levels = [25, 50, 75]): Promise<void> {
  const cp = tempDir("bench-cp");
  const st = tempDir("bench-agent");
  try {
    const server = await startServer({ dataDir: cp.path });
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    const agentId = await connectedAgentId(server);
    const rows: (string | number)[][] = [];
    for (const load of levels) {
      // Baseline once the agent is idle (start-up and the previous level's tail excluded).
      await waitFor("idle agent", async () => (await processCpu(agent.pid, 500)) < 3, 30_000);
      const baseline = await machineCpu(3000);
      const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load, cores: 1 }, duration: "12s" });
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      const id = res.body.fault.id as string;
      await sleep(1500);
      const [proc, machine] = await Promise.all([processCpu(agent.pid, 8000), machineCpu(8000)]);
      await api(server, "DELETE", `/api/v1/agents/${agentId}/faults/${id}`);
      const events = (await api(server, "GET", `/api/v1/faults/${id}`)).body.events as { type: string; measurements: Record<string, number> }[];
      const progress = events.filter((e) => e.type === "progress").slice(1);
      const avg = (key: string) => progress.reduce((s, e) => s + (e.measurements[key] ?? 0), 0) / Math.max(1, progress.length);
      rows.push([
        `${load}%`,
        `${avg("burner_percent").toFixed(1)}%`,
        `${proc.toFixed(1)}%`,
        `${avg("cpu0_percent").toFixed(1)}%`,
        `+${(machine - baseline).toFixed(1)} (exp. +${(load / cpus().length).toFixed(1)})`,
        `${(avg("burner_percent") - load).toFixed(1)}`,
      ]);
      await sleep(1000);
    }
    printTable(
      `cpu-burn accuracy, 1 core of ${cpus().length} (8 s windows)`,
      ["asked", "agent reported", "/proc agent process", "core 0 busy", "machine rise (pts)", "error (pts)"],
      rows,
    );
  } finally {
    await killAll();
    cp.cleanup();
    st.cleanup();
  }
}
