import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiRequestError } from "./errors.js";
import { createApiClient } from "./http-client.js";
import { readEventStream } from "./sse.js";
import type { SseEvent } from "./sse.js";

const TOKEN = "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/** Streams two events to the bearer of TOKEN; 401 to anyone else. */
let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "unauthenticated", message: "this endpoint needs an API token" } }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(": hello\n\nevent: step\nid: 1\ndata: {\"n\":1}\n\n");
    res.end("event: end\ndata: line one\ndata: line two\n\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("event streams", () => {
  it("carry the token of the client made for the server, by URL or through the client", async () => {
    const client = createApiClient({ server: url, token: TOKEN });
    const byUrl: SseEvent[] = [];
    await readEventStream(`${url}/api/v1/runs/run_1/events`, (e) => void byUrl.push(e));
    expect(byUrl).toEqual([
      { event: "step", id: "1", data: '{"n":1}' },
      { event: "end", data: "line one\nline two" },
    ]);
    const viaClient: SseEvent[] = [];
    await client.events("/api/v1/runs/run_1/events", (e) => {
      viaClient.push(e);
      return "stop";
    });
    expect(viaClient).toEqual([{ event: "step", id: "1", data: '{"n":1}' }]);
  });

  it("say how to log in when the server wants a token and none is set", async () => {
    const client = createApiClient({ server: url });
    const failed = await client.events("/api/v1/runs/run_1/events", () => undefined).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(ApiRequestError);
    expect((failed as ApiRequestError).message).toBe(
      `the control plane at ${url} needs an API token and none is set: run firedrill login --server ${url} --token-file FILE (the first admin token is in the server's DATA_DIR/admin-token), or set FIREDRILL_TOKEN`,
    );
  });
});
