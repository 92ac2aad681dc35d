import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { SpofReportJson } from "@firedrill/control-plane";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runCli } from "../program.js";

/** A stand-in control plane answering GET /api/v1/spof with `answer`, recording the URLs asked. */
let server: Server;
let url: string;
let answer: { status: number; body: unknown };
const asked: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    asked.push(req.url ?? "");
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  asked.length = 0;
});

async function cli(...args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(["node", "firedrill", "--server", url, ...args], { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const REPORT: SpofReportJson = {
  spofs: [
    { kind: "asg-single-instance", subject: "cron-asg", why: "cron-asg (eu-west-1) has a single InService instance (i-4): when it fails, nothing serves" },
    { kind: "label-group-single-host", subject: "app=pay", why: "only one connected host carries app=pay: pay-1; if it fails, nothing else does its work" },
  ],
  region: "eu-west-1",
  groupsChecked: 5,
  hostsChecked: 7,
  labelKeys: ["app", "service", "role"],
};

describe("firedrill spof", () => {
  it("prints each SPOF with why, and what was checked", async () => {
    answer = { status: 200, body: REPORT };
    const run = await cli("spof", "--region", "eu-west-1");
    expect(asked).toEqual(["/api/v1/spof?region=eu-west-1"]);
    expect(run).toEqual({
      code: 0,
      err: "",
      out: [
        "KIND                     SUBJECT   WHY",
        "asg-single-instance      cron-asg  cron-asg (eu-west-1) has a single InService instance (i-4): when it fails, nothing serves",
        "label-group-single-host  app=pay   only one connected host carries app=pay: pay-1; if it fails, nothing else does its work",
        "",
        "2 single points of failure among 5 Auto Scaling groups in eu-west-1 and 7 connected hosts (label groups by app, service, role)",
        "",
      ].join("\n"),
    });
  });

  it("says when there is none, and notes what could not be checked", async () => {
    answer = { status: 200, body: { ...REPORT, spofs: [], region: null, groupsChecked: null, hostsChecked: 1, note: "the control plane has no AWS access configured: only agent label groups were checked" } };
    expect((await cli("spof")).out).toBe(
      "no single point of failure found among 1 connected host (label groups by app, service, role)\nnote: the control plane has no AWS access configured: only agent label groups were checked\n",
    );
    expect(asked).toEqual(["/api/v1/spof"]);
  });

  it("--json prints the report; an AWS error goes to stderr with exit 1", async () => {
    answer = { status: 200, body: REPORT };
    expect(JSON.parse((await cli("spof", "--json")).out)).toEqual(REPORT);
    answer = { status: 502, body: { error: { code: "aws_error", message: "DescribeAutoScalingGroups in eu-west-1 failed: AccessDenied: denied" } } };
    expect(await cli("spof")).toEqual({ code: 1, out: "", err: "error: DescribeAutoScalingGroups in eu-west-1 failed: AccessDenied: denied\n" });
  });
});
