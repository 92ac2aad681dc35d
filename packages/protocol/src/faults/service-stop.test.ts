import { describe, expect, it } from "vitest";
import { missingCapabilities } from "../capabilities.js";
import { parseFaultParams, validateFaultRequest } from "../fault-kinds.js";
import { InvalidFaultRequestError } from "../params.js";
import { protectedUnitReason, unitNameProblem } from "./service-stop.js";

const issues = (params: Record<string, unknown>) => {
  try {
    parseFaultParams("service-stop", params as never);
  } catch (err) {
    if (err instanceof InvalidFaultRequestError) return err.issues;
    throw err;
  }
  return [];
};

describe("service-stop parameters", () => {
  it("reads a unit and a mode (stop by default)", () => {
    expect(parseFaultParams("service-stop", { unit: "nginx.service" })).toEqual({ unit: "nginx.service", mode: "stop" });
    expect(parseFaultParams("service-stop", { unit: "app@blue.service", mode: "kill" })).toEqual({ unit: "app@blue.service", mode: "kill" });
    for (const unit of ["data.mount", "web.socket", "backup.timer", "myapp.target", "app.slice", "dev-sdb1.swap", "srv-x\\x2dy.mount"]) {
      expect(issues({ unit }), unit).toEqual([]);
    }
  });

  it("refuses what is not a stoppable unit name, saying what to write", () => {
    expect(issues({})).toEqual([{ field: "params.unit", message: 'is required: the systemd unit to stop, with its type suffix, e.g. "nginx.service"' }]);
    expect(issues({ unit: 7 })).toEqual([{ field: "params.unit", message: '7 is not a unit name; give the systemd unit to stop, e.g. "nginx.service"' }]);
    expect(issues({ unit: "nginx" })[0]!.message).toBe(
      '"nginx" has no unit type suffix service-stop knows; name the unit with its type (.service, .socket, .target, .mount, .automount, .swap, .timer, .path, .slice, .scope), e.g. "nginx.service"',
    );
    expect(issues({ unit: "sda.device" })[0]!.message).toBe('"sda.device" is a device unit, which follows the kernel\'s device and cannot be stopped');
    expect(issues({ unit: "getty-x@.service" })[0]!.message).toBe('"getty-x@.service" is a template; name one of its instances, e.g. "getty-x@NAME.service"');
    expect(issues({ unit: "a b.service" })[0]!.message).toMatch(/is not a systemd unit name: use letters, digits/);
    expect(issues({ unit: "x;rm -rf /.service" })[0]!.message).toMatch(/is not a systemd unit name/);
    expect(issues({ unit: `${"a".repeat(250)}.service` })[0]!.message).toMatch(/is longer than 256 characters/);
    expect(issues({ unit: "nginx.service", mode: "restart" })).toEqual([{ field: "params.mode", message: '"restart" is not allowed; use one of: stop, kill' }]);
    expect(issues({ unit: "nginx.service", preventRestart: true })).toEqual([{ field: "params.preventRestart", message: "unknown parameter for service-stop; allowed: unit, mode" }]);
  });

  it("refuses the protected units, on the control plane already", () => {
    const cases: [string, RegExp][] = [
      ["firedrill-agent.service", /firedrill itself/],
      ["firedrill-server.service", /firedrill itself/],
      ["ssh.service", /SSH/],
      ["sshd.service", /SSH/],
      ["ssh.socket", /SSH/],
      ["sshd@0-10.0.0.1:22-10.0.0.2:5000.service", /SSH/],
      ["systemd-journald.service", /systemd's own/],
      ["systemd-networkd.service", /systemd's own/],
      ["systemd-resolved.service", /systemd's own/],
      ["dbus.service", /D-Bus/],
      ["dbus.socket", /D-Bus/],
      ["getty@tty1.service", /consoles/],
      ["serial-getty@ttyS0.service", /consoles/],
      ["networking.service", /network/],
      ["NetworkManager.service", /network/],
      ["init.scope", /systemd itself/],
      ["-.mount", /systemd itself/],
      ["-.slice", /systemd itself/],
      ["system.slice", /systemd itself/],
      ["user@1000.service", /sessions/],
      ["session-3.scope", /sessions/],
      ["var.mount", /filesystem/],
      ["boot-efi.mount", /filesystem/],
      ["multi-user.target", /special targets/],
      ["network-online.target", /special targets/],
      ["docker.service", /container runtime/],
    ];
    for (const [unit, why] of cases) {
      expect(protectedUnitReason(unit), unit).toMatch(why);
      const [issue] = issues({ unit });
      expect(issue?.field).toBe("params.unit");
      expect(issue?.message, unit).toMatch(new RegExp(`^"${unit.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}" is protected \\(.*\\): service-stop never stops it$`));
    }
    for (const unit of ["nginx.service", "postgresql.service", "fd-demo.service", "myapp.target", "srv-data.mount", "cron.service"]) {
      expect(protectedUnitReason(unit), unit).toBeUndefined();
      expect(unitNameProblem(unit), unit).toBeUndefined();
    }
  });

  it("a whole request validates, and needs root and systemd on the host", () => {
    expect(validateFaultRequest({ kind: "service-stop", params: { unit: "nginx.service" }, duration: "1m" })).toEqual({
      kind: "service-stop",
      params: { unit: "nginx.service" },
      durationMs: 60_000,
    });
    expect(missingCapabilities("service-stop", { root: true, systemd: false })).toEqual(["systemd"]);
    expect(missingCapabilities("service-stop", { root: true })).toEqual(["systemd"]);
    expect(missingCapabilities("service-stop", { root: true, systemd: true })).toEqual([]);
  });
});
