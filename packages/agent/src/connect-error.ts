/**
 * Why the agent could not connect to the control plane, in words an operator can act on. grpc-js
 * says `14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED
 * 127.0.0.1:7070. Resolution note: ` (often with nothing after the note); a TLS probe fails with a
 * raw OpenSSL line. Both become one line: the address, what happened, what to check.
 */
import { status } from "@grpc/grpc-js";

/** A connection failure, described. */
export interface ConnectFailure {
  /** What happened, short: `connection refused`, `not TLS`, … (for a log field). */
  reason: string;
  /** `cannot connect to the control plane at ADDRESS: what happened; what to check`. */
  message: string;
}

/** What --server must be. */
const GRPC_ADDRESS = "the control plane's gRPC address (`firedrill server --grpc-addr`, port 7070 in the examples), not its HTTP API (--http-addr)";

/** The innermost error text: grpc's "Last error" without the empty "Resolution note", or the error's message. */
function innerText(err: unknown): { text: string; code: string | undefined } {
  const e = err as { code?: unknown; details?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === "string" ? e.code : undefined;
  let text = typeof e?.details === "string" && e.details !== "" ? e.details : typeof e?.message === "string" ? e.message : String(err);
  const last = /Last error: (?:Error: )?([\s\S]*?)(?:\.\s*Resolution note: ([\s\S]*))?$/.exec(text);
  if (last) {
    const note = last[2]?.trim();
    text = `${last[1]!.trim()}${note ? ` (${note})` : ""}`;
  }
  // grpc stamps some errors with the time: "Protocol error (2026-01-01T00:00:00.000Z)".
  text = text.replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, "").trim();
  return { text, code };
}

/** Describes a failed attempt to reach the control plane at `server` (a grpc ServiceError or a socket/TLS error). */
export function describeConnectFailure(server: string, err: unknown): ConnectFailure {
  const { text, code } = innerText(err);
  const has = (...needles: string[]) => needles.some((n) => text.includes(n) || code === n);
  const host = server.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  let reason: string;
  let detail: string;
  if (has("ECONNREFUSED")) {
    reason = "connection refused";
    detail = `connection refused: nothing listens on that port; check that \`firedrill server\` is running there and that --server is ${GRPC_ADDRESS}`;
  } else if (has("ENOTFOUND", "EAI_AGAIN", "EAI_NONAME")) {
    reason = "host name does not resolve";
    detail = `the host name ${host} does not resolve; check the name in --server and this host's DNS`;
  } else if (has("ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "Deadline exceeded", "timed out") || (err as { code?: unknown })?.code === status.DEADLINE_EXCEEDED) {
    reason = "no answer";
    detail = `no answer (${text}); check the address and that no firewall between this host and the control plane drops that port`;
  } else if (has("wrong version number", "ERR_SSL_WRONG_VERSION_NUMBER", "packet length too long", "http request", "HTTP_REQUEST")) {
    reason = "not TLS";
    detail = `the port answered, but not with TLS: it is not the control plane's gRPC port; --server must be ${GRPC_ADDRESS}`;
  } else if (has("Protocol error", "ERR_HTTP2", "HTTP/1")) {
    reason = "not gRPC";
    detail = `the port answered, but not with gRPC (HTTP/2): it is not the control plane's gRPC port; --server must be ${GRPC_ADDRESS}`;
  } else if (has("ECONNRESET", "socket hang up", "Connection dropped")) {
    reason = "connection reset";
    detail = `the connection was closed as it opened (${text}); check that --server is ${GRPC_ADDRESS}, and whether a proxy or firewall in between cuts it`;
  } else if (/certificate|CERT_|Hostname\/IP does not match|self.signed/i.test(text)) {
    reason = "certificate not trusted";
    detail = `its TLS certificate does not verify against the CA this agent pinned (${text}): it is another server or another control plane; check --server`;
  } else {
    reason = text || "unknown error";
    detail = `${text || "unknown error"}; check that \`firedrill server\` is running and that --server is ${GRPC_ADDRESS}`;
  }
  return { reason, message: `cannot connect to the control plane at ${server}: ${detail}` };
}
