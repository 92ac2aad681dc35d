/** @firedrill/cli: the `firedrill` command line (the SRE's view of the control plane's HTTP API). */
export { CLI_VERSION, DEFAULT_SERVER, createProgram, printError, runCli } from "./program.js";
export type { CliIo } from "./context.js";
export { createApiClient } from "./http-client.js";
export type { ApiClient, ApiClientOptions, ApiFileResponse, ApiResponse } from "./http-client.js";
export { ApiRequestError, CliError, ServerUnreachableError } from "./errors.js";
export type { Issue } from "./errors.js";
export { parseParams, parseParamValue } from "./params.js";
export {
  formatLabels,
  formatMeasurements,
  formatParams,
  formatRelativeTime,
  formatState,
  renderTable,
} from "./format.js";
export { configLocation, readConfig, resolveSettings, writeConfig } from "./config.js";
export { TlsVerificationError } from "./errors.js";
