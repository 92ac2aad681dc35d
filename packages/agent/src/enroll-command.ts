/**
 * `firedrill-agent enroll`: one enrollment attempt with a join token, for install scripts. It pins
 * the control plane's CA, enrolls, stores the identity in the state dir and prints the agent id;
 * an agent that is already enrolled (with the CA the token pins) just prints its id. The same
 * code as the running agent's enrollment (Enrollment), without the retries: every failure is an
 * error that says what, where and how to fix it, and its exit code says whose fault it is.
 */
import { hostname } from "node:os";
import { parseJoinToken } from "@firedrill/protocol";
import type { Logger } from "pino";
import { CommandError } from "./command-error.js";
import { AgentConfigError, checkServerList } from "./config.js";
import { Enrollment, EnrollmentError, readIdentity } from "./enroll.js";
import { ensureStateDir, lockStateDir } from "./identity.js";

/** Options of {@link enrollOnce}. */
export interface EnrollOnceOptions {
  /**
   * The control plane's gRPC address, host:port; or several replicas', comma-separated: tried in
   * turn until one can be reached.
   */
  server: string | undefined;
  /** The join token (`fdj_…`); not needed when already enrolled. */
  token: string | undefined;
  stateDir: string;
  log: Logger;
  /** How long the pinning handshake and the Enroll call may take each. @default 15000 */
  timeoutMs?: number;
  /** @default os.hostname() */
  hostname?: string;
}

/** What {@link enrollOnce} did. */
export interface EnrollOnceResult {
  agentId: string;
  /** False when the agent was already enrolled and nothing was done. */
  enrolled: boolean;
  /** The CA fingerprint the identity is pinned to (`sha256:…`). */
  caFingerprint: string;
  /** The address it enrolled with (when `enrolled`). */
  server?: string;
}

const NEW_TOKEN = "create a new one on the control plane with `firedrill join-token create` (needs an admin API token) and run this again with it";

/**
 * Enrolls once, or finds the agent already enrolled.
 * Thrown: AgentConfigError (exit 2) for a missing or malformed --server or token; CommandError
 * with exit code 2 when the control plane refused the join token or there is none, 1 when it
 * cannot be reached, is not the control plane the token pins, or enrolls no more agents;
 * StateDirLockedError when a running agent holds the state dir and must enroll again.
 */
export async function enrollOnce(options: EnrollOnceOptions): Promise<EnrollOnceResult> {
  const serverText = options.server?.trim();
  if (!serverText) {
    throw new AgentConfigError("--server is required: the control plane's gRPC address, host:port (e.g. cp.example.internal:7070; env FIREDRILL_SERVER_ADDR)");
  }
  const checked = checkServerList(serverText);
  if (checked.problem !== undefined) throw new AgentConfigError(`--server: ${checked.problem}`);
  const servers = checked.servers;
  const text = options.token?.trim() || undefined;
  const parts = text !== undefined ? parseJoinToken(text) : undefined;
  if (text !== undefined && !parts) {
    throw new AgentConfigError(`the join token is not one: it must read fdj_<id>_<secret>_<CA sha256> (from \`firedrill join-token create\`); check that it was copied whole`);
  }
  ensureStateDir(options.stateDir);
  const loaded = readIdentity(options.stateDir);
  const identity = loaded.identity;
  const usable = identity !== undefined && identity.notAfter > Date.now();
  if (usable && (!parts || identity.caFingerprint === `sha256:${parts.caSha256}`)) {
    return { agentId: identity.agentId, enrolled: false, caFingerprint: identity.caFingerprint };
  }
  if (!parts || text === undefined) {
    const why = identity ? `its certificate in ${options.stateDir} expired` : (loaded.problem ?? `there is no certificate in ${options.stateDir}`);
    throw new CommandError(`this agent is not enrolled (${why}) and no join token was given (--token-file, --token or FIREDRILL_TOKEN): ${NEW_TOKEN}`, 2);
  }
  const unlock = lockStateDir(options.stateDir);
  const enrollment = new Enrollment({
    server: servers[0]!,
    stateDir: options.stateDir,
    joinToken: { text, parts },
    identity: undefined,
    hostname: options.hostname ?? hostname(),
    log: options.log,
    probeTimeoutMs: options.timeoutMs ?? 15_000,
    callTimeoutMs: options.timeoutMs ?? 15_000,
    onRevoked: () => {},
  });
  try {
    // Replicas share the CA and the database: the first one that can be reached enrolls the agent;
    // what one of them says about the token, all would.
    const failures: EnrollmentError[] = [];
    for (const server of servers) {
      try {
        const enrolled = await enrollment.enrollOnce(server);
        return { agentId: enrolled.agentId, enrolled: true, caFingerprint: enrolled.caFingerprint, server };
      } catch (err) {
        if (!(err instanceof EnrollmentError)) throw err;
        if (err.kind === "join-token" || err.kind === "no-token" || err.kind === "limit") throw new CommandError(explain(err), exitCodeOf(err));
        failures.push(err);
      }
    }
    const [first] = failures;
    if (failures.length === 1 && first) throw new CommandError(explain(first), exitCodeOf(first));
    throw new CommandError(`none of the ${servers.length} addresses in --server enrolled this agent:\n${failures.map((f) => `  ${explain(f)}`).join("\n")}`, 1);
  } finally {
    enrollment.close();
    unlock();
  }
}

/** 2: the token (the operator must bring another one); 1: anything else (the network, the server, later). */
function exitCodeOf(err: EnrollmentError): 1 | 2 {
  return err.kind === "join-token" || err.kind === "no-token" ? 2 : 1;
}

function explain(err: EnrollmentError): string {
  switch (err.kind) {
    case "join-token":
      return `${err.message}. The token is wrong, expired, used up or revoked: ${NEW_TOKEN}`;
    case "no-token":
      return `${err.message}; ${NEW_TOKEN}`;
    case "pin-mismatch":
      return `${err.message}; check that --server is the gRPC address of the control plane that created the join token`;
    case "limit":
      return `${err.message}; try again later, or raise the control plane's --max-agents`;
    case "unreachable":
      return `${err.message}; nothing was enrolled`;
    default:
      return `${err.message}; nothing was enrolled: try again, and look at the control plane's log if it persists`;
  }
}
