/**
 * network-bandwidth accuracy: for several rates, the rate asked against what a TCP transfer between
 * namespace hosts achieves through the limit (goal: within 5 %).
 *
 * Hosts from test/support/netns.ts (cp routes between host and tgt). The fault runs through the
 * agent's real fault runtime (journal, validate, start, revert) inside `host`
 * (test/support/fault-driver.ts), limiting traffic to tgt only; a TCP sink in `tgt` counts what it
 * receives over a window after a warm-up (net-tools.mjs tcp-transfer; measured over whole bursts:
 * at low rates HTB lets a 64 KiB TSO segment out at once).
 *
 * The limit is on frames (what tc counts): TCP's data through it is lower by its headers. At a
 * 1500-byte MTU a full segment carries 1448 bytes of data in a 1514-byte frame (IP, TCP with
 * timestamps, Ethernet): about 4.4 % under the asked rate even when the shaping is exact. The table
 * shows the TCP throughput as measured, and the frames it took (× 1514 / 1448), each against the
 * goal.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NET_TOOLS, NetnsLab, ROOT, buildHosts, netnsSkipReason, qdiscs } from "../test/support/netns.js";
import { captureProcess, waitFor } from "../test/support/processes.js";
import { printTable } from "./table.js";

const DRIVER = join(ROOT, "test/support/fault-driver.ts");
const SINK_PORT = 5001;
const WARMUP_MS = 1500;
const MEASURE_MS = 8000;
const GOAL = 0.05;

/** Frame bytes per TCP data byte for full segments at a 1500-byte MTU: 1514 / 1448. */
const FRAME_PER_DATA = 1514 / 1448;

export async function benchBandwidth(rates = ["1mbit", "10mbit", "50mbit", "100mbit"]): Promise<void> {
  const skip = netnsSkipReason();
  if (skip) {
    console.log(`\nnetwork-bandwidth accuracy: skipped (${skip})`);
    return;
  }
  const lab = new NetnsLab();
  const dirs: string[] = [];
  try {
    const hosts = buildHosts(lab);
    const sink = lab.spawnNode(hosts.tgt, NET_TOOLS, ["serve", "--sink", String(SINK_PORT)], { tsx: false });
    await waitFor("the sink in tgt", () => sink.output().includes("ready"), 10_000);
    const transfer = (measure: number) =>
      new Promise<{ bytes: number; ms: number; mbit: number }>((resolve, reject) => {
        const p = captureProcess(
          spawn("ip", ["netns", "exec", hosts.host, process.execPath, NET_TOOLS, "tcp-transfer", "--host", hosts.addr.tgt, "--port", String(SINK_PORT), "--warmup", String(WARMUP_MS), "--measure", String(measure)], {
            stdio: ["ignore", "pipe", "pipe"],
          }),
        );
        void p.exited.then(() => {
          try {
            resolve(JSON.parse(p.output().trim().split("\n").at(-1)!));
          } catch {
            reject(new Error(`tcp-transfer: ${p.output()}`));
          }
        });
      });

    const unlimited = await transfer(3000);
    const rows: (string | number)[][] = [];
    for (const rate of rates) {
      const stateDir = mkdtempSync(join(tmpdir(), "firedrill-bench-bw-"));
      dirs.push(stateDir);
      const holdMs = WARMUP_MS + MEASURE_MS + 4000;
      const driver = lab.spawnNode(hosts.host, DRIVER, [
        "--state-dir", stateDir, "--server", `${hosts.addr.cpGrpc}:7443`, "--kind", "network-bandwidth",
        "--params", JSON.stringify({ rate, destinations: [hosts.addr.tgt] }), "--hold-ms", String(holdMs),
      ]);
      await waitFor(`network-bandwidth ${rate} to start`, () => {
        if (/"type":"failed"/.test(driver.output())) throw new Error(`the fault failed: ${driver.output()}`);
        return /"type":"started"/.test(driver.output());
      }, 30_000, 50);
      const asked = Number(/^\d+/.exec(rate)![0]) * 1e6;
      const tcp = (await transfer(MEASURE_MS)).mbit * 1e6;
      const frames = tcp * FRAME_PER_DATA;
      await driver.exited;
      const left = qdiscs(hosts.host, hosts.hostIf).some((q) => q.handle === "1f1b:");
      const dev = (x: number) => `${x >= asked ? "+" : ""}${(((x - asked) / asked) * 100).toFixed(1)} %`;
      rows.push([
        rate,
        `${(tcp / 1e6).toFixed(2)} Mbit/s`,
        dev(tcp),
        Math.abs(tcp - asked) / asked <= GOAL ? "ok" : "MISSED",
        `${(frames / 1e6).toFixed(2)} Mbit/s`,
        dev(frames),
        Math.abs(frames - asked) / asked <= GOAL ? "ok" : "MISSED",
        left ? "LEFT BEHIND" : "gone",
      ]);
    }
    printTable(
      `network-bandwidth accuracy (TCP host → tgt through the limit, ${MEASURE_MS / 1000} s windows after ${WARMUP_MS / 1000} s warm-up; unlimited: ${unlimited.mbit.toFixed(0)} Mbit/s; goal within ${GOAL * 100} %)`,
      ["asked", "TCP achieved", "vs asked", "goal", "in frames", "vs asked", "goal", "qdisc after"],
      rows,
    );
    console.log("The limit counts frames; TCP carries 1448 data bytes per 1514-byte frame at a 1500 MTU (-4.4 % from headers alone). In frames: TCP achieved × 1514 / 1448.");
  } finally {
    await lab.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
