/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many have run. Append
 * new migrations; never edit one that has shipped.
 */
import type { Database } from "better-sqlite3";

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    facts TEXT NOT NULL,
    labels TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    instance_id TEXT,
    availability_zone TEXT,
    connected INTEGER NOT NULL DEFAULT 0,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    connected_at INTEGER
  );

  CREATE TABLE faults (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    run_id TEXT,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'running', 'reverted', 'failed')),
    reason TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    measurements TEXT,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX faults_agent_state ON faults(agent_id, state);
  CREATE INDEX faults_state ON faults(state);
  CREATE INDEX faults_created_at ON faults(created_at);

  -- Events may arrive for faults this store never created (e.g. after the data dir was wiped),
  -- so fault_id is not a foreign key. The unique index drops events an agent re-sends after a
  -- reconnect.
  CREATE TABLE fault_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fault_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    type TEXT NOT NULL,
    time INTEGER NOT NULL,
    reason TEXT,
    error TEXT,
    message TEXT,
    measurements TEXT,
    received_at INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX fault_events_dedup ON fault_events(fault_id, type, time);
  `,
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec_yaml TEXT NOT NULL,
    experiment TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'preflight', 'running', 'completed', 'aborted', 'failed')),
    reason TEXT,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX runs_state ON runs(state);
  CREATE INDEX runs_created_at ON runs(created_at);

  CREATE TABLE run_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    time INTEGER NOT NULL,
    type TEXT NOT NULL,
    step TEXT,
    agent_id TEXT,
    fault_id TEXT,
    message TEXT NOT NULL,
    data TEXT
  );
  CREATE INDEX run_events_run ON run_events(run_id, id);
  CREATE INDEX faults_run ON faults(run_id);
  `,
  `
  -- Schedules: experiments on a cron, and Chaos-Monkey terminations (config: group, region,
  -- meanWorkdays, minWorkdays, window, leashed). active_since: when the schedule was created or
  -- last resumed; slots before it are not the scheduler's to run or to count as missed.
  CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('experiment', 'chaos-monkey')),
    name TEXT NOT NULL,
    spec_yaml TEXT,
    cron TEXT,
    tz TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'paused')),
    active_since INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );

  -- One row per slot: the primary key is what makes a slot run at most once, across restarts and
  -- across schedulers sharing the database (the row is inserted, in a transaction, before acting).
  -- planned: a Chaos-Monkey day that will kill at planned_at; claimed: a scheduler is acting on it.
  CREATE TABLE schedule_slots (
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    slot_key TEXT NOT NULL,
    planned_at INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('planned', 'claimed', 'started', 'skipped', 'killed', 'would-kill', 'refused', 'failed', 'missed')),
    detail TEXT,
    run_id TEXT,
    instance_id TEXT,
    decided_at INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, slot_key)
  );
  CREATE INDEX schedule_slots_planned ON schedule_slots(schedule_id, planned_at);
  CREATE INDEX schedule_slots_outcome ON schedule_slots(outcome);
  `,
  `
  -- The AWS action ledger: one row per terminate / stop / start decided by firedrill, inserted in
  -- the same (IMMEDIATE) transaction as the guardrail checks, before the API call, then updated
  -- with the outcome. A terminate counts (for min time between terminations, min healthy and max
  -- percent of group) while its outcome is pending, ok or unknown; 'failed' means AWS refused the
  -- call, so nothing happened.
  CREATE TABLE termination_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT,
    instance_id TEXT NOT NULL,
    region TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('terminate', 'stop', 'start')),
    call TEXT NOT NULL,
    actor TEXT NOT NULL,
    run_id TEXT,
    schedule_id TEXT,
    decided_at INTEGER NOT NULL,
    completed_at INTEGER,
    outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'ok', 'failed', 'unknown')),
    error TEXT,
    -- Terminations in an Auto Scaling group form a chain: each names the group's latest counting
    -- termination when it was decided (0 for the first). The unique index below lets only one
    -- decision extend the chain from a given point, so two schedulers that read the same state can
    -- never both kill, whatever the transaction isolation.
    prev_id INTEGER
  );
  CREATE INDEX termination_ledger_group ON termination_ledger(region, group_name, decided_at);
  CREATE INDEX termination_ledger_run ON termination_ledger(run_id);
  CREATE UNIQUE INDEX termination_ledger_chain ON termination_ledger(region, group_name, prev_id)
    WHERE action = 'terminate' AND group_name IS NOT NULL AND outcome IN ('pending', 'ok', 'unknown');
  -- An instance is terminated at most once: a retry of a step or a slot can't record it again.
  CREATE UNIQUE INDEX termination_ledger_once ON termination_ledger(region, instance_id)
    WHERE action = 'terminate' AND outcome IN ('pending', 'ok', 'unknown');
  `,
  `
  -- Identity: principals (people and service accounts), each with one role, and their API tokens.
  -- A token is stored only as the SHA-256 of its secret; the id (public) finds the row, the hash is
  -- compared in constant time. scope: an optional label selector bounding what the token can target.
  CREATE TABLE principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('person', 'service')),
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin', 'alertmanager')),
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
  );

  CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    secret_hash TEXT NOT NULL,
    scope TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    last_used_from TEXT,
    revoked_at INTEGER,
    revoked_by TEXT,
    bootstrap INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX api_tokens_principal ON api_tokens(principal_id);

  -- The audit log: append-only, each row chained to the previous by hash (prev_hash, hash), so an
  -- edited or deleted row is found by firedrill audit verify. The triggers stop accidental edits;
  -- the chain (and the head kept in settings) catches deliberate ones.
  CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    principal TEXT,
    role TEXT,
    token_id TEXT,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    targets TEXT NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE INDEX audit_log_time ON audit_log(time);
  CREATE INDEX audit_log_principal ON audit_log(principal, time);
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

  -- Alerts Alertmanager reported firing, so a restart does not forget one (bounded by the receiver).
  CREATE TABLE firing_alerts (
    fingerprint TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at INTEGER,
    received_at INTEGER NOT NULL
  );

  -- Who started an ad-hoc fault (runs keep theirs in runs.actor), and why an admin overrode the policy.
  ALTER TABLE faults ADD COLUMN actor TEXT;
  ALTER TABLE faults ADD COLUMN policy_override TEXT;
  `,
  `
  -- Join tokens: each pins the CA (its hash is in the token text), may expire and be limited in
  -- uses, and gives the agents that enroll with it its labels. Only the secret's SHA-256 is kept.
  CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    uses_allowed INTEGER,
    uses INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    revoked_at INTEGER,
    revoked_by TEXT,
    bootstrap INTEGER NOT NULL DEFAULT 0
  );

  -- Enrolled agents: the identity the control plane issued (the certificate's subject is the id).
  -- A revoked identity can never connect again; cert_serial is the current certificate.
  CREATE TABLE agent_identities (
    agent_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    join_token_id TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    enrolled_at INTEGER NOT NULL,
    cert_serial TEXT NOT NULL,
    cert_not_after INTEGER NOT NULL,
    renewed_at INTEGER,
    revoked_at INTEGER,
    revoked_by TEXT,
    revoke_reason TEXT
  );

  -- A host forgotten with firedrill agents rm: hidden from listings and targets, history kept.
  ALTER TABLE agents ADD COLUMN removed_at INTEGER;
  `,
  `
  -- Faults gain the state revert_failed (the agent gave a revert up: ended, never "reverted"), the
  -- details their agent reports (what the fault leaves alone, ...: a JSON array of strings), and
  -- the stop the control plane wants (an operator stop, the run's end, a halt), kept until the fault
  -- has ended so that the stop is sent again on every reconnect of its agent. SQLite cannot change
  -- a CHECK constraint, so the table is rebuilt (no table references faults).
  CREATE TABLE faults_v7 (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    run_id TEXT,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'running', 'reverted', 'failed', 'revert_failed')),
    reason TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    measurements TEXT,
    updated_at INTEGER NOT NULL,
    actor TEXT,
    policy_override TEXT,
    details TEXT,
    stop_requested_at INTEGER,
    stop_reason TEXT CHECK (stop_reason IN ('stopped', 'aborted', 'halt')),
    stop_requested_by TEXT
  );
  INSERT INTO faults_v7 (id, agent_id, run_id, kind, params, duration_ms, state, reason, error, created_at,
                         started_at, ended_at, measurements, updated_at, actor, policy_override)
    SELECT id, agent_id, run_id, kind, params, duration_ms, state, reason, error, created_at,
           started_at, ended_at, measurements, updated_at, actor, policy_override
    FROM faults ORDER BY rowid;
  DROP TABLE faults;
  ALTER TABLE faults_v7 RENAME TO faults;
  CREATE INDEX faults_agent_state ON faults(agent_id, state);
  CREATE INDEX faults_state ON faults(state);
  CREATE INDEX faults_created_at ON faults(created_at);
  CREATE INDEX faults_run ON faults(run_id);
  -- The stops still wanted: small, read on every reconnect (per agent) and every retry tick.
  CREATE INDEX faults_stop_wanted ON faults(agent_id, stop_requested_at)
    WHERE stop_requested_at IS NOT NULL AND ended_at IS NULL;
  CREATE INDEX faults_stop_wanted_at ON faults(stop_requested_at)
    WHERE stop_requested_at IS NOT NULL AND ended_at IS NULL;
  -- Faults still active whose run has ended: the control plane wants them ended.
  UPDATE faults SET stop_requested_at = updated_at, stop_reason = 'aborted',
      stop_requested_by = 'run ' || run_id || ' had ended when this control plane was upgraded'
    WHERE ended_at IS NULL AND run_id IN (SELECT id FROM runs WHERE state IN ('completed', 'aborted', 'failed'));
  `,
  `
  -- The cloud-revert journal (aws/cloud-journal.ts): every reversible cloud action with its revert,
  -- written before the AWS call. The reconciler retries each wanted revert until AWS confirms it.
  -- pending: the action's effect is wanted (its step runs); reverting: the revert is wanted and
  -- not confirmed yet; confirmed: AWS shows it undone; cancelled: AWS refused the action itself
  -- (nothing to undo); failed: it can never be undone (e.g. the instance no longer exists).
  CREATE TABLE cloud_reverts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    step TEXT,
    -- What was done (e.g. 'ec2-stop') and the reverter that undoes it (e.g. 'ec2-start').
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    region TEXT NOT NULL,
    -- What the action hit, for people (e.g. the instance id); the reverter reads payload (JSON).
    resource TEXT NOT NULL,
    payload TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- When the revert falls due on its own (the end of the step); null: when asked or the run ends.
    due_at INTEGER,
    -- When the action's own call returned; null while it is in flight (its revert waits for it, so
    -- that a start never races the stop it undoes). Set at start-up for calls a crash cut short.
    acted_at INTEGER,
    state TEXT NOT NULL CHECK (state IN ('pending', 'reverting', 'confirmed', 'cancelled', 'failed')),
    revert_requested_at INTEGER,
    revert_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    next_attempt_at INTEGER,
    last_error TEXT,
    -- The last state seen at AWS, e.g. 'i-0abc is stopped'.
    detail TEXT,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX cloud_reverts_run ON cloud_reverts(run_id);
  CREATE INDEX cloud_reverts_open ON cloud_reverts(state, next_attempt_at) WHERE state IN ('pending', 'reverting');
  `,
  `
  -- ec2-reboot: the ledger's action may be 'reboot' (SQLite can't alter a CHECK: the table is rebuilt).
  CREATE TABLE termination_ledger_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT,
    instance_id TEXT NOT NULL,
    region TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('terminate', 'stop', 'start', 'reboot')),
    call TEXT NOT NULL,
    actor TEXT NOT NULL,
    run_id TEXT,
    schedule_id TEXT,
    decided_at INTEGER NOT NULL,
    completed_at INTEGER,
    outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'ok', 'failed', 'unknown')),
    error TEXT,
    prev_id INTEGER
  );
  INSERT INTO termination_ledger_new SELECT id, group_name, instance_id, region, action, call, actor, run_id, schedule_id, decided_at, completed_at, outcome, error, prev_id FROM termination_ledger;
  DROP TABLE termination_ledger;
  ALTER TABLE termination_ledger_new RENAME TO termination_ledger;
  CREATE INDEX termination_ledger_group ON termination_ledger(region, group_name, decided_at);
  CREATE INDEX termination_ledger_run ON termination_ledger(run_id);
  CREATE UNIQUE INDEX termination_ledger_chain ON termination_ledger(region, group_name, prev_id)
    WHERE action = 'terminate' AND group_name IS NOT NULL AND outcome IN ('pending', 'ok', 'unknown');
  CREATE UNIQUE INDEX termination_ledger_once ON termination_ledger(region, instance_id)
    WHERE action = 'terminate' AND outcome IN ('pending', 'ok', 'unknown');
  `,
  `
  -- Keyset pagination of GET /api/v1/agents and /faults (store/listings.ts): every filter walks an
  -- index in the listing's own order, so a page costs its size, not the fleet's. (Each index ends
  -- in the rowid: faults are listed by created_at DESC, rowid DESC.)
  CREATE INDEX agents_listed ON agents(removed_at, connected, id);
  CREATE INDEX faults_agent_created ON faults(agent_id, created_at);
  CREATE INDEX faults_run_created ON faults(run_id, created_at);
  CREATE INDEX faults_listed_active ON faults(created_at) WHERE state IN ('pending', 'accepted', 'running', 'revert_failed');
  -- faults_run_created serves every lookup by run_id.
  DROP INDEX faults_run;
  `,
  `
  -- Every observation of a run's stop conditions (the console's charts, the report): condition is
  -- the index in spec.stopConditions, value what the chart plots (NULL: none, e.g. no answer),
  -- healthy 0/1. The runner keeps at most 20,000 per condition per run, then one in ten. They go
  -- with their run.
  CREATE TABLE run_samples (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    condition INTEGER NOT NULL,
    at INTEGER NOT NULL,
    value REAL,
    healthy INTEGER NOT NULL
  );
  CREATE INDEX run_samples_run ON run_samples(run_id, condition, at);
  -- The breaches of a run, found without reading its timeline (a state per stop condition).
  CREATE INDEX run_events_breach ON run_events(run_id) WHERE type = 'breach';
  `,
  `
  -- Console sessions (auth/session.ts), shared by every replica of a PostgreSQL store and kept
  -- across restarts. id_hash is the SHA-256 of the session id (the cookie's value), never the id;
  -- the API token is re-checked by its id on every request, its text is never stored.
  -- last_used_at is written at most once a minute per session.
  CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    token_expires_at INTEGER
  );
  CREATE INDEX console_sessions_last_used ON console_sessions(last_used_at);
  `,
];

/**
 * Brings the database schema up to date (or, for tests of a migration, up to version `target`).
 * Returns the number of migrations applied.
 */
export function migrate(db: Database, target: number = MIGRATIONS.length): number {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `the database schema (version ${current}) is newer than this firedrill (version ${MIGRATIONS.length}); upgrade firedrill or use another --data-dir`,
    );
  }
  const pending = MIGRATIONS.slice(current, Math.max(current, target));
  db.transaction(() => {
    pending.forEach((sql, index) => {
      db.exec(sql);
      db.pragma(`user_version = ${current + index + 1}`);
    });
  })();
  return pending.length;
}
