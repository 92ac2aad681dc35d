/**
 * The agent as a user starts it: `pnpm firedrill-agent …` ends, with its faults reverted and its
 * guard stopped, when pnpm is told to stop (SIGTERM) or dies (SIGKILL); pointed at the wrong
 * address it says what is wrong.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import {
  OPT_IN_LABELS,
  ROOT,
  captureProcess,
  childEnv,
  freePort,
  guardPid,
  killAll,
  startAgentProcess,
  startServer,
  tempDir,
  waitFor,
} from "./support/processes.js";
import type { ServerHandle, TestProcess } from "./support/processes.js";

const alive = (pid: number): boolean => {
  try {
    // A zombie is gone for our purpose: it runs nothing and holds nothing.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

describe("pnpm firedrill-agent", () => {
  let server: ServerHandle;
  const dirs: { cleanup: () => void }[] = [];
  /** Processes this file started outside the support helpers (pnpm, the agent under it, its guard). */
  const pids = new Set<number>();
  beforeAll(async () => {
    const cp = tempDir("cp");
    dirs.push(cp);
    server = await startServer({ dataDir: cp.path });
  });
  afterEach(() => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    pids.clear();
  });
  afterAll(async () => {
    await killAll();
    for (const d of dirs) d.cleanup();
  });

  /**
   * Starts `pnpm firedrill-agent` from the repo root as a user would, waits until it is connected
   * and holds a running cpu-burn, and returns pnpm, the agent's pid, its guard's pid and the fault.
   */
  async function startUnderPnpm(opts: { ownGroup?: boolean } = {}): Promise<{ pnpm: TestProcess; agentPid: number; guard: number; stateDir: string; faultId: string }> {
    const st = tempDir("agent");
    dirs.push(st);
    const args = ["--silent", "firedrill-agent", "--server", server.grpcAddr, "--token", server.joinToken, "--state-dir", st.path];
    args.push("--imds", "off", "--reconnect-max", "1s", "--log-level", "debug", "--labels", OPT_IN_LABELS);
    // ownGroup: pnpm leads a process group of its own, as a shell's foreground job does.
    const pnpm = captureProcess(spawn("pnpm", args, { cwd: ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"], detached: opts.ownGroup === true }));
    pids.add(pnpm.pid);
    const agentPid = await waitFor(
      "the agent under pnpm to start",
      () => {
        const line = pnpm.output().split("\n").find((l) => l.includes('"msg":"firedrill-agent started"'));
        return line ? (JSON.parse(line) as { pid: number }).pid : undefined;
      },
      60_000,
    );
    pids.add(agentPid);
    const agentId = await waitFor("the agent enrolled", () => existsSync(join(st.path, "agent-id")) && readFileSync(join(st.path, "agent-id"), "utf8").trim(), 30_000);
    await waitFor("the agent connected", async () => {
      const { agents } = (await api(server, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
      return agents.some((a) => a.id === agentId && a.connected);
    }, 30_000);
    const guard = await waitFor("the guard", () => guardPid(st.path), 15_000);
    pids.add(guard);
    const res = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, { kind: "cpu-burn", params: { load: 10 }, duration: "10m" });
    expect(res.status).toBe(201);
    await waitFor("the burner thread", () => burnerThreads(agentPid).length === 1, 15_000);
    expect(readdirSync(join(st.path, "journal"))).toHaveLength(1);
    return { pnpm, agentPid, guard, stateDir: st.path, faultId: res.body.fault.id as string };
  }

  /** Waits until the agent and its guard are gone and the journal is empty; returns how long it took. */
  async function gone(agentPid: number, guard: number, stateDir: string): Promise<number> {
    const t0 = performance.now();
    await waitFor("the agent, its guard gone and the journal empty", () => !alive(agentPid) && !alive(guard) && readdirSync(join(stateDir, "journal")).length === 0, 15_000, 50);
    return performance.now() - t0;
  }

  it("SIGTERM to pnpm: the agent reverts its fault, stops its guard and exits", async () => {
    const { pnpm, agentPid, guard, stateDir, faultId } = await startUnderPnpm();
    pnpm.kill("SIGTERM");
    const ms = await gone(agentPid, guard, stateDir);
    console.log(`SIGTERM to pnpm → agent (pid ${agentPid}) and guard (pid ${guard}) gone, journal empty in ${Math.round(ms)} ms`);
    expect(await pnpm.exited).toBe(0);
    expect(pnpm.output()).toContain('"signal":"SIGTERM","msg":"shutting down: reverting every fault"');
    // Reverted by the agent itself (a clean stop), not left for the guard.
    expect(pnpm.output()).not.toContain("guard reverted");
    const fault = await waitFor("the fault reverted", async () => {
      const f = (await api(server, "GET", `/api/v1/faults/${faultId}`)).body.fault as { state: string };
      return f.state === "reverted" ? f : undefined;
    }, 15_000);
    expect(fault.state).toBe("reverted");
  }, 180_000);

  it("Ctrl-C (SIGINT to the whole foreground group, which pnpm passes on again): one clean stop", async () => {
    const { pnpm, agentPid, guard, stateDir } = await startUnderPnpm({ ownGroup: true });
    process.kill(-pnpm.pid, "SIGINT");
    const ms = await gone(agentPid, guard, stateDir);
    console.log(`Ctrl-C to pnpm's group → agent and guard gone, journal empty in ${Math.round(ms)} ms`);
    expect(await pnpm.exited).toBe(0);
    expect(pnpm.output()).toContain('"signal":"SIGINT","msg":"shutting down: reverting every fault"');
    expect(pnpm.output()).not.toContain("second signal: exiting now");
  }, 180_000);

  it("SIGKILL of pnpm: the agent notices its parent is gone, reverts and exits", async () => {
    const { pnpm, agentPid, guard, stateDir } = await startUnderPnpm();
    pnpm.kill("SIGKILL");
    const ms = await gone(agentPid, guard, stateDir);
    console.log(`SIGKILL of pnpm → agent (pid ${agentPid}) and guard (pid ${guard}) gone, journal empty in ${Math.round(ms)} ms`);
    expect(pnpm.output()).toMatch(/"signal":"the parent process \d+ exited","msg":"shutting down: reverting every fault"/);
  }, 180_000);
});

describe("an agent pointed at the wrong address", () => {
  let server: ServerHandle;
  const dirs: { cleanup: () => void }[] = [];
  beforeAll(async () => {
    const cp = tempDir("cp");
    dirs.push(cp);
    server = await startServer({ dataDir: cp.path });
  });
  afterAll(async () => {
    await killAll();
    for (const d of dirs) d.cleanup();
  });

  const agent = (address: string, extraArgs: string[] = []) => {
    const st = tempDir("agent");
    dirs.push(st);
    return startAgentProcess({ server: address, token: server.joinToken, stateDir: st.path, extraArgs });
  };

  it("says connection refused for a closed port, and 'not TLS' / 'not gRPC' for the HTTP API's port", async () => {
    const closed = `127.0.0.1:${await freePort()}`;
    const httpPort = server.httpUrl.replace(/^http:\/\//, "");
    const cases = [
      { proc: agent(closed), want: `could not verify the control plane's certificate: cannot connect to the control plane at ${closed}: connection refused: nothing listens on that port` },
      { proc: agent(closed, ["--insecure"]), want: `cannot connect to the control plane at ${closed}: connection refused: nothing listens on that port` },
      { proc: agent(httpPort), want: `cannot connect to the control plane at ${httpPort}: the port answered, but not with TLS` },
      { proc: agent(httpPort, ["--insecure"]), want: `cannot connect to the control plane at ${httpPort}: the port answered, but not with gRPC (HTTP/2)` },
    ];
    for (const { proc, want } of cases) {
      await waitFor(`"${want}" in the agent's log (output: ${proc.output().slice(-1500)})`, () => proc.output().includes(want), 45_000);
      expect(proc.output()).toContain("the control plane's gRPC address (`firedrill server --grpc-addr`, port 7070 in the examples)");
      expect(proc.output()).not.toContain("Resolution note");
      proc.kill("SIGTERM");
    }
  }, 180_000);
});
