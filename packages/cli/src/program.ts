/** The `firedrill` command line: builds the commander program and runs it. */
import { Command, CommanderError, Option } from "commander";
import { registerAgentsCommand } from "./commands/agents.js";
import { registerFaultListCommand } from "./commands/fault-list.js";
import { registerFaultShowCommand } from "./commands/fault-show.js";
import { registerFaultStartCommand } from "./commands/fault-start.js";
import { registerFaultStopCommand } from "./commands/fault-stop.js";
import { registerServerCommand } from "./commands/server.js";
import { registerValidateCommand } from "./commands/validate.js";
import { registerAbortCommand } from "./commands/abort.js";
import { registerHaltCommands } from "./commands/halt.js";
import { registerPlanCommand } from "./commands/plan.js";
import { registerReportCommand } from "./commands/report.js";
import { registerRunCommand } from "./commands/run.js";
import { registerRunsCommand } from "./commands/runs.js";
import { registerSpofCommand } from "./commands/spof.js";
import { registerScheduleCommands } from "./commands/schedule.js";
import { registerAuditCommands } from "./commands/audit.js";
import { registerLoginCommand } from "./commands/login.js";
import { registerTokenCommands } from "./commands/token.js";
import { registerJoinTokenCommands } from "./commands/join-token.js";
import { registerWhoamiCommand } from "./commands/whoami.js";
import { callerPath } from "./caller-path.js";
import { DEFAULT_SERVER, resolveSettings } from "./config.js";
import type { CliSettings } from "./config.js";
import type { CliIo, CommandContext } from "./context.js";
import { ApiRequestError, CliError, ServerUnreachableError, TlsVerificationError } from "./errors.js";
import type { Issue } from "./errors.js";
import { createApiClient } from "./http-client.js";
import type { ApiClient } from "./http-client.js";

/** The CLI version. */
export const CLI_VERSION = "0.1.0";

export { DEFAULT_SERVER };

/** The global options. */
interface GlobalOptions {
  server?: string;
  tokenFile?: string;
}

/** Builds the `firedrill` program writing to `io`. */
export function createProgram(io: CliIo, onExitCode: (code: number) => void = () => {}): Command {
  const program = new Command("firedrill");
  let client: ApiClient | undefined;
  let settings: CliSettings | undefined;
  const ctx: CommandContext = {
    io,
    settings() {
      const flags = program.opts<GlobalOptions>();
      settings ??= resolveSettings({ server: flags.server, tokenFile: flags.tokenFile });
      return settings;
    },
    client() {
      const s = ctx.settings();
      client ??= createApiClient({
        server: s.server,
        token: s.token,
        tokenFrom: s.tokenFrom,
        caCert: s.caCert,
        caFingerprint: s.caFingerprint,
        caSource: `the config file ${s.location.file}`,
        savedServer: s.configServer,
      });
      return client;
    },
    setExitCode: onExitCode,
  };
  program
    .description("chaos engineering for VM fleets: run and inspect faults through the firedrill control plane")
    .version(CLI_VERSION)
    .addOption(
      new Option(
        "--server <url>",
        `the control plane's HTTP address (default: FIREDRILL_SERVER, else the server you logged in to, else ${DEFAULT_SERVER})`,
      ),
    )
    .addOption(
      new Option("--token-file <file>", "read the API token from this file (default: FIREDRILL_TOKEN, else the token saved by firedrill login)").argParser(callerPath),
    )
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride();
  registerServerCommand(program, ctx);
  const agents = registerAgentsCommand(program, ctx);
  registerValidateCommand(program, ctx);
  const fault = program.command("fault").description("start, list, show and stop ad-hoc faults");
  registerFaultStartCommand(fault, ctx);
  registerFaultListCommand(fault, ctx);
  registerFaultShowCommand(fault, ctx);
  registerFaultStopCommand(fault, ctx);
  registerPlanCommand(program, ctx);
  registerRunCommand(program, ctx);
  registerRunsCommand(program, ctx);
  registerAbortCommand(program, ctx);
  registerHaltCommands(program, ctx);
  registerReportCommand(program, ctx);
  registerSpofCommand(program, ctx);
  registerScheduleCommands(program, ctx);
  registerLoginCommand(program, ctx);
  registerWhoamiCommand(program, ctx);
  const token = registerTokenCommands(program, ctx);
  const audit = registerAuditCommands(program, ctx);
  const joinToken = registerJoinTokenCommands(program, ctx);
  const groups = [fault, token, audit, agents, joinToken];
  for (const command of [program, ...groups, ...program.commands, ...groups.flatMap((g) => g.commands)]) command.exitOverride();
  return program;
}

/**
 * The message without the issue list the API appends to it (`invalid fault request: a: x; b: y`),
 * since the issues are printed one per line below it.
 */
function headline(message: string, issues: readonly Issue[]): string {
  if (issues.length === 0) return message;
  const listed = `: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`;
  return message.endsWith(listed) ? message.slice(0, -listed.length) : message;
}

/** Prints an error as `error: <message>` and its issues as `  <field>: <message>`. */
export function printError(io: CliIo, err: unknown): void {
  if (err instanceof ApiRequestError || err instanceof CliError) {
    io.err(`error: ${headline(err.message, err.issues)}\n`);
    for (const issue of err.issues) io.err(`  ${issue.field}: ${issue.message}\n`);
  } else if (err instanceof ServerUnreachableError || err instanceof TlsVerificationError) {
    io.err(`error: ${err.message}\n`);
  } else {
    io.err(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

/** Runs the CLI with `argv` (as process.argv: node, script, args...). Resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = 0;
  const program = createProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv]);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    printError(io, err);
    return 1;
  }
}
