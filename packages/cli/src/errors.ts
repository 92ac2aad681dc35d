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
