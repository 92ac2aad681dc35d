/**
 * The firedrill-agent command line: `firedrill-agent [run] ...` and `firedrill-agent recover`.
 */
import { parseDuration } from "@firedrill/protocol";
import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_MAX_LEASE_TTL_MS, startAgent } from "./agent.js";
import { AgentConfigError, parseAgentConfig, parseLabels, readTokenFile } from "./config.js";
import { createDefaultFaultRegistry } from "./faults/index.js";
import { runGuard } from "./guard.js";
import { StateDirLockedError, ensureStateDir, lockStateDir } from "./identity.js";
import { Journal } from "./journal.js";
import { createLogger } from "./log.js";
import { RecoveryError, recoverJournal } from "./recover.js";
import { PendingReports } from "./reports.js";
import { AGENT_VERSION } from "./version.js";

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
    .option("--server <host:port>", "control plane gRPC address (env FIREDRILL_SERVER_ADDR)", process.env.FIREDRILL_SERVER_ADDR)
    .option("--token <token>", "join token, needed until enrolled (env FIREDRILL_TOKEN); prefer --token-file", process.env.FIREDRILL_TOKEN)
    .option("--token-file <file>", "file holding the join token (env FIREDRILL_TOKEN_FILE)", process.env.FIREDRILL_TOKEN_FILE)
    .option("--state-dir <dir>", "state dir: identity (key, certificate, CA), journal, pending reports (env FIREDRILL_STATE_DIR)", process.env.FIREDRILL_STATE_DIR ?? "/var/lib/firedrill-agent")
    .option("--labels <k=v,...>", "labels for targeting, e.g. app=web,firedrill:opt-in=true (env FIREDRILL_LABELS)", process.env.FIREDRILL_LABELS)
    .option("--imds <url|off>", "EC2 instance metadata endpoint, or off", process.env.FIREDRILL_IMDS ?? "http://169.254.169.254")
    .option("--insecure", "plain gRPC with the join token on every connect; only to a control plane on a loopback address", false)
    .option("--max-lease-ttl <duration>", "longest lease the control plane may give (faults are reverted after this long without it)", durationOption("--max-lease-ttl"), DEFAULT_MAX_LEASE_TTL_MS)
    .addOption(new Option("--ca <file>").hideHelp())
    .addOption(new Option("--tls").hideHelp())
    .option("--reconnect-max <duration>", "longest delay between reconnect attempts", durationOption("--reconnect-max"), 30_000)
    .option("--progress-interval <duration>", "how often running faults report measurements", durationOption("--progress-interval"), 2000)
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace", process.env.FIREDRILL_LOG_LEVEL ?? "info")
    .option("--no-guard", "do not start the guard (only where a supervisor runs `firedrill-agent recover` after every exit)")
    .action(async (opts) => {
      if (opts.ca !== undefined || opts.tls !== undefined) {
        throw new AgentConfigError(
          `${opts.ca !== undefined ? "--ca" : "--tls"} is gone: the agent always uses TLS, verified against the control plane's CA whose SHA-256 the join token carries (fdj_…_<CA sha256>); drop the flag and give a join token from \`firedrill join-token create\` (or --insecure for a control plane on loopback)`,
        );
      }
      const token: string | undefined = opts.token || (opts.tokenFile ? readTokenFile(opts.tokenFile) : undefined) || undefined;
      const config = parseAgentConfig({
        server: opts.server ?? "",
        token,
        stateDir: opts.stateDir,
        labels: parseLabels(opts.labels),
        logLevel: opts.logLevel,
        imds: opts.imds,
        insecure: Boolean(opts.insecure),
        maxLeaseTtlMs: opts.maxLeaseTtl,
        reconnectMaxMs: opts.reconnectMax,
        progressIntervalMs: opts.progressInterval,
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
        ...(opts.guard ? { guardCommand: [process.execPath, ...process.execArgv, process.argv[1]!, "guard"] } : {}),
      });
      log.info({ agentId: agent.agentId, stateDir: config.stateDir, labels: config.labels }, "firedrill-agent started");

      let signals = 0;
      const shutdown = (signal: string) => {
        if (++signals > 1) {
          log.warn({ signal }, "second signal: exiting now; the journal will be reverted on the next start");
          process.exit(EXIT.error);
        }
        log.info({ signal }, "shutting down: reverting every fault");
        void agent.stop().then(() => process.exit(EXIT.ok));
      };
      process.on("SIGTERM", () => shutdown("SIGTERM"));
      process.on("SIGINT", () => shutdown("SIGINT"));
      const refused = await agent.refused;
      await agent.stop();
      console.error(
        `firedrill-agent: the control plane at ${config.server} revoked this agent (${refused.details}); not restarting. ` +
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

  program
    .command("guard", { hidden: true })
    .description("the watchdog the agent starts beside itself: reverts the journal if the agent dies without a clean stop")
    .requiredOption("--state-dir <dir>", "state dir of the agent")
    .requiredOption("--agent-pid <pid>", "the agent to watch", Number)
    .requiredOption("--agent-start-time <ticks>", "its start time (against pid reuse)", Number)
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace", process.env.FIREDRILL_LOG_LEVEL ?? "info")
    .action(async (opts: { stateDir: string; agentPid: number; agentStartTime: number; logLevel: string }) => {
      const log = createLogger(opts.logLevel, "firedrill-guard");
      const outcome = await runGuard({
        stateDir: opts.stateDir,
        agent: { pid: opts.agentPid, startTime: opts.agentStartTime },
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
    if (err instanceof AgentConfigError) {
      console.error(`firedrill-agent: ${err.message}`);
      process.exit(EXIT.config);
    }
    if (err instanceof StateDirLockedError || err instanceof RecoveryError) {
      console.error(`firedrill-agent: ${err.message}`);
      process.exit(EXIT.error);
    }
    console.error(`firedrill-agent: ${(err as Error).stack ?? String(err)}`);
    process.exit(EXIT.error);
  }
}
