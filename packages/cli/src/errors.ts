/** Named errors of the CLI. Each is printed as `error: <message>` (plus issues) with exit code 1. */

/** One problem with one field. */
export interface Issue {
  field: string;
  message: string;
}

/** A mistake in how the CLI was called (bad flag value, missing argument). */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    message: string,
    readonly issues: Issue[] = [],
  ) {
    super(message);
  }
}

/** The control plane answered with an error (`{ error: { code, message, issues? } }`). */
export class ApiRequestError extends Error {
  override readonly name = "ApiRequestError";
  constructor(
    /** HTTP status code. */
    readonly status: number,
    /** The API's error code, e.g. `invalid_request`. */
    readonly code: string,
    message: string,
    readonly issues: Issue[] = [],
  ) {
    super(message);
  }
}

/** The control plane could not be reached (refused, DNS, timeout). */
export class ServerUnreachableError extends Error {
  override readonly name = "ServerUnreachableError";
  constructor(
    readonly url: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot reach the control plane at ${url} (${detail}): is \`firedrill server\` running? Set --server or FIREDRILL_SERVER.`,
      options,
    );
  }
}

/** The control plane's TLS certificate failed verification (untrusted CA, wrong name, expired). */
export class TlsVerificationError extends Error {
  override readonly name = "TlsVerificationError";
  constructor(
    readonly url: string,
    /** Node's verification error code, e.g. `SELF_SIGNED_CERT_IN_CHAIN`, `ERR_TLS_CERT_ALTNAME_INVALID`. */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The API's refusal with its issues named by the flags that set them (`name` → `--name`). A message
 * that only lists the issues becomes `the control plane refused the <what> (N problems)`; any other
 * message is kept. Any other error is returned as it is.
 */
export function withFlagNames(err: unknown, flags: Readonly<Record<string, string>>, what: string): unknown {
  if (!(err instanceof ApiRequestError) || err.issues.length === 0) return err;
  const listed = `: ${err.issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`;
  const issues = err.issues.map((i) => ({ ...i, field: flags[i.field] ?? i.field }));
  const message = err.message.endsWith(listed)
    ? `the control plane refused the ${what} (${issues.length} ${issues.length === 1 ? "problem" : "problems"})`
    : err.message;
  return new ApiRequestError(err.status, err.code, message, issues);
}
