/**
 * `http` stop condition: probes `method url` every `intervalMs`; a probe is healthy when the
 * whole answer arrives within `timeoutMs` with a status in `expectStatus`. `failuresToAbort`
 * consecutive failures are a breach; one success resets the count.
 */
import type { HttpStopConditionSpec } from "../experiments/types.js";
import { createPollingWatcher } from "./poll.js";
import type { StopConditionKind, StopConditionWatcher } from "./types.js";

/** `1st`, `2nd`, `3rd`, `11th`, `22nd`. */
export function ordinal(n: number): string {
  const mod100 = n % 100;
  if (mod100 >= 11 && mod100 <= 13) return `${n}th`;
  switch (n % 10) {
    case 1:
      return `${n}st`;
    case 2:
      return `${n}nd`;
    case 3:
      return `${n}rd`;
    default:
      return `${n}th`;
  }
}

/** Why a request failed, in a few words: "connection refused (127.0.0.1:8080)". */
export function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) {
    return `no answer within ${timeoutMs} ms`;
  }
  const cause = err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === "string" ? cause.code : undefined;
  const causeMessage = typeof cause?.message === "string" ? cause.message : undefined;
  switch (code) {
    case "ECONNREFUSED":
      return `connection refused (${causeMessage ?? code})`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `host not found (${causeMessage ?? code})`;
    case "ECONNRESET":
    case "UND_ERR_SOCKET":
      return `connection reset (${causeMessage ?? code})`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `host unreachable (${causeMessage ?? code})`;
    default:
      if (causeMessage !== undefined) return `request failed: ${causeMessage}`;
      return `request failed: ${err instanceof Error ? err.message : String(err)}`;
  }
}

interface ProbeResult {
  healthy: boolean;
  /** Without the consecutive-failure count. */
  detail: string;
  /** Latency in ms of an answer that arrived (whatever its status); null when none did. */
  value: number | null;
}

async function probe(spec: HttpStopConditionSpec, stopSignal?: AbortSignal): Promise<ProbeResult> {
  const timeout = AbortSignal.timeout(spec.timeoutMs);
  const signal = stopSignal ? AbortSignal.any([timeout, stopSignal]) : timeout;
  // Follow redirects like most health checkers, unless a 3xx is what the SRE expects to see.
  const expectsRedirect = spec.expectStatus.some((s) => s >= 300 && s < 400);
  const started = performance.now();
  try {
    const res = await fetch(spec.url, {
      method: spec.method,
      signal,
      redirect: expectsRedirect ? "manual" : "follow",
      headers: { "user-agent": "firedrill-stop-condition" },
    });
    // The whole answer must arrive within the bound, not only the headers.
    await res.arrayBuffer();
    const ms = Math.round(performance.now() - started);
    if (ms > spec.timeoutMs) {
      return { healthy: false, detail: `HTTP ${res.status} in ${ms} ms, slower than the ${spec.timeoutMs} ms bound`, value: ms };
    }
    if (!spec.expectStatus.includes(res.status)) {
      return { healthy: false, detail: `HTTP ${res.status} in ${ms} ms (expected ${spec.expectStatus.join(" or ")})`, value: ms };
    }
    return { healthy: true, detail: `HTTP ${res.status} in ${ms} ms`, value: ms };
  } catch (err) {
    return { healthy: false, detail: describeFetchError(err, spec.timeoutMs), value: null };
  }
}

/** The `http` kind. */
export const httpStopCondition: StopConditionKind<HttpStopConditionSpec> = {
  kind: "http",

  describe(spec) {
    return `http ${spec.method} ${spec.url}`;
  },

  chart(spec) {
    return { unit: "ms", threshold: spec.timeoutMs, thresholdLabel: `timeout ${spec.timeoutMs} ms` };
  },

  create(spec, ctx): StopConditionWatcher {
    const condition = httpStopCondition.describe(spec);
    const log = ctx.log.child({ component: "stop-condition", condition });
    let failures = 0;
    return createPollingWatcher({
      condition,
      intervalMs: spec.intervalMs,
      log,
      now: ctx.now ?? Date.now,
      check: () => probe(spec),
      async observe(signal) {
        const result = await probe(spec, signal);
        if (result.healthy) {
          if (failures > 0) log.info({ detail: result.detail, failuresBefore: failures }, "endpoint healthy again");
          failures = 0;
          return { status: result, breach: false };
        }
        failures += 1;
        const detail = `${result.detail} (${ordinal(failures)} consecutive failure)`;
        log.debug({ detail }, "probe failed");
        return { status: { healthy: false, detail, value: result.value }, breach: failures >= spec.failuresToAbort };
      },
    });
  },
};
