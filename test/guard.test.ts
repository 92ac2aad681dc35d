import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, readlinkSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { connectedAgentId, guardPid, killAll, sleep, startAgentProcess, startCluster, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle, TestCluster, TestProcess } from "./support/processes.js";

function guardOf(stateDir: string): { pid: number } | undefined {
  const pid = guardPid(stateDir);
  return pid === undefined ? undefined : { pid };
}

describe("the guard: an out-of-process watchdog beside the agent", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("starts with the agent in its own session, and stops on a clean agent stop", async () => {
    cluster = await startCluster();
    const guard = await waitFor("the guard", () => guardOf(cluster!.stateDir));
    const stat = readFileSync(`/proc/${guard.pid}/stat`, "utf8").slice(readFileSync(`/proc/${guard.pid}/stat`, "utf8").lastIndexOf(")") + 2).split(" ");
    expect(Number(stat[3])).toBe(guard.pid); // session leader: a signal to the agent's group misses it
    // fd 3: its end of the pipe whose other end only the agent holds (EOF: the agent is gone).
    expect(readlinkSync(`/proc/${guard.pid}/fd/3`)).toMatch(/^socket:/);
    expect(readFileSync(`/proc/${guard.pid}/cmdline`, "utf8").split("\0")).toContain("--agent-fd");
    cluster.agent.kill("SIGTERM");
    expect(await cluster.agent.exited).toBe(0);
    await waitFor("the guard to exit", () => !existsSync(`/proc/${guard.pid}`), 5000);
    expect(readFileSync(join(cluster.stateDir, "guard.log"), "utf8")).toContain("guard stopped by the agent");
  });

  it("after SIGKILL of the agent, reverts the journal and leaves the report for the next agent", async () => {
    cluster = await startCluster();
    const { server, agent, agentId, stateDir } = cluster;
    const guard = await waitFor("the guard", () => guardOf(stateDir));
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 20 }, duration: "10m" });
    expect(res.status).toBe(201);
    await waitFor("burner threads", () => burnerThreads(agent.pid).length === 1);
    agent.kill("SIGKILL");
    const killedAt = performance.now();
    await waitFor("the guard to empty the journal", () => readdirSync(join(stateDir, "journal")).length === 0, 5000, 50);
    const revertMs = performance.now() - killedAt;
    expect(revertMs).toBeLessThan(5000);
    await waitFor("the guard to exit", () => !existsSync(`/proc/${guard.pid}`), 5000);
    expect(readFileSync(join(stateDir, "guard.log"), "utf8")).toContain("guard reverted the journal");
    expect(readdirSync(join(stateDir, "reports"))).toEqual([`${res.body.fault.id}.json`]);

    // The next agent finds nothing to revert and delivers the guard's report.
    const next = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir });
    const fault = await waitFor("the recovery report", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${res.body.fault.id}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("recovery");
    expect(next.output()).not.toContain("reverted faults left in the journal");
  });

  it("a restarted agent takes over from a guard that has not finished", async () => {
    cluster = await startCluster();
    const { server, agent, agentId, stateDir } = cluster;
    const guard = await waitFor("the guard", () => guardOf(stateDir));
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 20 }, duration: "10m" });
    expect(res.status).toBe(201);
    // Freeze the guard so that it is still there, undone, when the new agent starts.
    process.kill(guard.pid, "SIGSTOP");
    agent.kill("SIGKILL");
    await agent.exited;
    expect(readdirSync(join(stateDir, "journal"))).toHaveLength(1);
    const next = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir });
    await waitFor("the takeover", () => next.output().includes("took over from the guard of a previous agent"), 15_000);
    await waitFor("the old guard gone", () => !existsSync(`/proc/${guard.pid}`) || readFileSync(`/proc/${guard.pid}/stat`, "utf8").includes(") Z"), 10_000);
    await waitFor("journal emptied by the new agent", () => readdirSync(join(stateDir, "journal")).length === 0);
    const fault = await waitFor("the recovery report", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${res.body.fault.id}`)).body.fault;
      return f.state === "reverted" ? f : undefined;
    });
    expect(fault.reason).toBe("recovery");
    expect(guardOf(stateDir)?.pid).not.toBe(guard.pid);
  });
});

/** The scheduler state letter of a process (R, S, T, Z...), or undefined when it is gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

/** The end (`endsAt`, epoch ms) of every fault in an agent's journal, by fault id. */
function endsAt(stateDir: string): Record<string, number> {
  const dir = join(stateDir, "journal");
  return Object.fromEntries(
    readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => {
        const record = JSON.parse(readFileSync(join(dir, f), "utf8")) as { faultId: string; endsAt: string };
        return [record.faultId, Date.parse(record.endsAt)];
      }),
  );
}

/** Milliseconds on CLOCK_MONOTONIC, the clock of the agent's heartbeat. */
const monotonicMs = () => Number(process.hrtime.bigint() / 1_000_000n);

/** A small tmpfs to fill (never the real disk); unmounted by the returned cleanup. */
function smallTmpfs(): { path: string; usedBytes: () => number; cleanup: () => void } {
  const dir = tempDir("stall-fill");
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", dir.path]);
  return {
    path: dir.path,
    usedBytes: () => {
      const s = statfsSync(dir.path);
      return (s.blocks - s.bfree) * s.bsize;
    },
    cleanup: () => {
      try {
        execFileSync("umount", [dir.path]);
      } catch {
        execFileSync("umount", ["-l", dir.path]);
      }
      dir.cleanup();
    },
  };
}

/**
 * A frozen agent: the guard watches its heartbeat (`<state-dir>/alive`, every 500 ms), not only its
 * pid. Both faults have an effect the test checks on the host: a disk-fill on a tmpfs (outside the
 * agent) and a cpu-burn (threads inside it).
 */
describe("the guard and a stalled agent", () => {
  let cluster: TestCluster | undefined;
  let fs: ReturnType<typeof smallTmpfs> | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
    fs?.cleanup();
    fs = undefined;
  });

  /** Starts a fill and a burn and waits until both act on the host. */
  async function startFillAndBurn(server: ServerHandle, agentId: string, agent: TestProcess, duration: string) {
    fs = smallTmpfs();
    const fill = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, {
      kind: "disk-fill",
      params: { path: fs.path, targetPercent: 60, keepFreeBytes: "8MiB" },
      duration,
    });
    expect(fill.status, JSON.stringify(fill.body)).toBe(201);
    const burn = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 20 }, duration });
    expect(burn.status, JSON.stringify(burn.body)).toBe(201);
    await waitFor("the fill and the burn to act", () => fs!.usedBytes() > 30 * 2 ** 20 && burnerThreads(agent.pid).length === 1);
    return { fillId: fill.body.fault.id as string, burnId: burn.body.fault.id as string };
  }

  const faultOf = async (server: ServerHandle, id: string) => (await api(server, "GET", `/api/v1/faults/${id}`)).body;

  /** SIGCONT: the agent finds its records gone, ends the burn in-process, reports both as recovery once. */
  /**
   * `reasons`: what the agent may report. After a stop past its lease, the agent's own lease timer
   * and its journal reconcile both fire on SIGCONT; whichever runs first names the revert (lease or
   * recovery) — either is true, and either way it is reported exactly once.
   */
  async function resumeAndCheck(server: ServerHandle, stateDir: string, agent: TestProcess, ids: string[], reasons: string[] = ["recovery"]) {
    const contAt = performance.now();
    agent.kill("SIGCONT");
    await waitFor("the burner threads to end after the resume", () => burnerThreads(agent.pid).length === 0, 5000, 20);
    console.log(`after SIGCONT the agent ended its burner threads in ${Math.round(performance.now() - contAt)} ms`);
    await waitFor("the agent to notice", () => agent.output().includes("reconciling its faults with the journal"), 5000);
    for (const id of ids) {
      // The control plane may first close it as `unknown` (reconciled at the agent's Welcome when the
      // resumed agent's report comes late); that end is provisional and the agent's report replaces it.
      const { fault, events } = await waitFor(`fault ${id} reported reverted by the agent`, async () => {
        const f = await faultOf(server, id);
        return f.fault.state === "reverted" && f.fault.reason !== "unknown" ? f : undefined;
      }, 20_000);
      expect(reasons).toContain(fault.reason);
      const fromAgent = (events as { type: string; message: string | null }[]).filter((e) => e.type === "reverted" && !e.message?.startsWith("reconciled when the agent reconnected"));
      expect(fromAgent).toHaveLength(1);
    }
    // Each final report delivered once, and then forgotten (the guard's and the agent's are one file).
    await waitFor("the pending reports delivered", () => readdirSync(join(stateDir, "reports")).length === 0, 10_000);
    expect(processState(agent.pid)).not.toBe("T");
    expect(agent.child.exitCode).toBeNull();
  }

  it("SIGSTOP past the faults' end: the guard reverts them within 3 s of the deadline and leaves the agent stopped; SIGCONT → the agent reports them reverted by recovery", async () => {
    cluster = await startCluster();
    const { server, agent, agentId, stateDir } = cluster;
    await waitFor("the guard", () => guardOf(stateDir));
    const ids = await startFillAndBurn(server, agentId, agent, "4s");
    const ends = endsAt(stateDir);
    agent.kill("SIGSTOP");
    const stoppedAt = Date.now();
    await waitFor("the agent stopped", () => processState(agent.pid) === "T", 2000, 10);

    await waitFor("the guard to revert the fill", () => fs!.usedBytes() < 2 ** 20, 15_000, 20);
    const fillAfterEnd = Date.now() - ends[ids.fillId]!;
    await waitFor("the guard to empty the journal", () => readdirSync(join(stateDir, "journal")).length === 0, 5000, 20);
    const lastEnd = Math.max(...Object.values(ends));
    const allAfterEnd = Date.now() - lastEnd;
    console.log(
      `SIGSTOP ${lastEnd - stoppedAt} ms before the faults' end: the guard reverted the fill ${fillAfterEnd} ms after its end, ` +
        `and both (journal empty) ${allAfterEnd} ms after the last end (${Date.now() - stoppedAt} ms after SIGSTOP)`,
    );
    expect(fillAfterEnd).toBeLessThan(3000);
    expect(allAfterEnd).toBeLessThan(3000);
    await waitFor("the guard's log line", () => readFileSync(join(stateDir, "guard.log"), "utf8").includes("guard reverted the faults of a stalled agent"), 2000);
    // A stopped agent runs nothing: it is left stopped, its burner frozen with it.
    expect(processState(agent.pid)).toBe("T");
    expect(readdirSync(join(stateDir, "reports")).sort()).toEqual([`${ids.burnId}.json`, `${ids.fillId}.json`].sort());

    await resumeAndCheck(server, stateDir, agent, [ids.fillId, ids.burnId]);
  });

  it("SIGSTOP with a short lease: the guard reverts within 3 s of the lease's end, while the faults still had minutes to run", async () => {
    cluster = await startCluster({ leaseTtl: "3s" });
    const { server, agent, agentId, stateDir } = cluster;
    await waitFor("the guard", () => guardOf(stateDir));
    const ids = await startFillAndBurn(server, agentId, agent, "10m");
    agent.kill("SIGSTOP");
    const stoppedAt = monotonicMs();
    await waitFor("the agent stopped", () => processState(agent.pid) === "T", 2000, 10);
    const heartbeat = JSON.parse(readFileSync(join(stateDir, "alive"), "utf8")) as { pid: number; leaseExpiresMono: number };
    expect(heartbeat.pid).toBe(agent.pid);
    // Written when the faults were journaled, whether or not the heartbeat's timer had a turn since.
    expect(heartbeat.leaseExpiresMono).not.toBeNull();

    try {
      await waitFor("the guard to revert the fill", () => fs!.usedBytes() < 2 ** 20, 15_000, 20);
    } catch (err) {
      // What the guard saw and did, for the failure's message.
      const read = (name: string) => {
        try {
          return readFileSync(join(stateDir, name), "utf8").slice(-4000);
        } catch (e) {
          return `(${(e as Error).message})`;
        }
      };
      throw new Error(`${(err as Error).message}\nheartbeat: ${read("alive")}\nnow (mono): ${monotonicMs()}\nguard.log (tail):\n${read("guard.log")}\njournal: ${readdirSync(join(stateDir, "journal")).join(", ")}`, { cause: err });
    }
    const revertedAt = monotonicMs();
    const afterLease = revertedAt - heartbeat.leaseExpiresMono;
    console.log(
      `SIGSTOP with a 3 s lease: the guard reverted the fill ${afterLease} ms after the lease ended (${revertedAt - stoppedAt} ms after SIGSTOP)`,
    );
    expect(afterLease).toBeLessThan(3000);
    await waitFor("the guard to empty the journal", () => readdirSync(join(stateDir, "journal")).length === 0, 5000, 20);
    expect(processState(agent.pid)).toBe("T");

    // The agent's lease timer and its journal reconcile both fire on SIGCONT: either reports it.
    await resumeAndCheck(server, stateDir, agent, [ids.fillId, ids.burnId], ["recovery", "lease"]);
  });

  // A real busy stall of the agent's event loop, from outside and without any hook in the agent:
  // Node's inspector (what `node --inspect` offers any debugger) evaluates an endless loop on its
  // main thread. The burner threads keep burning: the guard must kill the agent.
  it("an agent whose event loop spins (state R) past the faults' end is SIGKILLed by the guard, and everything reverted within 3 s of the deadline", async () => {
    const cp = tempDir("cp");
    const st = tempDir("agent-busy");
    const server = await startServer({ dataDir: cp.path });
    const prevOptions = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = `${prevOptions ?? ""} --inspect=127.0.0.1:0`.trim();
    let agent: TestProcess;
    try {
      agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path });
    } finally {
      if (prevOptions === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = prevOptions;
    }
    cluster = {
      server,
      agent,
      agentId: "",
      stateDir: st.path,
      agents: [],
      close: async () => {
        await killAll();
        cp.cleanup();
        st.cleanup();
      },
    };
    const agentId = await connectedAgentId(server);
    const inspectorUrl = await waitFor("the agent's inspector", () => /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/[\w-]+)/.exec(agent.output())?.[1]);
    await waitFor("the guard", () => guardOf(st.path));
    const ids = await startFillAndBurn(server, agentId, agent, "4s");
    const ends = endsAt(st.path);
    const deadline = Math.max(...Object.values(ends));

    const spunAt = await spinEventLoop(inspectorUrl);
    await waitFor("the agent's main thread to spin", () => processState(agent.pid) === "R", 3000, 20);

    const code = await Promise.race([agent.exited, sleep(15_000).then(() => "timeout" as const)]);
    expect(code).not.toBe("timeout");
    expect(agent.child.signalCode).toBe("SIGKILL");
    const killedAfterEnd = Date.now() - deadline;
    await waitFor("the guard to revert the fill", () => fs!.usedBytes() < 2 ** 20, 5000, 20);
    await waitFor("the guard to empty the journal", () => readdirSync(join(st.path, "journal")).length === 0, 5000, 20);
    const afterDeadline = Date.now() - deadline;
    console.log(
      `busy event loop ${deadline - spunAt} ms before the faults' end: the guard killed the agent ${killedAfterEnd} ms and had reverted everything ${afterDeadline} ms after the last end`,
    );
    expect(afterDeadline).toBeLessThan(3000);
    expect(readFileSync(join(st.path, "guard.log"), "utf8")).toContain("killing it (SIGKILL)");
    expect(readdirSync(join(st.path, "reports")).sort()).toEqual([`${ids.burnId}.json`, `${ids.fillId}.json`].sort());
    for (const id of [ids.fillId, ids.burnId]) {
      const report = JSON.parse(readFileSync(join(st.path, "reports", `${id}.json`), "utf8")) as { type: string; reason: string };
      expect(report).toMatchObject({ type: "FAULT_EVENT_TYPE_REVERTED", reason: "REVERT_REASON_RECOVERY" });
    }
  });
});

/**
 * Makes a Node process's main thread loop forever through its inspector (Runtime.evaluate), from a
 * child `node --experimental-websocket` (Node 20 has WebSocket behind that flag). Returns when the
 * loop was ordered (epoch ms).
 */
async function spinEventLoop(inspectorUrl: string): Promise<number> {
  const script = `
    const ws = new WebSocket(process.env.INSPECTOR_URL);
    ws.onopen = () => {
      ws.send(JSON.stringify({ id: 1, method: "Runtime.evaluate", params: { expression: "for (;;) {}" } }));
      console.log("sent at " + Date.now());
      setTimeout(() => process.exit(0), 300);
    };
    ws.onerror = (e) => { console.error(String(e.message ?? e)); process.exit(1); };
  `;
  const child = spawn(process.execPath, ["--experimental-websocket", "--no-warnings", "-e", script], {
    env: { ...process.env, INSPECTOR_URL: inspectorUrl, NODE_OPTIONS: "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const sentAt = Number(/sent at (\d+)/.exec(out)?.[1]);
  if (code !== 0 || !sentAt) throw new Error(`could not reach the agent's inspector at ${inspectorUrl} (exit ${code})`);
  return sentAt;
}
