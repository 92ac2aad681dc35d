/**
 * @firedrill/control-plane: `firedrill server` — the agent hub (gRPC), the HTTP JSON API and the
 * embedded store.
 */
export { startControlPlane } from "./control-plane.js";
export type { ControlPlane } from "./control-plane.js";
export {
  controlPlaneOptionsSchema,
  resolveConfig,
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
} from "./config.js";
export type { ControlPlaneConfig, ControlPlaneOptions } from "./config.js";
export { ApiError, InvalidConfigError, ListenError } from "./errors.js";
export type { Issue } from "./errors.js";
export { createLogger } from "./logger.js";
export type { LoggerOptions } from "./logger.js";
export { JOIN_TOKEN_FILE } from "./join-token.js";
export { DATABASE_FILE } from "./store/store.js";
export type { AgentJson, ErrorJson, FaultEventJson, FaultJson } from "./api-types.js";
export type { FaultState } from "./store/types.js";
export type { RunPlan, PlannedStep, PlannedHost } from "./experiments/plan.js";
export type { RunReport, Verdict } from "./experiments/report.js";
export { parseExperiment, ExperimentSpecError, formatSpecIssue } from "./experiments/spec.js";
export type {
  Experiment,
  GuardrailsSpec,
  SpecIssue,
  Step,
  StopConditionSpec,
  TargetMode,
  TargetSpec,
  WindowSpec,
} from "./experiments/types.js";
export { resolveTargets, seededRandom } from "./experiments/targets.js";
export type { ResolveTargetsOptions, TargetResolution } from "./experiments/targets.js";
export { evaluateGuardrails, mergeGuardrails, GUARDRAIL_RULES } from "./experiments/guardrails.js";
export type { GuardrailInput, GuardrailRule, GuardrailVerdict, MergedGuardrails } from "./experiments/guardrails.js";
export { DEFAULT_OPT_IN_LABEL, DEFAULT_POLICY, GuardrailPolicyError, loadPolicy, parsePolicy } from "./experiments/policy.js";
export { experimentJsonSchema, policyJsonSchema, renderJsonSchema, SCHEMA_FILES } from "./experiments/json-schema.js";
