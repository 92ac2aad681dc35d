#!/usr/bin/env node
/**
 * The guard's own entry, started by the agent beside itself (see guard.ts):
 *
 *   node guard-bin.js --state-dir DIR --agent-pid PID --agent-start-time TICKS [--agent-fd 3] [--stall-after 2s] [--log-level info]
 *
 * The same flags and exit codes as the hidden `firedrill-agent guard` (0: stopped by the agent or
 * everything reverted; 1: something could not be reverted; 2: bad usage). It loads only what
 * reverting needs — the guard, the journal, the revert half of every fault kind
 * (faults/revert-registry.ts), the pending reports and pino — and none of gRPC, the CLI parser,
 * host facts or the fault parameter parsers, so that it stays small on every host. The release
 * bundles it as lib/guard.mjs.
 */
import { parseDuration } from "@firedrill/protocol/core";
import { pino } from "pino";
import { createRevertRegistry } from "./faults/revert-registry.js";
import { runGuard } from "./guard.js";
import { DEFAULT_STALL_AFTER_MS } from "./liveness.js";
import { AGENT_VERSION } from "./version.js";

const USAGE =
  "usage: guard --state-dir <dir> --agent-pid <pid> --agent-start-time <ticks> [--agent-fd <fd>] [--stall-after <duration>] [--log-level <level>]";
const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** The guard's options, from its flags. */
interface GuardFlags {
  stateDir: string;
  agentPid: number;
  agentStartTime: number;
  /** The guard's end of a pipe only the agent holds the other end of (EOF: the agent is gone). */
  agentFd: number | undefined;
  stallAfterMs: number;
  logLevel: string;
}

/** Thrown for bad flags: the message says which and how. */
class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Parses `--flag value` and `--flag=value`; every flag once. */
function parseFlags(argv: readonly string[]): GuardFlags {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf("=");
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (!["state-dir", "agent-pid", "agent-start-time", "agent-fd", "stall-after", "log-level"].includes(name)) throw new UsageError(`unknown option --${name}`);
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    given.set(name, value);
  }
  const required = (name: string) => {
    const value = given.get(name);
    if (value === undefined) throw new UsageError(`required option --${name} not given`);
    return value;
  };
  const whole = (name: string) => {
    const value = required(name);
    if (!/^\d+$/.test(value)) throw new UsageError(`--${name}: "${value}" is not a whole number`);
    return Number(value);
  };
  const stall = given.get("stall-after");
  const stallAfterMs = stall === undefined ? DEFAULT_STALL_AFTER_MS : parseDuration(stall);
  if (stallAfterMs === undefined) throw new UsageError(`--stall-after: "${stall}" is not a duration (e.g. 500ms, 5s, 1m)`);
  const logLevel = given.get("log-level") ?? process.env.FIREDRILL_LOG_LEVEL ?? "info";
  if (!LEVELS.includes(logLevel)) throw new UsageError(`--log-level: "${logLevel}" is not one of ${LEVELS.join("|")}`);
  const agentFd = given.has("agent-fd") ? whole("agent-fd") : undefined;
  return { stateDir: required("state-dir"), agentPid: whole("agent-pid"), agentStartTime: whole("agent-start-time"), agentFd, stallAfterMs, logLevel };
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--version")) {
    console.log(AGENT_VERSION);
    return 0;
  }
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(`${USAGE}\nthe watchdog the agent starts beside itself: reverts the journal if the agent dies without a clean stop`);
    return 0;
  }
  let flags: GuardFlags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`firedrill guard: ${err.message}\n${USAGE}`);
    return 2;
  }
  // JSON lines: the agent points the guard's output at <state-dir>/guard.log.
  const log = pino({ name: "firedrill-guard", level: flags.logLevel, redact: ["token", "*.token", "authorization", "*.authorization"] });
  const outcome = await runGuard({
    stateDir: flags.stateDir,
    agent: { pid: flags.agentPid, startTime: flags.agentStartTime },
    stallAfterMs: flags.stallAfterMs,
    ...(flags.agentFd !== undefined ? { agentFd: flags.agentFd } : {}),
    registry: createRevertRegistry(),
    log,
  });
  return outcome === "recovery-failed" ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`firedrill guard: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
