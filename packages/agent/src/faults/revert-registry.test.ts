import type { JsonObject } from "@firedrill/protocol";
import { describe, expect, it } from "vitest";
import { captureLog } from "../testing/log-capture.js";
import { createDefaultFaultRegistry } from "./index.js";
import { createRevertRegistry } from "./revert-registry.js";
import type { RevertRegistry } from "./revert-registry.js";

describe("the revert registry (what the guard loads)", () => {
  it("reverts every kind the agent runs", () => {
    expect([...createRevertRegistry().keys()].sort()).toEqual([...createDefaultFaultRegistry().keys()].sort());
  });

  it("refuses what the full registry refuses, in the same words (records checked before anything is touched)", async () => {
    const { log } = captureLog();
    const cases: [kind: string, revert: JsonObject, holderAlive: boolean][] = [
      ["cpu-burn", {}, true],
      ["process-kill", { repeat: true }, true],
      ["process-stop", { pids: "nope" }, false],
      ["disk-fill", { file: "/etc/passwd", dir: "/etc" }, false],
      ["memory-stress", { child: { pid: 1, startTime: 0 } }, false],
      ["io-stress", { file: "/etc/passwd", dir: "/etc", child: { pid: 2, startTime: "x" } }, false],
      ["network-delay", { device: 1 }, false],
      ["network-loss", { family: "ip", table: "filter" }, false],
      ["network-blackhole", { family: "inet", table: "nat" }, false],
      ["dns-fault", { family: "inet", table: "firedrill" }, false],
      ["network-bandwidth", { device: "eth0", handle: "1:" }, false],
      ["network-reject", { family: "inet", table: "filter" }, false],
      ["service-stop", { unit: "ssh.service", mode: "stop", phase: "stopping", wasActive: true }, false],
    ];
    const outcome = (registry: RevertRegistry, [kind, revert, holderAlive]: (typeof cases)[number]) =>
      registry.get(kind)!.revertRecord(revert, { log, holderAlive }).then(
        () => "reverted",
        (err: Error) => err.message,
      );
    for (const c of cases) {
      const said = await outcome(createRevertRegistry(), c);
      expect(said, c[0]).not.toBe("reverted");
      expect(said, c[0]).toBe(await outcome(createDefaultFaultRegistry(), c));
    }
  });
});
