import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { GUARD_NODE_OPTIONS, guardCommandFor } from "./guard.js";

describe("the guard's command: the small entry beside the agent's", () => {
  const dir = mkdtempSync(join(tmpdir(), "firedrill-guard-entry-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("from source: guard-bin.ts beside main.ts, with the agent's node options and the guard's", () => {
    const cmd = guardCommandFor(new URL("./main.ts", import.meta.url).href);
    expect(cmd[0]).toBe(process.execPath);
    expect(cmd.slice(1, -1)).toEqual([...process.execArgv, ...GUARD_NODE_OPTIONS]);
    expect(cmd.at(-1)).toBe(join(import.meta.dirname, "guard-bin.ts"));
  });

  it("in the release bundle: lib/guard.mjs beside lib/agent.mjs", () => {
    writeFileSync(join(dir, "guard.mjs"), "");
    expect(guardCommandFor(pathToFileURL(join(dir, "agent.mjs")).href).at(-1)).toBe(join(dir, "guard.mjs"));
  });

  it("without a guard entry beside it: the agent's own command, `guard` subcommand", () => {
    const cmd = guardCommandFor(pathToFileURL(join(dir, "main.js")).href);
    expect(cmd.slice(-2)).toEqual([process.argv[1], "guard"]);
  });
});
