/**
 * A body past a route's limit gets its precise 413 every time, not a reset connection: the gate
 * reads (and drops) what the client is still sending before it answers, up to a bound past which it
 * answers at once and closes the connection.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestControlPlane } from "../test-support/test-agent.js";
import type { TestControlPlane } from "../test-support/test-agent.js";

let tcp: TestControlPlane;

beforeAll(async () => {
  tcp = await startTestControlPlane();
});

afterAll(async () => {
  await tcp?.cleanup();
});

describe("bodies past the limit", () => {
  it("20 bodies of 700 KiB on one keep-alive connection each get a 413 with the limit in the message", async () => {
    const body = JSON.stringify({ spec: "\n".repeat(700 * 1024) });
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${tcp.cp.httpUrl}/api/v1/plan`, {
        method: "POST",
        headers: { authorization: `Bearer ${tcp.adminToken()}`, "content-type": "application/json" },
        body,
      });
      const json = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status).toBe(413);
      expect(json.error.code).toBe("body_too_large");
      expect(json.error.message).toMatch(/larger than 576 KiB/);
    }
    // The connection is still good for an ordinary request.
    expect((await tcp.api("GET", "/api/v1/agents")).status).toBe(200);
  });

  it("a body declared past 8 MiB is refused at once and the connection closed", async () => {
    const res = await fetch(`${tcp.cp.httpUrl}/api/v1/plan`, {
      method: "POST",
      headers: { authorization: `Bearer ${tcp.adminToken()}`, "content-type": "application/json" },
      body: JSON.stringify({ spec: "x".repeat(9 * 1024 * 1024) }),
    }).catch((err: unknown) => err);
    // Either the 413 arrives, or the client saw the server stop reading; the server never buffers 9 MiB.
    if (res instanceof Response) {
      expect(res.status).toBe(413);
      expect(res.headers.get("connection")).toBe("close");
    }
    expect((await tcp.api("GET", "/api/v1/agents")).status).toBe(200);
  });
});
