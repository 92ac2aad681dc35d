import { describe, expect, it } from "vitest";
import { stopsWithParent, watchParent } from "./parent-watch.js";

describe("watchParent", () => {
  it("calls back once when the parent pid changes (the parent exited, this process was reparented)", async () => {
    let ppid = 4242;
    const gone: number[] = [];
    const stop = watchParent((parent) => gone.push(parent), { everyMs: 10, ppid: () => ppid });
    await new Promise((r) => setTimeout(r, 50));
    expect(gone).toEqual([]);
    ppid = 1;
    await new Promise((r) => setTimeout(r, 50));
    ppid = 7;
    await new Promise((r) => setTimeout(r, 50));
    expect(gone).toEqual([4242]);
    stop();
  });

  it("is on under a package manager script only", () => {
    expect(stopsWithParent({ npm_lifecycle_event: "firedrill-agent" })).toBe(true);
    expect(stopsWithParent({})).toBe(false);
    expect(stopsWithParent({ npm_lifecycle_event: "" })).toBe(false);
  });
});
