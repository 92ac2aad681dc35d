/**
 * The firedrill-agent command line: `firedrill-agent [run] ...` and `firedrill-agent recover`.
 */
import { UnsafePathError, parseDuration, resolveCallerPath } from "@firedrill/protocol";
import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_MAX_LEASE_TTL_MS, startAgent } from "./agent.js";
import { AgentConfigError, parseAgentConfig, parseLabels, parseManagement, parseProtectedProcesses, readTokenFile } from "./config.js";
import { createDefaultFaultRegistry } from "./faults/index.js";
import { guardCommandFor, runGuard } from "./guard.js";
import { StateDirLockedError, ensureStateDir, lockStateDir } from "./identity.js";
import { Journal } from "./journal.js";
import { DEFAULT_STALL_AFTER_MS } from "./liveness.js";
import { createLogger } from "./log.js";
import { RecoveryError, recoverJournal } from "./recover.js";
import { stopsWithParent, watchParent } from "./parent-watch.js";
import { PendingReports } from "./reports.js";
import { DEFAULT_MAX_FAULTS } from "./runtime.js";
import { AGENT_VERSION } from "./version.js";
import { registerInstallCommands } from "./install-commands.js";
import { CommandError } from "./command-error.js";
import { StatusFileError } from "./status.js";

function integerOption(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${flag}: "${value}" is not a whole number (e.g. 4)`);
    return Number(value);
  };
}

function durationOption(flag: string) {
  return (value: string): number => {
    const ms = parseDuration(value);
    if (ms === undefined) throw new InvalidArgumentError(`${flag}: "${value}" is not a duration (e.g. 500ms, 5s, 1m)`);
    return ms;
  };
}

/**
 * Exit codes: 0 clean stop, 1 error, 2 bad usage/config, 3 revoked (said by the control plane over
 * TLS verified against the pinned CA; nothing else makes the agent exit 3).
 */
export const EXIT = { ok: 0, error: 1, config: 2, refused: 3 } as const;

/** Builds the firedrill-agent program. */
export function createProgram(): Command {
  const program = new Command("firedrill-agent")
    .description("firedrill host agent: injects faults ordered by the control plane, and always reverts them")
    .version(AGENT_VERSION)
    .showHelpAfterError();

  program
    .command("run", { isDefault: true })
    .description("connect to the control plane and run faults (the default)")
    .option(
      "--server <host:port,...>",
      "control plane gRPC address; or up to 16 replicas' addresses, comma-separated, failed over between (env FIREDRILL_SERVER_ADDR)",
      process.env.FIREDRILL_SERVER_ADDR,
    )
    .option("--token <token>", "join token, needed until enrolled (env FIREDRILL_TOKEN); prefer --token-file", process.env.FIREDRILL_TOKEN)
    .option("--token-file <file>", "file holding the join token (env FIREDRILL_TOKEN_FILE)", process.env.FIREDRILL_TOKEN_FILE)
    .option("--state-dir <dir>", "state dir: identity (key, certificate, CA), journal, pending reports (env FIREDRILL_STATE_DIR)", process.env.FIREDRILL_STATE_DIR ?? "/var/lib/firedrill-agent")
    .option("--labels <k=v,...>", "labels for targeting, e.g. app=web,firedrill:opt-in=true (env FIREDRILL_LABELS)", process.env.FIREDRILL_LABELS)
    .option(
      "--management <cidr|tcp:port,...>",
      "networks and ports this host is managed through, never touched by network faults (SSH is always spared), e.g. 10.0.0.0/8,tcp:2222 (env FIREDRILL_MANAGEMENT)",
      process.env.FIREDRILL_MANAGEMENT,
    )
    .option(
      "--protect-process <rules>",
      "processes that process faults never signal, besides sshd, systemd, container runtimes and firedrill (built in): names (postgres, nginx*), /command-line patterns/, unit:NAME.service; comma-separated, repeatable (env FIREDRILL_PROTECT_PROCESS)",
      (value: string, previous: string[]) => [...previous, value],
      process.env.FIREDRILL_PROTECT_PROCESS ? [process.env.FIREDRILL_PROTECT_PROCESS] : [],
    )
    .option("--imds <url|off>", "EC2 instance metadata endpoint, or off", process.env.FIREDRILL_IMDS ?? "http://169.254.169.254")
    .option("--insecure", "plain gRPC with the join token on every connect; only to a control plane on a loopback address", false)
    .option("--max-lease-ttl <duration>", "longest lease the control plane may give (faults are reverted after this long without it)", durationOption("--max-lease-ttl"), DEFAULT_MAX_LEASE_TTL_MS)
    .addOption(new Option("--ca <file>").hideHelp())
    .addOption(new Option("--tls").hideHelp())
    .option("--reconnect-max <duration>", "longest delay between reconnect attempts", durationOption("--reconnect-max"), 30_000)
    .option("--progress-interval <duration>", "how often running faults report measurements", durationOption("--progress-interval"), 2000)
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace", process.env.FIREDRILL_LOG_LEVEL ?? "info")
    .option("--stall-after <duration>", "the guard reverts faults past their deadline or lease once the agent's event loop has been stalled this long (SIGSTOP, a busy loop)", durationOption("--stall-after"), DEFAULT_STALL_AFTER_MS)
    .option("--max-faults <n>", "most faults this host runs at once; one more is refused", integerOption("--max-faults"), DEFAULT_MAX_FAULTS)
    .option("--no-guard", "do not start the guard (only where a supervisor runs `firedrill-agent recover` after every exit)")
    .action(async (opts) => {
      if (opts.ca !== undefined || opts.tls !== undefined) {
        throw new AgentConfigError(
          `${opts.ca !== undefined ? "--ca" : "--tls"} is gone: the agent always uses TLS, verified against the control plane's CA whose SHA-256 the join token carries (fdj_…_<CA sha256>); drop the flag and give a join token from \`firedrill join-token create\` (or --insecure for a control plane on loopback)`,
        );
      }
      // Relative paths are the caller's: `pnpm firedrill-agent` runs from the repo root (INIT_CWD).
      const token: string | undefined = opts.token || (opts.tokenFile ? readTokenFile(resolveCallerPath(opts.tokenFile)) : undefined) || undefined;
      const config = parseAgentConfig({
        server: opts.server ?? "",
        token,
        stateDir: resolveCallerPath(opts.stateDir),
        labels: parseLabels(opts.labels),
        logLevel: opts.logLevel,
        imds: opts.imds,
        insecure: Boolean(opts.insecure),
        maxLeaseTtlMs: opts.maxLeaseTtl,
        reconnectMaxMs: opts.reconnectMax,
        progressIntervalMs: opts.progressInterval,
        stallAfterMs: opts.stallAfter,
        maxFaults: opts.maxFaults,
        management: parseManagement(opts.management),
        protectedProcesses: parseProtectedProcesses(opts.protectProcess),
      });
      const log = createLogger(config.logLevel);
      const agent = await startAgent({
        server: config.server,
        token: config.token,
        insecure: config.insecure,
        maxLeaseTtlMs: config.maxLeaseTtlMs,
        stateDir: config.stateDir,
        labels: config.labels,
        log,
        imdsEndpoint: config.imds,
        backoffMaxMs: config.reconnectMaxMs,
        progressIntervalMs: config.progressIntervalMs,
        stallAfterMs: config.stallAfterMs,
        maxFaults: config.maxFaults,
        management: config.management,
        protectedProcesses: config.protectedProcesses,
        ...(opts.guard ? { guardCommand: guardCommandFor(import.meta.url) } : {}),
      });
      log.info({ agentId: agent.agentId, stateDir: config.stateDir, labels: config.labels }, "firedrill-agent started");

      let firstSignalAt: number | undefined;
      const shutdown = (signal: string) => {
        if (firstSignalAt !== undefined) {
          // Ctrl-C under `pnpm firedrill-agent` arrives twice (from the terminal and passed on by
          // pnpm): only a second signal a moment later means "exit now".
          if (performance.now() - firstSignalAt < 1000) return;
          log.warn({ signal }, "second signal: exiting now; the journal will be reverted on the next start");
          process.exit(EXIT.error);
        }
        firstSignalAt = performance.now();
        log.info({ signal }, "shutting down: reverting every fault");
        void agent.stop().then(() => process.exit(EXIT.ok));
      };
      process.on("SIGTERM", () => shutdown("SIGTERM"));
      process.on("SIGINT", () => shutdown("SIGINT"));
      // Started by `pnpm firedrill-agent`: end with it, even when pnpm dies without passing a signal on.
      if (stopsWithParent()) watchParent((parentPid) => shutdown(`the parent process ${parentPid} exited`));
      const refused = await agent.refused;
      await agent.stop();
      console.error(
        `firedrill-agent: the control plane at ${config.server.join(",")} revoked this agent (${refused.details}); not restarting. ` +
          `To bring the host back, remove agent.crt and agent.key from ${config.stateDir} and start it with a new join token.`,
      );
      process.exit(EXIT.refused);
    });

  program
    .command("recover")
    .description("revert every fault the journal holds, then exit (run it after a crash; the systemd unit runs it in ExecStopPost)")
    .option("--state-dir <dir>", "state dir of the agent (env FIREDRILL_STATE_DIR)", process.env.FIREDRILL_STATE_DIR ?? "/var/lib/firedrill-agent")
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace", process.env.FIREDRILL_LOG_LEVEL ?? "warn")
    .action(async (opts: { stateDir: string; logLevel: string }) => {
      const log = createLogger(opts.logLevel);
      opts.stateDir = resolveCallerPath(opts.stateDir);
      ensureStateDir(opts.stateDir);
      const unlock = lockStateDir(opts.stateDir);
      try {
        const journal = new Journal(opts.stateDir);
        const result = await recoverJournal({
          journal,
          registry: createDefaultFaultRegistry(),
          log,
          reports: new PendingReports(opts.stateDir),
        });
        if (result.reverted.length === 0 && result.failed.length === 0 && result.corrupt.length === 0) {
          console.log(`journal in ${opts.stateDir} is empty: nothing to revert`);
        }
        for (const r of result.reverted) console.log(`reverted ${r.faultId} (${r.kind}), started ${r.startedAt}`);
        if (result.failed.length > 0 || result.corrupt.length > 0) throw new RecoveryError(result);
      } finally {
        unlock();
      }
    });

  // enroll, status, uninstall: for install scripts and people on the host.
  registerInstallCommands(program);

  program
    .command("guard", { hidden: true })
    .description("the watchdog the agent starts beside itself: reverts the journal if the agent dies without a clean stop")
    .requiredOption("--state-dir <dir>", "state dir of the agent")
    .requiredOption("--agent-pid <pid>", "the agent to watch", Number)
    .requiredOption("--agent-start-time <ticks>", "its start time (against pid reuse)", Number)
    .option("--agent-fd <fd>", "a pipe only the agent holds the other end of: EOF means the agent is gone", Number)
    .option("--stall-after <duration>", "how long without a heartbeat makes the agent stalled", durationOption("--stall-after"), DEFAULT_STALL_AFTER_MS)
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace", process.env.FIREDRILL_LOG_LEVEL ?? "info")
    .action(async (opts: { stateDir: string; agentPid: number; agentStartTime: number; agentFd?: number; stallAfter: number; logLevel: string }) => {
      const log = createLogger(opts.logLevel, "firedrill-guard");
      const outcome = await runGuard({
        stateDir: opts.stateDir,
        agent: { pid: opts.agentPid, startTime: opts.agentStartTime },
        stallAfterMs: opts.stallAfter,
        ...(opts.agentFd !== undefined ? { agentFd: opts.agentFd } : {}),
        registry: createDefaultFaultRegistry(),
        log,
      });
      process.exit(outcome === "recovery-failed" ? EXIT.error : EXIT.ok);
    });

  return program;
}

/** Runs the program and maps errors to exit codes with a one-line message. */
export async function main(argv: string[]): Promise<void> {
  try {
    await createProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof AgentConfigError || err instanceof UnsafePathError) {
      console.error(`firedrill-agent: ${err.message}`);
      process.exit(EXIT.config);
    }
    if (err instanceof CommandError) {
      console.error(`firedrill-agent: ${err.message}`);
      process.exit(err.exitCode);
    }
    if (err instanceof StateDirLockedError || err instanceof RecoveryError || err instanceof StatusFileError) {
      console.error(`firedrill-agent: ${err.message}`);
      process.exit(EXIT.error);
    }
    const lookup = err as NodeJS.ErrnoException & { hostname?: string };
    if (lookup.syscall === "getaddrinfo") {
      console.error(`firedrill-agent: cannot resolve the control plane's host name ${lookup.hostname ?? ""} (--server): ${lookup.code}; check the name and this host's DNS`);
      process.exit(EXIT.error);
    }
    console.error(`firedrill-agent: ${(err as Error).stack ?? String(err)}`);
    process.exit(EXIT.error);
  }
}
