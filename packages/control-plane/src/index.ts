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
export { DataDirLockedError, HOLDER_FILE, LOCK_FILE, lockDataDir } from "./store/data-dir-lock.js";
export type { DataDirLock, LockHolder } from "./store/data-dir-lock.js";
export type { Issue } from "./errors.js";
export { createLogger } from "./logger.js";
export type { LoggerOptions } from "./logger.js";
export { JOIN_TOKEN_FILE } from "./enrollment/bootstrap.js";
export { DATABASE_FILE } from "./store/store.js";
export type { AgentJson, AgentListJson, AgentSummaryJson, ErrorJson, FaultEventJson, FaultJson, FaultListJson } from "./api-types.js";
export type { FaultState, StopReason } from "./store/types.js";
export { LEASE_ASSUMED_REASON } from "./store/types.js";
export type { HostPreview, RunPlan, PlannedStep, PlannedHost } from "./experiments/plan.js";
export type { RunReport, Verdict, ReportFaultWindow, ReportHost, ReportHostFault } from "./experiments/report.js";
export type { MeasurementPoint } from "./experiments/effects.js";
export { describeEffect } from "./experiments/effects.js";
export type { RunSamplesJson, SampleConditionJson, SampleConditionState, SampleJson } from "./experiments/run-samples.js";
export type { ReportJson, ReportJsonDeps, ReportStopConditionJson, RunEventJson } from "./http/report-json.js";
export { createReportJson } from "./http/report-json.js";
export type { AgentMeasurementsJson } from "./http/routes.js";
export type { ConsoleCallerJson, ConsoleSessionJson } from "./console/routes.js";
export { CONSOLE_CSP } from "./console/routes.js";
export { CSRF_HEADER, SESSION_COOKIE } from "./auth/session.js";
export type { FaultMeasurementsJson } from "./hub/measurement-rings.js";
export type { StopConditionChart } from "./stop-conditions/types.js";
export type { ReportCloudAction } from "./experiments/cloud-actions.js";
export { parseExperiment, ExperimentSpecError, formatSpecIssue } from "./experiments/spec.js";
export { countProblems, MAX_SPEC_ALIASES, MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_SPEC_ISSUES, MAX_SPEC_NODES } from "./experiments/yaml-source.js";
export { MAX_STEPS, MAX_STOP_CONDITIONS, MAX_TARGET_GROUPS } from "./experiments/spec-schema.js";
export { createSpecCheckPool, sharedSpecCheckPool } from "./experiments/spec-pool.js";
export type { SpecCheckPool, SpecCheckPoolOptions } from "./experiments/spec-pool.js";
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
export { awsGuardrailsFrom, DEFAULT_OPT_IN_TAG } from "./experiments/policy.js";
export { createAwsClients } from "./aws/clients.js";
export type { AwsClients, AwsClientsOptions } from "./aws/clients.js";
export { createAwsService, AWS_CALLS } from "./aws/service.js";
export type { AwsCall, AwsServiceOptions, AwsServiceWithLedger } from "./aws/service.js";
export type { RetryOptions } from "./aws/retry.js";
export { createTerminationLedger } from "./aws/ledger.js";
export { createCloudJournal, describeUnconfirmed, OPEN_CLOUD_REVERT_STATES } from "./aws/cloud-journal.js";
export type {
  CloudJournal,
  CloudRevertChange,
  CloudRevertCheck,
  CloudRevertContext,
  CloudRevertEntry,
  CloudRevertQuery,
  CloudRevertState,
  CloudReverter,
  NewCloudRevert,
} from "./aws/cloud-journal.js";
export { createCloudReconciler, revertBackoffMs } from "./aws/cloud-reconciler.js";
export type { CloudReconciler, CloudReconcilerOptions } from "./aws/cloud-reconciler.js";
export { createEc2StartReverter, EC2_START_REVERT } from "./aws/cloud-reverters.js";
export type { Ec2StartPayload, Ec2StartReverterOptions } from "./aws/cloud-reverters.js";
export {
  createNaclDeleteReverter,
  createNaclRestoreReverter,
  createNetworkDisrupter,
  NACL_DELETE_REVERT,
  NACL_RESTORE_REVERT,
  NETWORK_DISRUPT_KIND,
  parseNetworkDisruptParams,
} from "./aws/network-disrupt.js";
export type { NaclDeletePayload, NaclRestorePayload, NetworkDisrupter, NetworkDisruptParams, SubnetSelection, SubnetTarget } from "./aws/network-disrupt.js";
export type { LedgerEntry, LedgerOutcome, LedgerQuery, TerminationLedger } from "./aws/ledger.js";
export { AwsCallError, AwsRegionError, AwsSelectorError } from "./aws/errors.js";
export { CLOUD_FAULT_KINDS, isCloudFaultKind } from "./aws/faults.js";
export type { CloudFaultKind } from "./aws/faults.js";
export { tagRefusal } from "./aws/rules.js";
export { awsPlanVerdicts, AWS_PLAN_RULES } from "./aws/plan-checks.js";
export type { AwsPlanOptions } from "./aws/plan-checks.js";
export { DEFAULT_SPOF_LABEL_KEYS, findSpofs } from "./aws/spof.js";
export type { FindSpofsOptions, Spof, SpofKind } from "./aws/spof.js";
export { registerSpofRoutes } from "./aws/routes.js";
export { agentInstanceId, matchAgentsToInstances } from "./aws/match.js";
export type { SpofReportJson, SpofRoutesOptions } from "./aws/routes.js";
export type {
  ActionContext,
  AlarmState,
  AwsGroupState,
  AwsGuardrails,
  AwsInstance,
  AwsSelector,
  AwsService,
  InstanceActionResult,
} from "./aws/types.js";
export type { ScheduleJson, SlotJson } from "./schedules/routes.js";
export * from "./auth/index.js";
export { createStore } from "./store/store.js";
export type { Store } from "./store/store.js";
export {
  CA_CERT_FILE,
  CA_KEY_FILE,
  HTTP_CERT_FILE,
  HTTP_KEY_FILE,
  PkiError,
  certificateFingerprint,
  ensureCa,
  ensureServerCert,
  formatFingerprint,
  issueCertificate,
  normalizeFingerprint,
} from "./pki/index.js";
export type { CertificateAuthority, IssueCertificateOptions, IssuedCertificate, ServerCertificate } from "./pki/index.js";
export {
  ALERTMANAGER_BODY_LIMIT,
  ALERTMANAGER_WEBHOOK_PATH,
  MAX_ALERTS_PER_PAYLOAD,
  MAX_FIRING_ALERTS,
  MAX_LABELS_PER_ALERT,
  MAX_ANNOTATIONS_PER_ALERT,
  MAX_LABEL_NAME_LENGTH,
  MAX_LABEL_VALUE_LENGTH,
  MAX_ANNOTATION_VALUE_LENGTH,
  MAX_ALERT_SIZE_BYTES,
  MAX_FINGERPRINT_LENGTH,
} from "./stop-conditions/index.js";
export type { JoinTokenJson } from "./enrollment/routes.js";
export { AGENT_BOUNDS } from "./hub/agent-hub.js";
