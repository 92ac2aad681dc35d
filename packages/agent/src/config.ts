/**
 * firedrill-agent configuration: one schema, fed by flags and environment variables.
 */
import { readFileSync } from "node:fs";
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN } from "@firedrill/protocol";
import { z } from "zod";
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

const SERVER_ADDRESS = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

/** The agent's configuration. */
export const AgentConfigSchema = z
  .object({
    /** Control plane gRPC address, host:port (FIREDRILL_SERVER_ADDR). */
    server: z.string().regex(SERVER_ADDRESS, "must be host:port, e.g. 127.0.0.1:7070"),
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
  })
  .superRefine((config, ctx) => {
    if (config.insecure && SERVER_ADDRESS.test(config.server) && !isLoopbackHost(splitServer(config.server).host)) {
      ctx.addIssue({
        code: "custom",
        path: ["insecure"],
        message: `${config.server} is not a loopback address: plain gRPC is only allowed to a control plane on 127.0.0.1, ::1 or localhost; drop --insecure (TLS is pinned by the join token)`,
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
