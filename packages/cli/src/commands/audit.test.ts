import type { AuditJson } from "@firedrill/control-plane";
import { describe, expect, it } from "vitest";
import { TEST_TOKEN as TOKEN, runCliInProcess, useFakeApi } from "../testing/fake-api.js";

/** A stand-in control plane that refuses requests without the token; the server is given as --server, not FIREDRILL_SERVER. */
const fake = useFakeApi({ token: TOKEN, prefix: "firedrill-cli-audit-", server: () => "" });
/** The URLs (with query) asked, in order. */
const asked = () => fake.api.asked.map((a) => a.url);
const cli = (...args: string[]) => runCliInProcess("--server", fake.api.url, ...args);

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
    fake.api.answer("GET", "/api/v1/audit", 200, { entries: ENTRIES });
    const run = await cli("audit", "--since", "1h", "--actor", "alice", "--limit", "20");
    expect(asked()).toEqual(["/api/v1/audit?since=1h&actor=alice&limit=20"]);
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
    expect(asked()[1]).toBe("/api/v1/audit?limit=100");
  });

  it("says when nothing matched, checks --limit, and names the flag the server refused", async () => {
    fake.api.answer("GET", "/api/v1/audit", 200, { entries: [] });
    expect((await cli("audit", "--since", "2h", "--actor", "bob")).out).toBe("no audit entries since 2h by bob\n");
    expect(await cli("audit", "--limit", "0")).toEqual({ code: 1, out: "", err: 'error: --limit "0" is not valid; use a whole number from 1 to 10000\n' });
    fake.api.answer("GET", "/api/v1/audit", 400, {
      error: {
        code: "invalid_request",
        message: 'invalid audit query: query.since: "yesterday" is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)',
        issues: [{ field: "query.since", message: '"yesterday" is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)' }],
      },
    });
    expect(await cli("audit", "--since", "yesterday")).toEqual({
      code: 1,
      out: "",
      err: 'error: the control plane refused the audit query (1 problem)\n  --since: "yesterday" is neither a duration (1h, 7d) nor a time (2026-01-31T10:00:00Z)\n',
    });
  });
});

describe("firedrill audit verify", () => {
  it("exits 0 with the message when the chain is intact", async () => {
    fake.api.answer("GET", "/api/v1/audit/verify", 200, { ok: true, rows: 12, message: "the audit log is intact: 12 rows, hash chain verified", firstBad: null });
    expect(await cli("audit", "verify")).toEqual({ code: 0, err: "", out: "the audit log is intact: 12 rows, hash chain verified\n" });
    expect(asked()).toEqual(["/api/v1/audit/verify"]);
  });

  it("exits 1 naming the bad row when it is not, also with --json", async () => {
    const broken = { ok: false, rows: 12, message: "audit row 7 does not match the hash chain: it was changed or a row before it was removed", firstBad: { id: 7, problem: "hash mismatch" } };
    fake.api.answer("GET", "/api/v1/audit/verify", 200, broken);
    expect(await cli("audit", "verify")).toEqual({ code: 1, out: "", err: `error: ${broken.message}\n` });
    const json = await cli("audit", "verify", "--json");
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual(broken);
  });
});
