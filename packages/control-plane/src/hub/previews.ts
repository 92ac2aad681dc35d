/**
 * Preview requests to agents: a PreviewFault out on the agent's stream, its FaultPreview back,
 * matched by request id. Bounded: a few pending per agent, each with a timeout, all dropped when the
 * agent disconnects or the hub closes. An agent can only answer its own requests.
 */
import { randomBytes } from "node:crypto";
import type { FaultPreview, JsonObject } from "@firedrill/protocol";
import type { Logger } from "pino";

/** One process a fault would hit, as the agent reported it. */
export interface PreviewedProcessJson {
  pid: number;
  name: string;
  cmdline: string;
}

/** An agent's answer to a preview: a refusal (`error`), or what the fault would act on. */
export interface AgentPreview {
  /** Why the agent would refuse the fault; empty when it would run it. */
  error: string;
  /** What it would act on or leave alone, one line each. */
  details: string[];
  /** The processes a process fault would signal (at most 50). */
  processes: PreviewedProcessJson[];
  /** How many processes it would signal in all. */
  matched: number;
}

/** Thrown (rejected) when no preview could be had: not connected, no answer in time, disconnected, too many pending. */
export class PreviewUnavailableError extends Error {
  override readonly name = "PreviewUnavailableError";
}

/** Most preview requests pending per agent; one more is refused at once. */
export const MAX_PENDING_PREVIEWS_PER_AGENT = 16;

/** Bounds on what an agent's answer may hold (longer is cut). */
const ANSWER_BOUNDS = { text: 1000, details: 50, processes: 50, cmdline: 200, name: 64 } as const;

interface Pending {
  agentId: string;
  resolve: (preview: AgentPreview) => void;
  reject: (err: PreviewUnavailableError) => void;
  timer: NodeJS.Timeout;
}

/** Options of {@link createPreviewRequests}. */
export interface PreviewRequestsOptions {
  /** Writes a PreviewFault on the agent's live stream; false when it has none. */
  send(agentId: string, request: { requestId: string; kind: string; params: JsonObject }): boolean;
  log: Logger;
}

/** Pending previews of every agent. */
export interface PreviewRequests {
  /** Asks the agent for a dry run of a fault. Rejected with PreviewUnavailableError (see there). */
  request(agentId: string, kind: string, params: JsonObject, timeoutMs: number): Promise<AgentPreview>;
  /** Settles the request the answer names, if it is this agent's; false when none was pending. */
  answer(agentId: string, preview: FaultPreview): boolean;
  /** The agent's stream ended: every request pending for it is rejected. */
  disconnected(agentId: string): void;
  /** Rejects everything pending. */
  close(): void;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The answer as JSON, within {@link ANSWER_BOUNDS}. */
function fromProto(preview: FaultPreview): AgentPreview {
  const b = ANSWER_BOUNDS;
  return {
    error: clip(preview.error, b.text * 4),
    details: preview.details.slice(0, b.details).map((d) => clip(d, b.text)),
    processes: preview.processes.slice(0, b.processes).map((p) => ({ pid: p.pid, name: clip(p.name, b.name), cmdline: clip(p.cmdline, b.cmdline) })),
    matched: preview.matched,
  };
}

/** Creates the preview request table of a hub. */
export function createPreviewRequests(options: PreviewRequestsOptions): PreviewRequests {
  const pending = new Map<string, Pending>();
  const perAgent = new Map<string, number>();

  const settle = (requestId: string): Pending | undefined => {
    const p = pending.get(requestId);
    if (!p) return undefined;
    pending.delete(requestId);
    clearTimeout(p.timer);
    const left = (perAgent.get(p.agentId) ?? 1) - 1;
    if (left <= 0) perAgent.delete(p.agentId);
    else perAgent.set(p.agentId, left);
    return p;
  };

  const rejectWhere = (match: (p: Pending) => boolean, message: (p: Pending) => string) => {
    for (const [id, p] of [...pending]) {
      if (match(p)) settle(id)?.reject(new PreviewUnavailableError(message(p)));
    }
  };

  return {
    request(agentId, kind, params, timeoutMs) {
      if ((perAgent.get(agentId) ?? 0) >= MAX_PENDING_PREVIEWS_PER_AGENT) {
        return Promise.reject(
          new PreviewUnavailableError(`agent ${agentId} already has ${MAX_PENDING_PREVIEWS_PER_AGENT} previews pending; try again in a few seconds`),
        );
      }
      const requestId = `prv_${randomBytes(8).toString("hex")}`;
      return new Promise<AgentPreview>((resolve, reject) => {
        const timer = setTimeout(() => {
          settle(requestId)?.reject(new PreviewUnavailableError(`agent ${agentId} did not answer the preview within ${timeoutMs}ms`));
        }, timeoutMs);
        pending.set(requestId, { agentId, resolve, reject, timer });
        perAgent.set(agentId, (perAgent.get(agentId) ?? 0) + 1);
        if (!options.send(agentId, { requestId, kind, params })) {
          settle(requestId)?.reject(new PreviewUnavailableError(`agent ${agentId} is not connected`));
        }
      });
    },
    answer(agentId, preview) {
      const p = pending.get(preview.requestId);
      if (!p || p.agentId !== agentId) {
        options.log.debug({ agentId, requestId: preview.requestId.slice(0, 64) }, "ignoring a preview answer to no pending request of this agent");
        return false;
      }
      settle(preview.requestId)!.resolve(fromProto(preview));
      return true;
    },
    disconnected(agentId) {
      rejectWhere((p) => p.agentId === agentId, () => `agent ${agentId} disconnected before answering the preview`);
    },
    close() {
      rejectWhere(() => true, () => "the control plane is shutting down");
    },
  };
}
