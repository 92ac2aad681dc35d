/** Errors of the AWS side, and reading the SDK's errors. */

/** Thrown when no region is configured anywhere. */
export class AwsRegionError extends Error {
  override readonly name = "AwsRegionError";
  constructor() {
    super(
      "no AWS region is configured: set AWS_REGION in the control plane's environment (or a region in its AWS profile), or `region:` in the selector / stop condition",
    );
  }
}

/** Thrown when an AWS read (DescribeInstances, DescribeAutoScalingGroups, DescribeAlarms) fails for good. */
export class AwsCallError extends Error {
  override readonly name = "AwsCallError";
  constructor(
    /** The API call, e.g. "DescribeInstances". */
    readonly call: string,
    readonly region: string,
    /** The AWS error code, e.g. "UnauthorizedOperation", or the Node error code. */
    readonly code: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${call} in ${region} failed: ${detail}`, options);
  }
}

/** Thrown when a selector names something AWS does not know (e.g. an Auto Scaling group). */
export class AwsSelectorError extends Error {
  override readonly name = "AwsSelectorError";
}

/** The fields of an SDK v3 service error that matter here. */
interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: { throttling?: boolean };
}

/** The AWS error code of an SDK error (its `name`), or a Node error code. */
export function errorCode(err: unknown): string {
  const e = (err ?? {}) as SdkErrorShape;
  if (typeof e.code === "string" && e.code !== "") return e.code;
  if (typeof e.name === "string" && e.name !== "" && e.name !== "Error") return e.name;
  return "Error";
}

/** The HTTP status of an SDK error, when it has one. */
export function httpStatus(err: unknown): number | undefined {
  const status = ((err ?? {}) as SdkErrorShape).$metadata?.httpStatusCode;
  return typeof status === "number" ? status : undefined;
}

/** `Code: message` for messages. */
export function describeAwsError(err: unknown): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (!message || message === code || message === "UnknownError") return code;
  return `${code}: ${message}`;
}

/** Throttling error codes (EC2, Auto Scaling, CloudWatch and the SDK's generic ones). */
export const THROTTLING_ERROR_CODES: readonly string[] = [
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestLimitExceeded",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "EC2ThrottledException",
  "BandwidthLimitExceeded",
  "ProvisionedThroughputExceededException",
  "SlowDown",
  "PriorRequestNotComplete",
];

/** Transient error codes: AWS-side failures and network errors worth another attempt. */
const TRANSIENT_ERROR_CODES: readonly string[] = [
  "InternalError",
  "InternalFailure",
  "ServiceUnavailable",
  "Unavailable",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
];

/** Whether an error is throttling. */
export function isThrottling(err: unknown): boolean {
  return THROTTLING_ERROR_CODES.includes(errorCode(err)) || ((err ?? {}) as SdkErrorShape).$retryable?.throttling === true;
}

/** Whether another attempt may succeed: throttling, a 5xx, a timeout or a network error. */
export function isRetryable(err: unknown): boolean {
  if (isThrottling(err)) return true;
  if (TRANSIENT_ERROR_CODES.includes(errorCode(err))) return true;
  const status = httpStatus(err);
  if (status !== undefined) return status >= 500;
  return ((err ?? {}) as SdkErrorShape).$retryable !== undefined;
}

/**
 * Whether AWS definitely did nothing: it answered with a client error (4xx) that is not
 * throttling. Timeouts, network errors and 5xx leave it unknown whether the call took effect.
 */
export function isDefinitiveRefusal(err: unknown): boolean {
  if (isRetryable(err)) return false;
  const status = httpStatus(err);
  if (status !== undefined) return status >= 400 && status < 500;
  return ((err ?? {}) as SdkErrorShape).$fault === "client";
}
