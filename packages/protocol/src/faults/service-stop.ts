import type { ParamReader } from "../params.js";

/** How service-stop takes a unit down. */
export type ServiceStopMode = "stop" | "kill";

/** Parameters of `service-stop`. */
export interface ServiceStopParams {
  /** The systemd unit, with its type suffix: `nginx.service`, `app@blue.service`, `data.mount`. */
  unit: string;
  /**
   * `stop`: `systemctl stop` (a clean shutdown; systemd does not restart it). `kill`: SIGKILL to
   * every process of the unit (`systemctl kill --signal=SIGKILL`), a crash: a unit with Restart=
   * is restarted by systemd during the fault. @default "stop"
   */
  mode: ServiceStopMode;
}

/** The longest unit name systemd accepts (UNIT_NAME_MAX). */
export const UNIT_NAME_MAX = 256;

/** The unit types service-stop acts on (a .device follows the kernel's device and cannot be stopped). */
export const STOPPABLE_UNIT_TYPES = ["service", "socket", "target", "mount", "automount", "swap", "timer", "path", "slice", "scope"] as const;

const UNIT_CHARS = /^[A-Za-z0-9:_.@\\-]+$/;

const SSH = "SSH access to the host";
const SYSTEMD = "systemd itself";
const SYSTEMD_UNITS = "one of systemd's own units (journald, udevd, logind, networkd, resolved…)";
const BUS = "the D-Bus system bus (systemctl and logind need it)";
const NETWORK = "the host's network configuration";
const CONSOLE = "the login consoles";
const RUNTIME = "a container runtime";
const SESSIONS = "users' login sessions";
const FIREDRILL = "firedrill itself (the agent that reverts faults, or the control plane)";
const SYSTEM_MOUNT = "a filesystem the system runs from (/, /usr, /var, /boot, /run, /tmp, the API filesystems)";
const SPECIAL_TARGET = "one of systemd's special targets (systemd.special(7)), which order the whole system";

/**
 * Units service-stop never stops, whatever the request: what keeps the host reachable and
 * manageable, and firedrill itself. The agent adds the units of protected processes (sshd under
 * any unit name, the agent, a local control plane), its own `--protect-process unit:NAME` rules,
 * and every unit a stop would take down with it.
 */
export const PROTECTED_UNITS: readonly { test: RegExp; why: string }[] = [
  { test: /^firedrill/, why: FIREDRILL },
  { test: /^init\.scope$/, why: SYSTEMD },
  { test: /^-\.(slice|mount)$/, why: SYSTEMD },
  { test: /^systemd-/, why: SYSTEMD_UNITS },
  { test: /^dbus/, why: BUS },
  { test: /^(open)?sshd?([@-].*)?\.(service|socket)$/, why: SSH },
  { test: /^(serial-|console-|container-)?getty/, why: CONSOLE },
  { test: /^(networking|network|NetworkManager.*|wicked.*|ifup@.*|netplan.*|dhcpcd.*|wpa_supplicant.*|connman.*)\.service$/, why: NETWORK },
  { test: /^(containerd|docker|crio|kubelet|podman)\.(service|socket)$/, why: RUNTIME },
  { test: /^(system|user|machine)\.slice$/, why: SYSTEMD },
  { test: /^user(-\d+\.slice|@\d+\.service|-runtime-dir@\d+\.service)$/, why: SESSIONS },
  { test: /^session-[^/]+\.scope$/, why: SESSIONS },
  { test: /^(usr|boot|var|var-lib|var-log|etc|opt|run|tmp|home)\.mount$/, why: SYSTEM_MOUNT },
  { test: /^(usr|boot|run|dev|proc|sys|var-log|var-lib-firedrill|opt-firedrill)-.*\.mount$/, why: SYSTEM_MOUNT },
  {
    test: /^(default|basic|sysinit|multi-user|graphical|rescue|emergency|shutdown|reboot|poweroff|halt|kexec|soft-reboot|ctrl-alt-del|exit|final|umount|local-fs(-pre)?|remote-fs(-pre)?|network(-online|-pre)?|nss-lookup|nss-user-lookup|sockets|timers|paths|slices|swap|cryptsetup(-pre)?|getty(-pre)?|time-set|time-sync|sleep|suspend|hibernate|hybrid-sleep|suspend-then-hibernate|initrd.*|system-update.*|first-boot-complete|machines|veritysetup(-pre)?|integritysetup(-pre)?|blockdev@.*|sigpwr|smartcard|sound|bluetooth|printer|usb|remote-cryptsetup|remote-veritysetup|rpcbind)\.target$/,
    why: SPECIAL_TARGET,
  },
];

/** Why `unit` (a full name, e.g. `ssh.service`) is protected, or undefined when it is not. */
export function protectedUnitReason(unit: string): string | undefined {
  return PROTECTED_UNITS.find((p) => p.test.test(unit))?.why;
}

/**
 * What is wrong with `unit` as a unit name service-stop may act on, or undefined when it is fine:
 * characters, length, type suffix, template without instance. Protection is separate
 * ({@link protectedUnitReason}).
 */
export function unitNameProblem(unit: string): string | undefined {
  const shown = JSON.stringify(unit.length > 80 ? `${unit.slice(0, 80)}…` : unit);
  if (unit.length > UNIT_NAME_MAX) return `${shown} is longer than ${UNIT_NAME_MAX} characters, the longest unit name systemd accepts`;
  if (!UNIT_CHARS.test(unit)) {
    return `${shown} is not a systemd unit name: use letters, digits and : _ . @ - \\ only, with the type suffix, e.g. "nginx.service"`;
  }
  const dot = unit.lastIndexOf(".");
  const type = dot > 0 ? unit.slice(dot + 1) : "";
  if (!(STOPPABLE_UNIT_TYPES as readonly string[]).includes(type)) {
    if (type === "device") return `${shown} is a device unit, which follows the kernel's device and cannot be stopped`;
    const hint = dot <= 0 ? `, e.g. "${unit}.service"` : "";
    return `${shown} has no unit type suffix service-stop knows; name the unit with its type (${STOPPABLE_UNIT_TYPES.map((t) => `.${t}`).join(", ")})${hint}`;
  }
  if (unit.slice(0, dot).endsWith("@")) return `${shown} is a template; name one of its instances, e.g. "${unit.slice(0, dot)}NAME.${type}"`;
  return undefined;
}

/** Reads service-stop parameters; problems are collected by the reader. */
export function parseServiceStopParams(reader: ParamReader): ServiceStopParams {
  const raw = reader.raw("unit");
  let unit = "";
  if (raw === undefined) {
    reader.fail("unit", 'is required: the systemd unit to stop, with its type suffix, e.g. "nginx.service"');
  } else if (typeof raw !== "string" || raw === "") {
    reader.fail("unit", `${JSON.stringify(raw)} is not a unit name; give the systemd unit to stop, e.g. "nginx.service"`);
  } else {
    const problem = unitNameProblem(raw);
    const why = problem === undefined ? protectedUnitReason(raw) : undefined;
    if (problem !== undefined) reader.fail("unit", problem);
    else if (why !== undefined) reader.fail("unit", `${JSON.stringify(raw)} is protected (${why}): service-stop never stops it`);
    else unit = raw;
  }
  const mode = (reader.string("mode", { oneOf: ["stop", "kill"], default: "stop" }) ?? "stop") as ServiceStopMode;
  reader.rejectUnknown("service-stop", ["unit", "mode"]);
  return { unit, mode };
}
