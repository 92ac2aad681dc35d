/**
 * firedrill-agent configuration: one schema, fed by flags and environment variables.
 */
import { readFileSync } from "node:fs";
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN } from "@firedrill/protocol";
import { z } from "zod";
import { parseBlock } from "./faults/net-common.js";
import { parseProtectionRule } from "./faults/process-protection.js";
import type { ManagementTarget } from "./network-exclusions.js";
import { DEFAULT_STALL_AFTER_MS } from "./liveness.js";
import { DEFAULT_MAX_FAULTS } from "./runtime.js";
import { isLoopbackHost, splitServer } from "./tls.js";

/** Thrown when the agent's configuration is invalid; the message says what and how to fix it. */
export class AgentConfigError extends Error {
  override readonly name = "AgentConfigError";
}


/**
 * Parses `k=v,k2=v2` into labels.
 * Thrown when a pair is malformed: AgentConfigError naming the pair.
 */
export function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!text) return labels;
  for (const pair of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new AgentConfigError(`--labels: "${pair}" is not key=value (e.g. --labels app=web,firedrill:opt-in=true)`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!LABEL_KEY_PATTERN.test(key)) {
      throw new AgentConfigError(`--labels: key "${key}" is invalid; use letters, digits and . _ / : - (starting and ending with a letter or digit)`);
    }
    if (!LABEL_VALUE_PATTERN.test(value)) {
      throw new AgentConfigError(`--labels: value "${value}" of ${key} is invalid; use letters, digits and . _ : / @ + -`);
    }
    labels[key] = value;
  }
  return labels;
}

/** Most entries --management takes (each one is a rule in every network fault). */
export const MAX_MANAGEMENT_ENTRIES = 64;

/**
 * Parses `--management 10.0.0.0/8,192.0.2.7,tcp:2222,udp:161,8443`: CIDRs or addresses (every
 * packet to or from them), and ports on this host (`tcp:N`, `udp:N`, or `N` for both: packets to
 * it coming in, from it going out). Network faults never touch them.
 * Thrown when an entry is malformed: AgentConfigError naming it and how to write it.
 */
export function parseManagement(text: string | undefined): ManagementTarget[] {
  const targets: ManagementTarget[] = [];
  if (!text) return targets;
  const example = "e.g. --management 10.0.0.0/8,192.0.2.7,tcp:2222";
  for (const entry of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const port = /^(?:(tcp|udp):)?(\d{1,5})$/i.exec(entry);
    if (port) {
      const n = Number(port[2]);
      if (n < 1 || n > 65535) throw new AgentConfigError(`--management: ${entry}: ${n} is not a port; use 1-65535 (${example})`);
      const protocol = port[1]?.toLowerCase() as "tcp" | "udp" | undefined;
      targets.push({ localPort: n, ...(protocol ? { protocol } : {}) });
      continue;
    }
    let block: ReturnType<typeof parseBlock>;
    try {
      block = parseBlock(entry);
    } catch (err) {
      const why = (err as Error).message.replace(/^params\.destinations: /, "");
      throw new AgentConfigError(`--management: ${why}; give CIDRs, addresses or ports on this host (${example})`);
    }
    if (block.prefix === 0) {
      throw new AgentConfigError(
        `--management: ${entry} is every address: no network fault could act on this host; list the networks you manage the host from (${example}), or keep network faults off this host with its labels`,
      );
    }
    targets.push({ cidr: block.text });
  }
  if (targets.length > MAX_MANAGEMENT_ENTRIES) {
    throw new AgentConfigError(`--management: ${targets.length} entries; at most ${MAX_MANAGEMENT_ENTRIES} (use wider CIDRs)`);
  }
  return targets;
}

const ManagementTargetSchema = z.union([
  z.object({ cidr: z.string().min(1) }),
  z.object({ localPort: z.number().int().min(1).max(65535), protocol: z.enum(["tcp", "udp"]).optional() }),
]);

/** Most rules --protect-process takes. */
export const MAX_PROTECT_RULES = 64;

/**
 * Parses --protect-process values (each may hold several rules, comma-separated): process names
 * (`postgres`, `nginx*`), command-line patterns (`/java .*-Dapp=billing/`, which may hold commas)
 * and systemd units (`unit:postgresql.service`). Process faults never signal what they match.
 * Thrown when a rule is malformed: AgentConfigError naming it and how to write it.
 */
export function parseProtectedProcesses(values: readonly string[] | string | undefined): string[] {
  const rules: string[] = [];
  for (const value of typeof values === "string" ? [values] : (values ?? [])) {
    let rest = value.trim();
    while (rest !== "") {
      let rule: string;
      if (rest.startsWith("/")) {
        // A pattern runs to the "/" that ends the value or comes before a comma.
        const end = rest.indexOf("/,", 1);
        rule = end === -1 ? rest : rest.slice(0, end + 1);
        rest = end === -1 ? "" : rest.slice(end + 2);
      } else {
        const comma = rest.indexOf(",");
        rule = comma === -1 ? rest : rest.slice(0, comma);
        rest = comma === -1 ? "" : rest.slice(comma + 1);
      }
      rest = rest.trim();
      rule = rule.trim();
      if (rule === "") continue;
      try {
        rules.push(parseProtectionRule(rule).text);
      } catch (err) {
        throw new AgentConfigError(`--protect-process: ${(err as Error).message}`);
      }
    }
  }
  if (rules.length > MAX_PROTECT_RULES) {
    throw new AgentConfigError(`--protect-process: ${rules.length} rules; at most ${MAX_PROTECT_RULES} (use a prefix such as nginx*, or one pattern)`);
  }
  return rules;
}

const SERVER_ADDRESS = /^[^\s:,]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

/** Most control plane addresses --server takes (replicas, tried in turn). */
export const MAX_SERVER_ADDRESSES = 16;

const SERVER_EXAMPLE = "e.g. --server cp.example.internal:7070, or several replicas: --server cp-a:7070,cp-b:7070";

/**
 * Parses --server: one control plane gRPC address, or several comma-separated (replicas of one
 * control plane, tried in turn: see docs/agent.md). Returns the addresses in order, or the problem
 * naming the bad entry.
 */
export function checkServerList(text: string): { servers: string[]; problem?: undefined } | { servers?: undefined; problem: string } {
  const entries = text.split(",").map((e) => e.trim()).filter((e) => e !== "");
  if (entries.length === 0) return { problem: `must be host:port, the control plane's gRPC address (${SERVER_EXAMPLE})` };
  if (entries.length > MAX_SERVER_ADDRESSES) {
    return { problem: `${entries.length} addresses; at most ${MAX_SERVER_ADDRESSES} (put the replicas behind a load balancer or a DNS name with several addresses)` };
  }
  const seen = new Set<string>();
  for (const entry of entries) {
    const where = entries.length > 1 ? `entry "${entry}"` : `"${entry}"`;
    if (!SERVER_ADDRESS.test(entry)) return { problem: `must be host:port: ${where} is not (${SERVER_EXAMPLE}; IPv6 as [2001:db8::1]:7070)` };
    const port = Number(/:(\d+)$/.exec(entry)![1]);
    if (port < 1 || port > 65535) return { problem: `${where}: ${port} is not a port; use 1-65535 (${SERVER_EXAMPLE})` };
    const key = entry.toLowerCase();
    if (seen.has(key)) return { problem: `${where} is listed twice; give each replica once` };
    seen.add(key);
  }
  return { servers: entries };
}

/**
 * Parses --server (see {@link checkServerList}).
 * Thrown when it is empty or an entry is malformed: AgentConfigError naming the entry.
 */
export function parseServerList(text: string | undefined): string[] {
  const checked = checkServerList(text ?? "");
  if (checked.problem !== undefined) throw new AgentConfigError(`--server: ${checked.problem}`);
  return checked.servers;
}

/** The agent's configuration. */
export const AgentConfigSchema = z
  .object({
    /**
     * Control plane gRPC addresses, host:port, comma-separated (FIREDRILL_SERVER_ADDR): one, or up
     * to 16 replicas of one control plane, tried in turn.
     */
    server: z.string().transform((text, ctx) => {
      const checked = checkServerList(text);
      if (checked.problem === undefined) return checked.servers;
      ctx.addIssue({ code: "custom", message: checked.problem });
      return z.NEVER;
    }),
    /**
     * Join token (--token, FIREDRILL_TOKEN, or read from --token-file): `firedrill join-token create`.
     * Needed only until the agent is enrolled (and always with --insecure); its last part pins the
     * control plane's CA.
     */
    token: z.string().optional(),
    /** Where the agent keeps its id, journal and pending reports. */
    stateDir: z.string().min(1),
    /** Labels for target selection, e.g. app=web,firedrill:opt-in=true. */
    labels: z.record(z.string(), z.string()),
    /** Log level. */
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]),
    /** IMDS base URL, or "off". */
    imds: z.string().regex(/^(off|https?:\/\/\S+)$/, 'must be "off" or an http(s) URL'),
    /** Plain gRPC with the join token on every connect: only to a loopback control plane (--insecure). */
    insecure: z.boolean(),
    /** Longest lease TTL in ms accepted from the control plane; longer ones are clamped (--max-lease-ttl, local only). */
    maxLeaseTtlMs: z.number().int().min(1000, "must be at least 1s").max(3_600_000, "must be at most 1h"),
    /** Longest reconnect delay in ms. */
    reconnectMaxMs: z.number().int().min(100).max(300_000),
    /** Progress report interval in ms. */
    progressIntervalMs: z.number().int().min(200).max(60_000),
    /**
     * How long without a heartbeat of the agent's event loop makes it stalled, in ms: the guard then
     * reverts faults past their deadline or lease (--stall-after, local only).
     */
    stallAfterMs: z.number().int().min(500, "must be at least 500ms").max(60_000, "must be at most 1m").default(DEFAULT_STALL_AFTER_MS),
    /** Most faults this host holds at once; one more is refused (--max-faults, local only). */
    maxFaults: z.number().int().min(1, "must be at least 1").max(64, "must be at most 64").default(DEFAULT_MAX_FAULTS),
    /**
     * Management networks and ports (--management, FIREDRILL_MANAGEMENT): no network fault touches
     * them, like the control plane's link. Local only: the control plane cannot shrink it.
     */
    management: z.array(ManagementTargetSchema).max(MAX_MANAGEMENT_ENTRIES).default([]),
    /**
     * Processes that process faults never signal, besides the built-in protections (--protect-process,
     * FIREDRILL_PROTECT_PROCESS): names, /patterns/, unit:NAME. Local only: the control plane cannot shrink it.
     */
    protectedProcesses: z.array(z.string().min(1)).max(MAX_PROTECT_RULES).default([]),
  })
  .superRefine((config, ctx) => {
    if (!config.insecure) return;
    for (const server of config.server) {
      if (isLoopbackHost(splitServer(server).host)) continue;
      ctx.addIssue({
        code: "custom",
        path: ["insecure"],
        message: `${server} is not a loopback address: plain gRPC is only allowed to a control plane on 127.0.0.1, ::1 or localhost; drop --insecure (TLS is pinned by the join token)`,
      });
    }
  });

/** Validated agent configuration. */
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

/**
 * Validates raw configuration. Thrown when invalid: AgentConfigError listing each field.
 */
export function parseAgentConfig(raw: Record<string, unknown>): AgentConfig {
  const result = AgentConfigSchema.safeParse(raw);
  if (!result.success) {
    // Fields in ms are duration flags without the unit: maxLeaseTtlMs is --max-lease-ttl.
    const flag = (path: PropertyKey[]) =>
      `--${String(path[0] ?? "")
        .replace(/Ms$/, "")
        .replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new AgentConfigError(result.error.issues.map((i) => `${flag(i.path)}: ${i.message}`).join("\n"));
  }
  return result.data;
}

/**
 * Reads a token file (trimmed). Returns undefined when the file does not exist: the join token is
 * needed only until the agent is enrolled, and may be removed after.
 * Thrown when it exists but cannot be read: AgentConfigError.
 */
export function readTokenFile(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new AgentConfigError(`--token-file: cannot read ${path}: ${(err as Error).message}`);
  }
}
