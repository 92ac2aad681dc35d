/**
 * Paths as the user typed them. `pnpm <script> ARGS` runs a package script from the package's root,
 * not from the directory the user is in, and says where that was in INIT_CWD; a relative path in
 * ARGS means a path from there.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";

/** Where {@link callerDirectory} looks; the running process's by default. */
export interface CallerContext {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The entry file of this program (`process.argv[1]`). */
  entry?: string;
}

/**
 * The directory the user ran the command in: INIT_CWD when this process is a package script that
 * runs this program with the caller's arguments only (the script, as package.json writes it, ends
 * with this program's entry file, as `firedrill` and `firedrill-agent` in the workspace's
 * package.json do), else the working directory. A process merely started under some script
 * (`pnpm test` → vitest → the CLI), or by a script that adds arguments of its own, keeps its
 * working directory.
 */
export function callerDirectory(context: CallerContext = {}): string {
  const env = context.env ?? process.env;
  const cwd = context.cwd ?? process.cwd();
  const entry = context.entry ?? process.argv[1];
  const { INIT_CWD: initCwd, npm_lifecycle_event: event, npm_package_json: packageJson } = env;
  if (!initCwd || !event || !packageJson || !entry) return cwd;
  // npm_lifecycle_script has the caller's arguments appended: read the script as written.
  let script: unknown;
  try {
    script = (JSON.parse(readFileSync(packageJson, "utf8")) as { scripts?: Record<string, unknown> }).scripts?.[event];
  } catch {
    return cwd;
  }
  const last = typeof script === "string" ? script.trim().split(/\s+/).at(-1) : undefined;
  if (!last) return cwd;
  return resolve(dirname(packageJson), last) === resolve(cwd, entry) ? initCwd : cwd;
}

/**
 * A path from a command-line argument, as the user meant it: relative to {@link callerDirectory}.
 * Returned unchanged when absolute, or when the caller's directory is the working directory.
 */
export function resolveCallerPath(path: string, context: CallerContext = {}): string {
  if (path === "" || isAbsolute(path)) return path;
  const dir = callerDirectory(context);
  return dir === (context.cwd ?? process.cwd()) ? path : resolve(dir, path);
}
