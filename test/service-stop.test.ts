/**
 * service-stop on a real systemd host: a Debian bookworm booted with systemd-nspawn
 * (test/support/nspawn-host.ts), the agent installed there with the served install script and
 * running as firedrill-agent.service with its shipped sandbox (test/support/systemd-agent.ts),
 * driven through a real control plane's HTTP API. Every effect is read from inside the host:
 * `systemctl is-active`, MainPID, the agent's journal file.
 *
 * Units the test gives the host (/etc/systemd/system, none enabled: after a reboot only the
 * journal's replay can bring them back):
 *   fd-demo      sleep infinity                         the unit stopped
 *   fd-demo-dep  Requires=fd-demo                       taken down with it, started again with it
 *   fd-crash     Restart=always RestartSec=1            mode kill: systemd restarts it
 *   fd-idle      never started                          stays inactive
 *   fd-flaky     ExecStartPre fails while a file exists a start that fails on revert
 *   fd-sneaky    runs `exec -a sshd sleep`              protected for its process
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { faultApi } from "./support/fault-api.js";
import { nspawnAvailable, startHost } from "./support/nspawn-host.js";
import type { NspawnHost } from "./support/nspawn-host.js";
import { sleep, waitFor } from "./support/processes.js";
import { installAgent } from "./support/systemd-agent.js";
import type { InstalledAgent } from "./support/systemd-agent.js";

const availability = nspawnAvailable();
if (!availability.ok) console.log(`skipping the service-stop tests on a systemd host: ${availability.why}`);

const SERVICE = (extra: string, unitExtra = "") => `[Unit]
Description=firedrill service-stop test unit
${unitExtra}
[Service]
Type=exec
ExecStart=/usr/bin/sleep infinity
${extra}
`;

const UNITS: Record<string, string> = {
  "fd-demo.service": SERVICE(""),
  "fd-demo-dep.service": SERVICE("", "Requires=fd-demo.service\nAfter=fd-demo.service"),
  "fd-crash.service": SERVICE("Restart=always\nRestartSec=1"),
  "fd-idle.service": SERVICE(""),
  "fd-flaky.service": SERVICE("ExecStartPre=/usr/bin/test ! -e /run/fd-flaky.block"),
  "fd-sneaky.service": `[Service]\nType=exec\nExecStart=/bin/bash -c 'exec -a sshd /usr/bin/sleep infinity'\n`,
};

describe.skipIf(!availability.ok)("service-stop on a real systemd host", () => {
  let host: NspawnHost;
  let agent: InstalledAgent;
  const faults = faultApi(() => agent.control, () => agent.agentId, { runTimeoutMs: 30_000 });
  const startRunning = (params: Record<string, unknown>) => faults.startRunning("service-stop", params, "10m");
  const waitReverted = (id: string) => faults.waitReverted(id, 60_000);
  const stopFault = (id: string) => api(agent.control, "DELETE", `/api/v1/agents/${agent.agentId}/faults/${id}`);
  const isActive = async (unit: string) => (await agent.sh(`systemctl is-active ${unit}`)).stdout.trim();
  const mainPidOf = async (unit: string) => Number((await agent.shOk(`systemctl show -p MainPID --value ${unit}`)).trim());
  const journalRecord = async (id: string) => JSON.parse(await agent.shOk(`cat /var/lib/firedrill-agent/journal/${id}.json`)) as { revert: Record<string, unknown> };

  beforeAll(async () => {
    const t = Date.now();
    host = await startHost({ name: "svcstop" });
    console.log(`host booted in ${Date.now() - t} ms`);
    agent = await installAgent(host, { labels: "app=svc,firedrill:opt-in=true" });
    for (const [name, text] of Object.entries(UNITS)) {
      const res = await host.exec(["sh", "-c", `cat > /etc/systemd/system/${name}`], { input: text });
      if (res.code !== 0) throw new Error(`writing ${name}: ${res.stderr}`);
    }
    await agent.shOk("systemctl daemon-reload");
  }, 900_000);

  // A failed test must not leave its faults (or a block file) to the next one.
  afterEach(async () => {
    if (!agent) return;
    await agent.sh("rm -f /run/fd-flaky.block");
    const res = await api(agent.control, "GET", `/api/v1/agents/${agent.agentId}/faults`).catch(() => undefined);
    for (const f of (res?.body?.faults ?? []) as { id: string; state: string }[]) {
      if (["pending", "accepted", "running", "revert_failed"].includes(f.state)) await stopFault(f.id).catch(() => undefined);
    }
  });

  afterAll(async () => {
    await agent?.stop();
    await host?.stop();
  }, 60_000);

  it("stop via the API: inactive during, with what it requires; journaled before; active again after the stop", async () => {
    await agent.shOk("systemctl start fd-demo fd-demo-dep");
    const before = await mainPidOf("fd-demo");
    const id = await startRunning({ unit: "fd-demo.service" });
    expect(await isActive("fd-demo")).toBe("inactive");
    expect(await isActive("fd-demo-dep")).toBe("inactive");
    const f = await faults.getFault(id);
    expect(f.details).toEqual([
      "stops fd-demo.service (active (running), static) with systemctl stop; starts it again on revert",
      "also takes down, as they depend on it: fd-demo-dep.service (RequiredBy= of fd-demo.service); started again on revert",
    ]);
    expect((await journalRecord(id)).revert).toEqual({
      unit: "fd-demo.service",
      mode: "stop",
      phase: "stopping",
      wasActive: true,
      activeState: "active",
      subState: "running",
      unitFileState: "static",
      nRestarts: 0,
      alsoStopped: ["fd-demo-dep.service"],
    });
    const m = await waitFor("measurements", async () => (await faults.getFault(id)).measurements, 10_000, 200);
    expect(m).toEqual({ active: 0, restarts_seen: 0, was_active: 1 });

    const t = Date.now();
    expect((await stopFault(id)).status).toBe(200);
    const reverted = await waitReverted(id);
    console.log(`stop → fd-demo active again: ${Date.now() - t} ms`);
    expect(reverted.reason).toBe("stopped");
    expect(await isActive("fd-demo")).toBe("active");
    expect(await isActive("fd-demo-dep")).toBe("active");
    expect(await mainPidOf("fd-demo")).not.toBe(before);
    expect((await agent.sh(`test -e /var/lib/firedrill-agent/journal/${id}.json`)).code).not.toBe(0);
  }, 120_000);

  it("a unit that was inactive before stays inactive after", async () => {
    expect(await isActive("fd-idle")).toBe("inactive");
    const id = await startRunning({ unit: "fd-idle.service" });
    expect((await faults.getFault(id)).details).toEqual(["fd-idle.service is inactive (dead), static already: nothing to stop; it is left as it is on revert"]);
    expect((await journalRecord(id)).revert).toMatchObject({ wasActive: false, activeState: "inactive" });
    await stopFault(id);
    await waitReverted(id);
    await sleep(500);
    expect(await isActive("fd-idle")).toBe("inactive");
  }, 60_000);

  it("mode kill: SIGKILL to the unit, systemd restarts it (Restart=always) and says so, restarts counted", async () => {
    await agent.shOk("systemctl start fd-crash");
    const before = await mainPidOf("fd-crash");
    const id = await startRunning({ unit: "fd-crash.service", mode: "kill" });
    expect((await faults.getFault(id)).details[0]).toBe(
      "kills every process of fd-crash.service (active (running), static) with SIGKILL, a crash; it has Restart=always (RestartSec=1s): systemd restarts it during the fault (restarts_seen counts it); starts it again on revert if it is down",
    );
    const after = await waitFor("systemd to restart fd-crash", async () => {
      const pid = await mainPidOf("fd-crash");
      return pid !== 0 && pid !== before && (await isActive("fd-crash")) === "active" ? pid : undefined;
    }, 15_000, 200);
    expect((await agent.shOk(`cat /proc/${after}/cmdline | tr '\\0' ' '`)).trim()).toBe("/usr/bin/sleep infinity");
    expect((await agent.sh(`test -e /proc/${before}`)).code).not.toBe(0);
    const m = await waitFor("restarts_seen", async () => {
      const measured = (await faults.getFault(id)).measurements;
      return measured?.restarts_seen >= 1 && measured?.active === 1 ? measured : undefined;
    }, 15_000, 200);
    console.log(`fd-crash killed and restarted by systemd: ${JSON.stringify(m)}`);
    await stopFault(id);
    await waitReverted(id);
    expect(await isActive("fd-crash")).toBe("active");
    expect(await mainPidOf("fd-crash")).toBe(after);
  }, 90_000);

  it("refuses the protected units: by name on the control plane, for a protected process on the agent; nothing stopped", async () => {
    for (const unit of ["firedrill-agent.service", "ssh.service", "systemd-journald.service", "dbus.service", "init.scope"]) {
      const res = await faults.startFault("service-stop", { unit }, "1m");
      expect(res.status, unit).toBe(400);
      expect(res.body.error.issues[0].field).toBe("params.unit");
      expect(res.body.error.issues[0].message, unit).toMatch(/is protected \(.+\): service-stop never stops it$/);
    }
    expect(await isActive("firedrill-agent")).toBe("active");

    await agent.shOk("systemctl start fd-sneaky");
    const sneaky = await mainPidOf("fd-sneaky");
    for (const [unit, error] of [
      ["fd-sneaky.service", `could not start: params.unit: fd-sneaky.service is protected: it holds pid ${sneaky} (sleep): sshd (SSH access to the host); service-stop never stops it`],
      ["nope.service", "could not start: params.unit: no unit nope.service on this host (systemd does not know it); list the units with systemctl list-units --all"],
    ] as const) {
      const res = await faults.startFault("service-stop", { unit }, "1m");
      expect(res.status).toBe(201);
      const f = await waitFor(`${unit} refused`, async () => {
        const got = await faults.getFault(res.body.fault.id);
        return got.state === "failed" ? got : undefined;
      }, 20_000, 100);
      expect(f.error).toBe(error);
    }
    expect(await isActive("fd-sneaky")).toBe("active");
    expect(await mainPidOf("fd-sneaky")).toBe(sneaky);
  }, 90_000);

  it("a unit that does not start again: the revert is retried with systemctl's words until it does", async () => {
    await agent.shOk("systemctl start fd-flaky");
    const id = await startRunning({ unit: "fd-flaky.service" });
    expect(await isActive("fd-flaky")).toBe("inactive");
    await agent.shOk("touch /run/fd-flaky.block");
    void stopFault(id);
    const said = await waitFor("the failed start in the agent's log", async () => {
      const log = (await agent.sh("journalctl -u firedrill-agent -o cat --no-pager | grep 'could not start fd-flaky.service again' | tail -n 1")).stdout.trim();
      return log || undefined;
    }, 30_000, 250);
    expect(said).toContain("systemctl start said: Job for fd-flaky.service failed because the control process exited with error code.");
    expect((await faults.getFault(id)).state).not.toBe("reverted");
    expect(await isActive("fd-flaky")).not.toBe("active");
    await agent.shOk("rm /run/fd-flaky.block");
    await waitReverted(id);
    expect(await isActive("fd-flaky")).toBe("active");
  }, 90_000);

  // Under systemd a SIGKILL of the agent's process takes its guard down too (KillMode=mixed kills
  // what is left of the unit at once; ExecStopPost's recover reverts: next test). The guard's own
  // path there is a stalled agent: stopped past its lease, its guard reverts the journal.
  it("the agent stalled (SIGSTOP) past its lease mid-fault: its guard (lib/guard.mjs) starts the unit again", async () => {
    await agent.connectedAgain();
    await agent.shOk("systemctl start fd-demo fd-demo-dep");
    const id = await startRunning({ unit: "fd-demo.service" });
    expect(await isActive("fd-demo")).toBe("inactive");
    const pid = await agent.mainPid();
    const guard = await waitFor("the guard", async () => {
      const res = await agent.sh("cat /var/lib/firedrill-agent/guard.json");
      return res.code === 0 ? (JSON.parse(res.stdout) as { pid: number }).pid : undefined;
    });
    expect(await agent.shOk(`tr '\\0' ' ' < /proc/${guard}/cmdline`)).toContain("lib/guard.mjs");
    const logLines = Number((await agent.sh("wc -l < /var/lib/firedrill-agent/guard.log")).stdout.trim() || 0);
    const t = Date.now();
    await agent.shOk(`kill -STOP ${pid}`);
    try {
      await waitFor("fd-demo active again", async () => (await isActive("fd-demo")) === "active", 30_000, 100);
      console.log(`agent stopped (SIGSTOP) → fd-demo active again after ${Date.now() - t} ms (lease 5 s, the guard)`);
      // The guard logs once its revert has returned, a moment after the unit is up.
      const guardLog = await waitFor("the guard's log line", async () => {
        const text = (await agent.shOk(`tail -n +${logLines + 1} /var/lib/firedrill-agent/guard.log`)).trim();
        return text.includes("guard reverted the faults of a stalled agent") ? text : undefined;
      }, 10_000, 100);
      expect(guardLog).toContain(id);
      expect(await isActive("fd-demo-dep")).toBe("active");
    } finally {
      await agent.sh(`kill -CONT ${pid}`);
    }
    // Resumed, the agent finds the record gone and reports the fault reverted by recovery.
    expect((await waitReverted(id)).reason).toBe("recovery");
    expect(await agent.mainPid()).toBe(pid);
    expect(await isActive("fd-demo")).toBe("active");
  }, 180_000);

  it("the agent SIGKILLed mid-fault (systemctl kill -s KILL firedrill-agent): the unit is active again, the fault reverted", async () => {
    await agent.connectedAgain();
    await agent.shOk("systemctl start fd-demo fd-demo-dep");
    const id = await startRunning({ unit: "fd-demo.service" });
    expect(await isActive("fd-demo")).toBe("inactive");
    const pid = await agent.mainPid();
    const t = Date.now();
    await agent.shOk("systemctl kill -s KILL firedrill-agent");
    await waitFor("fd-demo active again", async () => (await isActive("fd-demo")) === "active", 30_000, 100);
    console.log(`agent SIGKILL → fd-demo active again after ${Date.now() - t} ms (ExecStopPost recover)`);
    expect(await isActive("fd-demo-dep")).toBe("active");
    await agent.connectedAgain(pid);
    const f = await waitReverted(id);
    expect(f.reason).toBe("recovery");
    expect(await isActive("firedrill-agent")).toBe("active");
  }, 180_000);

  it("the host loses power mid-fault: after boot the journal's replay starts the unit (enabled by nobody)", async () => {
    await agent.connectedAgain();
    await agent.shOk("systemctl start fd-demo fd-demo-dep");
    const id = await startRunning({ unit: "fd-demo.service" });
    expect(await isActive("fd-demo")).toBe("inactive");
    await host.kill();
    const boot = Date.now();
    await host.boot(120_000);
    await waitFor("fd-demo active after the boot", async () => (await isActive("fd-demo")) === "active", 60_000, 200);
    console.log(`power cut → fd-demo active again ${Date.now() - boot} ms after the boot began`);
    expect(await isActive("fd-demo-dep")).toBe("active");
    // Nothing else would have started it: the demo units are not enabled.
    expect((await agent.sh("systemctl is-enabled fd-demo")).stdout.trim()).toBe("static");
    expect(await isActive("fd-crash")).toBe("inactive");
    await agent.connectedAgain();
    await waitReverted(id);
  }, 300_000);
});
