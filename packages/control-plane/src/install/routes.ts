/**
 * `/install/…`: what a host needs to install the agent from this control plane, served to anyone
 * (permission `public`): the join token is the secret, not these. The script, the CA agents pin
 * and the agent tarballs of `--agent-releases`, nothing else from that directory.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ApiError } from "../errors.js";

const PUBLIC = { config: { permission: "public" as const } };

/** The name of an agent release artifact: the tarball or its SHA-256 file. */
export const AGENT_ARTIFACT_PATTERN = /^firedrill-agent-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)-linux-(x64|arm64)\.tar\.gz(\.sha256)?$/;

/** A version that may be written into the install script. */
const VERSION_PATTERN = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;

/** A Host header that may be written into the install script: a name or address, an optional port. */
const HOST_HEADER_PATTERN = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;

/** Options of {@link registerInstallRoutes}. */
export interface InstallRoutesOptions {
  /** The CA agents pin (the one every join token's fingerprint names), PEM: `/install/ca.pem`. */
  caPem: string;
  /** The gRPC port agents dial; the script gets `<the request's host>:<this port>`. */
  grpcPort: number;
  /** Where the agent tarballs and their .sha256 files are (`--agent-releases`). */
  releasesDir: string;
  /** The agent version the script installs. */
  version: string;
  /** The install script (`agent.sh`) with its `@@…@@` placeholders. */
  scriptFile: string;
  log: Logger;
}

/** The agent tarballs in `dir` as `arch (version)` words, e.g. `x64 (0.1.0), arm64 (0.1.0)`; "" when none. */
export function listAgentReleases(dir: string): string {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return "";
  }
  const isFile = (name: string): boolean => {
    try {
      return statSync(join(dir, name)).isFile();
    } catch {
      return false;
    }
  };
  return names
    .map((name) => AGENT_ARTIFACT_PATTERN.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && m[3] === undefined && isFile(m[0]))
    .map((m) => `${m[2]} (${m[1]})`)
    .sort()
    .join(", ");
}

/**
 * The install script for one request: the control plane's gRPC address as the host the request
 * named plus the gRPC port, its HTTP base URL and the version, written into the script.
 * Thrown: ApiError 400 when the Host header cannot be written into a script.
 */
export function renderAgentScript(template: string, request: Pick<FastifyRequest, "headers" | "protocol">, options: Pick<InstallRoutesOptions, "grpcPort" | "version">): string {
  const hostHeader = request.headers.host ?? "";
  const m = HOST_HEADER_PATTERN.exec(hostHeader);
  if (!m) {
    throw new ApiError(
      400,
      "invalid_host",
      "the Host header of this request cannot name the control plane in an install script; fetch the script by the control plane's DNS name or address (e.g. https://cp.example.internal:7080/install/agent.sh)",
    );
  }
  if (!VERSION_PATTERN.test(options.version)) throw new Error(`the agent version ${JSON.stringify(options.version)} is not a version`);
  const values: Record<string, string> = {
    "@@FIREDRILL_VERSION@@": options.version,
    "@@FIREDRILL_SERVER_ADDR@@": `${m[1]}:${options.grpcPort}`,
    "@@FIREDRILL_BASE_URL@@": `${request.protocol}://${hostHeader}`,
  };
  // Only the assignments at the top: `NAME='@@…@@'`.
  return template.replace(/'(@@FIREDRILL_[A-Z_]+@@)'/g, (whole, key: string) => (values[key] !== undefined ? `'${values[key]}'` : whole));
}

/** Registers `GET /install/agent.sh`, `/install/ca.pem` and `/install/<agent artifact>`, all public. */
export function registerInstallRoutes(app: FastifyInstance, options: InstallRoutesOptions): void {
  const log = options.log.child({ component: "install" });
  let template: string | undefined;
  try {
    template = readFileSync(options.scriptFile, "utf8");
  } catch (err) {
    log.warn({ file: options.scriptFile, err: (err as Error).message }, "the agent install script is missing: GET /install/agent.sh answers 503");
  }

  app.get("/install/agent.sh", PUBLIC, async (request, reply) => {
    if (template === undefined) {
      throw new ApiError(
        503,
        "install_script_missing",
        "this control plane has no agent install script (agent.sh beside its code); reinstall the server from its release tarball, or run it from a firedrill checkout",
      );
    }
    const script = renderAgentScript(template, request, options);
    return reply.type("text/x-shellscript; charset=utf-8").header("cache-control", "no-store").send(script);
  });

  app.get("/install/ca.pem", PUBLIC, async (_request, reply) =>
    reply.type("application/x-pem-file").header("cache-control", "no-store").send(options.caPem),
  );

  app.get<{ Params: { file: string } }>("/install/:file", PUBLIC, async (request, reply) => {
    const name = request.params.file;
    const m = AGENT_ARTIFACT_PATTERN.exec(name);
    if (!m) {
      throw new ApiError(
        400,
        "invalid_artifact_name",
        `${JSON.stringify(name.slice(0, 100))} is not an agent release: /install/ serves agent.sh, ca.pem and firedrill-agent-<version>-linux-<x64|arm64>.tar.gz (and .sha256)`,
      );
    }
    const notFound = (why: string): ApiError => {
      const have = listAgentReleases(options.releasesDir);
      log.warn({ file: name, releasesDir: options.releasesDir, why }, "agent release asked for is not there");
      return new ApiError(
        404,
        "agent_release_not_found",
        `this control plane has no ${name} (${have ? `it has agent releases for ${have}` : "it has no agent releases at all"}): ` +
          "build them with `pnpm release` in the firedrill checkout (it writes dist/release/), or start the server with --agent-releases DIR " +
          `naming a directory that holds firedrill-agent-${m[1]}-linux-${m[2]}.tar.gz and its .sha256`,
      );
    };
    let handle: FileHandle;
    try {
      handle = await open(join(options.releasesDir, name), "r");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") throw notFound(code);
      throw err;
    }
    const stat = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    if (!stat.isFile()) {
      await handle.close();
      throw notFound("not a regular file");
    }
    const stream = handle.createReadStream();
    return reply
      .type(m[3] ? "text/plain; charset=utf-8" : "application/gzip")
      .header("content-length", String(stat.size))
      .header("cache-control", "no-store")
      .send(stream);
  });
}
