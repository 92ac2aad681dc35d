/**
 * Runs the benchmarks and prints their tables:
 *   pnpm bench              all
 *   pnpm bench burn         cpu-burn accuracy (asked vs measured)
 *   pnpm bench bandwidth    network-bandwidth accuracy: asked rate vs TCP throughput and tc's class rate between
 *                           namespace hosts, 1/10/50/100 mbit (goal: within 5 %)
 *   pnpm bench memory-hold  memory-stress accuracy: asked vs held (agent and the holder's RssAnon) for 128 MiB-1 GiB
 *                           and a percent of RAM (goal: within 5 %), time to hold, stop → memory back
 *   pnpm bench lease        revert time after the control plane is SIGKILLed
 *   pnpm bench agent-cap    agent RSS with 40 stacked cpu-burns asked and its fault caps reached (goal < 150 MB)
 *   pnpm bench patterns     catastrophic process patterns: RE2 vs backtracking RegExp, whole selections
 *   pnpm bench abort        breach → last revert ack on a run of 3 agents (http, webhook, prometheus)
 *   pnpm bench auth         auth overhead per request; control plane RSS after 1,000 maximal alert webhook posts
 *   pnpm bench reconnect [n]  n (default 1,000) agents back after a control-plane restart, TLS vs plain
 *   pnpm bench spec-flood   /healthz latency and agent leases while 20 maximal experiments are posted at once
 *   pnpm bench cloud-revert control-plane restart → confirmed cloud revert of an ec2-stop (fake AWS; goal < 10 s)
 *   pnpm bench network-revert control-plane restart → aws-network-disrupt's NACLs restored and confirmed (fake AWS; goal < 10 s)
 *   pnpm bench footprint [--idle 60s]  the installed agent (release tarball) and its guard, idle: RSS, CPU, traffic,
 *                           start time, against a bare grpc-js client (goal: < 100 MiB and < 0.2 % CPU together)
 *   pnpm bench console      server run event → its line in the console's run page (chromium), 1,000 agents connected,
 *                           a run on 200 (goal: p99 < 500 ms)
 *   pnpm bench fleet [--agents N] [--replicas 2]  N simulated agents (default 1,000, 5,000 and 10,000 in turn) on the
 *                           control plane and on the raw grpc-js floor: register, idle, runs, abort, halt (issue 12's
 *                           goals); with --replicas 2, on two replicas on a private PostgreSQL, the agents split
 *   pnpm bench ha [--trials N]  3 replicas on a private PostgreSQL, 3 agents: leader SIGKILL → run taken over (< 10 s),
 *                           stream holder SIGKILL → agent on another replica (< lease TTL), PostgreSQL restart,
 *                           halt from a replica holding no agent (< 1 s), cross-replica command round trip
 *
 * `all` leaves out `fleet`: it takes minutes per size and both cores; it runs only when named.
 */
import { benchAbortLatency } from "./abort-latency.js";
import { benchAgentCap } from "./agent-cap.js";
import { benchAuth } from "./auth.js";
import { benchBandwidth } from "./bandwidth.js";
import { benchBurnAccuracy } from "./burn-accuracy.js";
import { benchCloudRevert } from "./cloud-revert.js";
import { benchConsole } from "./console.js";
import { benchFleet } from "./fleet.js";
import { benchFootprint } from "./footprint.js";
import { benchHa } from "./ha.js";
import { benchLeaseRevert } from "./lease-revert.js";
import { benchMemoryHold } from "./memory-hold.js";
import { benchNetworkRevert } from "./network-revert.js";
import { benchProcessPatterns } from "./process-patterns.js";
import { benchReconnect } from "./reconnect.js";
import { benchSpecFlood } from "./spec-flood.js";
import { killAll } from "../test/support/processes.js";

const which = process.argv[2] ?? "all";
try {
  if (which === "all" || which === "burn") await benchBurnAccuracy();
  if (which === "all" || which === "bandwidth") await benchBandwidth();
  if (which === "all" || which === "memory-hold") await benchMemoryHold();
  if (which === "all" || which === "lease") await benchLeaseRevert();
  if (which === "all" || which === "agent-cap") await benchAgentCap();
  if (which === "all" || which === "patterns") await benchProcessPatterns();
  if (which === "all" || which === "abort") await benchAbortLatency();
  if (which === "all" || which === "auth") await benchAuth();
  if (which === "all" || which === "reconnect") await benchReconnect(process.argv[3] === undefined ? undefined : Number(process.argv[3]));
  if (which === "all" || which === "spec-flood") await benchSpecFlood();
  if (which === "all" || which === "cloud-revert") await benchCloudRevert();
  if (which === "all" || which === "network-revert") await benchNetworkRevert();
  if (which === "all" || which === "console") await benchConsole();
  if (which === "fleet") await benchFleet(process.argv.slice(3));
  if (which === "all" || which === "ha") await benchHa(which === "ha" ? process.argv.slice(3) : []);
  if (which === "all" || which === "footprint") await benchFootprint(which === "footprint" ? process.argv.slice(3) : []);
} finally {
  await killAll();
}
