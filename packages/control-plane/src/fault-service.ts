/**
 * Ad-hoc faults: validate, check the caller's token scope and the server's guardrail policy, send
 * to the agent over its stream, and wait (bounded) for the agent's acknowledgement. The HTTP
 * routes are thin wrappers around this; the runner starts its steps' faults through it too.
 */
import { randomBytes } from "node:crypto";
import {
  CAPABILITY_HINTS,
  missingCapabilities,
  InvalidFaultRequestError,
  RevertReason,
  durationFromMs,
  formatDuration,
  validateFaultRequest,
} from "@firedrill/protocol";
import type { FieldIssue, JsonObject } from "@firedrill/protocol";
import type { Logger } from "pino";
import { formatLabels, scopeViolation } from "./auth/scope.js";
import type { Scope } from "./auth/scope.js";
import { ApiError } from "./errors.js";
import { describeAgent, evaluateFaultGuardrails, mergeGuardrails } from "./experiments/guardrails.js";
import type { GuardrailVerdict } from "./experiments/guardrails.js";
import type { GuardrailsSpec } from "./experiments/types.js";
import { describeHalt, readHalt } from "./halt.js";
import type { AgentHub } from "./hub/agent-hub.js";
import type { Store } from "./store/store.js";
import type { AgentRecord, FaultRecord } from "./store/types.js";

/** Options of {@link createFaultService}. */
export interface FaultServiceOptions {
  store: Store;
  hub: AgentHub;
  logger: Logger;
  /** How long to wait for ACCEPTED/STARTED/FAILED; stops wait twice as long. */
  ackTimeoutMs: number;
  /** For messages about what happens to faults on a disconnected agent. */
  leaseTtlMs: number;
  /**
   * The server's guardrail policy (`firedrill server --policy`, else DEFAULT_POLICY). Ad-hoc faults
   * obey it as runs do: opt-in and exclusion labels, windows, blackout dates, maxDuration, one
   * network fault and one fault of a kind per host.
   */
  policy: GuardrailsSpec;
  /** Clock for the policy's windows and blackout dates. @default () => new Date() */
  now?: () => Date;
}

/** Who starts a fault, and under which limits. */
export interface StartFaultOptions {
  /** The authenticated principal, recorded on the fault. */
  actor: string;
  /** The caller's token scope; the agent's labels must match it. Null or absent: unscoped. */
  scope?: Scope | null;
  /**
   * An admin's reason to skip the policy for this one call (recorded on the fault). Never skips
   * the scope, the halt, capabilities or validation. The route allows it to admins only.
   */
  overridePolicy?: string;
  /**
   * Set by the runner only (never from a request): the id of the run whose step this fault is.
   * The run's plan passed the policy merged with the experiment's guardrails when it started, so
   * only the per-host rules that can change while it runs (one network fault and one fault of a
   * kind per host) are checked again; a run that started inside its window finishes its steps.
   */
  fromRun?: string;
}

/** The outcome of a start or stop: the fault and whether the agent acknowledged in time. */
export interface FaultOutcome {
  fault: FaultRecord;
  acknowledged: boolean;
}

/** Ad-hoc fault operations. Each throws ApiError for the caller's mistakes. */
export interface FaultService {
  /**
   * Starts a fault from a request body `{ kind, params?, duration, runId? }`. Nothing is sent
   * unless every check passes.
   * Thrown (ApiError): 400 invalid body; 409 halted or agent not connected; 404 unknown agent;
   * 403 `out_of_scope` (the agent's labels are outside `options.scope`); 422 unsupported kind or
   * missing capability; 422 `policy_refused` (the server policy refuses it: `issues` name each
   * refusing rule, `verdicts` has them all); 422 `fault_refused` (the agent refused it).
   */
  start(agentId: string, body: unknown, options: StartFaultOptions): Promise<FaultOutcome>;
  /**
   * Stops one fault. Already-ended faults are returned unchanged. The stop is recorded first, so
   * it is never lost: sent now if the agent is connected, else right after it reconnects (and
   * retried until confirmed, or until the agent's lease must have ended the fault).
   * `acknowledged` is false when the agent did not confirm in time (or is not connected).
   */
  stop(agentId: string, faultId: string, actor?: string): Promise<FaultOutcome>;
  /**
   * Stops every fault the agent holds (StopAll when connected); the stops are recorded like
   * {@link stop}'s. Returns the faults that were active.
   */
  stopAll(agentId: string, actor?: string): Promise<FaultRecord[]>;
  /** The agent, or ApiError 404. */
  requireAgent(agentId: string): AgentRecord;
}

const START_FIELDS = ["kind", "params", "duration", "runId"];

/** Creates a fault id: `flt_` and 16 hex characters. */
export function newFaultId(): string {
  return `flt_${randomBytes(8).toString("hex")}`;
}

/** Creates the fault service. */
export function createFaultService(options: FaultServiceOptions): FaultService {
  const { store, hub, ackTimeoutMs } = options;
  const log = options.logger;
  const now = options.now ?? (() => new Date());
  // Ad-hoc faults have no experiment: the server policy alone.
  const policy = mergeGuardrails(options.policy, {});

  function requireAgent(agentId: string): AgentRecord {
    const agent = store.getAgent(agentId);
    if (!agent) {
      throw new ApiError(
        404,
        "agent_not_found",
        `agent ${JSON.stringify(agentId)} is not known to this control plane; list agents with GET /api/v1/agents (firedrill agents)`,
      );
    }
    return agent;
  }

  function since(agent: AgentRecord): string {
    const ago = formatDuration(Math.max(0, Date.now() - agent.lastSeen));
    return `disconnected since ${new Date(agent.lastSeen).toISOString()}, ${ago} ago`;
  }

  /**
   * Waits until every fault of `faultIds` (all on `agentId`) satisfies `done`, the agent
   * disconnects, or `timeoutMs` passes; resolves with the faults as stored then (those still in the
   * store). Watches only these faults (O(1) per fault event however many starts are pending), and
   * before concluding at the timeout lets the hub record the events already received, so that an
   * ack that arrived in time is never reported missing because the control plane was busy.
   */
  function waitForFaults(agentId: string, faultIds: readonly string[], done: (fault: FaultRecord) => boolean, timeoutMs: number, known?: FaultRecord[]): Promise<FaultRecord[]> {
    const current = () => faultIds.map((id) => store.getFault(id)).filter((f): f is FaultRecord => f !== undefined);
    const remaining = new Set((known ?? current()).filter((f) => !done(f)).map((f) => f.id));
    if (remaining.size === 0) return Promise.resolve(current());
    return new Promise((resolve) => {
      const unwatch: (() => void)[] = [];
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        for (const off of unwatch) off();
        resolve(current());
      };
      for (const id of remaining) {
        unwatch.push(
          hub.watchFault(id, ({ fault }) => {
            if (done(fault) && remaining.delete(fault.id) && remaining.size === 0) finish();
          }),
        );
      }
      unwatch.push(hub.watchDisconnect(agentId, finish));
      const timer = setTimeout(() => void hub.drained().then(finish), timeoutMs);
    });
  }

  /** The fault once `done`, else undefined (see {@link waitForFaults}). */
  async function waitForFault(agentId: string, faultId: string, done: (fault: FaultRecord) => boolean, timeoutMs: number, known?: FaultRecord): Promise<FaultRecord | undefined> {
    const [fault] = await waitForFaults(agentId, [faultId], done, timeoutMs, known ? [known] : undefined);
    return fault && done(fault) ? fault : undefined;
  }

  function parseStartBody(body: unknown): { kind: string; params: JsonObject; durationMs: number; runId: string | null } {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new ApiError(
        400,
        "invalid_request",
        'the request body must be a JSON object such as {"kind": "cpu-burn", "params": {"load": 50}, "duration": "30s"}',
      );
    }
    const input = body as Record<string, unknown>;
    const issues: FieldIssue[] = [];
    for (const key of Object.keys(input)) {
      if (!START_FIELDS.includes(key)) issues.push({ field: key, message: `unknown field; allowed: ${START_FIELDS.join(", ")}` });
    }
    let runId: string | null = null;
    if (input.runId !== undefined && input.runId !== null) {
      if (typeof input.runId !== "string" || input.runId === "" || input.runId.length > 128) {
        issues.push({ field: "runId", message: `${JSON.stringify(input.runId)} is not valid; use a string of 1-128 characters` });
      } else runId = input.runId;
    }
    let valid: ReturnType<typeof validateFaultRequest> | undefined;
    try {
      valid = validateFaultRequest({ kind: input.kind, params: input.params, duration: input.duration });
    } catch (err) {
      if (!(err instanceof InvalidFaultRequestError)) throw err;
      issues.unshift(...err.issues);
    }
    if (issues.length > 0 || !valid) {
      throw new ApiError(
        400,
        "invalid_request",
        `invalid fault request: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`,
        issues,
      );
    }
    return { kind: valid.kind, params: valid.params, durationMs: valid.durationMs, runId };
  }

  function requireInScope(agent: AgentRecord, scope: Scope | null | undefined): void {
    if (!scope) return;
    const refused = scopeViolation(scope, agent.labels);
    if (refused === undefined) return;
    throw new ApiError(
      403,
      "out_of_scope",
      `${describeAgent(agent)} is outside your token's scope: rule ${JSON.stringify(refused)} refuses it (labels ${formatLabels(agent.labels)}); ask an admin for a token whose scope includes it`,
      [{ field: "scope", message: `rule ${JSON.stringify(refused)} refuses ${describeAgent(agent)}` }],
      { scope: scope.text, rule: refused },
    );
  }

  /** The policy's verdicts on this fault; throws 422 policy_refused when one refuses. */
  function requirePolicy(agent: AgentRecord, request: { kind: string; durationMs: number }, fromRun: string | undefined): void {
    const active = store.listActiveFaults(agent.id).map((f) => ({ id: f.id, kind: f.kind, runId: f.runId }));
    let verdicts: GuardrailVerdict[] = evaluateFaultGuardrails({ agent, kind: request.kind, durationMs: request.durationMs, guardrails: policy, activeFaults: active, now: now() });
    if (fromRun !== undefined) {
      // The run's plan passed the rest; its own earlier faults have ended before a later step starts.
      verdicts = verdicts.filter((v) => v.rule === "one-network-fault-per-host" || v.rule === "one-fault-per-kind-per-host");
    }
    const refused = verdicts.filter((v) => !v.ok);
    if (refused.length === 0) return;
    const fix = fromRun !== undefined ? "wait for the other fault to end or stop it" : 'fix the host\'s labels or the policy, or (admins only) retry with --override-policy "why"';
    throw new ApiError(
      422,
      "policy_refused",
      `the server policy refuses this fault: ${refused.map((v) => `${v.rule}: ${v.message}`).join("; ")}; ${fix}`,
      refused.map((v) => ({ field: v.rule, message: v.message })),
      { verdicts },
    );
  }

  async function start(agentId: string, body: unknown, startOptions: StartFaultOptions): Promise<FaultOutcome> {
    const request = parseStartBody(body);
    const override = startOptions.overridePolicy?.trim();
    if (startOptions.overridePolicy !== undefined && !override) {
      throw new ApiError(400, "invalid_request", 'overridePolicy must say why the policy is overridden, e.g. --override-policy "INC-123: reproduce on the excluded db host"', [
        { field: "overridePolicy", message: "is empty; give the reason" },
      ]);
    }
    const halted = readHalt(store);
    if (halted) {
      throw new ApiError(409, "halted", `${describeHalt(halted)}; no fault can start until the halt is lifted (firedrill unhalt)`);
    }
    const agent = requireAgent(agentId);
    requireInScope(agent, startOptions.scope);
    if (!hub.isConnected(agentId)) {
      throw new ApiError(
        409,
        "agent_not_connected",
        `agent ${JSON.stringify(agentId)} (${agent.hostname}) is not connected (${since(agent)}); the fault was not sent. Check that firedrill-agent is running on that host and can reach the control plane`,
      );
    }
    const kinds = agent.capabilities.faultKinds;
    if (!kinds.includes(request.kind)) {
      throw new ApiError(
        422,
        "unsupported_fault_kind",
        `agent ${JSON.stringify(agentId)} (${agent.hostname}) cannot run ${request.kind}: it supports ${kinds.length ? kinds.join(", ") : "no fault kinds"}; choose another agent or upgrade firedrill-agent there`,
      );
    }
    const missing = missingCapabilities(request.kind, agent.capabilities);
    if (missing.length > 0) {
      throw new ApiError(
        422,
        "host_lacks_capability",
        `agent ${JSON.stringify(agentId)} (${agent.hostname}) cannot run ${request.kind}: ${missing.map((c) => CAPABILITY_HINTS[c]).join("; ")}. The fault was not sent`,
      );
    }
    // A run's faults are never overridden: the run passed the policy at its start.
    const policyOverride = override && startOptions.fromRun === undefined ? override : null;
    if (policyOverride !== null) {
      log.warn({ agentId, kind: request.kind, actor: startOptions.actor, reason: policyOverride }, "server policy overridden for an ad-hoc fault");
    } else {
      requirePolicy(agent, request, startOptions.fromRun);
    }
    const id = newFaultId();
    const created = store.insertFault({
      id,
      agentId,
      runId: request.runId,
      kind: request.kind,
      params: request.params,
      durationMs: request.durationMs,
      createdAt: Date.now(),
      actor: startOptions.actor,
      policyOverride,
    });
    const sent = hub.send(agentId, {
      case: "startFault",
      value: {
        faultId: id,
        kind: request.kind,
        params: request.params,
        duration: durationFromMs(request.durationMs),
        runId: request.runId ?? "",
      },
    });
    if (!sent) {
      const now = Date.now();
      store.recordFaultEvent(
        { faultId: id, agentId, type: "failed", time: now, reason: null, error: "the agent disconnected before the fault could be sent", message: null, measurements: null },
        now,
      );
      throw new ApiError(409, "agent_not_connected", `agent ${JSON.stringify(agentId)} disconnected just now; the fault was not sent. Retry once it has reconnected`);
    }
    // A run logs its steps; one line per host of a 10,000-host step would drown the log.
    log[startOptions.fromRun === undefined ? "info" : "debug"]({ faultId: id, agentId, kind: request.kind, durationMs: request.durationMs, actor: startOptions.actor }, "fault sent to agent");
    // Just created: nothing can have answered yet (the ack is handled in a later turn of the loop).
    const acked = await waitForFault(agentId, id, (f) => f.state !== "pending", ackTimeoutMs, created);
    if (!acked) {
      log.warn({ faultId: id, agentId, ackTimeoutMs }, "agent did not acknowledge the fault in time");
      return { fault: store.getFault(id) ?? created, acknowledged: false };
    }
    if (acked.state === "failed") {
      throw new ApiError(422, "fault_refused", acked.error ?? "the agent refused the fault", undefined, { fault: acked });
    }
    return { fault: acked, acknowledged: true };
  }

  function requireFault(agentId: string, faultId: string): FaultRecord {
    const fault = store.getFault(faultId);
    if (!fault || fault.agentId !== agentId) {
      throw new ApiError(
        404,
        "fault_not_found",
        `fault ${JSON.stringify(faultId)} is not known on agent ${JSON.stringify(agentId)}; list its faults with GET /api/v1/agents/${encodeURIComponent(agentId)}/faults (firedrill fault list --agent ${agentId} --all)`,
      );
    }
    return fault;
  }

  const stoppedBy = (actor: string | undefined) => (actor ? `stopped by ${actor}` : "stopped through the HTTP API");

  async function stop(agentId: string, faultId: string, actor?: string): Promise<FaultOutcome> {
    const agent = requireAgent(agentId);
    const fault = requireFault(agentId, faultId);
    if (fault.state === "revert_failed") return retryRevert(fault);
    if (fault.endedAt !== null) return { fault, acknowledged: true };
    const { sent } = hub.requestStop(faultId, "stopped", stoppedBy(actor));
    if (!sent) {
      log.warn({ faultId, agentId }, `agent not connected (${since(agent)}): the stop is recorded and sent when it reconnects; its lease reverts the fault within ${formatDuration(options.leaseTtlMs)} of losing the link`);
      return { fault: store.getFault(faultId) ?? fault, acknowledged: false };
    }
    const ended = await waitForFault(agentId, faultId, (f) => f.endedAt !== null, ackTimeoutMs * 2);
    return ended ? { fault: ended, acknowledged: true } : { fault: store.getFault(faultId) ?? fault, acknowledged: false };
  }

  /** A stop for a fault whose revert the agent gave up makes the agent try the revert again. */
  async function retryRevert(fault: FaultRecord): Promise<FaultOutcome> {
    const sent = hub.send(fault.agentId, { case: "stopFault", value: { faultId: fault.id, reason: RevertReason.STOPPED } });
    if (!sent) return { fault, acknowledged: false };
    log.info({ faultId: fault.id, agentId: fault.agentId }, "stop sent again for a fault whose revert failed: the agent tries the revert again");
    const reverted = await waitForFault(fault.agentId, fault.id, (f) => f.state !== "revert_failed", ackTimeoutMs * 2);
    return reverted ? { fault: reverted, acknowledged: true } : { fault: store.getFault(fault.id) ?? fault, acknowledged: false };
  }

  async function stopAll(agentId: string, actor?: string): Promise<FaultRecord[]> {
    requireAgent(agentId);
    const active = store.listActiveFaults(agentId).map((f) => f.id);
    hub.requestStops({ agentId }, "stopped", stoppedBy(actor));
    const sent = hub.send(agentId, { case: "stopAll", value: { reason: RevertReason.STOPPED, message: stoppedBy(actor) } });
    log.info({ agentId, faults: active.length, sent }, sent ? "stop-all sent to agent" : "agent not connected: the stops are recorded and sent when it reconnects");
    if (!sent) return active.map((id) => store.getFault(id)).filter((f): f is FaultRecord => f !== undefined);
    return waitForFaults(agentId, active, (f) => f.endedAt !== null, ackTimeoutMs * 2);
  }

  return { start, stop, stopAll, requireAgent };
}
