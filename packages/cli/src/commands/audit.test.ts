import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditJson } from "@firedrill/control-plane";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { runCli } from "../program.js";

const TOKEN = "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/** A stand-in control plane: refuses requests without the token, answers from `answers`. */
let server: Server;
let url: string;
const asked: string[] = [];
let answers: Record<string, { status: number; body: unknown }>;

beforeAll(async () => {
  server = createServer((req, res) => {
    asked.push(req.url ?? "");
    const answer =
      req.headers.authorization === `Bearer ${TOKEN}`
        ? (answers[(req.url ?? "").split("?")[0]!] ?? { status: 404, body: { error: { code: "not_found", message: "no such route" } } })
        : { status: 401, body: { error: { code: "unauthenticated", message: "this endpoint needs an API token" } } };
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

let dir: string;
beforeEach(() => {
  asked.length = 0;
  answers = {};
  dir = mkdtempSync(join(tmpdir(), "firedrill-cli-audit-"));
  vi.stubEnv("FIREDRILL_CONFIG", join(dir, "config.json"));
  vi.stubEnv("FIREDRILL_SERVER", "");
  vi.stubEnv("FIREDRILL_TOKEN", TOKEN);
});
afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(["node", "firedrill", "--server", url, ...args], { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const ENTRIES: AuditJson[] = [
  {
    id: 12,
    time: "2026-11-27T10:02:03.456Z",
    principal: "alice",
    role: "operator",
    source: "10.0.0.5",
    method: "POST",
    route: "/api/v1/faults",
    path: "/api/v1/faults",
    targets: ["flt_0123456789abcdef", "web-1"],
    status: 201,
    outcome: "ok",
    detail: null,
    hash: "ab".repeat(32),
  },
  {
    id: 11,
    time: "2026-11-27T10:01:00.000Z",
    principal: null,
    role: null,
    source: "203.0.113.7",
    method: "GET",
    route: "/api/v1/tokens",
    path: "/api/v1/tokens",
    targets: [],
    status: 401,
    outcome: "unauthenticated",
    detail: null,
    hash: "cd".repeat(32),
  },
];

describe("firedrill audit", () => {
  it("passes the filters and shows a table; anonymous callers as -", async () => {
    answers["/api/v1/audit"] = { status: 200, body: { entries: ENTRIES } };
    const run = await cli("audit", "--since", "1h", "--actor", "alice", "--limit", "20");
    expect(asked).toEqual(["/api/v1/audit?since=1h&actor=alice&limit=20"]);
    expect(run).toEqual({
      code: 0,
      err: "",
      out: [
        "TIME                  PRINCIPAL  SOURCE       REQUEST              STATUS  OUTCOME          TARGETS",
        "2026-11-27 10:02:03Z  alice      10.0.0.5     POST /api/v1/faults  201     ok               flt_0123456789abcdef,web-1",
        "2026-11-27 10:01:00Z  -          203.0.113.7  GET /api/v1/tokens   401     unauthenticated  -",
        "",
      ].join("\n"),
    });
    expect(JSON.parse((await cli("audit", "--json")).out)).toEqual(ENTRIES);
    expect(asked[1]).toBe("/api/v1/audit?limit=100");
  });

  it("says when nothing matched, checks --limit, and names the flag the server refused", async () => {
    answers["/api/v1/audit"] = { status: 200, body: { entries: [] } };
    expect((await cli("audit", "--since", "2h", "--actor", "bob")).out).toBe("no audit entries since 2h by bob\n");
    expect(await cli("audit", "--limit", "0")).toEqual({ code: 1, out: "", err: 'error: --limit "0" is not valid; use a whole number from 1 to 10000\n' });
    answers["/api/v1/audit"] = {
      status: 400,
      body: {
        error: {
          code: "invalid_request",
          message: 'invalid audit query: query.since: "yesterday" is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)',
          issues: [{ field: "query.since", message: '"yesterday" is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)' }],
        },
      },
    };
    expect(await cli("audit", "--since", "yesterday")).toEqual({
      code: 1,
      out: "",
      err: 'error: the control plane refused the audit query (1 problem)\n  --since: "yesterday" is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)\n',
    });
  });
});

describe("firedrill audit verify", () => {
  it("exits 0 with the message when the chain is intact", async () => {
    answers["/api/v1/audit/verify"] = { status: 200, body: { ok: true, rows: 12, message: "the audit log is intact: 12 rows, hash chain verified", firstBad: null } };
    expect(await cli("audit", "verify")).toEqual({ code: 0, err: "", out: "the audit log is intact: 12 rows, hash chain verified\n" });
    expect(asked).toEqual(["/api/v1/audit/verify"]);
  });

  it("exits 1 naming the bad row when it is not, also with --json", async () => {
    const broken = { ok: false, rows: 12, message: "audit row 7 does not match the hash chain: it was changed or a row before it was removed", firstBad: { id: 7, problem: "hash mismatch" } };
    answers["/api/v1/audit/verify"] = { status: 200, body: broken };
    expect(await cli("audit", "verify")).toEqual({ code: 1, out: "", err: `error: ${broken.message}\n` });
    const json = await cli("audit", "verify", "--json");
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual(broken);
  });
});
