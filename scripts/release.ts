/**
 * `pnpm release [--arch x64|arm64] [--out DIR] [--agent-only]`: builds the self-contained release
 * tarballs of one version (packages/agent/package.json) into DIR (default dist/release):
 *
 *   firedrill-agent-<v>-linux-<arch>.tar.gz   (+ .sha256)  the agent and its guard, bundled, with a pinned Node runtime
 *   firedrill-server-<v>-linux-<arch>.tar.gz  (+ .sha256)  the control plane and CLI, with the native SQLite binding,
 *                                                          the PostgreSQL client (pg) and the agent tarballs of the
 *                                                          same version to serve
 *
 * Nothing is installed on a host but these files: the bundles are esbuild builds of the TypeScript
 * sources, the Node runtime is the official binary of the npm package node-linux-<arch> (its
 * tarball's integrity is pinned here and checked), better-sqlite3 is copied with its native binding,
 * and pg (pure JavaScript) as a package, for the PostgreSQL store's worker thread.
 * The tarballs are reproducible: sorted entries, one mtime (SOURCE_DATE_EPOCH, else the last
 * commit's time), owner 0:0, fixed modes, gzip without name or time. See docs/release.md.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, closeSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir, tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as esbuild from "esbuild";

/** The checkout. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The Node.js release shipped in the tarballs: the version this repository runs and tests on. */
export const NODE_VERSION = "20.20.2";

/**
 * The npm registry's integrity of node-linux-<arch>@NODE_VERSION (`npm view … dist.integrity`),
 * pinned: a runtime whose tarball does not match is refused.
 */
const NODE_INTEGRITY: Record<ReleaseArch, string> = {
  x64: "sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==",
  arm64: "sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==",
};

/** The architectures a release is built for (Node's `process.arch` names). */
export type ReleaseArch = "x64" | "arm64";
const ARCHES: readonly ReleaseArch[] = ["x64", "arm64"];

/**
 * Node options of the installed agent (bin/firedrill-agent). None: `pnpm bench footprint` found no
 * V8 option that lowers the idle agent's RSS without slowing what it runs (--max-semi-space-size=1,
 * --max-old-space-size, --optimize-for-size, --max-lazy and --v8-pool-size=1 change it by ±1 MiB;
 * --lite-mode takes ~4 MiB off but runs process patterns (RE2JS) without an optimizing compiler).
 * Its guard adds its own (GUARD_NODE_OPTIONS in packages/agent/src/guard.ts).
 */
export const AGENT_NODE_OPTIONS: readonly string[] = [];

/** Where the Node runtimes are cached between builds (outside the checkout). */
function cacheDir(): string {
  return process.env.FIREDRILL_RELEASE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "firedrill", "release");
}

/** Thrown when a release cannot be built; the message says what and how to fix it. */
export class ReleaseError extends Error {
  override readonly name = "ReleaseError";
}

/** Options of {@link buildRelease}. */
export interface ReleaseOptions {
  /** @default the host's architecture */
  arch?: ReleaseArch;
  /** Where the tarballs go. @default <repo>/dist/release */
  outDir?: string;
  /**
   * The version written into the bundles (AGENT_VERSION, CONTROL_PLANE_VERSION) and the file names,
   * e.g. a pre-release to try an upgrade. @default packages/agent/package.json's
   */
  version?: string;
  /** Only the agent tarball (e.g. arm64 from an x64 host: the server's native binding is the host's). @default false */
  agentOnly?: boolean;
  /** The one mtime of every entry, in seconds. @default SOURCE_DATE_EPOCH, else the last commit's time */
  sourceDateEpoch?: number;
  /** Progress lines. @default none */
  log?: (line: string) => void;
}

/** One file written. */
export interface ReleaseArtifact {
  file: string;
  bytes: number;
  sha256: string;
}

/** What {@link buildRelease} wrote. */
export interface ReleaseResult {
  version: string;
  arch: ReleaseArch;
  agent: ReleaseArtifact;
  server?: ReleaseArtifact;
}

/** The version of this release: packages/agent/package.json, which the agent's AGENT_VERSION must match. */
export function releaseVersion(): string {
  const version = (JSON.parse(readFileSync(join(ROOT, "packages/agent/package.json"), "utf8")) as { version: string }).version;
  const source = readFileSync(join(ROOT, "packages/agent/src/version.ts"), "utf8");
  if (!source.includes(`"${version}"`)) {
    throw new ReleaseError(`packages/agent/package.json says version ${version} but packages/agent/src/version.ts (AGENT_VERSION) does not; make them the same`);
  }
  return version;
}

/** The agent tarball's base name. */
export function agentTarballName(version: string, arch: ReleaseArch): string {
  return `firedrill-agent-${version}-linux-${arch}.tar.gz`;
}

/** The server tarball's base name. */
export function serverTarballName(version: string, arch: ReleaseArch): string {
  return `firedrill-server-${version}-linux-${arch}.tar.gz`;
}

function sha256File(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

function sourceDateEpoch(): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined && env !== "") {
    if (!/^\d+$/.test(env)) throw new ReleaseError(`SOURCE_DATE_EPOCH="${env}" is not a number of seconds since 1970`);
    return Number(env);
  }
  try {
    return Number(execFileSync("git", ["-C", ROOT, "log", "-1", "--format=%ct"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
  } catch {
    throw new ReleaseError(`${ROOT} is not a git checkout with a commit: set SOURCE_DATE_EPOCH (seconds since 1970) to the time every file in the tarballs gets`);
  }
}

/** The sha512 integrity string (npm's `dist.integrity`) of a file. */
function integrityOf(file: string): string {
  return `sha512-${createHash("sha512").update(readFileSync(file)).digest("base64")}`;
}

/**
 * The Node runtime for `arch`: node-linux-<arch>@NODE_VERSION from the npm registry (`npm pack`),
 * cached outside the checkout, its tarball checked against the pinned integrity (and the
 * registry's). Returns the directory holding bin/node and LICENSE.
 */
function nodeRuntime(arch: ReleaseArch, log: (line: string) => void): string {
  const pkg = `node-linux-${arch}`;
  const dir = join(cacheDir(), `${pkg}-${NODE_VERSION}`);
  const tgz = `${dir}.tgz`;
  const pinned = NODE_INTEGRITY[arch];
  if (!existsSync(tgz) || integrityOf(tgz) !== pinned) {
    mkdirSync(cacheDir(), { recursive: true });
    log(`fetching ${pkg}@${NODE_VERSION} from the npm registry into ${cacheDir()}`);
    const npm = (args: string[]) => execFileSync("npm", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd: cacheDir() });
    let said: string;
    try {
      said = npm(["view", `${pkg}@${NODE_VERSION}`, "dist.integrity"]).trim();
    } catch (err) {
      throw new ReleaseError(`cannot ask the npm registry about ${pkg}@${NODE_VERSION} (${(err as Error).message.split("\n")[0]}); check the network and npm's registry setting, or put the package tarball at ${tgz}`);
    }
    if (said !== pinned) {
      throw new ReleaseError(`the npm registry gives ${pkg}@${NODE_VERSION} the integrity ${said}, but scripts/release.ts pins ${pinned}: refusing this Node runtime (check which registry npm uses)`);
    }
    const staging = mkdtempSync(join(cacheDir(), ".pack-"));
    try {
      const packed = JSON.parse(npm(["pack", `${pkg}@${NODE_VERSION}`, "--pack-destination", staging, "--json"])) as { filename: string }[];
      const file = join(staging, basename(packed[0]!.filename));
      const got = integrityOf(file);
      if (got !== pinned) throw new ReleaseError(`${pkg}@${NODE_VERSION} as downloaded has the integrity ${got}, not the pinned ${pinned}: refusing it`);
      renameSync(file, tgz);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  }
  if (!existsSync(join(dir, "bin", "node"))) {
    const unpack = mkdtempSync(join(cacheDir(), ".unpack-"));
    try {
      execFileSync("tar", ["-xzf", tgz, "-C", unpack, "package/bin/node", "package/LICENSE"]);
      rmSync(dir, { recursive: true, force: true });
      renameSync(join(unpack, "package"), dir);
    } finally {
      rmSync(unpack, { recursive: true, force: true });
    }
  }
  if (arch === process.arch) {
    const version = execFileSync(join(dir, "bin", "node"), ["--version"], { encoding: "utf8" }).trim();
    if (version !== `v${NODE_VERSION}`) throw new ReleaseError(`${join(dir, "bin", "node")} says ${version}, not v${NODE_VERSION}: remove ${dir} and build again`);
  }
  return dir;
}

/** The ELF machine of a native file: "x64", "arm64" or another e_machine number. */
function elfArch(file: string): string {
  const head = readFileSync(file).subarray(0, 20);
  if (head.readUInt32BE(0) !== 0x7f454c46) return "not ELF";
  const machine = head.readUInt16LE(18);
  return machine === 62 ? "x64" : machine === 183 ? "arm64" : `e_machine ${machine}`;
}

/** createRequire in every bundle: CommonJS dependencies call require() for Node's built-ins. */
export const REQUIRE_BANNER = `import { createRequire as __firedrillCreateRequire } from "node:module";\nconst require = __firedrillCreateRequire(import.meta.url);`;

/**
 * pino runs transports (the agent's pretty output on a terminal) in worker threads loading files
 * by path: point it at the worker entries bundled beside agent.mjs.
 */
const PINO_WORKERS_BANNER = `${REQUIRE_BANNER}
globalThis.__bundlerPathsOverrides = { ...globalThis.__bundlerPathsOverrides, ${["thread-stream-worker", "pino-worker", "pino-pretty"]
  .map((name) => `${JSON.stringify(name)}: new URL(${JSON.stringify(`./${name}.mjs`)}, import.meta.url).pathname`)
  .join(", ")} };`;

/** The versions the sources declare (`export const X_VERSION = "…"`), as another version says them. */
function versionPlugin(version: string): esbuild.Plugin {
  return {
    name: "firedrill-version",
    setup(build) {
      build.onLoad({ filter: /[\\/]packages[\\/](agent|control-plane)[\\/]src[\\/]version\.ts$/ }, (args) => {
        const source = readFileSync(args.path, "utf8");
        const replaced = source.replace(/(export const [A-Z_]+_VERSION = )"[^"]*"/g, (_, head: string) => `${head}${JSON.stringify(version)}`);
        if (replaced === source) throw new ReleaseError(`${args.path} declares no *_VERSION constant to set to ${version}`);
        return { contents: replaced, loader: "ts" };
      });
    },
  };
}

/**
 * Bundles entry points (name → source file) into `outDir` as `<name>.mjs`: ESM for Node 20, minified
 * (names kept, for stack traces and `err.name`), ASCII only. The size of the source is memory in
 * every process that loads it, and one non-ASCII character makes V8 keep the whole file as UTF-16.
 */
export async function bundle(
  entryPoints: Record<string, string>,
  outDir: string,
  options: { banner: string; external?: string[]; nodePaths?: string[]; version?: string },
): Promise<void> {
  const version = options.version;
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints,
    outdir: outDir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // The sources themselves, as tests and `pnpm firedrill` run them (no tsc build needed).
    conditions: ["@firedrill/source"],
    external: options.external ?? [],
    nodePaths: options.nodePaths ?? [],
    banner: { js: options.banner },
    plugins: version === undefined ? [] : [versionPlugin(version)],
    minify: true,
    keepNames: true,
    charset: "ascii",
    legalComments: "eof",
    metafile: true,
    logLevel: "silent",
  });
  for (const w of result.warnings) process.stderr.write(`esbuild: ${(await esbuild.formatMessages([w], { kind: "warning" })).join("")}`);
  // esbuild leaves non-ASCII characters in regular expression literals and comments; there, \uXXXX means the same.
  for (const file of Object.keys(result.metafile.outputs)) {
    const path = resolve(ROOT, file);
    const text = readFileSync(path, "utf8");
    if (/[^\x00-\x7f]/.test(text)) writeFileSync(path, text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
  }
}

/**
 * The POSIX sh wrapper of bin/<name>: the bundle on the Node runtime beside it, symlinks to itself
 * resolved. Only shell built-ins (and readlink for a symlink): it runs with any PATH.
 */
function wrapper(name: string, bundleFile: string, nodeOptions: readonly string[]): string {
  return `#!/bin/sh
# ${name}: runs lib/${bundleFile} on the Node.js runtime shipped beside it (node/bin/node).
# Works through symlinks to this file (e.g. /usr/local/bin/${name}).
self=$0
case $self in */*) ;; *) self=./$self ;; esac
while [ -L "$self" ]; do
  target=$(readlink "$self") || exit 1
  case $target in
    /*) self=$target ;;
    *) self=\${self%/*}/$target ;;
  esac
done
top=$(cd "\${self%/*}/.." && pwd -P) || exit 1
exec "$top/node/bin/node" ${nodeOptions.map((o) => `${o} `).join("")}"$top/lib/${bundleFile}" "$@"
`;
}

/** Gives every entry under `dir` a fixed mode: 0755 for directories and `executables`, 0644 otherwise. */
function fixModes(dir: string, executables: Set<string>): void {
  chmodSync(dir, 0o755);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isSymbolicLink()) throw new ReleaseError(`${path} is a symbolic link; a release holds none`);
    if (st.isDirectory()) fixModes(path, executables);
    else chmodSync(path, executables.has(path) ? 0o755 : 0o644);
  }
}

/** Writes `<stageParent>/<top>` as a reproducible tar.gz at `outFile` (atomically) and its .sha256. */
function writeTarball(stageParent: string, top: string, outFile: string, epoch: number, executables: Set<string>): ReleaseArtifact {
  fixModes(join(stageParent, top), executables);
  const tar = join(stageParent, `${top}.tar`);
  execFileSync("tar", ["--sort=name", "--format=gnu", "--owner=0", "--group=0", "--numeric-owner", `--mtime=@${epoch}`, "-C", stageParent, "-cf", tar, top]);
  const partial = `${outFile}.partial-${process.pid}`;
  const fd = openSync(partial, "w", 0o644);
  try {
    execFileSync("gzip", ["-n", "-9", "-c", tar], { stdio: ["ignore", fd, "pipe"] });
  } finally {
    closeSync(fd);
  }
  renameSync(partial, outFile);
  rmSync(tar);
  const sha256 = sha256File(outFile);
  writeFileSync(`${outFile}.sha256`, `${sha256}  ${basename(outFile)}\n`);
  return { file: outFile, bytes: statSync(outFile).size, sha256 };
}

/**
 * The directory a package resolves to from `fromDir` (its package.json's folder, links followed):
 * the first `node_modules/<name>` on Node's lookup path, so also for packages whose `exports` hide
 * their package.json (pg-connection-string).
 */
function packageDir(name: string, fromDir: string): string {
  for (const dir of createRequire(join(fromDir, "package.json")).resolve.paths(name) ?? []) {
    if (existsSync(join(dir, name, "package.json"))) return realpathSync(join(dir, name));
  }
  throw new ReleaseError(`the package ${name} cannot be found from ${relative(ROOT, fromDir) || "."}: run \`pnpm install\``);
}

/** A package's package.json. */
function packageJson(dir: string): { version: string; dependencies?: Record<string, string> } {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string; dependencies?: Record<string, string> };
}

/**
 * Copies the package `name` (as `fromDir` resolves it) and, recursively, its `dependencies` into
 * `nodeModules` (a release's lib/node_modules), laid out as npm would: flat, a second version of a
 * name in its dependent's own node_modules. Neither optional nor peer dependencies are copied (pg's
 * pg-cloudflare and pg-native), nor a package's tests or node_modules.
 */
function copyPackage(name: string, fromDir: string, nodeModules: string, dependentCopy?: string): void {
  const dir = packageDir(name, fromDir);
  const version = packageJson(dir).version;
  let to = join(nodeModules, name);
  if (existsSync(to) && packageJson(to).version !== version) {
    if (dependentCopy === undefined) throw new ReleaseError(`two versions of ${name} would be shipped at the top of ${nodeModules}`);
    to = join(dependentCopy, "node_modules", name);
  }
  if (existsSync(to)) return;
  const skipped = (p: string) => relative(dir, p).split("/").some((part) => part === "node_modules" || part === "test" || part === ".github");
  cpSync(dir, to, { recursive: true, dereference: true, filter: (p) => !skipped(p) });
  for (const dep of Object.keys(packageJson(dir).dependencies ?? {}).sort()) copyPackage(dep, dir, nodeModules, to);
}

/** A file of a package, resolved from `fromDir`. */
function packageFile(name: string, file: string, fromDir: string): string {
  return join(packageDir(name, fromDir), file);
}

/** Copies a file of the checkout (`from`) into the tarball; one that is missing is left out, with a warning. */
function copyOptional(from: string, to: string, log: (line: string) => void, executables: Set<string>, executable = false): void {
  const src = join(ROOT, from);
  if (!existsSync(src)) {
    log(`warning: ${from} is missing; the tarball is built without ${relative(dirname(dirname(to)), to)}`);
    return;
  }
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(src, to);
  if (executable) executables.add(to);
}

/**
 * The web console's built files (packages/console/dist, committed), served by the bundled server
 * from `lib/console` (its default --console-dir). Missing ones leave the console out, with a warning.
 */
function copyConsole(to: string, log: (line: string) => void): void {
  const dist = join(ROOT, "packages/console/dist");
  if (!existsSync(join(dist, "index.html"))) {
    log("warning: packages/console/dist/index.html is missing (run pnpm console:build); the server tarball is built without the web console");
    return;
  }
  cpSync(dist, to, { recursive: true, dereference: true });
}

/** better-sqlite3's dependencies its lib/ requires at run time (prebuild-install only runs at install). */
const SQLITE_RUNTIME_DEPS = ["bindings"];

/** better-sqlite3's directory, once its native binding is checked to be there and built for `arch`. */
function sqlitePackage(arch: ReleaseArch): string {
  const src = packageDir("better-sqlite3", join(ROOT, "packages/control-plane"));
  const binding = join(src, "build/Release/better_sqlite3.node");
  if (!existsSync(binding)) {
    throw new ReleaseError(`${binding} is missing: better-sqlite3's native binding was not built; run \`pnpm install\` (better-sqlite3 is in onlyBuiltDependencies) or \`pnpm rebuild better-sqlite3\``);
  }
  const bindingArch = elfArch(binding);
  if (bindingArch !== arch) {
    throw new ReleaseError(
      `the server tarball for linux-${arch} needs better-sqlite3's native binding built for ${arch}, but ${relative(ROOT, binding)} is ${bindingArch}: ` +
        `build the server on a linux-${arch} host, or pass --agent-only for the agent tarball alone`,
    );
  }
  return src;
}

/** Copies better-sqlite3 (package.json, lib/, the native binding) and its runtime dependencies into `<lib>/node_modules`. */
function copySqlite(lib: string, arch: ReleaseArch): void {
  const src = sqlitePackage(arch);
  const binding = join(src, "build/Release/better_sqlite3.node");
  const dest = join(lib, "node_modules", "better-sqlite3");
  mkdirSync(join(dest, "build", "Release"), { recursive: true });
  for (const f of ["package.json", "LICENSE"]) if (existsSync(join(src, f))) copyFileSync(join(src, f), join(dest, f));
  cpSync(join(src, "lib"), join(dest, "lib"), { recursive: true });
  copyFileSync(binding, join(dest, "build", "Release", "better_sqlite3.node"));
  const deps = Object.keys(packageJson(src).dependencies ?? {});
  for (const name of deps.filter((d) => SQLITE_RUNTIME_DEPS.includes(d))) copyPackage(name, src, join(lib, "node_modules"), dest);
}

/**
 * Copies the PostgreSQL client `pg` and its runtime dependencies (pg-pool, pg-protocol, pg-types,
 * pgpass, pg-connection-string and theirs; not the optional pg-native or pg-cloudflare) into
 * `<lib>/node_modules`. The bundle keeps `pg` external and loads this copy, and so does the store's
 * worker thread (store/postgres/worker-source.ts), which is eval'd source and requires pg by the
 * path `createRequire(import.meta.url).resolve("pg")` gives: lib/node_modules/pg beside the bundle.
 */
function copyPostgresClient(lib: string): void {
  copyPackage("pg", join(ROOT, "packages/control-plane"), join(lib, "node_modules"));
}

/**
 * Builds the release tarballs of this checkout for one architecture. Thrown: ReleaseError saying
 * what is missing or wrong and how to fix it.
 */
export async function buildRelease(options: ReleaseOptions = {}): Promise<ReleaseResult> {
  const log = options.log ?? (() => {});
  const arch = options.arch ?? (process.arch as ReleaseArch);
  if (!ARCHES.includes(arch)) throw new ReleaseError(`--arch ${arch}: releases are built for ${ARCHES.join(" and ")}`);
  const version = options.version ?? releaseVersion();
  if (!/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(version)) throw new ReleaseError(`--version ${version}: give a version like 1.2.3 or 1.2.3-rc.1`);
  const bundleVersion = options.version === undefined ? {} : { version };
  const epoch = options.sourceDateEpoch ?? sourceDateEpoch();
  const outDir = resolve(options.outDir ?? join(ROOT, "dist", "release"));
  // Refused before anything is built: a server whose SQLite binding cannot load on its hosts.
  if (!options.agentOnly) sqlitePackage(arch);
  mkdirSync(outDir, { recursive: true });
  const node = nodeRuntime(arch, log);
  const stage = mkdtempSync(join(tmpdir(), "firedrill-release-"));
  try {
    // The agent: bin/firedrill-agent, lib/agent.mjs + lib/guard.mjs (+ pino's transport workers), node/, share/, VERSION.
    const agentTop = `firedrill-agent-${version}-linux-${arch}`;
    const agentDir = join(stage, agentTop);
    const agentExec = new Set<string>();
    log(`bundling the agent (${agentTop})`);
    const agentPkg = join(ROOT, "packages/agent");
    const pinoDir = packageDir("pino", agentPkg);
    await bundle(
      {
        agent: join(agentPkg, "src/bin.ts"),
        "pino-worker": join(pinoDir, "lib/worker.js"),
        "thread-stream-worker": packageFile("thread-stream", "lib/worker.js", pinoDir),
        "pino-pretty": join(packageDir("pino-pretty", agentPkg), "index.js"),
      },
      join(agentDir, "lib"),
      { banner: PINO_WORKERS_BANNER, ...bundleVersion },
    );
    // The guard alone: only what reverting needs (see packages/agent/src/guard-bin.ts).
    await bundle({ guard: join(agentPkg, "src/guard-bin.ts") }, join(agentDir, "lib"), { banner: REQUIRE_BANNER, ...bundleVersion });
    addRuntime(agentDir, node, agentExec);
    mkdirSync(join(agentDir, "bin"));
    writeFileSync(join(agentDir, "bin", "firedrill-agent"), wrapper("firedrill-agent", "agent.mjs", AGENT_NODE_OPTIONS));
    agentExec.add(join(agentDir, "bin", "firedrill-agent"));
    copyOptional("infra/systemd/firedrill-agent.service", join(agentDir, "share", "firedrill-agent.service"), log, agentExec);
    copyOptional("packages/control-plane/src/install/agent.sh", join(agentDir, "share", "agent.sh"), log, agentExec, true);
    writeFileSync(join(agentDir, "VERSION"), `${version}\n`);
    const agent = writeTarball(stage, agentTop, join(outDir, agentTarballName(version, arch)), epoch, agentExec);
    log(`wrote ${agent.file}`);
    if (options.agentOnly) return { version, arch, agent };

    // The server: bin/firedrill, lib/firedrill.mjs + lib/spec-worker.mjs + lib/node_modules/{better-sqlite3,pg,…} + lib/agent.sh,
    // lib/console/ (the web console's built files), node/, share/, agent-releases/ (every agent tarball of this version
    // in outDir), VERSION.
    const serverTop = `firedrill-server-${version}-linux-${arch}`;
    const serverDir = join(stage, serverTop);
    const serverExec = new Set<string>();
    log(`bundling the server (${serverTop})`);
    await bundle(
      {
        firedrill: join(ROOT, "packages/cli/src/bin.ts"),
        "spec-worker": join(ROOT, "packages/control-plane/src/experiments/spec-worker.ts"),
      },
      join(serverDir, "lib"),
      { banner: REQUIRE_BANNER, external: ["better-sqlite3", "pg"], ...bundleVersion },
    );
    copySqlite(join(serverDir, "lib"), arch);
    copyPostgresClient(join(serverDir, "lib"));
    addRuntime(serverDir, node, serverExec);
    mkdirSync(join(serverDir, "bin"));
    writeFileSync(join(serverDir, "bin", "firedrill"), wrapper("firedrill", "firedrill.mjs", []));
    serverExec.add(join(serverDir, "bin", "firedrill"));
    copyOptional("packages/control-plane/src/install/agent.sh", join(serverDir, "lib", "agent.sh"), log, serverExec);
    copyConsole(join(serverDir, "lib", "console"), log);
    copyOptional("infra/systemd/firedrill-server.service", join(serverDir, "share", "firedrill-server.service"), log, serverExec);
    writeFileSync(join(serverDir, "VERSION"), `${version}\n`);
    const releases = join(serverDir, "agent-releases");
    mkdirSync(releases);
    const prefix = `firedrill-agent-${version}-linux-`;
    for (const name of readdirSync(outDir).filter((n) => n.startsWith(prefix) && n.endsWith(".tar.gz")).sort()) {
      const file = join(outDir, name);
      const sum = existsSync(`${file}.sha256`) ? readFileSync(`${file}.sha256`, "utf8") : "";
      if (sum !== `${sha256File(file)}  ${name}\n`) {
        log(`warning: ${name} in ${outDir} does not match its .sha256; left out of the server's agent-releases/`);
        continue;
      }
      copyFileSync(file, join(releases, name));
      writeFileSync(join(releases, `${name}.sha256`), sum);
    }
    const server = writeTarball(stage, serverTop, join(outDir, serverTarballName(version, arch)), epoch, serverExec);
    log(`wrote ${server.file}`);
    return { version, arch, agent, server };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Copies the Node runtime (bin/node, LICENSE) into `<top>/node`. */
function addRuntime(top: string, runtime: string, executables: Set<string>): void {
  mkdirSync(join(top, "node", "bin"), { recursive: true });
  copyFileSync(join(runtime, "bin", "node"), join(top, "node", "bin", "node"));
  copyFileSync(join(runtime, "LICENSE"), join(top, "node", "LICENSE"));
  executables.add(join(top, "node", "bin", "node"));
}

function formatSize(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

const USAGE = `usage: pnpm release [--arch x64|arm64] [--out DIR] [--version V] [--agent-only]
  --arch        the architecture to build for (default: this host's, ${process.arch})
  --out         where the tarballs go (default: dist/release)
  --version     the version to build as (default: packages/agent/package.json's), e.g. 1.2.3-rc.1
  --agent-only  only the agent tarball (the server's native SQLite binding is this host's architecture)`;

async function main(argv: string[]): Promise<number> {
  const opts: ReleaseOptions = { log: (line) => console.error(`release: ${line}`) };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new ReleaseError(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === "--arch") {
      const arch = value();
      if (!ARCHES.includes(arch as ReleaseArch)) throw new ReleaseError(`--arch ${arch}: give x64 or arm64`);
      opts.arch = arch as ReleaseArch;
    } else if (flag === "--out") {
      const out = value();
      // Relative to where `pnpm release` was typed.
      opts.outDir = isAbsolute(out) ? out : resolve(process.env.INIT_CWD ?? process.cwd(), out);
    } else if (flag === "--version") opts.version = value();
    else if (flag === "--agent-only") opts.agentOnly = true;
    else if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      return 0;
    } else throw new ReleaseError(`unknown option ${arg}\n${USAGE}`);
  }
  const t0 = performance.now();
  const result = await buildRelease(opts);
  console.log(`firedrill ${result.version} for linux-${result.arch}, built in ${((performance.now() - t0) / 1000).toFixed(1)} s:`);
  for (const a of [result.agent, ...(result.server ? [result.server] : [])]) {
    const shown = relative(process.env.INIT_CWD ?? process.cwd(), a.file);
    console.log(`  ${shown.startsWith("..") ? a.file : shown}  ${formatSize(a.bytes)}  sha256 ${a.sha256}`);
  }
  return 0;
}

if (process.argv[1] !== undefined && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof ReleaseError ? `release: ${err.message}` : `release: ${(err as Error).stack ?? String(err)}`);
      process.exit(1);
    },
  );
}
