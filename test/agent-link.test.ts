import { formatJoinToken, parseJoinToken } from "@firedrill/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { api } from "./support/api.js";
import { killAll, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle } from "./support/processes.js";

describe("agent link (real control plane and agent processes, gRPC on loopback)", () => {
  let dirs: { cleanup: () => void }[] = [];
  const dir = (name: string) => {
    const d = tempDir(name);
    dirs.push(d);
    return d.path;
  };
  afterEach(async () => {
    await killAll();
    for (const d of dirs) d.cleanup();
    dirs = [];
  });

  let server: ServerHandle;
  beforeEach(async () => {
    server = await startServer({ dataDir: dir("cp") });
  });

  // view=full: the test reads the host facts the agent registered with.
  const agents = async () => (await api(server, "GET", "/api/v1/agents?view=full")).body.agents as any[];

  it("registers with facts and labels, and comes back with the same id after a server restart", async () => {
    const stateDir = dir("agent");
    const agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir, labels: "app=web,firedrill:opt-in=true" });
    const [registered] = await waitFor("the agent to register", async () => {
      const list = await agents();
      return list.length === 1 && list[0].connected ? list : undefined;
    });
    expect(registered.id).toMatch(/^agt_[0-9a-f]{16}$/);
    expect(registered.labels).toEqual({ app: "web", "firedrill:opt-in": "true" });
    expect(registered.facts.cpuCount).toBeGreaterThan(0);
    expect(registered.facts.hostname).not.toBe("");
    expect(registered.capabilities.faultKinds).toContain("cpu-burn");

    server.proc.kill("SIGTERM");
    await server.proc.exited;
    const [grpcPort, httpPort] = [server.grpcAddr, server.httpUrl].map((a) => Number(a.split(":").at(-1)));
    server = await startServer({ dataDir: server.dataDir, grpcPort: grpcPort!, httpPort: httpPort! });
    const [again] = await waitFor("the agent to reconnect", async () => {
      const list = await agents();
      return list.length === 1 && list[0].connected ? list : undefined;
    });
    expect(again.id).toBe(registered.id);
    expect(again.firstSeenAt).toBe(registered.firstSeenAt);
    expect(agent.child.exitCode).toBeNull();
  });

  it("a token that pins no CA stops the agent at start (exit 2); a wrong secret is refused with the reason and the agent keeps retrying", async () => {
    const malformed = startAgentProcess({ server: server.grpcAddr, token: "fdj_this-is-not-the-token", stateDir: dir("bad") });
    expect(await malformed.exited).toBe(2);
    expect(malformed.output()).toMatch(/join token/i);

    // The right CA, a made-up secret: the server is verified, the token refused; the agent never
    // exits on a refused token (one spoofed answer must not take a fleet offline).
    const real = parseJoinToken(server.joinToken)!;
    const forged = formatJoinToken({ ...real, secret: "A".repeat(43) });
    const refused = startAgentProcess({ server: server.grpcAddr, token: forged, stateDir: dir("forged") });
    await waitFor("the refusal in the agent's log", () => /not one of this control plane's/.test(refused.output()), 20_000);
    expect(refused.child.exitCode).toBeNull();
    expect(await agents()).toEqual([]);
  });
});
