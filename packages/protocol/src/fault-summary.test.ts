import { describe, expect, it } from "vitest";
import { FAULT_KINDS } from "./fault-kinds.js";
import { describeFaultParams } from "./fault-summary.js";

describe("describeFaultParams", () => {
  it("says in one line what each kind would do", () => {
    expect(describeFaultParams("dns-fault", { domains: ["*.payments.internal"], mode: "NXDOMAIN" })).toBe("NXDOMAIN for *.payments.internal");
    expect(describeFaultParams("dns-fault", { mode: "SERVFAIL" })).toBe("SERVFAIL for every name");
    expect(describeFaultParams("cpu-burn", { load: 80, cores: 2 })).toBe("80 % of 2 cores");
    expect(describeFaultParams("memory-stress", { size: "512MiB" })).toBe("hold 512 MiB");
    expect(describeFaultParams("memory-stress", { percent: 30 })).toBe("hold 30 % of RAM");
    expect(describeFaultParams("network-bandwidth", { rate: "1mbit", destinations: ["10.0.0.0/8"], ports: [443] })).toBe("limit to 1mbit to 10.0.0.0/8 port 443");
    expect(describeFaultParams("network-reject", { ports: [5432] })).toMatch(/^refuse \(TCP reset, ICMP port unreachable\) egress to everything port 5432$/);
    expect(describeFaultParams("service-stop", { unit: "nginx.service" })).toBe("stop nginx.service");
    expect(describeFaultParams("io-stress", { path: "/var/tmp", mbps: 50 })).toMatch(/^50 MB\/s of IO on \/var\/tmp \(\d+ % reads, 1 MiB blocks\)$/);
  });

  it("has a line for every kind the protocol knows", () => {
    const minimal: Record<string, Record<string, unknown>> = {
      "disk-fill": { path: "/var/tmp", targetPercent: 90 },
      "process-kill": { name: "nginx" },
      "process-stop": { name: "nginx" },
      "network-delay": { delayMs: 100 },
      "network-loss": { percent: 10 },
      "network-bandwidth": { rate: "1mbit" },
      "memory-stress": { size: "64MiB" },
      "io-stress": { path: "/var/tmp" },
      "service-stop": { unit: "nginx.service" },
      "dns-fault": { mode: "timeout" },
    };
    for (const kind of FAULT_KINDS) {
      const line = describeFaultParams(kind, (minimal[kind] ?? {}) as never);
      expect(line, kind).toEqual(expect.any(String));
      expect(line!.length, kind).toBeGreaterThan(3);
    }
  });

  it("says nothing for an unknown kind or parameters that do not parse", () => {
    expect(describeFaultParams("nope", {})).toBeUndefined();
    expect(describeFaultParams("cpu-burn", { load: 500 })).toBeUndefined();
  });
});
