import { describe, expect, it } from "vitest";
import { testAgent } from "../test-support/agent-records.js";
import { matchAgentsToInstances } from "./match.js";
import { instance } from "./test-support.js";

describe("matchAgentsToInstances", () => {
  it("matches by the instance id agents report; a connected agent wins over a stale one", () => {
    const agents = [
      testAgent("a", { instanceId: "i-1" }),
      testAgent("old", { instanceId: "i-2", connected: false }),
      testAgent("b", { instanceId: "i-2" }),
      testAgent("c", { facts: { instanceId: "i-3" } }),
      testAgent("laptop"),
    ];
    const { agents: matched, withoutAgent } = matchAgentsToInstances(agents, [instance("i-1"), instance("i-2"), instance("i-3"), instance("i-4")]);
    expect(matched.map((a) => a.id)).toEqual(["a", "b", "c"]);
    expect(withoutAgent.map((i) => i.instanceId)).toEqual(["i-4"]);
  });
});
