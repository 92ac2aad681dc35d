import { createServer } from "node:http";
import type { Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { readOwnSubnets } from "./imds-subnets.js";

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** An IMDSv2 stand-in on loopback with two interfaces. */
async function imds(): Promise<string> {
  server = createServer((req, res) => {
    if (req.method === "PUT" && req.url === "/latest/api/token") return void res.end("tok");
    if (req.headers["x-aws-ec2-metadata-token"] !== "tok") return void res.writeHead(401).end();
    const pages: Record<string, string> = {
      "/latest/meta-data/network/interfaces/macs/": "0e:00:00:00:00:01/\n0e:00:00:00:00:02/",
      "/latest/meta-data/network/interfaces/macs/0e:00:00:00:00:01/subnet-id": "subnet-0aaa",
      "/latest/meta-data/network/interfaces/macs/0e:00:00:00:00:02/subnet-id": "subnet-0bbb",
    };
    const page = pages[req.url ?? ""];
    if (page === undefined) return void res.writeHead(404).end();
    res.end(page);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server!.address() as { port: number }).port}`;
}

describe("readOwnSubnets", () => {
  it("reads the subnet of every network interface with an IMDSv2 token", async () => {
    expect(await readOwnSubnets(await imds())).toEqual(["subnet-0aaa", "subnet-0bbb"]);
  });

  it("answers [] quickly off EC2 (nothing listening)", async () => {
    const start = Date.now();
    expect(await readOwnSubnets("http://127.0.0.1:1", 300)).toEqual([]);
    expect(Date.now() - start).toBeLessThan(2000);
  });
});
