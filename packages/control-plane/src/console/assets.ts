/**
 * The console's built files (`packages/console/dist`): found by path, never imported; read on
 * first use and again only when a file's size or mtime changes (a rebuild under a running
 * server), each at most {@link MAX_ASSET_BYTES}.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { findRepoRoot } from "../install/paths.js";

/** The files the console is made of, by the exact name they are served under, with their type. */
export const CONSOLE_FILES = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "report.js": "text/javascript; charset=utf-8",
  "report.css": "text/css; charset=utf-8",
} as const;

/** A console file name. */
export type ConsoleFile = keyof typeof CONSOLE_FILES;

/** The largest console file served. */
export const MAX_ASSET_BYTES = 8 * 1024 * 1024;

/** Whether `name` is one of the console's files. */
export function isConsoleFile(name: string): name is ConsoleFile {
  return Object.hasOwn(CONSOLE_FILES, name);
}

/** The directory of this module (in the release bundle: `lib/`). */
function here(): string {
  return dirname(fileURLToPath(import.meta.url));
}

/**
 * The default of `--console-dir`: `console/` beside the running bundle when it exists (the server
 * tarball's `lib/console`), else the checkout's `packages/console/dist` (from the TypeScript
 * sources or the tsc build), else the former.
 */
export function defaultConsoleDir(from: string = here()): string {
  const bundled = join(from, "console");
  if (existsSync(join(bundled, "index.html"))) return bundled;
  const repo = findRepoRoot(from);
  return repo ? join(repo, "packages", "console", "dist") : bundled;
}

/** One file as read. */
export interface ConsoleAsset {
  name: ConsoleFile;
  body: Buffer;
  contentType: string;
  /** A strong ETag of the content. */
  etag: string;
}

/** Thrown when a console file cannot be served; the message says how to build it. */
export class ConsoleAssetsMissingError extends Error {
  override readonly name = "ConsoleAssetsMissingError";
}

/** The console's files in one directory. */
export interface ConsoleAssets {
  readonly dir: string;
  /**
   * The file, read (or from the cache when unchanged on disk).
   * Thrown: ConsoleAssetsMissingError when it is missing, unreadable or too large.
   */
  get(name: ConsoleFile): Promise<ConsoleAsset>;
  /** Whether index.html is there (for the start-up warning). */
  present(): boolean;
}

/** How to get the console's files, for messages. */
export function buildHint(dir: string): string {
  return `the console's web files are not in ${dir}: build them with \`pnpm console:build\` in the firedrill checkout, or start the server with --console-dir DIR (the directory holding index.html, app.js, app.css, report.js and report.css; a release tarball carries them in lib/console)`;
}

/** Opens the console's files in `dir` (nothing is read yet). */
export function createConsoleAssets(dir: string): ConsoleAssets {
  const root = resolve(dir);
  const cache = new Map<ConsoleFile, { size: number; mtimeMs: number; asset: ConsoleAsset }>();
  return {
    dir: root,
    present: () => existsSync(join(root, "index.html")),
    async get(name) {
      const file = join(root, name);
      let info;
      try {
        info = await stat(file);
      } catch {
        cache.delete(name);
        throw new ConsoleAssetsMissingError(buildHint(root));
      }
      if (!info.isFile()) throw new ConsoleAssetsMissingError(buildHint(root));
      if (info.size > MAX_ASSET_BYTES) {
        throw new ConsoleAssetsMissingError(`${file} is ${info.size} bytes, more than the ${MAX_ASSET_BYTES} a console file may be: rebuild the console with \`pnpm console:build\``);
      }
      const cached = cache.get(name);
      if (cached && cached.size === info.size && cached.mtimeMs === info.mtimeMs) return cached.asset;
      let body: Buffer;
      try {
        body = await readFile(file);
      } catch {
        throw new ConsoleAssetsMissingError(buildHint(root));
      }
      if (body.length > MAX_ASSET_BYTES) throw new ConsoleAssetsMissingError(`${file} grew past ${MAX_ASSET_BYTES} bytes while being read: rebuild the console`);
      const asset: ConsoleAsset = {
        name,
        body,
        contentType: CONSOLE_FILES[name],
        etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
      };
      cache.set(name, { size: info.size, mtimeMs: info.mtimeMs, asset });
      return asset;
    },
  };
}
