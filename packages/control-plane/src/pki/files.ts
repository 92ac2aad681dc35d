/** Private files of the control plane's PKI: atomic writes with the mode set at creation, modes kept tight. */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";

/** The folder inside the data dir that holds the CA and the certificates. */
export const PKI_DIR = "pki";

/**
 * Creates `<dataDir>` (mode 0700, when missing) and `<dataDir>/pki` (mode 0700; narrowed to 0700
 * when it exists with a wider mode). Resolves with the pki folder.
 */
export async function ensurePkiDir(dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const dir = join(dataDir, PKI_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await narrowMode(dir, 0o700);
  return dir;
}

/** Sets `mode` on `path` when it grants more than `mode` (a narrower mode, e.g. 0400, is kept). */
export async function narrowMode(path: string, mode: number): Promise<void> {
  const current = (await stat(path)).mode & 0o777;
  if ((current & ~mode) !== 0) await chmod(path, mode);
}

/**
 * Writes `text` to `file` atomically: a temp file in the same folder, created with `mode` (and
 * chmod-ed to it, whatever the umask) before any byte is written, synced, then renamed over `file`.
 */
export async function writeFileAtomic(file: string, text: string, mode: number): Promise<void> {
  const temp = join(dirname(file), `.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "wx", mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Reads a text file; undefined when it does not exist. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
