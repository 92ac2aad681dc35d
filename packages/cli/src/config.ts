/**
 * The CLI's credentials: the config file written by `firedrill login`, and how flags, environment
 * and file combine into the server, token and pinned CA a command uses.
 */
import { X509Certificate, createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { CliError } from "./errors.js";

/** The default control plane address. */
export const DEFAULT_SERVER = "http://127.0.0.1:7080";

/** The config file, as `firedrill login` writes it. Every field is optional; unknown fields are ignored. */
export const cliConfigSchema = z.object({
  /** The control plane's HTTP address, e.g. `https://cp.example.internal:7080`. */
  server: z.string().optional(),
  /** The API token (`fdt_…`) used for `server`. */
  token: z.string().optional(),
  /** `sha256:<hex>` of the pinned CA certificate (`caCert`). */
  caFingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be sha256: and 64 lowercase hex digits").optional(),
  /** The CA the server's certificate must chain to (PEM); when set, the only CA trusted for `server`. */
  caCert: z.string().optional(),
});

/** The config file's content. */
export type CliConfig = z.infer<typeof cliConfigSchema>;

/** Where the config file is. */
export interface ConfigLocation {
  file: string;
  /**
   * True when the folder is firedrill's own (`…/firedrill`), whose mode is narrowed to 0700; a
   * folder named by FIREDRILL_CONFIG is created 0700 when missing but otherwise left as it is.
   */
  ownDir: boolean;
}

/** `$FIREDRILL_CONFIG`, else `$XDG_CONFIG_HOME/firedrill/config.json`, else `~/.config/firedrill/config.json`. */
export function configLocation(env: NodeJS.ProcessEnv = process.env): ConfigLocation {
  if (env.FIREDRILL_CONFIG) return { file: env.FIREDRILL_CONFIG, ownDir: false };
  const base = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return { file: join(base, "firedrill", "config.json"), ownDir: true };
}

/**
 * Reads the config file; `{}` when it does not exist.
 * Thrown when it is unreadable, not JSON, or not a config: CliError naming the file.
 */
export function readConfig(file: string): CliConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new CliError(`cannot read the config file ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CliError(`the config file ${file} is not valid JSON (${(err as Error).message}): fix it, or delete it and run firedrill login again`);
  }
  const parsed = cliConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new CliError(
      `the config file ${file} is not a firedrill config: fix it, or delete it and run firedrill login again`,
      parsed.error.issues.map((i) => ({ field: i.path.join(".") || "(file)", message: i.message })),
    );
  }
  const config = parsed.data;
  if (config.caCert !== undefined) {
    let actual: string;
    try {
      actual = `sha256:${createHash("sha256").update(new X509Certificate(config.caCert).raw).digest("hex")}`;
    } catch (err) {
      throw new CliError(`the config file ${file} holds a caCert that is not a PEM certificate (${(err as Error).message}): run firedrill login again`);
    }
    if (config.caFingerprint !== undefined && config.caFingerprint !== actual) {
      throw new CliError(
        `the config file ${file} pins the CA ${config.caFingerprint}, but its caCert has the fingerprint ${actual}: the file was edited; run firedrill login again with --ca-fingerprint`,
      );
    }
  }
  return config;
}

/**
 * Writes the config file atomically (a temp file created with mode 0600, then renamed), in a
 * folder of mode 0700 (created so when missing; narrowed to 0700 when it is firedrill's own).
 */
export function writeConfig(location: ConfigLocation, config: CliConfig): void {
  const dir = dirname(location.file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (location.ownDir && (statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  const temp = join(dir, `.config.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(temp, "wx", 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, `${JSON.stringify(config, null, 2)}\n`);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(temp, location.file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new CliError(`cannot write the config file ${location.file}: ${(err as Error).message}`);
  }
}

/**
 * A server address in the form the client uses: origin and path, no trailing slash; undefined when
 * it is not an http(s) URL.
 */
export function normalizeServer(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  return url.origin + url.pathname.replace(/\/+$/, "");
}

/** The global flags that bear on credentials. */
export interface CredentialFlags {
  /** `--server`, when given on the command line. */
  server?: string | undefined;
  /** `--token-file`, when given. */
  tokenFile?: string | undefined;
}

/** What a command talks to, and with what. */
export interface CliSettings {
  server: string;
  /** Where `server` came from. */
  serverFrom: "--server" | "FIREDRILL_SERVER" | "config" | "default";
  /** The API token; never printed. */
  token?: string;
  /** Where the token came from, for messages: `--token-file F`, `FIREDRILL_TOKEN` or `the config file F`. */
  tokenFrom?: string;
  /** Where the token came from. */
  tokenSource?: "--token-file" | "FIREDRILL_TOKEN" | "config";
  /** The pinned CA (PEM) for `server`, from the config file. */
  caCert?: string;
  caFingerprint?: string;
  location: ConfigLocation;
  config: CliConfig;
  /** Set when the config file holds credentials for another server than `server` (they are not used). */
  configServer?: string;
}

const TOKEN_TEXT = /^[\x21-\x7e]+$/;

/**
 * Reads a token file (trimmed).
 * Thrown when it is unreadable, empty, or holds more than one token: CliError naming the file (never its content).
 */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read the token file ${file}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  if (text === "") throw new CliError(`the token file ${file} is empty; it should hold one API token (fdt_…)`);
  checkToken(text, `the token file ${file}`);
  return text;
}

function checkToken(token: string, from: string): void {
  if (!TOKEN_TEXT.test(token)) {
    throw new CliError(`${from} does not hold a single API token (fdt_…): it has spaces, line breaks or control characters`);
  }
}

/**
 * Combines flags, environment and config file. Server: `--server`, else FIREDRILL_SERVER, else the
 * config file, else {@link DEFAULT_SERVER}. Token: `--token-file`, else FIREDRILL_TOKEN, else the
 * config file. The config file's token and pinned CA are used only for the server they were saved
 * for, so that a token is never sent to another server.
 * Thrown when the server is not an http(s) URL, a token file cannot be read, or the config file is broken: CliError.
 */
export function resolveSettings(flags: CredentialFlags, env: NodeJS.ProcessEnv = process.env): CliSettings {
  const location = configLocation(env);
  const config = readConfig(location.file);
  let server: string;
  let serverFrom: CliSettings["serverFrom"];
  if (flags.server) [server, serverFrom] = [flags.server, "--server"];
  else if (env.FIREDRILL_SERVER) [server, serverFrom] = [env.FIREDRILL_SERVER, "FIREDRILL_SERVER"];
  else if (config.server) [server, serverFrom] = [config.server, "config"];
  else [server, serverFrom] = [DEFAULT_SERVER, "default"];
  const normalized = normalizeServer(server);
  if (normalized === undefined) {
    const where = serverFrom === "config" ? `the server in ${location.file}` : serverFrom === "default" ? "the server" : serverFrom;
    throw new CliError(`${where} ${JSON.stringify(server)} is not an http(s) URL; use e.g. https://cp.example.internal:7080 (set --server or FIREDRILL_SERVER)`);
  }
  const settings: CliSettings = { server: normalized, serverFrom, location, config };
  const sameServer = config.server === undefined || normalizeServer(config.server) === normalized;
  if (!sameServer && config.server !== undefined) settings.configServer = config.server;
  if (flags.tokenFile) {
    settings.token = readTokenFile(flags.tokenFile);
    settings.tokenFrom = `--token-file ${flags.tokenFile}`;
    settings.tokenSource = "--token-file";
  } else if (env.FIREDRILL_TOKEN) {
    checkToken(env.FIREDRILL_TOKEN.trim(), "FIREDRILL_TOKEN");
    settings.token = env.FIREDRILL_TOKEN.trim();
    settings.tokenFrom = "FIREDRILL_TOKEN";
    settings.tokenSource = "FIREDRILL_TOKEN";
  } else if (config.token && sameServer) {
    checkToken(config.token, `the config file ${location.file}`);
    settings.token = config.token;
    settings.tokenFrom = `the config file ${location.file}`;
    settings.tokenSource = "config";
  }
  if (sameServer && config.caCert !== undefined && normalized.startsWith("https:")) {
    settings.caCert = config.caCert;
    if (config.caFingerprint !== undefined) settings.caFingerprint = config.caFingerprint;
  }
  return settings;
}
