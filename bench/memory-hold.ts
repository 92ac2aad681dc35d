/**
 * memory-stress accuracy: for several sizes (and one percent of RAM), what was asked, what the agent
 * reported holding, and what the kernel says independently (the holder's RssAnon from
 * /proc/<pid>/status, the drop of available memory), against the goal: held within 5 % of the ask.
 * Also the time to hold, and from stop to the holder gone and the memory back.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { api } from "../test/support/api.js";
import { connectedAgentId, killAll, sleep, startAgentProcess, startServer, tempDir, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

const MiB = 1024 * 1024;

/**
 * MemTotal, and available memory: MemAvailable plus the free pages in the per-CPU free lists
 * (/proc/zoneinfo), which 6.x kernels fill with up to ~190 MiB per CPU after a large free and
 * MemAvailable does not count until they drain (see test/memory-io-faults.test.ts).
 */
function memInfo(): { total: number; available: number } {
  const text = readFileSync("/proc/meminfo", "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)![1]) * 1024;
  let perCpuFree = 0;
  for (const m of readFileSync("/proc/zoneinfo", "utf8").matchAll(/^\s+count:\s+(\d+)$/gm)) perCpuFree += Number(m[1]);
  return { total: kb("MemTotal"), available: kb("MemAvailable") + perCpuFree * 4096 };
}

function rssAnon(pid: number): number {
  try {
    return Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

const alive = (pid: number) => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
};

/** Asks from `asks` (each `{size}` or `{percent}`), one at a time. */
export async function benchMemoryHold(asks: Record<string, string | number>[] = [{ size: "128MiB" }, { size: "256MiB" }, { size: "512MiB" }, { size: "1GiB" }, { percent: 2 }]): Promise<void> {
  const cp = tempDir("bench-cp");
  const st = tempDir("bench-agent");
  try {
    const server = await startServer({ dataDir: cp.path });
    startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    const agentId = await connectedAgentId(server);
    const rows: (string | number)[][] = [];
    for (const params of asks) {
      await sleep(1000);
      const before = memInfo();
      const t0 = performance.now();
      const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "memory-stress", params, duration: "2m" });
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      const id = res.body.fault.id as string;
      const pid = await waitFor("the holder in the journal", () => {
        try {
          return (JSON.parse(readFileSync(join(st.path, "journal", `${id}.json`), "utf8")) as { revert: { child?: { pid: number } } }).revert.child?.pid;
        } catch {
          return undefined;
        }
      }, 30_000, 20);
      // Held: the agent reports holding=1 once the holder has allocated and touched everything.
      const m = await waitFor("the hold", async () => {
        const events = (await api(server, "GET", `/api/v1/faults/${id}`)).body.events as { type: string; measurements: Record<string, number> | null }[];
        return events.find((e) => e.type === "progress" && e.measurements?.holding === 1)?.measurements;
      }, 120_000, 100);
      const heldMs = performance.now() - t0;
      await sleep(1500);
      const during = memInfo();
      const anon = rssAnon(pid);
      const last = (await api(server, "GET", `/api/v1/faults/${id}`)).body.fault.measurements as Record<string, number>;
      const s0 = performance.now();
      await api(server, "DELETE", `/api/v1/agents/${agentId}/faults/${id}`);
      await waitFor("the holder gone", () => !alive(pid), 30_000, 5);
      const goneMs = performance.now() - s0;
      await sleep(200);
      const back = memInfo();
      const askedMib = m.asked_mib!;
      const heldMib = last.held_mib ?? m.held_mib!;
      const error = ((heldMib - askedMib) / askedMib) * 100;
      rows.push([
        "size" in params ? String(params.size) : `${params.percent}% of ${(before.total / 2 ** 30).toFixed(1)} GiB`,
        askedMib.toFixed(0),
        heldMib.toFixed(1),
        (anon / MiB).toFixed(1),
        ((before.available - during.available) / MiB).toFixed(0),
        `${error >= 0 ? "+" : ""}${error.toFixed(2)} %`,
        Math.abs(error) <= 5 ? "yes" : "NO",
        `${(heldMs / 1000).toFixed(1)} s`,
        `${goneMs.toFixed(0)} ms`,
        `+${((back.available - during.available) / MiB).toFixed(0)}`,
      ]);
    }
    printTable(
      "memory-stress hold accuracy (goal: held within 5 % of asked; available = MemAvailable + per-CPU free pages, moved by the rest of the machine too)",
      ["asked", "asked MiB", "held MiB (agent)", "holder RssAnon MiB", "available drop MiB", "error", "within 5 %", "time to hold", "stop → holder gone", "available back MiB"],
      rows,
    );
  } finally {
    await killAll();
    cp.cleanup();
    st.cleanup();
  }
}
