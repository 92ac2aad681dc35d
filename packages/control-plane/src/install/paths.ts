/**
 * Where the install routes find what they serve, wherever the control plane runs from: the
 * release bundle (`lib/firedrill.mjs`, with `lib/agent.sh` and `agent-releases/` beside `lib/`),
 * the TypeScript sources (`pnpm firedrill server`) or the tsc build (`packages/*\/dist`).
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The directory of this module (in the bundle: `lib/`). */
function here(): string {
  return dirname(fileURLToPath(import.meta.url));
}

/** The firedrill checkout this module runs from (the directory with pnpm-workspace.yaml), if any. */
export function findRepoRoot(from: string = here()): string | undefined {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, "pnpm-workspace.yaml"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The default of `--agent-releases`: `<bundle dir>/../agent-releases` when it exists (the server
 * tarball), else `<repo>/dist/release` (what `pnpm release` writes), else the former.
 */
export function defaultAgentReleasesDir(from: string = here()): string {
  const bundled = resolve(from, "..", "agent-releases");
  if (existsSync(bundled)) return bundled;
  const repo = findRepoRoot(from);
  return repo ? join(repo, "dist", "release") : bundled;
}

/**
 * The install script: `agent.sh` beside this module (the sources, and the bundle's `lib/`), or the
 * sources' copy when running from the tsc build (which does not copy it).
 */
export function defaultAgentScriptFile(from: string = here()): string {
  const beside = join(from, "agent.sh");
  if (existsSync(beside)) return beside;
  const source = resolve(from, "..", "..", "src", "install", "agent.sh");
  return existsSync(source) ? source : beside;
}
