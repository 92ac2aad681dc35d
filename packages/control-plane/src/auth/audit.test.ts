import { beforeEach, expect, it } from "vitest";
import type { SqlDatabase } from "../store/sql/types.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { createAuditLog } from "./audit.js";
import type { AuditInput } from "./audit.js";

const entry = (n: number, over: Partial<AuditInput> = {}): AuditInput => ({
  time: 1_700_000_000_000 + n,
  principal: "alice",
  role: "operator",
  tokenId: "tok_aaaaaaaaaaaa",
  source: "127.0.0.1",
  method: "POST",
  route: "/api/v1/runs",
  path: "/api/v1/runs",
  targets: [`run_${n}`],
  status: 201,
  outcome: "ok",
  detail: null,
  ...over,
});

describeEachEngine("audit log", (engine) => {
  let db: SqlDatabase;

  beforeEach(async () => {
    db = await engine.openDatabase();
  });

  /**
   * Edits the database behind the application's back, as someone covering their tracks would
   * (the append-only triggers out of the way first).
   */
  const tamper = (sql: string, ...args: unknown[]) => {
    if (db.engine === "postgres") {
      db.exec("ALTER TABLE audit_log DISABLE TRIGGER USER");
      db.prepare(sql).run(...args);
      db.exec("ALTER TABLE audit_log ENABLE TRIGGER USER");
    } else {
      db.exec("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;");
      db.prepare(sql).run(...args);
    }
    return createAuditLog(db);
  };

  it("chains rows and verifies an intact log", async () => {
    const audit = createAuditLog(db);
    const first = audit.append(entry(1));
    const second = audit.append(entry(2, { principal: null, role: null, tokenId: null, status: 401, outcome: "unauthenticated" }));
    expect(first.prevHash).toBe("0".repeat(64));
    expect(second.prevHash).toBe(first.hash);
    expect(await audit.verify()).toMatchObject({ ok: true, rows: 2, firstBad: null });
    expect(audit.list({ limit: 10 }).map((e) => e.id)).toEqual([2, 1]);
    expect(audit.list({ principal: "alice", limit: 10 }).map((e) => e.id)).toEqual([1]);
    expect(audit.list({ since: 1_700_000_000_002, limit: 10 }).map((e) => e.id)).toEqual([2]);
  });

  it("refuses edits and deletes through SQL (append-only triggers)", () => {
    const audit = createAuditLog(db);
    audit.append(entry(1));
    expect(() => db.prepare("UPDATE audit_log SET principal = 'mallory'").run()).toThrow(/append-only/);
    expect(() => db.prepare("DELETE FROM audit_log").run()).toThrow(/append-only/);
  });

  it("names the row whose content was edited in the database", async () => {
    const audit = createAuditLog(db);
    for (let i = 1; i <= 5; i += 1) audit.append(entry(i));
    const tampered = tamper("UPDATE audit_log SET principal = 'mallory' WHERE id = 3");
    const result = await tampered.verify();
    expect(result.ok).toBe(false);
    expect(result.firstBad).toEqual({ id: 3, problem: "its content does not match its hash (the row was edited)" });
    expect(result.message).toContain("row 3");
  });

  it("names the row after a deleted one, and a deleted tail", async () => {
    const audit = createAuditLog(db);
    for (let i = 1; i <= 5; i += 1) audit.append(entry(i));
    const middle = await tamper("DELETE FROM audit_log WHERE id = 2").verify();
    expect(middle.ok).toBe(false);
    expect(middle.firstBad?.id).toBe(2);
    expect(middle.firstBad?.problem).toContain("missing");

    const tail = await tamper("DELETE FROM audit_log WHERE id >= 4").verify();
    expect(tail.ok).toBe(false);
    expect(tail.firstBad?.id).toBe(2);
  });

  it("finds a deleted tail on its own, and a rewritten hash", async () => {
    const audit = createAuditLog(db);
    for (let i = 1; i <= 4; i += 1) audit.append(entry(i));
    const tail = await tamper("DELETE FROM audit_log WHERE id = 4").verify();
    expect(tail).toMatchObject({ ok: false, firstBad: { id: 4 } });
    expect(tail.firstBad?.problem).toContain("end of the log was deleted");

    // A new row after the cut continues the id sequence, so the gap stays visible.
    const after = createAuditLog(db);
    const next = after.append(entry(9));
    expect(next.id).toBe(5);
    expect((await after.verify()).firstBad?.id).toBe(4);
  });

  it("keeps a rewritten row's own hash from hiding the edit (the next row's link breaks)", async () => {
    const audit = createAuditLog(db);
    for (let i = 1; i <= 3; i += 1) audit.append(entry(i));
    const rewritten = tamper("UPDATE audit_log SET outcome = 'ok', hash = ? WHERE id = 2", "f".repeat(64));
    const result = await rewritten.verify();
    expect(result.ok).toBe(false);
    expect(result.firstBad?.id).toBe(2);
  });

  it("bounds what one row can hold", () => {
    const audit = createAuditLog(db);
    const big = audit.append(entry(1, { detail: "x".repeat(10_000), targets: Array.from({ length: 500 }, (_, i) => `t${i}`) }));
    expect(big.detail!.length).toBe(1000);
    expect(big.targets.length).toBe(50);
  });
});
