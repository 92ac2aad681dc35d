import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAwsClients } from "./clients.js";
import { AwsRegionError } from "./errors.js";

/** A stand-in for a local emulator: answers every EC2 query with an empty DescribeInstances. */
let server: Server;
let url: string;
const requests: { host: string; body: string }[] = [];

const ENV_KEYS = ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
const saved = new Map(ENV_KEYS.map((k) => [k, process.env[k]]));

function setEnv(values: Record<string, string | undefined>): void {
  for (const key of ENV_KEYS) delete process.env[key];
  // No profile files: the SDK must not find a region or credentials on this machine by accident.
  process.env["AWS_CONFIG_FILE"] = "/nonexistent/firedrill-test-config";
  process.env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/firedrill-test-credentials";
  for (const [k, v] of Object.entries(values)) if (v !== undefined) process.env[k] = v;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      requests.push({ host: req.headers.host ?? "", body });
      res.writeHead(200, { "content-type": "text/xml" });
      res.end('<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><reservationSet/></DescribeInstancesResponse>');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

afterEach(() => {
  requests.length = 0;
  for (const [k, v] of saved) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe("createAwsClients", () => {
  it("uses the explicit region, then the configured one, then AWS_REGION, then AWS_DEFAULT_REGION", async () => {
    setEnv({ AWS_REGION: "ap-south-1" });
    expect(await createAwsClients({ region: "eu-west-1" }).region("us-east-2")).toBe("us-east-2");
    expect(await createAwsClients({ region: "eu-west-1" }).region()).toBe("eu-west-1");
    expect(await createAwsClients().region()).toBe("ap-south-1");
    setEnv({ AWS_DEFAULT_REGION: "sa-east-1" });
    expect(await createAwsClients().region()).toBe("sa-east-1");
  });

  it("says how to set a region when none is found", async () => {
    setEnv({});
    const clients = createAwsClients();
    await expect(clients.region()).rejects.toThrow(AwsRegionError);
    await expect(clients.region()).rejects.toThrow(
      "no AWS region is configured: set AWS_REGION in the control plane's environment (or a region in its AWS profile), or `region:` in the selector / stop condition",
    );
  });

  it("caches one client per region and service", () => {
    const clients = createAwsClients({ region: "eu-west-1" });
    expect(clients.ec2("eu-west-1")).toBe(clients.ec2("eu-west-1"));
    expect(clients.ec2("eu-west-1")).not.toBe(clients.ec2("us-east-1"));
    expect(clients.autoScaling("eu-west-1")).toBe(clients.autoScaling("eu-west-1"));
    expect(clients.cloudWatch("eu-west-1")).toBe(clients.cloudWatch("eu-west-1"));
    clients.destroy();
  });

  it("sends to the endpoint from config, for a local emulator", async () => {
    setEnv({ AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test" });
    const clients = createAwsClients({ endpoint: url });
    const out = await clients.ec2("eu-west-1").send(new DescribeInstancesCommand({}));
    expect(out.Reservations).toEqual([]);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.host).toBe(new URL(url).host);
    expect(requests[0]!.body).toContain("Action=DescribeInstances");
    clients.destroy();
  });

  it("honours AWS_ENDPOINT_URL without any config (the SDK resolves it)", async () => {
    setEnv({ AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_ENDPOINT_URL: url });
    const clients = createAwsClients();
    await clients.ec2("eu-west-1").send(new DescribeInstancesCommand({}));
    expect(requests.map((r) => r.host)).toEqual([new URL(url).host]);
    clients.destroy();
  });
});
