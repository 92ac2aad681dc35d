/**
 * memory-stress: holds `percent` of the host's RAM (or `size` bytes) in a child process, every page
 * touched so that it is really resident, never taking available memory (MemAvailable) below a
 * reserve: max(512 MiB, 5 % of RAM), or the `reserve` parameter when higher.
 *
 * - The hold is capped at start to MemAvailable − reserve; the holder checks again before every
 *   64 MiB chunk while allocating, and every 500 ms afterwards it gives chunks back whenever other
 *   processes push MemAvailable below the reserve (it never grows back: the fault only ever eases).
 * - The holder is the process the kernel kills first: its oom_score_adj is 1000 (set by itself, no
 *   privilege needed). The agent lowers its own to -500 while a hold runs, when it may (root with
 *   CAP_SYS_RESOURCE; the systemd unit sets -500 already), and says so when it cannot.
 * - The holder exits by itself when its stdin (a pipe only the agent holds) closes: an agent that
 *   dies takes the hold with it. The journal records the holder by pid and start time before it
 *   allocates anything, so the guard, `recover` or a restarted agent kill it if it is still there
 *   (stopped, stuck), and never a process that reused its pid.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { InvalidFaultRequestError, memoryReserveBytes, parseFaultParams } from "@firedrill/protocol";
import type { JsonObject, MemoryStressParams } from "@firedrill/protocol";
import { formatBytes } from "./disk-fill-revert.js";
import { killChild } from "./held-child.js";
import { MEMORY_HOLDER, revertMemoryStressRecord } from "./memory-stress-revert.js";
import { spawnStressChild } from "./stress-child.js";
import type { StressChild } from "./stress-child.js";
import type { FaultContext, FaultKindDefinition, FaultPreviewResult, RunningFault } from "./types.js";

const PAGE = 4096;
const MiB = 1024 * 1024;
/** Allocation and release granularity: above glibc's largest mmap threshold (32 MiB), so a freed chunk is unmapped at once. */
export const HOLD_CHUNK_BYTES = 64 * MiB;
/** How often the holder checks MemAvailable against the reserve once it holds. */
export const RESERVE_CHECK_MS = 500;
/** What the agent lowers its own oom_score_adj to while a hold runs. */
export const AGENT_OOM_SCORE_ADJ = -500;
/** How long start() waits for the hold to be complete before it reports the fault running anyway. */
const HOLD_WAIT_MS = 5_000;

/** Total RAM and what the kernel estimates can be allocated without swapping, from /proc/meminfo. */
export interface MemInfo {
  totalBytes: number;
  availableBytes: number;
}

/** Options of the memory-stress kind (seams for tests). */
export interface MemoryStressOptions {
  /** Where the agent and the holder read MemTotal and MemAvailable. @default "/proc/meminfo" */
  meminfoPath?: string;
}

/** Reads MemTotal and MemAvailable from /proc/meminfo (or the text given). */
export function readMemInfo(text = readFileSync("/proc/meminfo", "utf8")): MemInfo {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    if (!m) throw new Error(`/proc/meminfo has no ${key} line (a kernel older than 3.14?)`);
    return Number(m[1]) * 1024;
  };
  return { totalBytes: kb("MemTotal"), availableBytes: kb("MemAvailable") };
}

/** Validated memory-stress parameters with the hold planned against the host's memory then. */
export interface MemoryStressPlan extends MemoryStressParams {
  totalBytes: number;
  /** What was asked, in bytes (percent of total RAM, or size), page-rounded. */
  askedBytes: number;
  /** The reserve in force: max(512 MiB, 5 % of RAM, `reserve`). */
  reserveBytes: number;
  /** MemAvailable when planned. */
  availableBytes: number;
  /** What will be held: askedBytes, capped to MemAvailable − reserve. */
  targetBytes: number;
  /** Why the target is below the ask (one line), when it is. */
  capped?: string;
}

function mib(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

/** The reserve as a phrase: "reserve 1.2 GiB (max(512 MiB, 5 % of 23.5 GiB RAM))". */
function describeReserve(plan: { reserveBytes: number; totalBytes: number; reserve?: number }): string {
  const floor = memoryReserveBytes(plan.totalBytes);
  const why = plan.reserve !== undefined && plan.reserve > floor ? "the reserve parameter" : `max(512 MiB, 5 % of ${formatBytes(plan.totalBytes)} RAM)`;
  return `reserve ${formatBytes(plan.reserveBytes)} (${why})`;
}

/**
 * Plans a hold on a host with `mem`: the target capped to MemAvailable − reserve. Thrown
 * (InvalidFaultRequestError) when not even 1 MiB can be held without going below the reserve.
 */
export function planMemoryHold(params: MemoryStressParams, mem: MemInfo): MemoryStressPlan {
  const asked = params.percent !== undefined ? (params.percent / 100) * mem.totalBytes : (params.size ?? 0);
  const askedBytes = Math.ceil(asked / PAGE) * PAGE;
  const reserveBytes = memoryReserveBytes(mem.totalBytes, params.reserve);
  const room = Math.floor((mem.availableBytes - reserveBytes) / PAGE) * PAGE;
  const field = params.percent !== undefined ? "percent" : "size";
  const base = { ...params, totalBytes: mem.totalBytes, askedBytes, reserveBytes, availableBytes: mem.availableBytes };
  const reserve = describeReserve(base);
  if (room < MiB) {
    const lower = params.reserve !== undefined && params.reserve > memoryReserveBytes(mem.totalBytes) ? ", or lower the reserve parameter" : "";
    throw new InvalidFaultRequestError([
      {
        field: `params.${params.reserve !== undefined && lower ? "reserve" : field}`,
        message:
          `nothing can be held on this host: ${formatBytes(mem.availableBytes)} of ${formatBytes(mem.totalBytes)} is available and the ${reserve} must stay available; ` +
          `free memory first${lower}`,
      },
    ]);
  }
  if (askedBytes <= room) return { ...base, targetBytes: askedBytes };
  const capped =
    `capped to ${formatBytes(room)} (asked ${formatBytes(askedBytes)}): ${formatBytes(mem.availableBytes)} is available and the ${reserve} stays available`;
  return { ...base, targetBytes: room, capped };
}

/** RssAnon and VmSwap of a process, in bytes, from /proc/PID/status; undefined when it is gone. */
export function readAnonMemory(pid: number): { rssAnon: number; swap: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
    return { rssAnon: kb("RssAnon"), swap: kb("VmSwap") };
  } catch {
    return undefined;
  }
}

/**
 * The holder: plain JS evaluated by `node -e`. Sets its own oom_score_adj to 1000, says "ready",
 * and on "go" allocates the target in chunks (random bytes, so that zswap or zram cannot compress
 * them, and each page stamped with its number, so that no two are alike), checking MemAvailable
 * against the reserve before each;
 * then gives chunks back whenever MemAvailable falls below the reserve. Exits when stdin closes.
 */
const HOLDER_SOURCE = `
"use strict";
const { readFileSync, writeFileSync } = require("node:fs");
const { randomFillSync } = require("node:crypto");
const cfg = JSON.parse(process.argv[process.argv.length - 1]);
const PAGE = 4096;
try { writeFileSync("/proc/self/oom_score_adj", "1000"); } catch {}
let oomScoreAdj = null;
try { oomScoreAdj = Number(readFileSync("/proc/self/oom_score_adj", "utf8").trim()); } catch {}
try { writeFileSync("/proc/self/comm", "fd-mem-stress"); } catch {}
process.stdout.on("error", () => {});
const send = (m) => { try { process.stdout.write(JSON.stringify(m) + "\\n"); } catch {} };
// NaN when it cannot be read: allocate() then stops, check() waits for the next reading.
const available = () => {
  let m = null;
  try { m = /^MemAvailable:\\s+(\\d+) kB/m.exec(readFileSync(cfg.meminfo, "utf8")); } catch {}
  return m ? Number(m[1]) * 1024 : NaN;
};
const chunks = [];
let held = 0, released = 0, page = 0, started = false;
function done(short, why) {
  send({ t: "holding", bytes: held, short, why });
  setInterval(check, cfg.checkMs);
}
function allocate() {
  if (held >= cfg.targetBytes) return done(false);
  const avail = available();
  if (Number.isNaN(avail)) return done(true, "MemAvailable could not be read from " + cfg.meminfo);
  const room = Math.floor((avail - cfg.reserveBytes) / PAGE) * PAGE;
  const n = Math.min(cfg.chunkBytes, cfg.targetBytes - held, room);
  if (n < PAGE) return done(true, "reserve");
  let b;
  try { b = Buffer.allocUnsafeSlow(n); } catch (e) { return done(true, String((e && e.message) || e)); }
  // Random bytes (incompressible for zswap/zram), made once in the first chunk and copied after;
  // each page stamped with its number, so no two pages are alike.
  if (chunks.length === 0) randomFillSync(b);
  else for (let o = 0; o < n; o += chunks[0].length) b.set(chunks[0].subarray(0, Math.min(chunks[0].length, n - o)), o);
  for (let o = 0; o < n; o += PAGE) b.writeUInt32LE((page++) >>> 0, o);
  chunks.push(b);
  held += n;
  send({ t: "held", bytes: held });
  setImmediate(allocate);
}
function check() {
  const avail = available();
  const need = cfg.reserveBytes - avail;
  if (Number.isNaN(avail) || need <= 0 || chunks.length === 0) return;
  let freed = 0;
  while (freed < need && chunks.length > 0) freed += chunks.pop().length;
  held -= freed;
  released += freed;
  if (typeof gc === "function") gc();
  send({ t: "released", bytes: held, released, available: avail });
}
process.stdin.on("data", (d) => { if (!started && String(d).includes("go")) { started = true; allocate(); } });
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
send({ t: "ready", oomScoreAdj });
`;

/** The agent's own oom_score_adj while holds run: lowered once, restored when the last ends. */
let agentOom: { previous: number; holds: number } | undefined;

function readOomScoreAdj(pid: number | "self" = "self"): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/oom_score_adj`, "utf8").trim());
  } catch {
    return undefined;
  }
}

/** Lowers the agent's oom_score_adj to -500 when it is higher; one line on what happened. */
function lowerAgentOom(): string {
  if (agentOom) {
    agentOom.holds++;
    return `the agent's own oom_score_adj is ${readOomScoreAdj() ?? "unknown"} (lowered for the holds running)`;
  }
  const current = readOomScoreAdj();
  if (current === undefined) return "the agent's own oom_score_adj could not be read (/proc/self/oom_score_adj)";
  if (current <= AGENT_OOM_SCORE_ADJ) return `the agent's own oom_score_adj is ${current} already (the kernel picks the holder first)`;
  try {
    writeFileSync("/proc/self/oom_score_adj", String(AGENT_OOM_SCORE_ADJ));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return (
      `the agent's own oom_score_adj stays ${current}: lowering it needs root with CAP_SYS_RESOURCE (${code}); ` +
      `the holder's 1000 still makes it the kernel's first choice (set OOMScoreAdjust=-500 on the agent's unit, as the install does)`
    );
  }
  agentOom = { previous: current, holds: 1 };
  return `the agent's own oom_score_adj lowered from ${current} to ${AGENT_OOM_SCORE_ADJ} while the hold runs`;
}

function restoreAgentOom(): void {
  if (!agentOom || --agentOom.holds > 0) return;
  const { previous } = agentOom;
  agentOom = undefined;
  try {
    writeFileSync("/proc/self/oom_score_adj", String(previous));
  } catch {
    // Raising it back needs no privilege; nothing else to do if /proc refuses.
  }
}

/** The holder's state as it reports it. */
interface HoldState {
  held: number;
  released: number;
  holding: boolean;
  short?: string;
}

/** Builds the memory-stress kind. */
export function createMemoryStress(options: MemoryStressOptions = {}): FaultKindDefinition<MemoryStressPlan> {
  const meminfo = options.meminfoPath ?? "/proc/meminfo";
  const memory = () => readMemInfo(readFileSync(meminfo, "utf8"));
  return {
    kind: "memory-stress",
    validate: (params: JsonObject) => planMemoryHold(parseFaultParams("memory-stress", params), memory()),
    planRevert() {
      // The holder does not exist yet: start() records it (pid, start time) before it allocates.
      return {};
    },
    preview(plan): FaultPreviewResult {
      return {
        details: [
          `holds ${formatBytes(plan.targetBytes)} of ${formatBytes(plan.totalBytes)} RAM in a child process with oom_score_adj 1000 (${formatBytes(plan.availableBytes)} available now)`,
          ...(plan.capped ? [plan.capped] : []),
          `never takes available memory below the ${describeReserve(plan)}: gives memory back when other processes need it`,
        ],
      };
    },
    async start(validated, ctx: FaultContext): Promise<RunningFault> {
      // Plan again against memory as it is now: time passed since validation.
      const plan = planMemoryHold(validated, memory());
      const oomNote = lowerAgentOom();
      let child: StressChild | undefined;
      const state: HoldState = { held: 0, released: 0, holding: false };
      try {
        child = await spawnStressChild({
          source: HOLDER_SOURCE,
          name: "firedrill-memory-stress",
          faultId: ctx.faultId,
          nodeArgs: ["--expose-gc", "--max-old-space-size=64"],
          config: { meminfo, targetBytes: plan.targetBytes, reserveBytes: plan.reserveBytes, chunkBytes: HOLD_CHUNK_BYTES, checkMs: RESERVE_CHECK_MS },
        });
        const c = child;
        c.onMessage((msg) => {
          if (msg.t === "held") state.held = Number(msg.bytes);
          else if (msg.t === "holding") {
            state.held = Number(msg.bytes);
            state.holding = true;
            if (msg.short) state.short = String(msg.why ?? "reserve");
          } else if (msg.t === "released") {
            state.held = Number(msg.bytes);
            state.released = Number(msg.released);
            ctx.log.warn(
              { held: state.held, released: state.released, available: msg.available },
              "available memory fell below the reserve: the holder gave memory back",
            );
          }
        });
        const ready = await c.waitFor("ready", 10_000);
        // Journaled before a single byte is allocated: recovery kills this very process.
        ctx.updateRevert({ child: { pid: c.ref.pid, startTime: c.ref.startTime } });
        const baseline = readAnonMemory(c.ref.pid)?.rssAnon ?? 0;
        const t0 = performance.now();
        c.send("go");
        await c.waitFor("holding", HOLD_WAIT_MS).catch((err: unknown) => {
          if (c.hasExited()) throw err;
          ctx.log.warn({ held: state.held, target: plan.targetBytes }, "the hold is not complete yet; the fault runs while it grows");
        });
        const holdMs = Math.round(performance.now() - t0);
        ctx.log.info({ pid: c.ref.pid, held: state.held, target: plan.targetBytes, ms: holdMs }, "memory held");
        let reverting = false;
        let reverted: Promise<void> | undefined;
        void c.exited.then(() => {
          if (!reverting) ctx.log.warn({ pid: c.ref.pid }, `${MEMORY_HOLDER} ended on its own (killed by the kernel's OOM killer?); nothing is held any more`);
        });
        const oomAdj = typeof ready.oomScoreAdj === "number" ? ready.oomScoreAdj : undefined;
        return {
          details: [
            `holder pid ${c.ref.pid} holds ${formatBytes(plan.targetBytes)}, oom_score_adj ${oomAdj ?? "unknown"}: the kernel's first choice under memory pressure`,
            ...(plan.capped ? [plan.capped] : []),
            `never takes available memory below the ${describeReserve(plan)}: gives memory back when other processes need it`,
            oomNote,
            ...(state.short
              ? [`the holder stopped at ${formatBytes(state.held)} of ${formatBytes(plan.targetBytes)}: ${state.short === "reserve" ? "available memory reached the reserve meanwhile" : state.short}`]
              : []),
          ],
          measure() {
            const anon = readAnonMemory(c.ref.pid);
            const held = c.hasExited() || !anon ? 0 : Math.max(0, anon.rssAnon - baseline);
            return {
              held_mib: mib(held),
              asked_mib: mib(plan.askedBytes),
              target_mib: mib(plan.targetBytes),
              available_mib: mib(memory().availableBytes),
              reserve_mib: mib(plan.reserveBytes),
              released_mib: mib(state.released),
              swapped_mib: mib(anon?.swap ?? 0),
              holding: state.holding && !c.hasExited() ? 1 : 0,
            };
          },
          revert() {
            reverting = true;
            reverted ??= killChild(c.ref, MEMORY_HOLDER, ctx.log).then(
              async () => {
                await c.exited;
                restoreAgentOom();
              },
              (err: unknown) => {
                reverted = undefined; // let the runtime retry
                throw err;
              },
            );
            return reverted;
          },
        };
      } catch (err) {
        if (child) await killChild(child.ref, MEMORY_HOLDER, ctx.log).catch(() => undefined);
        restoreAgentOom();
        throw err;
      }
    },
    revertRecord: revertMemoryStressRecord,
  };
}

/** The memory-stress fault kind. */
export const memoryStress = createMemoryStress();
