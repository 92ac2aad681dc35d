/**
 * The commands install scripts and people on the host use: `enroll` (once, with a join token),
 * `status` (is the running agent connected, and if not, why) and `uninstall` (the install script's
 * `--uninstall`).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseDuration, resolveCallerPath } from "@firedrill/protocol";
import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { CommandError } from "./command-error.js";
import { readTokenFile } from "./config.js";
import { enrollOnce } from "./enroll-command.js";
import { createLogger } from "./log.js";
import { describeStatus, readStatusReading, waitForConnected } from "./status.js";

/** Where the install script lays the agent out (see docs/install.md). */
export const INSTALL_DIR = "/opt/firedrill/agent";
/** The default state dir (the unit's StateDirectory). */
export const DEFAULT_STATE_DIR = "/var/lib/firedrill-agent";

function durationOption(flag: string) {
  return (value: string): number => {
    const ms = parseDuration(value);
    if (ms === undefined) throw new InvalidArgumentError(`${flag}: "${value}" is not a duration (e.g. 500ms, 5s, 1m)`);
    return ms;
  };
}

/**
 * The root the install script's paths live under: "" on a host. `FIREDRILL_INSTALL_ROOT` moves
 * them (the script's tests install into a temporary root).
 */
export function installRoot(): string {
  return process.env.FIREDRILL_INSTALL_ROOT ?? "";
}

/** Registers `enroll`, `status` and `uninstall` on the firedrill-agent program. */
export function registerInstallCommands(program: Command): void {
  program
    .command("enroll")
    .description("enroll with the control plane once (join token), store the identity in the state dir and print the agent id; already enrolled: print it")
    .option("--server <host:port,...>", "control plane gRPC address, or several replicas' comma-separated, tried in turn (env FIREDRILL_SERVER_ADDR)", process.env.FIREDRILL_SERVER_ADDR)
    .option("--token <token>", "join token (env FIREDRILL_TOKEN); prefer --token-file or the environment: a command line is visible to every local user", process.env.FIREDRILL_TOKEN)
    .option("--token-file <file>", "file holding the join token (env FIREDRILL_TOKEN_FILE)", process.env.FIREDRILL_TOKEN_FILE)
    .option("--state-dir <dir>", "state dir of the agent (env FIREDRILL_STATE_DIR)", process.env.FIREDRILL_STATE_DIR ?? DEFAULT_STATE_DIR)
    .option("--timeout <duration>", "how long the TLS check and the enrollment may take, each", durationOption("--timeout"), 15_000)
    .option("--json", "print { agentId, enrolled, caFingerprint, stateDir } as JSON")
    .action(async (opts: { server?: string; token?: string; tokenFile?: string; stateDir: string; timeout: number; json?: boolean }) => {
      const stateDir = resolveCallerPath(opts.stateDir);
      const token = opts.token || (opts.tokenFile ? readTokenFile(resolveCallerPath(opts.tokenFile)) : undefined) || undefined;
      // Failures are reported by the command itself (one line on stderr); the log says nothing more.
      let result: Awaited<ReturnType<typeof enrollOnce>>;
      try {
        result = await enrollOnce({ server: opts.server, token, stateDir, log: createLogger("silent"), timeoutMs: opts.timeout });
      } catch (err) {
        if (err instanceof CommandError && token === undefined && opts.tokenFile) {
          throw new CommandError(`--token-file ${resolveCallerPath(opts.tokenFile)} is missing or empty: ${err.message}`, err.exitCode);
        }
        throw err;
      }
      if (opts.json) {
        console.log(JSON.stringify({ ...result, stateDir }));
        return;
      }
      console.log(result.agentId);
      console.error(
        result.enrolled
          ? `firedrill-agent: enrolled with the control plane at ${result.server ?? opts.server} as ${result.agentId} (identity in ${stateDir}; the join token is not needed any more)`
          : `firedrill-agent: already enrolled as ${result.agentId} (identity in ${stateDir}, CA ${result.caFingerprint}); nothing to do`,
      );
    });

  program
    .command("status")
    .description("whether the running agent is connected to the control plane (exit 0) or not (exit 1, with the last error)")
    .option("--state-dir <dir>", "state dir of the agent (env FIREDRILL_STATE_DIR)", process.env.FIREDRILL_STATE_DIR ?? DEFAULT_STATE_DIR)
    .option("--wait <duration>", "wait until the agent is connected, at most this long (e.g. 60s)", durationOption("--wait"))
    .option("--json", "print the status as JSON ({ agentId, connected, since, server, servers?, pid, version, lastError?, running })")
    .action(async (opts: { stateDir: string; wait?: number; json?: boolean }) => {
      const stateDir = resolveCallerPath(opts.stateDir);
      const reading = opts.wait !== undefined ? await waitForConnected(stateDir, opts.wait) : readStatusReading(stateDir);
      const described = describeStatus(reading, stateDir);
      if (opts.json) {
        console.log(JSON.stringify(reading.status ? { ...reading.status, connected: reading.connected, running: reading.running } : { connected: false, running: false }));
      } else if (described.exitCode === 0) {
        console.log(described.text);
      } else {
        console.error(`firedrill-agent: ${described.text}${opts.wait !== undefined ? ` (waited ${Math.round(opts.wait / 1000)} s)` : ""}`);
      }
      process.exitCode = described.exitCode;
    });

  program
    .command("uninstall")
    .description(`stop the agent, revert what its journal holds and remove everything the install script installed (runs ${INSTALL_DIR}/agent.sh --uninstall)`)
    .action(async () => {
      const script = join(installRoot(), INSTALL_DIR, "agent.sh");
      if (!existsSync(script)) {
        throw new CommandError(
          `${script} is missing: this agent was not installed by the install script. Stop it the way it was started, ` +
            "run `firedrill-agent recover --state-dir DIR` to revert what its journal holds, then remove its files and revoke it (firedrill agents revoke AGENT_ID)",
          1,
        );
      }
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn("/bin/sh", [script, "--uninstall"], { stdio: "inherit" });
        child.once("error", reject);
        child.once("exit", (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
      });
      process.exitCode = code;
    });
}
