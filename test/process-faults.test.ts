/**
 * Process faults end to end: a real control plane and agent (processes, gRPC on loopback), real
 * processes named like sshd and containerd, the agent's --protect-process, and the control plane
 * itself. `POST /api/v1/plan` and `firedrill plan` show what each host would hit (a dry run on the
 * agent through PreviewFault), and a SIGKILL fault matching everything of the test hits only what
 * is not protected.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { cliEnv, killAll, runCli, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";

const MARK = `fdpf${randomBytes(4).toString("hex")}`;

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

describe("process faults: protections and the plan's dry run on the agent", () => {
  const cp = tempDir("cp");
  const agentDir = tempDir("agent");
  const files = tempDir("files");
  let server: ServerHandle;
  let agentId: string;
  const children: ChildProcess[] = [];
  /** `sleep 1000` under argv[0] `argv0` (bash `exec -a`). */
  const sleepAs = (argv0: string) => {
    const child = spawn("bash", ["-c", 'exec -a "$0" sleep 1000', argv0], { stdio: "ignore" });
    children.push(child);
    return child;
  };
  let victims: ChildProcess[];
  let sshd: ChildProcess;
  let containerd: ChildProcess;
  let ledger: ChildProcess;

  beforeAll(async () => {
    server = await startServer({ dataDir: cp.path });
    startAgentProcess({
      server: server.grpcAddr,
      token: server.joinToken,
      stateDir: agentDir.path,
      labels: "app=web,firedrill:opt-in=true",
      extraArgs: ["--protect-process", "ledger-*"],
    });
    agentId = await waitFor("the agent", async () => {
      const { body } = await api<{ agents: { id: string; connected: boolean }[] }>(server, "GET", "/api/v1/agents");
      return body.agents.find((a) => a.connected)?.id;
    }, 30_000);
    victims = [sleepAs(`web-worker-1 ${MARK}`), sleepAs(`web-worker-2 ${MARK}`)];
    sshd = sleepAs(`sshd: ${MARK}@pts/3`);
    containerd = sleepAs(`containerd ${MARK}`);
    ledger = sleepAs(`ledger-api ${MARK}`);
    await waitFor("the test's processes", () => children.every((c) => cmdline(c.pid!).includes(MARK)));
  }, 60_000);

  afterAll(async () => {
    for (const c of children) if (alive(c)) c.kill("SIGKILL");
    await killAll();
    for (const d of [cp, agentDir, files]) d.cleanup();
  });

  const experiment = `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: kill-web-workers
spec:
  hypothesis: "web survives losing its workers"
  targets:
    web:
      selector: { labels: { app: web } }
      mode: { all: true }
  steps:
    - { name: kill-workers, fault: process-kill, target: web, params: { pattern: "${MARK}", signal: SIGKILL }, duration: 30s }
    - { name: freeze-control-plane, fault: process-stop, target: web, params: { pattern: "--data-dir ${cp.path}" }, duration: 30s, startAfter: [kill-workers] }
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 10s, startAfter: [freeze-control-plane] }
  stopConditions: []
`;

  it("POST /api/v1/plan shows, per host, the processes a process fault would hit, what it leaves alone, and the agent's refusals", async () => {
    const t0 = Date.now();
    const { status, body } = await api(server, "POST", "/api/v1/plan", { spec: experiment });
    const tookMs = Date.now() - t0;
    expect(status).toBe(200);
    const [kill, freeze, burn] = body.plan.steps;

    expect(kill.previews).toHaveLength(1);
    const p = kill.previews[0];
    expect(p).toMatchObject({ hostId: agentId, status: "ok", matched: 2 });
    expect(p.processes.map((x: { pid: number }) => x.pid).sort()).toEqual(victims.map((v) => v.pid).sort());
    expect(p.details[0]).toBe(`sends SIGKILL to 2 processes matching pattern /${MARK}/`);
    expect(p.details).toContain(`leaves alone ${sshd.pid} (sleep): sshd (SSH access to the host)`);
    expect(p.details).toContain(`leaves alone ${containerd.pid} (sleep): a container runtime`);
    expect(p.details).toContain(`leaves alone ${ledger.pid} (sleep): protected by this agent's --protect-process ledger-*`);

    // The control plane's own process matches the second step: the agent refuses it.
    expect(freeze.previews[0].status).toBe("refused");
    expect(freeze.previews[0].error).toBe(
      `params.pattern: only processes that are off limits match pattern /--data-dir ${cp.path}/, and they are never signalled: ` +
        `${server.proc.pid} (node: the firedrill control plane)`,
    );
    expect(burn.previews[0]).toMatchObject({ status: "ok", details: [] });
    const t1 = Date.now();
    await api(server, "POST", "/api/v1/plan", { spec: experiment });
    console.log(`plan with 3 previewed steps answered in ${tookMs}ms (first), ${Date.now() - t1}ms (second)`);

    // Nothing was touched by the dry run.
    expect(children.every(alive)).toBe(true);
  });

  it("`firedrill plan` prints them under \"On the hosts\" and warns of the refusal", async () => {
    const file = join(files.path, "kill-web.yaml");
    writeFileSync(file, experiment);
    const { code, stdout, stderr } = await runCli(["plan", file], cliEnv(server));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toContain("On the hosts (a dry run on each agent; nothing was touched)");
    expect(stdout).toMatch(new RegExp(`  kill-workers on \\S+ \\(${agentId}\\):\\n      sends SIGKILL to 2 processes matching pattern /${MARK}/\\n`));
    expect(stdout).toContain(`leaves alone ${sshd.pid} (sleep): sshd (SSH access to the host)`);
    for (const v of victims) expect(stdout).toMatch(new RegExp(`\\n {6}${v.pid} +sleep +web-worker-\\d ${MARK} 1000\\n`));
    expect(stdout).toContain(`freeze-control-plane on`);
    expect(stdout).toContain(`REFUSED by the agent: params.pattern: only processes that are off limits match pattern /--data-dir ${cp.path}/`);
    expect(stdout).toMatch(/burn on \S+ \(\S+\): ok \(the agent accepts the parameters\)/);
    expect(stdout).toMatch(/Warning: the agent would refuse freeze-control-plane on \S+ \(see "On the hosts"\): the run would fail at that step\./);
    expect(children.every(alive)).toBe(true);
  });

  it("a fault matching more than maxProcesses is refused with the count and the first processes; nothing is signalled", async () => {
    const { status, body } = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, {
      kind: "process-kill",
      params: { pattern: MARK, signal: "SIGKILL", maxProcesses: 1 },
      duration: "30s",
    });
    expect(status).toBe(422);
    expect(JSON.stringify(body)).toMatch(
      new RegExp(`2 processes match pattern /${MARK}/ \\(besides 3 protected, never signalled\\), more than maxProcesses 1: \\d+ \\(sleep\\), \\d+ \\(sleep\\); narrow the selection`),
    );
    expect(children.every(alive)).toBe(true);
  });

  it("a SIGKILL fault matching every process of the test kills the two workers and nothing protected", async () => {
    const { status } = await api(server, "POST", `/api/v1/agents/${agentId}/faults`, {
      kind: "process-kill",
      params: { pattern: MARK, signal: "SIGKILL" },
      duration: "5s",
    });
    expect(status).toBe(201);
    await waitFor("both workers killed", () => victims.every((v) => v.signalCode === "SIGKILL"), 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect([sshd, containerd, ledger].every(alive)).toBe(true);
    expect(alive(server.proc.child)).toBe(true);
  });
});
