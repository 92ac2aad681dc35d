/**
 * The HTTP API's security on a real `firedrill server` process with a real agent process: who may
 * call what (401, 403, a viewer's halt), the server policy on ad-hoc faults, the Host check, and
 * the audit log as `firedrill audit` shows it — including the tampering `audit verify` catches.
 */
import { readdirSync } from "node:fs";
import { request } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";
import { DATABASE_FILE } from "@firedrill/control-plane";
import type { AuditJson } from "@firedrill/control-plane";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, createToken } from "./support/api.js";
import { burnerThreads } from "./support/cpu.js";
import { ROOT, cliEnv, killAll, runCli, sleep, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle, TestProcess } from "./support/processes.js";

/** better-sqlite3, from the control plane's dependencies (the database's own driver). */
interface SqliteDatabase {
  pragma(source: string): unknown;
  exec(source: string): void;
  prepare(source: string): { run(...params: unknown[]): { changes: number } };
  close(): void;
}
const Database = createRequire(join(ROOT, "packages/control-plane/package.json"))("better-sqlite3") as new (file: string) => SqliteDatabase;

/** The caller's address as the control plane records it (IPv4, or IPv4-mapped IPv6). */
const LOOPBACK = /^(::ffff:)?127\.0\.0\.1$/;

const SPEC = `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: security-burn }
spec:
  hypothesis: "web keeps answering"
  targets:
    web: { selector: { labels: { app: web } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5 }, duration: 10s }
`;


describe("API security on a real control plane and agent", () => {
  const cp = tempDir("sec-cp");
  const st = tempDir("sec-agent");
  let server: ServerHandle;
  let agent: TestProcess;
  let agentId: string;
  let viewerToken: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startServer({ dataDir: cp.path });
    env = cliEnv(server);
    // No opt-in label: the default policy keeps faults off this host.
    agent = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: st.path, labels: "app=web" });
    agentId = await waitFor("the agent to connect", async () => {
      const { agents } = (await api(server, "GET", "/api/v1/agents")).body as { agents: { id: string; connected: boolean }[] };
      return agents.find((a) => a.connected)?.id;
    }, 30_000);
    viewerToken = await createToken(server, { name: "dana", role: "viewer" });
  });
  afterAll(async () => {
    await killAll();
    cp.cleanup();
    st.cleanup();
  });

  /** `firedrill audit --json ARGS` with the admin token: the entries, an array as every `--json` listing prints (docs/cli/audit.md). */
  async function auditCli(args: string[] = []): Promise<AuditJson[]> {
    const res = await runCli(["audit", "--json", ...args], env);
    expect(res.code, res.stderr).toBe(0);
    const entries = JSON.parse(res.stdout) as AuditJson[];
    expect(Array.isArray(entries), `firedrill audit --json prints the entries as an array, got: ${res.stdout.slice(0, 200)}`).toBe(true);
    return entries;
  }

  it("anonymous fault → 401, viewer's run → 403, viewer's halt → 200; firedrill audit --json lists all three with principal and source", async () => {
    const faultPath = `/api/v1/agents/${agentId}/faults`;
    const anonymous = await api(server, "POST", faultPath, { kind: "cpu-burn", params: { load: 10 }, duration: "10s" }, null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe("unauthenticated");
    expect(anonymous.body.error.message).toContain("Authorization: Bearer");

    const run = await api(server, "POST", "/api/v1/runs", { spec: SPEC }, viewerToken);
    expect(run.status).toBe(403);
    expect(run.body.error.code).toBe("forbidden");
    expect(run.body.error.message).toMatch(/^dana \(viewer\) may not POST \/api\/v1\/runs: it needs the run:write permission/);
    expect((await api(server, "GET", "/api/v1/runs")).body.runs).toEqual([]);

    const halt = await api(server, "POST", "/api/v1/halt", { reason: "security drill" }, viewerToken);
    expect(halt.status).toBe(200);
    expect(halt.body.halt).toMatchObject({ actor: "dana", reason: "security drill" });
    expect((await api(server, "DELETE", "/api/v1/halt")).status).toBe(200);

    const entries = await auditCli();
    const row = (method: string, route: string, status: number) => {
      const found = entries.find((e) => e.method === method && e.route === route && e.status === status);
      expect(found, `an audit entry ${method} ${route} ${status} in ${JSON.stringify(entries, null, 1)}`).toBeDefined();
      expect(found!.source).toMatch(LOOPBACK);
      expect(found!.hash).toMatch(/^[0-9a-f]{64}$/);
      return found!;
    };
    expect(row("POST", "/api/v1/agents/:id/faults", 401)).toMatchObject({ principal: null, role: null, path: faultPath, outcome: "unauthenticated", targets: [agentId] });
    expect(row("POST", "/api/v1/runs", 403)).toMatchObject({ principal: "dana", role: "viewer", path: "/api/v1/runs", outcome: "forbidden" });
    expect(row("POST", "/api/v1/halt", 200)).toMatchObject({ principal: "dana", role: "viewer", outcome: "ok", detail: "halt: security drill" });
    expect(row("DELETE", "/api/v1/halt", 200)).toMatchObject({ principal: "admin", role: "admin" });

    // --actor and --since narrow it to one principal's recent calls.
    const dana = await auditCli(["--actor", "dana", "--since", "1h"]);
    expect(dana.map((e) => `${e.method} ${e.route} ${e.status}`).sort()).toEqual(["POST /api/v1/halt 200", "POST /api/v1/runs 403"]);
  });

  it("a request naming another host is refused (421), even with a valid token", async () => {
    const { port } = new URL(server.httpUrl);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port: Number(port), path: "/api/v1/agents", headers: { host: `attacker.example:${port}`, authorization: `Bearer ${server.adminToken}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.once("error", reject);
      req.end();
    });
    expect(status).toBe(421);
    expect((await api(server, "GET", "/api/v1/agents")).status).toBe(200); // by its loopback address: fine
  });

  it("an ad-hoc fault on an agent without the opt-in label is refused (422, rule opt-in) and nothing runs there", async () => {
    const faultPath = `/api/v1/agents/${agentId}/faults`;
    // Even the admin: the policy applies to every ad-hoc fault.
    const res = await api(server, "POST", faultPath, { kind: "cpu-burn", params: { load: 20 }, duration: "30s" });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("policy_refused");
    expect(res.body.error.message).toContain("opt-in");
    expect(res.body.error.message).toContain("firedrill:opt-in");
    expect(res.body.error.issues).toEqual([{ field: "opt-in", message: expect.stringContaining("lacks the label firedrill:opt-in") }]);

    await sleep(1000); // time enough for a fault that had been sent to show up
    expect(burnerThreads(agent.pid)).toEqual([]);
    expect(readdirSync(join(st.path, "journal"))).toEqual([]);
    expect((await api(server, "GET", `${faultPath}?state=all`)).body.faults).toEqual([]);
    const refused = (await api(server, "GET", "/api/v1/audit?actor=admin")).body.entries.find((e: AuditJson) => e.status === 422);
    expect(refused).toMatchObject({ method: "POST", route: "/api/v1/agents/:id/faults", outcome: "policy_refused", targets: [agentId] });

    // An admin may override the policy for one fault, saying why; the reason is audited.
    const overridden = await api(server, "POST", faultPath, { kind: "cpu-burn", params: { load: 10 }, duration: "30s", overridePolicy: "security test: the override path" });
    expect(overridden.status, JSON.stringify(overridden.body)).toBe(201);
    await waitFor("the burn to run", () => burnerThreads(agent.pid).length === 1);
    expect((await api(server, "DELETE", `${faultPath}/${overridden.body.fault.id}`)).status).toBe(200);
    expect(burnerThreads(agent.pid)).toEqual([]);
    const override = (await api(server, "GET", "/api/v1/audit?actor=admin")).body.entries.find((e: AuditJson) => e.status === 201 && e.route === "/api/v1/agents/:id/faults");
    expect(override).toMatchObject({ route: "/api/v1/agents/:id/faults", detail: "policy overridden: security test: the override path" });
  });

  it("firedrill audit verify exits 0, then 1 naming the row edited in the database", async () => {
    const intact = await runCli(["audit", "verify"], env);
    expect(intact.code, intact.stderr).toBe(0);
    expect(intact.stdout).toMatch(/intact/);

    // Tamper as someone with the database file would: drop the guard trigger, rewrite who halted.
    const halt = (await api(server, "GET", "/api/v1/audit?actor=dana")).body.entries.find((e: AuditJson) => e.route === "/api/v1/halt");
    expect(halt).toBeDefined();
    const db = new Database(join(server.dataDir, DATABASE_FILE));
    try {
      db.pragma("busy_timeout = 5000");
      db.exec("DROP TRIGGER audit_log_no_update");
      expect(db.prepare("UPDATE audit_log SET principal = ? WHERE id = ?").run("someone-else", halt.id).changes).toBe(1);
    } finally {
      db.close();
    }

    const broken = await runCli(["audit", "verify"], env);
    expect(broken.code).toBe(1);
    expect(`${broken.stdout}${broken.stderr}`).toContain(`row ${halt.id}`);
    const json = await runCli(["audit", "verify", "--json"], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, firstBad: { id: halt.id, problem: expect.stringContaining("edited") } });
  });
});
