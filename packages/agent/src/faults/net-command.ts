/**
 * Running the network tools (tc, nft, ip): argument arrays, never a shell, time-bounded, with
 * clear errors. Shared by the network faults and their revert from the journal; only
 * node:child_process: the guard loads this without the rest of the agent.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";
import { findExecutable } from "../executables.js";

/** The output of a finished command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one of the network tools. Seam for tests. */
export type CommandRunner = (program: NetTool, args: readonly string[], opts?: { input?: string }) => Promise<CommandResult>;

/** The tools network faults run. */
export type NetTool = "tc" | "nft" | "ip";

/** How long any one tc/nft/ip command may take. */
export const COMMAND_TIMEOUT_MS = 10_000;

/** Thrown when a network tool is missing or fails. `stderr` holds what it said. */
export class NetCommandError extends Error {
  override readonly name = "NetCommandError";
  constructor(
    message: string,
    readonly command: string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

const INSTALL_HINT: Record<NetTool, string> = {
  tc: "install iproute2",
  ip: "install iproute2",
  nft: "install nftables (apt-get install nftables, dnf install nftables)",
};

/**
 * Runs a tool with an argument array (never a shell), stdin from `input`, killed after
 * COMMAND_TIMEOUT_MS. Resolves with the exit code, whatever it is; rejects only when the program
 * cannot be run or times out.
 */
export const runCommand: CommandRunner = (program, args, opts = {}) => {
  const path = findExecutable(program);
  if (!path) {
    return Promise.reject(new NetCommandError(`${program} is not installed: ${INSTALL_HINT[program]}`, [program, ...args], null, ""));
  }
  // In the executor: a spawn that throws rejects.
  return new Promise((resolve) => {
    const child = spawn(path, [...args], { stdio: ["pipe", "pipe", "pipe"] });
    const done = collectChild(child, COMMAND_TIMEOUT_MS);
    child.stdin.on("error", () => {}); // the program may exit before reading stdin
    child.stdin.end(opts.input ?? "");
    resolve(
      done.then((r) => {
        if (r.end === "error") throw new NetCommandError(`could not run ${program}: ${r.error.message}`, [program, ...args], null, r.stderr);
        if (r.end === "timeout") {
          throw new NetCommandError(`${program} ${args.join(" ")} did not finish within ${COMMAND_TIMEOUT_MS / 1000}s`, [program, ...args], null, r.stderr);
        }
        return { code: r.code, stdout: r.stdout, stderr: r.stderr };
      }),
    );
  });
};

/** How a child run by collectChild ended: it closed (exit code, 1 when killed by a signal), timed out, or could not be run. */
export type ChildOutcome =
  | { end: "closed"; code: number; stdout: string; stderr: string }
  | { end: "timeout"; stderr: string }
  | { end: "error"; error: Error; stderr: string };

/**
 * Collects a spawned child's stdout and stderr until it closes, killing it (SIGKILL) after
 * `timeoutMs`. Never rejects: the outcome says how it ended. Shared with service-stop's systemctl.
 */
export function collectChild(child: ChildProcess & { stdout: Readable; stderr: Readable }, timeoutMs: number): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve({ end: "error", error, stderr });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve(timedOut ? { end: "timeout", stderr } : { end: "closed", code: code ?? 1, stdout, stderr });
    });
  });
}

/** Runs a command and throws NetCommandError (with what it said) unless it exits 0. */
export async function runChecked(run: CommandRunner, program: NetTool, args: readonly string[], opts: { input?: string } = {}): Promise<string> {
  const result = await run(program, args, opts);
  if (result.code !== 0) {
    const said = result.stderr.trim() || result.stdout.trim() || `exit code ${result.code}`;
    throw new NetCommandError(`${program} ${args.join(" ")} failed: ${said}`, [program, ...args], result.code, result.stderr);
  }
  return result.stdout;
}

/** Maps "permission denied" style failures to what to do. */
export function permissionHint(stderr: string): string | undefined {
  return /Operation not permitted|Permission denied/i.test(stderr)
    ? "firedrill-agent must run as root (or with CAP_NET_ADMIN) to change the network configuration"
    : undefined;
}
