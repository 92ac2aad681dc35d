/**
 * The termination ledger (table `termination_ledger`): every terminate / stop / start firedrill
 * decides, recorded BEFORE the API call, in the same IMMEDIATE transaction as the guardrail checks
 * that depend on history (min time between terminations, the InService floor minus kills still in
 * flight, max percent of group), as Chaos Monkey does. A write that fails blocks the kill.
 *
 * A terminate counts while its outcome is `pending` (in flight, or the process died mid-call),
 * `ok` or `unknown` (AWS may have acted: a timeout, a 5xx); `failed` means AWS refused the call.
 *
 * The tag guardrails (opt-in, exclusions) are evaluated in the same transaction, on the tags the
 * caller read from AWS right before (DescribeInstances for that instance): a tag added a moment
 * before the action refuses it, whatever the run saw at its start.
 */
import type { SqlDatabase } from "../store/sql/types.js";
import { floorRefusal, intervalRefusal, percentRefusal, tagRefusal } from "./rules.js";
import type { AwsGuardrails } from "./types.js";

/** What happened to a ledger entry's call. */
export type LedgerOutcome = "pending" | "ok" | "failed" | "unknown";

/** One row of the ledger. Times are epoch ms. */
export interface LedgerEntry {
  id: number;
  /** The Auto Scaling group, null for an instance outside one. */
  groupName: string | null;
  instanceId: string;
  region: string;
  action: "terminate" | "stop" | "start" | "reboot";
  /** The API call, e.g. "TerminateInstanceInAutoScalingGroup". */
  call: string;
  actor: string;
  runId: string | null;
  scheduleId: string | null;
  decidedAt: number;
  completedAt: number | null;
  outcome: LedgerOutcome;
  error: string | null;
}

/** The group as read right before the kill. */
export interface GroupAtKillTime {
  name: string;
  minSize: number;
  desiredCapacity: number;
  /** Ids of the InService (and Healthy) instances. */
  inService: readonly string[];
}

/** Inputs of {@link TerminationLedger.decideTermination}. */
export interface TerminationDecision {
  instanceId: string;
  region: string;
  call: string;
  actor: string;
  runId?: string;
  scheduleId?: string;
  now: number;
  guardrails: AwsGuardrails;
  /** The instance's tags as read from AWS right before (not at run start): opt-in and exclusions are checked on these. */
  tags: Readonly<Record<string, string>>;
  /** The instance's group as described right before; absent for an instance outside an ASG. */
  group?: GroupAtKillTime;
  /** Kills in this group earlier in the same call, counted for max percent when there is no runId. */
  earlierKillsWithoutRun?: number;
}

/** Why the ledger refuses an action. */
export interface DecisionRefusal {
  ok: false;
  rule: "opt-in-tag" | "exclusion-tags" | "asg-member" | "min-time-between-terminations" | "min-healthy" | "max-percent-of-group" | "already-terminated" | "concurrent-termination";
  reason: string;
}

/** The ledger's answer: recorded (go ahead) or refused by a rule (do not call AWS). */
export type DecisionResult = { ok: true; id: number } | DecisionRefusal;

/** Actions other than terminate that are checked against the tags before they are recorded. */
export type CheckedAction = Exclude<LedgerEntry["action"], "terminate" | "start">;

/** Inputs of {@link TerminationLedger.decideAction}. */
export interface ActionDecision {
  action: CheckedAction;
  instanceId: string;
  region: string;
  /** The instance's Auto Scaling group, from its tags as read right before. */
  groupName?: string;
  /** Refuse an instance in an Auto Scaling group (a stopped member is replaced: a termination in effect). */
  refuseAsgMember: boolean;
  call: string;
  actor: string;
  runId?: string;
  scheduleId?: string;
  now: number;
  guardrails: AwsGuardrails;
  /** The instance's tags as read from AWS right before. */
  tags: Readonly<Record<string, string>>;
}

/** Which rows {@link TerminationLedger.list} returns. */
export interface LedgerQuery {
  runId?: string;
  scheduleId?: string;
  groupName?: string;
  region?: string;
  /** @default 100 */
  limit?: number;
}

/** The ledger's operations. */
export interface TerminationLedger {
  /**
   * Checks the history-dependent guardrails and, when they pass, records the termination as
   * `pending`, all in one IMMEDIATE transaction.
   * Thrown when the database fails (busy, full, read-only): the caller must not kill.
   */
  decideTermination(input: TerminationDecision): DecisionResult;
  /**
   * The same checks as {@link decideTermination}, recording nothing: what a termination would meet
   * now (leashed Chaos-Monkey). `ok: true` carries no id.
   */
  evaluateTermination(input: TerminationDecision): { ok: true } | DecisionRefusal;
  /**
   * Checks the tag guardrails (and, with `refuseAsgMember`, the group membership) on the tags read
   * right before and, when they pass, records the action as `pending`, in one IMMEDIATE
   * transaction. Thrown when the database fails: the caller must not act.
   */
  decideAction(input: ActionDecision): DecisionResult;
  /**
   * Records a stop or start as `pending` before its call.
   * Thrown when the database fails: the caller must not act.
   */
  recordAction(input: { action: "stop" | "start"; instanceId: string; region: string; groupName?: string; call: string; actor: string; runId?: string; scheduleId?: string; now: number }): number;
  /** Sets the outcome of a recorded call. */
  complete(id: number, outcome: Exclude<LedgerOutcome, "pending">, error: string | undefined, now: number): void;
  /** The group's latest counting termination. */
  lastTermination(region: string, groupName: string): LedgerEntry | undefined;
  list(query?: LedgerQuery): LedgerEntry[];
}

interface LedgerRow {
  id: number;
  group_name: string | null;
  instance_id: string;
  region: string;
  action: LedgerEntry["action"];
  call: string;
  actor: string;
  run_id: string | null;
  schedule_id: string | null;
  decided_at: number;
  completed_at: number | null;
  outcome: LedgerOutcome;
  error: string | null;
  prev_id: number | null;
}

function toEntry(row: LedgerRow): LedgerEntry {
  return {
    id: row.id,
    groupName: row.group_name,
    instanceId: row.instance_id,
    region: row.region,
    action: row.action,
    call: row.call,
    actor: row.actor,
    runId: row.run_id,
    scheduleId: row.schedule_id,
    decidedAt: row.decided_at,
    completedAt: row.completed_at,
    outcome: row.outcome,
    error: row.error,
  };
}

const COUNTING = "action = 'terminate' AND outcome IN ('pending', 'ok', 'unknown')";

/** Whether an error is the database refusing a row for a unique index (SQLite or PostgreSQL's 23505). */
function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "23505";
}

/** The ledger on the control plane's database (the migration creates the table). */
export function createTerminationLedger(db: SqlDatabase): TerminationLedger {
  const stmt = {
    latestInGroup: db.prepare<[string, string], LedgerRow>(
      `SELECT * FROM termination_ledger WHERE region = ? AND group_name = ? AND ${COUNTING} ORDER BY id DESC LIMIT 1`,
    ),
    instanceCounted: db.prepare<[string, string], LedgerRow>(
      `SELECT * FROM termination_ledger WHERE region = ? AND instance_id = ? AND ${COUNTING} ORDER BY id DESC LIMIT 1`,
    ),
    killedAmong: db.prepare<[string, string], { instance_id: string }>(
      `SELECT instance_id FROM termination_ledger WHERE region = ? AND ${COUNTING} AND instance_id IN (${
        db.engine === "postgres" ? "SELECT json_array_elements_text(CAST(? AS json))" : "SELECT value FROM json_each(?)"
      })`,
    ),
    runKillsInGroup: db.prepare<[string, string, string], { n: number }>(
      `SELECT COUNT(*) AS n FROM termination_ledger WHERE region = ? AND group_name = ? AND run_id = ? AND ${COUNTING}`,
    ),
    insert: db.prepare<Record<string, string | number | null>, { id: number }>(`
      INSERT INTO termination_ledger (group_name, instance_id, region, action, call, actor, run_id, schedule_id, decided_at, outcome, prev_id)
      VALUES (@groupName, @instanceId, @region, @action, @call, @actor, @runId, @scheduleId, @now, 'pending', @prevId)
      RETURNING id`),
    complete: db.prepare<[LedgerOutcome, string | null, number, number]>(
      "UPDATE termination_ledger SET outcome = ?, error = ?, completed_at = ? WHERE id = ?",
    ),
  };

  /** Every rule a termination must pass now; the chain point to record it at when it does. */
  const check = (input: TerminationDecision): { ok: true; prevId: number | null } | DecisionRefusal => {
    const { region, instanceId, guardrails, group, now } = input;
    const tags = tagRefusal({ tags: input.tags }, guardrails);
    if (tags) return { ok: false, rule: tags.rule, reason: `${instanceId} ${tags.reason} (tags read at the moment of the action)` };
    const already = stmt.instanceCounted.get(region, instanceId);
    if (already) {
      return {
        ok: false,
        rule: "already-terminated",
        reason: `firedrill already terminated ${instanceId} (ledger #${already.id}, ${new Date(already.decided_at).toISOString()}, by ${already.actor}, outcome ${already.outcome})`,
      };
    }
    let prevId: number | null = null;
    if (group) {
      const latest = stmt.latestInGroup.get(region, group.name);
      prevId = latest?.id ?? 0;
      const interval = intervalRefusal(group.name, latest?.decided_at, now, guardrails);
      if (interval) return { ok: false, rule: "min-time-between-terminations", reason: interval };
      // Kills this ledger knows of may still show as InService (AWS takes a moment to move them
      // to Terminating), and a concurrent scheduler's kill may be in flight: neither counts.
      const killed = new Set(stmt.killedAmong.all(region, JSON.stringify(group.inService)).map((r) => r.instance_id));
      const effective = group.inService.filter((id) => !killed.has(id));
      const after = effective.filter((id) => id !== instanceId).length;
      const floor = floorRefusal(group.name, effective.length, after, group.minSize, guardrails);
      if (floor) {
        const inFlight = killed.size > 0 ? ` (not counting ${killed.size} instance${killed.size === 1 ? "" : "s"} firedrill already terminated that still show${killed.size === 1 ? "s" : ""} as InService)` : "";
        return { ok: false, rule: "min-healthy", reason: `${floor}${inFlight}` };
      }
      const prior = input.runId !== undefined ? (stmt.runKillsInGroup.get(region, group.name, input.runId)?.n ?? 0) : (input.earlierKillsWithoutRun ?? 0);
      const percent = percentRefusal(group.name, prior, group.desiredCapacity, guardrails);
      if (percent) return { ok: false, rule: "max-percent-of-group", reason: percent };
    }
    return { ok: true, prevId };
  };

  /** The insert alone, in a savepoint: a unique violation leaves the enclosing transaction usable (PostgreSQL aborts it otherwise). */
  const insertRow = db.transaction((row: Record<string, string | number | null>): number => Number(stmt.insert.get(row)!.id));

  // The checks and the insert are one transaction: SQLite's IMMEDIATE (the write lock) or
  // PostgreSQL's SERIALIZABLE, re-run on a serialization failure, so two replicas deciding at once
  // act as if one decided after the other (the later one sees the earlier one's row and refuses).
  const decide = db.transaction((input: TerminationDecision): DecisionResult => {
    const checked = check(input);
    if (!checked.ok) return checked;
    const { region, instanceId, group, now } = input;
    const prevId = checked.prevId;
    try {
      const id = insertRow({
        groupName: group?.name ?? null,
        instanceId,
        region,
        action: "terminate",
        call: input.call,
        actor: input.actor,
        runId: input.runId ?? null,
        scheduleId: input.scheduleId ?? null,
        now,
        prevId,
      });
      return { ok: true, id };
    } catch (err) {
      // Only reachable when another writer slipped in between the reads and this insert (a
      // database shared without IMMEDIATE transactions): the chain's unique index keeps one.
      if (isUniqueViolation(err)) {
        return {
          ok: false,
          rule: "concurrent-termination",
          reason: `another firedrill recorded a termination in ${group?.name ?? instanceId} at the same moment; only one may proceed`,
        };
      }
      throw err;
    }
  });

  const evaluate = db.transaction((input: TerminationDecision): { ok: true } | DecisionRefusal => {
    const checked = check(input);
    return checked.ok ? { ok: true } : checked;
  });

  /** Writes a ledger row for an action that is not a checked termination; returns its id. */
  const insertAction = (input: Parameters<TerminationLedger["recordAction"]>[0] | ActionDecision): number =>
    Number(
      stmt.insert.get({
        groupName: input.groupName ?? null,
        instanceId: input.instanceId,
        region: input.region,
        action: input.action,
        call: input.call,
        actor: input.actor,
        runId: input.runId ?? null,
        scheduleId: input.scheduleId ?? null,
        now: input.now,
        prevId: null,
      })!.id,
    );

  const decideOther = db.transaction((input: ActionDecision): DecisionResult => {
    const tags = tagRefusal({ tags: input.tags }, input.guardrails);
    if (tags) return { ok: false, rule: tags.rule, reason: `${input.instanceId} ${tags.reason} (tags read at the moment of the action)` };
    if (input.refuseAsgMember && input.groupName) {
      return {
        ok: false,
        rule: "asg-member",
        reason: `${input.instanceId} is in Auto Scaling group ${input.groupName}, which would mark a stopped instance unhealthy and replace it (a termination in effect); use ec2-terminate for group members, or put the instance in Standby first`,
      };
    }
    return { ok: true, id: insertAction(input) };
  });

  return {
    decideTermination: (input) => decide.immediate(input),
    evaluateTermination: (input) => evaluate(input),
    decideAction: (input) => decideOther.immediate(input),
    recordAction: (input) => insertAction(input),
    complete(id, outcome, error, now) {
      stmt.complete.run(outcome, error ?? null, now, id);
    },
    lastTermination(region, groupName) {
      const row = stmt.latestInGroup.get(region, groupName);
      return row ? toEntry(row) : undefined;
    },
    list(query = {}) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      for (const [column, value] of [
        ["run_id", query.runId],
        ["schedule_id", query.scheduleId],
        ["group_name", query.groupName],
        ["region", query.region],
      ] as const) {
        if (value === undefined) continue;
        where.push(`${column} = ?`);
        args.push(value);
      }
      const sql = `SELECT * FROM termination_ledger ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
      return db
        .prepare<(string | number)[], LedgerRow>(sql)
        .all(...args, query.limit ?? 100)
        .map(toEntry);
    },
  };
}
