/**
 * memory-stress and io-stress end to end: a real control plane and agent (processes, gRPC on
 * loopback), the holder's memory read from /proc/<pid>/status and /proc/meminfo, the io file on
 * disk under a temp dir, and every revert path broken for real: stop through the API, SIGKILL of
 * the agent (the guard reverts: the children frozen with SIGSTOP first so that they cannot end on
 * their own), and a restart without a guard (the journal replays before new work).
 *
 * Holds stay at a few hundred MiB (the machine is shared); asking for more than the reserve allows
 * is tested by raising the reserve, never by pushing the host. Throughput and latency are never
 * asserted: only that they are measured (accuracy: `pnpm bench memory-hold`).
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { faultApi } from "./support/fault-api.js";
import { connectedAgentId, killAll, sleep, startAgentProcess, startCluster, startServer, tempDir, waitFor } from "./support/processes.js";
import type { TestCluster, TestProcess } from "./support/processes.js";

const MiB = 1024 * 1024;

/**
 * Memory the kernel could hand out now, in bytes: MemAvailable from /proc/meminfo, plus the free
 * pages parked in the per-CPU free lists (/proc/zoneinfo, `count:` of each pageset). Recent kernels
 * (6.x, this machine's 6.18) keep up to ~190 MiB per CPU there after a large free, and MemAvailable
 * does not count them until they drain: a 384 MiB hold freed may show in MemAvailable only seconds
 * later, or never if other processes take those pages first. The sum moves by the hold at once.
 */
function memAvailable(): number {
  const available = Number(/^MemAvailable:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
  let perCpuFree = 0;
  for (const m of readFileSync("/proc/zoneinfo", "utf8").matchAll(/^\s+count:\s+(\d+)$/gm)) perCpuFree += Number(m[1]);
  return available + perCpuFree * 4096;
}

/**
 * Samples MemAvailable every few ms until `stop()`, which returns the largest rise within any
 * `windowMs`: the memory a process gave back when it ended. Freeing a hold is one step of hundreds of
 * MiB within milliseconds, while the rest of a shared machine moves MemAvailable by tens of MiB in
 * that time: the step stands out where a before/after difference over seconds would not.
 */
function sampleMemAvailable(windowMs = 250): { stop: () => number } {
  const samples: { at: number; bytes: number }[] = [];
  const timer = setInterval(() => samples.push({ at: performance.now(), bytes: memAvailable() }), 5);
  samples.push({ at: performance.now(), bytes: memAvailable() });
  return {
    stop() {
      clearInterval(timer);
      samples.push({ at: performance.now(), bytes: memAvailable() });
      let rise = 0;
      for (let i = 0, j = 0; j < samples.length; j++) {
        while (samples[j]!.at - samples[i]!.at > windowMs) i++;
        let low = Infinity;
        for (let k = i; k <= j; k++) low = Math.min(low, samples[k]!.bytes);
        rise = Math.max(rise, samples[j]!.bytes - low);
      }
      return rise;
    },
  };
}

/** MemAvailable alone, in bytes: what the agent plans against. */
function memInfoAvailable(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
}

/** A field of /proc/PID/status in bytes (kB fields) or as text; undefined when the process is gone. */
function status(pid: number, key: string): string | undefined {
  try {
    return new RegExp(`^${key}:\\s+(.*)$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}
const kbField = (pid: number, key: string) => Number(status(pid, key)?.replace(/ kB$/, "") ?? 0) * 1024;

/** The process's state letter (R, S, T, Z...), "gone" when there is none. */
function state(pid: number): string {
  return status(pid, "State")?.[0] ?? "gone";
}

/** Alive and not a zombie. */
const alive = (pid: number) => !["gone", "Z"].includes(state(pid));

/** The revert record of a fault in an agent's journal. */
function journalRecord(stateDir: string, faultId: string): { child?: { pid: number; startTime: number }; file?: string } {
  return (JSON.parse(readFileSync(join(stateDir, "journal", `${faultId}.json`), "utf8")) as { revert: { child?: { pid: number; startTime: number }; file?: string } }).revert;
}

/** Waits until the journal names the fault's child, and returns its pid. */
const childOf = (stateDir: string, faultId: string) => waitFor(`${faultId}'s child in the journal`, () => journalRecord(stateDir, faultId).child?.pid);

/** rchar + wchar of a process (bytes it read and wrote through syscalls). */
function ioChars(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, "utf8");
  return Number(/^rchar: (\d+)/m.exec(io)![1]) + Number(/^wchar: (\d+)/m.exec(io)![1]);
}

type Progress = { type: string; measurements: Record<string, number> | null };

describe("memory-stress and io-stress: the effect on the host, and gone on stop", () => {
  let cluster: TestCluster;
  let ioDir: ReturnType<typeof tempDir>;
  const faults = faultApi(() => cluster.server, () => cluster.agentId, { runTimeoutMs: 60_000, revertTimeoutMs: 20_000 });
  const events = async (id: string) => (await api(cluster.server, "GET", `/api/v1/faults/${id}`)).body.events as Progress[];

  beforeAll(async () => {
    cluster = await startCluster();
    ioDir = tempDir("io");
  }, 60_000);
  afterEach(async () => {
    await api(cluster.server, "DELETE", `/api/v1/agents/${cluster.agentId}/faults`);
  });
  afterAll(async () => {
    await cluster.close();
    ioDir.cleanup();
  });

  it("the plan shows what each would do on the host (a dry run on the agent), touching nothing", async () => {
    const spec = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: squeeze }
spec:
  hypothesis: "the host copes"
  targets:
    all: { selector: { labels: { "firedrill:opt-in": "true" } }, mode: { all: true } }
  steps:
    - { name: hold, fault: memory-stress, target: all, params: { size: 300MiB }, duration: 1m }
    - { name: io, fault: io-stress, target: all, params: { path: "${ioDir.path}", mbps: 5, blockSize: 64KiB, fileSize: 16MiB }, duration: 1m }
  stopConditions: []
`;
    const { status, body } = await api(cluster.server, "POST", "/api/v1/plan", { spec });
    expect(status, JSON.stringify(body)).toBe(200);
    const [hold, io] = body.plan.steps;
    expect(hold.previews[0].status).toBe("ok");
    expect(hold.previews[0].details[0]).toMatch(/^holds 300 MiB of [\d.]+ GiB RAM in a child process with oom_score_adj 1000 \([\d.]+ GiB available now\)$/);
    expect(io.previews[0].status).toBe("ok");
    expect(io.previews[0].details[0]).toMatch(
      new RegExp(`^5 MB/s, 64 KiB blocks, 50% reads, 1 at a time, on a 16 MiB working file in ${ioDir.path}/\\.firedrill-fill \\([\\d.]+ GiB free now\\)$`),
    );
    console.log(`plan previews:\n  ${[...hold.previews[0].details, ...io.previews[0].details].join("\n  ")}`);
    expect(readdirSync(ioDir.path)).toEqual([]);
    expect(readdirSync(join(cluster.stateDir, "journal"))).toEqual([]);
  });

  it("memory-stress holds the asked size in a child the kernel kills first; stop → the child is gone and the memory back", async () => {
    const asked = 384 * MiB;
    const before = memAvailable();
    const t0 = performance.now();
    const id = await faults.startRunning("memory-stress", { size: "384MiB" }, "5m");
    const startMs = performance.now() - t0;
    const pid = await childOf(cluster.stateDir, id);
    // A child of the agent, the kernel's first choice, every page of the hold resident.
    expect(Number(status(pid, "PPid"))).toBe(cluster.agent.pid);
    expect(readFileSync(`/proc/${pid}/oom_score_adj`, "utf8").trim()).toBe("1000");
    expect(status(pid, "Name")).toBe("fd-mem-stress");
    const rssAnon = kbField(pid, "RssAnon");
    expect(rssAnon).toBeGreaterThanOrEqual(asked);
    expect(rssAnon).toBeLessThan(asked * 1.15);
    // The host's available memory fell by about the hold (the rest of the shared machine moves it
    // too over the seconds of the allocation: a loose bound, read until it holds).
    const drop = await waitFor("available memory to fall by half the hold", () => {
      const d = before - memAvailable();
      return d > asked / 2 ? d : undefined;
    }, 5000, 20);

    const fault = (await api(cluster.server, "GET", `/api/v1/faults/${id}`)).body.fault;
    expect(fault.details[0]).toMatch(new RegExp(`^holder pid ${pid} holds 384 MiB, oom_score_adj 1000`));
    expect(fault.details).toContainEqual(expect.stringMatching(/^never takes available memory below the reserve [\d.]+ [GM]iB \(max\(512 MiB, 5 % of [\d.]+ GiB RAM\)\)/));
    const progress = await waitFor("a progress event with the hold", async () =>
      (await events(id)).find((e) => e.type === "progress" && (e.measurements?.held_mib ?? 0) >= 384 * 0.98)?.measurements,
    );
    expect(progress).toMatchObject({ asked_mib: 384, target_mib: 384, released_mib: 0, holding: 1 });
    expect(progress.held_mib).toBeLessThanOrEqual(384 * 1.05);
    expect(progress.available_mib).toBeGreaterThan(0);

    const sampler = sampleMemAvailable();
    const s0 = performance.now();
    expect((await api(cluster.server, "DELETE", `/api/v1/agents/${cluster.agentId}/faults/${id}`)).status).toBe(200);
    const reverted = await faults.waitReverted(id);
    const stopMs = performance.now() - s0;
    expect(reverted.reason).toBe("stopped");
    expect(alive(pid)).toBe(false);
    await sleep(300);
    // The memory came back: available memory rose by the hold (within 15 %) in one step as the holder ended.
    const rise = sampler.stop();
    expect(rise).toBeGreaterThan(asked * 0.85);
    expect(readdirSync(join(cluster.stateDir, "journal"))).toEqual([]);
    console.log(
      `memory-stress 384 MiB: running after ${Math.round(startMs)} ms, holder RssAnon ${(rssAnon / MiB).toFixed(1)} MiB, ` +
        `available memory −${(drop / MiB).toFixed(0)} MiB; stop → reverted in ${Math.round(stopMs)} ms, available memory +${(rise / MiB).toFixed(0)} MiB in one step`,
    );
  });

  it("memory-stress asking more than the reserve allows is capped, the reserve named, and ends with its duration; with no room at all it is refused", async () => {
    // Room for ~512 MiB above a raised reserve (MemAvailable, what the agent plans against, moves by
    // a few hundred MiB as pages go in and out of the per-CPU free lists); 2 GiB asked.
    const reserve = memInfoAvailable() - 512 * MiB;
    const id = await faults.startRunning("memory-stress", { size: "2GiB", reserve }, "10s");
    const pid = await childOf(cluster.stateDir, id);
    const fault = (await api(cluster.server, "GET", `/api/v1/faults/${id}`)).body.fault;
    const capped = fault.details.find((d: string) => d.startsWith("capped to "));
    expect(capped).toMatch(/^capped to [\d.]+ MiB \(asked 2 GiB\): [\d.]+ GiB is available and the reserve [\d.]+ GiB \(the reserve parameter\) stays available$/);
    expect(kbField(pid, "RssAnon")).toBeLessThan(1024 * MiB);
    const m = await waitFor("a progress event", async () => (await events(id)).find((e) => e.type === "progress")?.measurements);
    expect(m.asked_mib).toBe(2048);
    expect(m.target_mib).toBeLessThan(1024);
    expect(m.reserve_mib).toBeCloseTo(reserve / MiB, 0);
    console.log(`capped: ${capped}`);
    // Its duration ends it: the holder is gone.
    expect((await faults.waitReverted(id, 20_000)).reason).toBe("duration");
    expect(alive(pid)).toBe(false);

    // The agent refuses before touching anything; the API answers with its reason.
    const refused = await faults.startFault("memory-stress", { size: "256MiB", reserve: "64GiB" }, "1m");
    expect(refused.status, JSON.stringify(refused.body)).toBe(422);
    expect(refused.body.error.code).toBe("fault_refused");
    expect(refused.body.error.message).toMatch(
      /^params\.reserve: nothing can be held on this host: [\d.]+ GiB of [\d.]+ GiB is available and the reserve 64 GiB \(the reserve parameter\) must stay available; free memory first, or lower the reserve parameter$/,
    );
    expect(refused.body.error.fault.state).toBe("failed");
  });

  it("io-stress reads and writes a file under the temp dir, reports its MB/s and latencies; stop → the file is gone", async () => {
    const id = await faults.startRunning("io-stress", { path: ioDir.path, fileSize: "32MiB", blockSize: "256KiB", mbps: 20, readPercent: 50 }, "5m");
    const file = join(ioDir.path, ".firedrill-fill", `${id}.io.fill`);
    expect(journalRecord(cluster.stateDir, id).file).toBe(file);
    const pid = await childOf(cluster.stateDir, id);
    expect(Number(status(pid, "PPid"))).toBe(cluster.agent.pid);
    expect(status(pid, "Name")).toBe("fd-io-stress");
    // The file grows to its size, and keeps getting I/O after.
    await waitFor("the file laid out", () => statSync(file).size === 32 * MiB, 30_000);
    const io0 = ioChars(pid);
    await sleep(1000);
    expect(ioChars(pid)).toBeGreaterThan(io0);
    // The latest measurements the agent reported, once the mix runs.
    const m = await waitFor("measurements of the mix", async () => {
      const f = (await api(cluster.server, "GET", `/api/v1/faults/${id}`)).body.fault as { measurements: Record<string, number> | null };
      return f.measurements?.laying_out === 0 && (f.measurements.iops ?? 0) > 0 ? f.measurements : undefined;
    }, 15_000);
    expect(m).toMatchObject({ mbps_asked: 20, file_mib: 32, errors: 0, workers_alive: 1 });
    for (const key of ["mbps_achieved", "read_mbps", "write_mbps", "p50_ms", "p99_ms"]) expect(m[key], key).toBeGreaterThan(0);
    console.log(`io-stress measurements: ${JSON.stringify(m)}`);

    const s0 = performance.now();
    await api(cluster.server, "DELETE", `/api/v1/agents/${cluster.agentId}/faults/${id}`);
    await faults.waitReverted(id);
    console.log(`io-stress stop → reverted in ${Math.round(performance.now() - s0)} ms`);
    expect(alive(pid)).toBe(false);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(ioDir.path)).toEqual([]);
  });
});

describe("memory-stress and io-stress when the agent dies", () => {
  const dirs: { cleanup: () => void }[] = [];
  const pids: number[] = [];
  afterEach(async () => {
    // Children of a killed agent are not the test's: kill them if a failed test left them.
    for (const pid of pids.splice(0)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await killAll();
    for (const d of dirs.splice(0)) d.cleanup();
  });

  /** A memory-stress and an io-stress running on `agentId`; their ids, children and io file. */
  async function startBoth(server: Awaited<ReturnType<typeof startServer>>, agentId: string, stateDir: string, ioPath: string) {
    const faults = faultApi(() => server, () => agentId, { runTimeoutMs: 60_000 });
    const memId = await faults.startRunning("memory-stress", { size: "256MiB" }, "10m");
    const ioId = await faults.startRunning("io-stress", { path: ioPath, fileSize: "16MiB", blockSize: "64KiB", mbps: 10 }, "10m");
    const holder = await childOf(stateDir, memId);
    const workers = await childOf(stateDir, ioId);
    pids.push(holder, workers);
    const file = join(ioPath, ".firedrill-fill", `${ioId}.io.fill`);
    await waitFor("the hold and the io file", () => kbField(holder, "RssAnon") >= 256 * MiB && existsSync(file), 30_000);
    return { memId, ioId, holder, workers, file };
  }

  it("SIGKILL of the agent: the guard kills the frozen children and removes the io file", async () => {
    const io = tempDir("io-guard");
    dirs.push(io);
    const cluster = await startCluster();
    dirs.push({ cleanup: () => void cluster.close() });
    const { server, agent, agentId, stateDir } = cluster;
    const { holder, workers, file } = await startBoth(server, agentId, stateDir, io.path);
    // Frozen, they cannot notice their agent is gone (stdin EOF) and end on their own: only the guard can.
    process.kill(holder, "SIGSTOP");
    process.kill(workers, "SIGSTOP");
    await waitFor("both stopped", () => state(holder) === "T" && state(workers) === "T", 5000, 20);
    agent.kill("SIGKILL");
    const t0 = performance.now();
    await waitFor("the guard to empty the journal", () => readdirSync(join(stateDir, "journal")).length === 0, 15_000, 20);
    const ms = performance.now() - t0;
    expect(alive(holder)).toBe(false);
    expect(alive(workers)).toBe(false);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(io.path)).toEqual([]);
    // Its log names both kills (written as it goes: read until they are there).
    await waitFor("the guard's log lines", () => {
      const guardLog = readFileSync(join(stateDir, "guard.log"), "utf8");
      return guardLog.includes("the memory-stress holder killed") && guardLog.includes("the io-stress workers killed");
    }, 5000);
    console.log(`agent SIGKILL → the guard killed the holder and the io workers and removed the file in ${Math.round(ms)} ms`);
  });

  it("a restart (no guard) replays the journal: the leftover holder is killed and the io file removed before new work", async () => {
    const cp = tempDir("cp");
    const st = tempDir("agent");
    const io = tempDir("io-replay");
    dirs.push(cp, st, io);
    const server = await startServer({ dataDir: cp.path });
    const agent: TestProcess = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path, extraArgs: ["--no-guard"] });
    const agentId = await connectedAgentId(server);
    const { memId, ioId, holder, workers, file } = await startBoth(server, agentId, st.path, io.path);
    process.kill(holder, "SIGSTOP");
    await waitFor("the holder stopped", () => state(holder) === "T", 5000, 20);
    agent.kill("SIGKILL");
    await agent.exited;
    // The io workers end with their agent (stdin EOF); the file stays until the journal is replayed.
    await waitFor("the io workers to end on their own", () => !alive(workers), 5000, 20);
    expect(existsSync(file)).toBe(true);
    // The frozen holder still holds its memory, and both records are in the journal.
    expect(kbField(holder, "RssAnon")).toBeGreaterThanOrEqual(256 * MiB);
    expect(readdirSync(join(st.path, "journal")).sort()).toEqual([`${ioId}.json`, `${memId}.json`].sort());

    const t0 = performance.now();
    const sampler = sampleMemAvailable();
    const next = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path, extraArgs: ["--no-guard"] });
    await waitFor("the journal replayed", () => readdirSync(join(st.path, "journal")).length === 0, 30_000, 20);
    const ms = performance.now() - t0;
    expect(alive(holder)).toBe(false);
    await sleep(300);
    // The frozen holder's memory came back as the replay killed it.
    expect(sampler.stop()).toBeGreaterThan(256 * MiB * 0.75);
    expect(existsSync(file)).toBe(false);
    await waitFor("the agent's recovery log line", () => next.output().includes("reverted faults left in the journal"), 5000);
    for (const id of [memId, ioId]) {
      const fault = await waitFor(`${id} reported reverted`, async () => {
        const f = (await api(server, "GET", `/api/v1/faults/${id}`)).body.fault;
        return f.state === "reverted" ? f : undefined;
      });
      expect(fault.reason).toBe("recovery");
    }
    console.log(`restart → the journal replay killed the holder and removed the io file ${Math.round(ms)} ms after the new agent started`);
  });
});
