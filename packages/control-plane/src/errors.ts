/**
 * Named error classes of the control plane. User-facing messages say what was wrong, where, and
 * what to do about it.
 */

/** One problem with one field, e.g. `{ field: "leaseTtlMs", message: "..." }`. */
export interface Issue {
  field: string;
  message: string;
  /** 1-based line in a submitted file (experiment YAML), when known. */
  line?: number;
}

/** Thrown when control-plane options are invalid. Nothing has been started. */
export class InvalidConfigError extends Error {
  override readonly name = "InvalidConfigError";
  constructor(readonly issues: Issue[]) {
    super(`invalid control plane configuration: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`);
  }
}

/**
 * An error answered by the HTTP API as `{ error: { code, message, issues?, ...details } }` with
 * the given status code.
 */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    /** HTTP status code (4xx for the caller's mistakes). */
    readonly statusCode: number,
    /** Stable machine-readable code, e.g. `invalid_request`, `agent_not_found`. */
    readonly code: string,
    message: string,
    /** Per-field problems, when the request body or query was invalid. */
    readonly issues?: Issue[],
    /** Extra top-level members of the error object (e.g. the refused fault). */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Thrown when a listen address cannot be bound or its TLS files cannot be read. */
export class ListenError extends Error {
  override readonly name = "ListenError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
