/**
 * Agent memory with its caps reached: a real agent (run from source, as `pnpm firedrill-agent`),
 * asked for 40 stacked cpu-burns with `cores: "all"` (the 923 MB case). The per-core burner
 * cap lets two through; the rest are refused. Then small disk-fills fill the per-host fault cap
 * (`--max-faults`, default 4) and one more is refused. The agent's VmRSS and peak (VmHWM) are read
 * from /proc after each phase, against the goal of < 150 MB.
 *
 * The goal is for the agent as shipped (`pnpm build`, `node packages/agent/dist/bin.js`): the bench
 * builds it first. The same phases run from source (tsx, as the tests run it) for comparison: tsx
 * and its TypeScript transform add ~40 MB to the idle agent.
 */
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { api } from "../test/support/api.js";
import { burnerThreads } from "../test/support/cpu.js";
import {
  OPT_IN_LABELS,
  ROOT,
  captureProcess,
  childEnv,
  connectedAgentId,
  guardPid,
  killAll,
  sleep,
  startAgentProcess,
  startServer,
  tempDir,
  waitFor,
} from "../test/support/processes.js";
import type { ServerHandle, TestProcess } from "../test/support/processes.js";
import { printTable } from "./table.js";

const GOAL_MB = 150;

/** VmRSS and VmHWM of a process, in MB. */
function memoryMb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

async function startFault(server: ServerHandle, agentId: string, kind: string, params: Record<string, unknown>) {
  // The server's policy allows one fault of a kind per host: an admin override stacks them.
  return api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind, params, duration: "10m", overridePolicy: "bench: stacking faults up to the agent's caps" });
}

/** The shipped agent (`packages/agent/dist/bin.js`), built by the caller. */
function startBuiltAgent(server: ServerHandle, stateDir: string): TestProcess {
  const args = ["--server", server.grpcAddr, "--token", server.joinToken, "--state-dir", stateDir, "--imds", "off", "--labels", OPT_IN_LABELS, "--log-level", "warn"];
  return captureProcess(spawn(process.execPath, [join(ROOT, "packages/agent/dist/bin.js"), ...args], { cwd: ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] }));
}

/** Runs the phases against one agent; returns the table rows and the refusals seen. */
async function phases(how: string, start: (server: ServerHandle, stateDir: string) => TestProcess, burns: number) {
  const cp = tempDir("bench-cp");
  const st = tempDir("bench-agent");
  const fillDir = tempDir("bench-fill");
  let agent: TestProcess | undefined;
  const rows: (string | number)[][] = [];
  const refusals: string[] = [];
  try {
    const server = await startServer({ dataDir: cp.path });
    agent = start(server, st.path);
    const agentId = await connectedAgentId(server);
    await sleep(3000); // past start-up (enrollment, first Hello)
    const pid = agent.pid;
    const row = (phase: string, accepted: number, refused: number) => {
      const m = memoryMb(pid);
      rows.push([how, phase, accepted, refused, burnerThreads(pid).length, m.rss.toFixed(1), m.peak.toFixed(1), m.peak < GOAL_MB ? "yes" : "NO"]);
    };
    row("idle", 0, 0);

    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < burns; i++) {
      const res = await startFault(server, agentId, "cpu-burn", { load: 50, cores: "all" });
      if (res.status === 201) accepted++;
      else {
        refused++;
        if (refused === 1) refusals.push(`cpu-burn: ${res.body?.error?.message ?? JSON.stringify(res.body)}`);
      }
    }
    await waitFor("the burners", () => burnerThreads(pid).length === accepted * cpus().length, 20_000);
    await sleep(2000);
    row(`${burns} cpu-burns, cores: all`, accepted, refused);

    let fills = 0;
    let fillRefused = 0;
    for (let i = 0; i < 4; i++) {
      const res = await startFault(server, agentId, "disk-fill", { path: fillDir.path, size: "1MiB", keepFreeBytes: "64MiB" });
      if (res.status === 201) fills++;
      else {
        fillRefused++;
        if (fillRefused === 1) refusals.push(`disk-fill: ${res.body?.error?.message ?? JSON.stringify(res.body)}`);
      }
    }
    await sleep(2000);
    row("+ 4 disk-fills (1 MiB)", accepted + fills, refused + fillRefused);
  } finally {
    // SIGTERM: the agent reverts everything and stops its guard.
    if (agent) {
      agent.kill("SIGTERM");
      if ((await Promise.race([agent.exited, sleep(15_000).then(() => "timeout")])) === "timeout") agent.kill("SIGKILL");
    }
    const guard = guardPid(st.path);
    if (guard !== undefined) process.kill(guard, "SIGKILL");
    await killAll();
    cp.cleanup();
    st.cleanup();
    fillDir.cleanup();
  }
  return { rows, refusals };
}

export async function benchAgentCap(burns = 40): Promise<void> {
  const rows: (string | number)[][] = [];
  // The first refusal of each kind, fault ids elided.
  const refusals = new Map<string, string>();
  const keep = (list: string[]) => {
    for (const x of list) {
      const kind = x.slice(0, x.indexOf(":"));
      if (!refusals.has(kind)) refusals.set(kind, x.replace(/flt_[0-9a-f]+/g, "flt_…"));
    }
  };
  let built = true;
  try {
    execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-b", "packages/agent"], { cwd: ROOT, stdio: "pipe" });
  } catch (err) {
    built = false;
    console.log(`could not build the agent (tsc -b packages/agent), measuring from source only:\n${String((err as { stdout?: Buffer }).stdout ?? err).slice(0, 2000)}`);
  }
  if (built) {
    const r = await phases("built", startBuiltAgent, burns);
    rows.push(...r.rows);
    keep(r.refusals);
  }
  const r = await phases("source (tsx)", (server, stateDir) => startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir }), burns);
  rows.push(...r.rows);
  keep(r.refusals);
  printTable(
    `agent memory with its caps reached (${cpus().length} CPUs; goal: peak RSS < ${GOAL_MB} MB for the built agent)`,
    ["agent", "phase", "faults held", "refused", "burner threads", "RSS MB", "peak MB", "< goal"],
    rows,
  );
  console.log("");
  for (const x of refusals.values()) console.log(`refused: ${x}`);
}
