// The committed console assets (packages/console/dist) are what the sources build to: rebuilt into a
// temporary directory and compared byte for byte.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const committed = join(root, "dist");
const ASSETS = ["app.css", "app.js", "index.html", "report.css", "report.js"];
const FIX = "run pnpm console:build and commit packages/console/dist";

describe("console assets", () => {
  let out: string | undefined;
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it("dist/ holds exactly what build.mjs builds from src/", async () => {
    out = await mkdtemp(join(tmpdir(), "firedrill-console-"));
    await promisify(execFile)(process.execPath, [join(root, "build.mjs"), "--out", out], { cwd: root, timeout: 60_000 });
    expect((await readdir(out)).sort()).toEqual(ASSETS);
    const present = await readdir(committed).catch(() => [] as string[]);
    expect(present.sort(), `packages/console/dist is missing files: ${FIX}`).toEqual(ASSETS);
    for (const file of ASSETS) {
      const built = await readFile(join(out, file));
      const have = await readFile(join(committed, file));
      expect(built.equals(have), `packages/console/dist/${file} differs from a fresh build of packages/console/src: ${FIX}`).toBe(true);
    }
  });

  it("the assets are ASCII and index.html has no inline script or style (the CSP allows neither)", async () => {
    for (const file of ASSETS) {
      const bytes = await readFile(join(committed, file));
      expect(bytes.every((b) => b < 0x80), `${file} has non-ASCII bytes`).toBe(true);
    }
    const html = await readFile(join(committed, "index.html"), "utf8");
    expect(html).toContain('<script src="/assets/app.js" defer></script>');
    expect(html).toContain('<link rel="stylesheet" href="/assets/app.css">');
    expect(html).not.toMatch(/<style|<script>|<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|\son[a-z]+=/i);
  });
});
