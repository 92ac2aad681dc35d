/**
 * A small stateful fake of the AWS APIs the control plane calls, served over HTTP on loopback, for
 * tests whose AWS state must outlive the control-plane process (`firedrill server --aws-endpoint
 * URL`). It speaks the wire protocols the SDK v3 clients use:
 *
 * - EC2: the EC2 Query protocol (form-encoded `Action=…&Version=2016-11-15`, XML with `<item>` lists,
 *   errors as `<Response><Errors><Error>`);
 * - Auto Scaling: the AWS Query protocol (`Version=2011-01-01`, `<XResult>` with `<member>` lists,
 *   errors as `<ErrorResponse><Error>`);
 * - CloudWatch: AWS JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.DescribeAlarms`), as
 *   @aws-sdk/client-cloudwatch 3.1164 sends it (query-compatible errors).
 *
 * The region of each call is read from its SigV4 credential scope. State is in memory: instances
 * with their transitions (running → stopping → stopped → pending → running, shutting-down →
 * terminated, each transitional state lasting `transitionMs`), Auto Scaling groups (a termination
 * without decrement launches a replacement), alarms; optionally persisted to a JSON file after every
 * change, so that a fake restarted on the same file carries on.
 *
 * Control endpoints (plain JSON, under `/_fake/`): `GET state`, `PUT state` (replace), `POST outage`
 * `{ seconds, status? }` (every AWS call answers 503 — or `status` — until then), `POST fail`
 * `{ action, code, status?, times? }` (the next calls of one action answer that error), `GET calls`
 * (the log of AWS calls), `POST instances` (add instances). More actions come as a {@link FakeAwsPlugin}
 * in a file of their own (e.g. DescribeNetworkAcls, ReplaceNetworkAclAssociation), with their state
 * under `state.ext`.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";

/** EC2 instance states. */
export type FakeInstanceState = "pending" | "running" | "stopping" | "stopped" | "shutting-down" | "terminated";

/** An EC2 instance. */
export interface FakeInstance {
  id: string;
  region: string;
  availabilityZone: string;
  instanceType: string;
  state: FakeInstanceState;
  /** When the transitional state (pending, stopping, shutting-down) ends, epoch ms. */
  until?: number;
  tags: Record<string, string>;
  /** The Auto Scaling group it belongs to (also its `aws:autoscaling:groupName` tag). */
  group?: string;
  subnetId?: string;
  vpcId?: string;
  launchedAt: number;
}

/** An Auto Scaling group (its instances are those whose `group` names it). */
export interface FakeGroup {
  name: string;
  region: string;
  minSize: number;
  maxSize: number;
  desiredCapacity: number;
  availabilityZones: string[];
  tags: Record<string, string>;
}

/** A CloudWatch alarm. */
export interface FakeAlarm {
  name: string;
  region: string;
  state: "OK" | "ALARM" | "INSUFFICIENT_DATA";
  reason: string;
  type: "metric" | "composite";
}

/** Everything the fake knows. JSON, so it can be persisted and replaced over `/_fake/state`. */
export interface FakeAwsState {
  instances: Record<string, FakeInstance>;
  /** Keyed `region/name`. */
  groups: Record<string, FakeGroup>;
  /** Keyed `region/name`. */
  alarms: Record<string, FakeAlarm>;
  /** State of plugins, by plugin name. */
  ext: Record<string, unknown>;
}

/** One AWS call as the fake saw it. */
export interface FakeCall {
  time: number;
  service: "ec2" | "autoscaling" | "cloudwatch";
  action: string;
  region: string;
  status: number;
  /** Instance ids the call named (InstanceId.N / InstanceId). */
  instanceIds: string[];
}

/** An AWS error answer: thrown by an action handler. */
export class FakeAwsError extends Error {
  override readonly name = "FakeAwsError";
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** What an action handler gets. */
export interface FakeRequest {
  region: string;
  /** The form parameters (Query protocols). */
  params: URLSearchParams;
  /** The JSON body (JSON protocol). */
  json: Record<string, unknown>;
  state: FakeAwsState;
  now: number;
  /** How long transitional states last. */
  transitionMs: number;
}

/**
 * An action: returns the response content — for EC2 the elements inside `<XResponse>`, for Auto
 * Scaling those inside `<XResult>`, for CloudWatch the JSON object — or throws {@link FakeAwsError}.
 * Keys are the XML element names; arrays become `<item>` (EC2) or `<member>` (Query) lists.
 */
export type FakeAction = (req: FakeRequest) => unknown;

/** More actions for the fake, e.g. a file of network-ACL calls. A name starting with Describe is a read. */
export interface FakeAwsPlugin {
  ec2?: Record<string, FakeAction>;
  autoScaling?: Record<string, FakeAction>;
  cloudWatch?: Record<string, FakeAction>;
}

/** Options of {@link startFakeAws}. */
export interface FakeAwsOptions {
  /** @default 0 (a free port) */
  port?: number;
  /** Persist the state to this JSON file after every change, and start from it when it exists. */
  statePath?: string;
  /** Initial state (when no state file exists). */
  state?: Partial<FakeAwsState>;
  /** How long pending, stopping and shutting-down last. @default 500 */
  transitionMs?: number;
  plugins?: FakeAwsPlugin[];
}

/** A running fake. */
export interface FakeAws {
  /** `http://127.0.0.1:port`: give it to `firedrill server --aws-endpoint`. */
  readonly url: string;
  readonly state: FakeAwsState;
  /** Answer every AWS call with `status` (503) for `ms`. */
  outage(ms: number, status?: number): void;
  /** The next `times` (1) calls of `action` answer this error, without acting. */
  fail(action: string, code: string, status?: number, times?: number): void;
  readonly calls: FakeCall[];
  close(): Promise<void>;
}

const STATE_CODES: Record<FakeInstanceState, number> = { pending: 0, running: 16, "shutting-down": 32, terminated: 48, stopping: 64, stopped: 80 };
const EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/";
const ASG_XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
const MAX_CALLS = 5000;

/** An empty state. */
export function emptyFakeState(): FakeAwsState {
  return { instances: {}, groups: {}, alarms: {}, ext: {} };
}

/** A running, opted-in instance (tags may add more). */
export function fakeInstance(id: string, opts: Partial<FakeInstance> & { region?: string } = {}): FakeInstance {
  const region = opts.region ?? "eu-west-1";
  return {
    id,
    region,
    availabilityZone: `${region}a`,
    instanceType: "t3.micro",
    state: "running",
    launchedAt: Date.now(),
    ...opts,
    tags: { "firedrill:opt-in": "true", ...(opts.group ? { "aws:autoscaling:groupName": opts.group } : {}), ...opts.tags },
  };
}

/** Advances the transitional states whose time is up. Returns whether anything changed. */
export function settle(state: FakeAwsState, now: number): boolean {
  let changed = false;
  for (const i of Object.values(state.instances)) {
    if (i.until === undefined || i.until > now) continue;
    const next: Partial<Record<FakeInstanceState, FakeInstanceState>> = { pending: "running", stopping: "stopped", "shutting-down": "terminated" };
    const to = next[i.state];
    delete i.until;
    if (to) i.state = to;
    changed = true;
  }
  return changed;
}

// ---------------------------------------------------------------------------------------------
// Wire formats

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!);
}

/** XML elements of a value: object keys are element names, arrays are lists of `listTag`. */
export function toXml(value: unknown, listTag: "item" | "member"): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map((v) => `<${listTag}>${toXml(v, listTag)}</${listTag}>`).join("");
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object") {
    return Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `<${k}>${toXml(v, listTag)}</${k}>`)
      .join("");
  }
  return escapeXml(String(value));
}

/** Values of a Query list parameter: `prefix.1`, `prefix.2`, … */
export function listParam(params: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 1; params.has(`${prefix}.${i}`); i++) out.push(params.get(`${prefix}.${i}`)!);
  return out;
}

/** EC2 filters: `Filter.N.Name` with `Filter.N.Value.M`. */
export function ec2Filters(params: URLSearchParams): { name: string; values: string[] }[] {
  const out: { name: string; values: string[] }[] = [];
  for (let i = 1; params.has(`Filter.${i}.Name`); i++) out.push({ name: params.get(`Filter.${i}.Name`)!, values: listParam(params, `Filter.${i}.Value`) });
  return out;
}

const requestId = () => randomBytes(16).toString("hex").replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");

// ---------------------------------------------------------------------------------------------
// EC2

function instancesIn(state: FakeAwsState, region: string): FakeInstance[] {
  return Object.values(state.instances).filter((i) => i.region === region);
}

/** The named instances of a region; InvalidInstanceID.NotFound for any unknown. */
function named(req: FakeRequest, ids: string[]): FakeInstance[] {
  const missing = ids.filter((id) => req.state.instances[id]?.region !== req.region);
  if (missing.length > 0) {
    throw new FakeAwsError("InvalidInstanceID.NotFound", `The instance ID${missing.length === 1 ? "" : "s"} '${missing.join(", ")}' ${missing.length === 1 ? "does" : "do"} not exist`);
  }
  return ids.map((id) => req.state.instances[id]!);
}

function dryRun(req: FakeRequest): void {
  if (req.params.get("DryRun") === "true") throw new FakeAwsError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412);
}

function matchesFilter(i: FakeInstance, f: { name: string; values: string[] }): boolean {
  const has = (v: string | undefined) => v !== undefined && f.values.includes(v);
  if (f.name === "instance-state-name") return has(i.state);
  if (f.name === "instance-state-code") return has(String(STATE_CODES[i.state]));
  if (f.name === "instance-id") return has(i.id);
  if (f.name === "availability-zone") return has(i.availabilityZone);
  if (f.name === "instance-type") return has(i.instanceType);
  if (f.name === "subnet-id") return has(i.subnetId);
  if (f.name === "vpc-id") return has(i.vpcId);
  if (f.name === "tag-key") return f.values.some((k) => k in i.tags);
  if (f.name.startsWith("tag:")) return has(i.tags[f.name.slice(4)]);
  throw new FakeAwsError("InvalidParameterValue", `The filter '${f.name}' is invalid (this fake knows instance-state-name, instance-id, availability-zone, instance-type, subnet-id, vpc-id, tag-key, tag:KEY)`);
}

const stateXml = (s: FakeInstanceState) => ({ code: STATE_CODES[s], name: s });

function instanceXml(i: FakeInstance) {
  return {
    instanceId: i.id,
    imageId: "ami-00000000000000000",
    instanceState: stateXml(i.state),
    instanceType: i.instanceType,
    launchTime: new Date(i.launchedAt),
    placement: { availabilityZone: i.availabilityZone, tenancy: "default" },
    subnetId: i.subnetId,
    vpcId: i.vpcId,
    tagSet: Object.entries(i.tags).map(([key, value]) => ({ key, value })),
  };
}

/** One state change per instance, as Start/Stop/TerminateInstances answer. */
function change(req: FakeRequest, ids: string[], apply: (i: FakeInstance) => void) {
  return {
    instancesSet: named(req, ids).map((i) => {
      const previous = i.state;
      apply(i);
      return { instanceId: i.id, currentState: stateXml(i.state), previousState: stateXml(previous) };
    }),
  };
}

function transition(i: FakeInstance, to: FakeInstanceState, req: FakeRequest): void {
  i.state = to;
  if (to === "pending" || to === "stopping" || to === "shutting-down") i.until = req.now + req.transitionMs;
  else delete i.until;
}

const EC2_ACTIONS: Record<string, FakeAction> = {
  DescribeInstances(req) {
    const ids = listParam(req.params, "InstanceId");
    const filters = ec2Filters(req.params);
    const found = (ids.length > 0 ? named(req, ids) : instancesIn(req.state, req.region)).filter((i) => filters.every((f) => matchesFilter(i, f)));
    return {
      reservationSet: found.map((i) => ({ reservationId: `r-${i.id.slice(2)}`, ownerId: "123456789012", instancesSet: [instanceXml(i)] })),
    };
  },
  StopInstances(req) {
    const ids = listParam(req.params, "InstanceId");
    named(req, ids);
    dryRun(req);
    return change(req, ids, (i) => {
      if (i.state === "running") transition(i, "stopping", req);
      else if (i.state !== "stopping" && i.state !== "stopped") {
        throw new FakeAwsError("IncorrectInstanceState", `The instance '${i.id}' is not in a state from which it can be stopped.`);
      }
    });
  },
  StartInstances(req) {
    const ids = listParam(req.params, "InstanceId");
    named(req, ids);
    dryRun(req);
    return change(req, ids, (i) => {
      if (i.state === "stopped") transition(i, "pending", req);
      else if (i.state !== "pending" && i.state !== "running") {
        throw new FakeAwsError("IncorrectInstanceState", `The instance '${i.id}' is not in a state from which it can be started.`);
      }
    });
  },
  TerminateInstances(req) {
    const ids = listParam(req.params, "InstanceId");
    named(req, ids);
    dryRun(req);
    return change(req, ids, (i) => {
      if (i.state !== "terminated" && i.state !== "shutting-down") transition(i, "shutting-down", req);
    });
  },
};

// ---------------------------------------------------------------------------------------------
// Auto Scaling

function lifecycle(i: FakeInstance): { LifecycleState: string; HealthStatus: string } {
  if (i.state === "pending") return { LifecycleState: "Pending", HealthStatus: "Healthy" };
  if (i.state === "running") return { LifecycleState: "InService", HealthStatus: "Healthy" };
  if (i.state === "shutting-down") return { LifecycleState: "Terminating", HealthStatus: "Unhealthy" };
  return { LifecycleState: "InService", HealthStatus: "Unhealthy" };
}

function members(state: FakeAwsState, g: FakeGroup): FakeInstance[] {
  return Object.values(state.instances).filter((i) => i.region === g.region && i.group === g.name && i.state !== "terminated");
}

const ASG_ACTIONS: Record<string, FakeAction> = {
  DescribeAutoScalingGroups(req) {
    const names = listParam(req.params, "AutoScalingGroupNames.member");
    const groups = Object.values(req.state.groups).filter((g) => g.region === req.region && (names.length === 0 || names.includes(g.name)));
    return {
      AutoScalingGroups: groups.map((g) => ({
        AutoScalingGroupName: g.name,
        AutoScalingGroupARN: `arn:aws:autoscaling:${g.region}:123456789012:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/${g.name}`,
        MinSize: g.minSize,
        MaxSize: g.maxSize,
        DesiredCapacity: g.desiredCapacity,
        DefaultCooldown: 300,
        AvailabilityZones: g.availabilityZones,
        HealthCheckType: "EC2",
        CreatedTime: new Date(0),
        Instances: members(req.state, g).map((i) => ({
          InstanceId: i.id,
          InstanceType: i.instanceType,
          AvailabilityZone: i.availabilityZone,
          ...lifecycle(i),
          ProtectedFromScaleIn: false,
        })),
        Tags: Object.entries(g.tags).map(([Key, Value]) => ({ ResourceId: g.name, ResourceType: "auto-scaling-group", Key, Value, PropagateAtLaunch: true })),
      })),
    };
  },
  TerminateInstanceInAutoScalingGroup(req) {
    const id = req.params.get("InstanceId") ?? "";
    const i = req.state.instances[id];
    const group = i?.group !== undefined && i.region === req.region ? req.state.groups[`${req.region}/${i.group}`] : undefined;
    if (!i || !group || i.state === "terminated") throw new FakeAwsError("ValidationError", `Instance Id not found - No managed instance found for instance ID: ${id}`);
    const decrement = req.params.get("ShouldDecrementDesiredCapacity") === "true";
    transition(i, "shutting-down", req);
    if (decrement) group.desiredCapacity = Math.max(group.minSize, group.desiredCapacity - 1);
    else {
      const replacement = `i-${randomBytes(8).toString("hex").slice(0, 17)}`;
      req.state.instances[replacement] = { ...i, id: replacement, state: "pending", until: req.now + req.transitionMs, launchedAt: req.now };
    }
    return {
      Activity: {
        ActivityId: randomBytes(16).toString("hex"),
        AutoScalingGroupName: group.name,
        Description: `Terminating EC2 instance: ${id}`,
        Cause: `instance ${id} was taken out of service in response to a user request${decrement ? ", shrinking the capacity" : ""}.`,
        StartTime: new Date(req.now),
        StatusCode: "InProgress",
        Progress: 0,
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// CloudWatch

const CLOUDWATCH_ACTIONS: Record<string, FakeAction> = {
  DescribeAlarms(req) {
    const names = Array.isArray(req.json.AlarmNames) ? (req.json.AlarmNames as string[]) : undefined;
    const types = Array.isArray(req.json.AlarmTypes) ? (req.json.AlarmTypes as string[]) : ["MetricAlarm"];
    const alarms = Object.values(req.state.alarms).filter((a) => a.region === req.region && (names === undefined || names.includes(a.name)));
    const json = (a: FakeAlarm) => ({
      AlarmName: a.name,
      AlarmArn: `arn:aws:cloudwatch:${a.region}:123456789012:alarm:${a.name}`,
      StateValue: a.state,
      StateReason: a.reason,
    });
    return {
      MetricAlarms: types.includes("MetricAlarm") ? alarms.filter((a) => a.type === "metric").map(json) : [],
      CompositeAlarms: types.includes("CompositeAlarm") ? alarms.filter((a) => a.type === "composite").map(json) : [],
    };
  },
};

// ---------------------------------------------------------------------------------------------
// The server

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
      if (body.length > 1_000_000) req.destroy(new Error("body too large"));
    });
    req.on("end", () => resolve(body));
    req.on("error", reject);
  });
}

/** The region and signing name of a SigV4 request: `Credential=AKID/date/REGION/SERVICE/aws4_request`. */
function scopeOf(req: IncomingMessage): { region: string; service: string } | undefined {
  const m = /Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(req.headers.authorization ?? "");
  return m ? { region: m[1]!, service: m[2]! } : undefined;
}

/** Starts the fake on 127.0.0.1. */
export async function startFakeAws(options: FakeAwsOptions = {}): Promise<FakeAws> {
  const transitionMs = options.transitionMs ?? 500;
  let state: FakeAwsState = { ...emptyFakeState(), ...options.state };
  if (options.statePath) {
    try {
      state = { ...emptyFakeState(), ...(JSON.parse(readFileSync(options.statePath, "utf8")) as Partial<FakeAwsState>) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  const tables = {
    ec2: { ...EC2_ACTIONS },
    autoscaling: { ...ASG_ACTIONS },
    cloudwatch: { ...CLOUDWATCH_ACTIONS },
  };
  for (const p of options.plugins ?? []) {
    Object.assign(tables.ec2, p.ec2);
    Object.assign(tables.autoscaling, p.autoScaling);
    Object.assign(tables.cloudwatch, p.cloudWatch);
  }
  const calls: FakeCall[] = [];
  let outageUntil = 0;
  let outageStatus = 503;
  const failures: { action: string; code: string; status: number; times: number }[] = [];
  const addFailure = (action: string, code: string, status = 400, times = 1) => void failures.push({ action, code, status, times });

  const persist = () => {
    if (!options.statePath) return;
    const tmp = `${options.statePath}.tmp`;
    writeFileSync(tmp, JSON.stringify(state, null, 1));
    renameSync(tmp, options.statePath);
  };
  persist();

  const send = (res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": contentType, "x-amzn-requestid": requestId(), ...headers });
    res.end(body);
  };

  async function control(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const body = req.method === "GET" ? "" : await readBody(req);
    const json = body ? (JSON.parse(body) as Record<string, unknown>) : {};
    const ok = (value: unknown) => send(res, 200, "application/json", JSON.stringify(value));
    if (path === "state" && req.method === "GET") {
      if (settle(state, Date.now())) persist();
      return ok(state);
    }
    if (path === "state" && req.method === "PUT") {
      state = { ...emptyFakeState(), ...(json as Partial<FakeAwsState>) };
      persist();
      return ok(state);
    }
    if (path === "instances" && req.method === "POST") {
      for (const i of (json.instances ?? []) as FakeInstance[]) state.instances[i.id] = i;
      persist();
      return ok(state);
    }
    if (path === "outage" && req.method === "POST") {
      outageUntil = Date.now() + Number(json.seconds ?? 0) * 1000;
      outageStatus = Number(json.status ?? 503);
      return ok({ until: new Date(outageUntil).toISOString(), status: outageStatus });
    }
    if (path === "fail" && req.method === "POST") {
      addFailure(String(json.action), String(json.code), Number(json.status ?? 400), Number(json.times ?? 1));
      return ok({ failures });
    }
    if (path === "calls" && req.method === "GET") return ok(calls);
    send(res, 404, "application/json", JSON.stringify({ error: `no control endpoint ${req.method} /_fake/${path}` }));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    if (url.pathname.startsWith("/_fake/")) return control(req, res, url.pathname.slice("/_fake/".length));
    const body = await readBody(req);
    const scope = scopeOf(req);
    const target = String(req.headers["x-amz-target"] ?? "");
    const isJson = target !== "";
    const params = new URLSearchParams(isJson ? "" : body);
    const service: FakeCall["service"] = isJson || scope?.service === "monitoring" ? "cloudwatch" : scope?.service === "autoscaling" || params.get("Version") === "2011-01-01" ? "autoscaling" : "ec2";
    const action = isJson ? target.slice(target.lastIndexOf(".") + 1) : (params.get("Action") ?? "");
    const region = scope?.region ?? "us-east-1";
    const now = Date.now();
    const instanceIds = [...listParam(params, "InstanceId"), ...(params.get("InstanceId") ? [params.get("InstanceId")!] : [])];
    const log = (status: number) => {
      calls.push({ time: now, service, action, region, status, instanceIds });
      if (calls.length > MAX_CALLS) calls.splice(0, calls.length - MAX_CALLS);
    };

    const fail = (err: FakeAwsError) => {
      log(err.status);
      const id = requestId();
      if (service === "ec2") {
        return send(res, err.status, "text/xml;charset=UTF-8", `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escapeXml(err.code)}</Code><Message>${escapeXml(err.message)}</Message></Error></Errors><RequestID>${id}</RequestID></Response>`);
      }
      if (service === "autoscaling") {
        const type = err.status >= 500 ? "Receiver" : "Sender";
        return send(res, err.status, "text/xml", `<ErrorResponse xmlns="${ASG_XMLNS}"><Error><Type>${type}</Type><Code>${escapeXml(err.code)}</Code><Message>${escapeXml(err.message)}</Message></Error><RequestId>${id}</RequestId></ErrorResponse>`);
      }
      return send(res, err.status, "application/x-amz-json-1.0", JSON.stringify({ __type: `com.amazonaws.cloudwatch#${err.code}`, message: err.message }), {
        "x-amzn-query-error": `${err.code};${err.status >= 500 ? "Receiver" : "Sender"}`,
      });
    };

    if (now < outageUntil) {
      return fail(new FakeAwsError(service === "ec2" ? "Unavailable" : "ServiceUnavailable", "The service is unavailable (fake outage). Please try again shortly.", outageStatus));
    }
    const failure = failures.find((f) => f.action === action && f.times > 0);
    if (failure) {
      failure.times -= 1;
      return fail(new FakeAwsError(failure.code, `${failure.code} (injected by the test)`, failure.status));
    }
    const table: Record<string, FakeAction> = tables[service];
    const handler = table[action];
    if (!handler) return fail(new FakeAwsError("InvalidAction", `The action ${action} is not valid for this web service (this fake knows ${Object.keys(table).join(", ")})`));
    if (settle(state, now)) persist();
    let json: Record<string, unknown> = {};
    if (isJson && body) json = JSON.parse(body) as Record<string, unknown>;
    let result: unknown;
    try {
      result = handler({ region, params, json, state, now, transitionMs });
    } catch (err) {
      if (err instanceof FakeAwsError) return fail(err);
      throw err;
    }
    if (!action.startsWith("Describe")) persist();
    log(200);
    if (service === "ec2") {
      return send(res, 200, "text/xml;charset=UTF-8", `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_XMLNS}"><requestId>${requestId()}</requestId>${toXml(result, "item")}</${action}Response>`);
    }
    if (service === "autoscaling") {
      return send(res, 200, "text/xml", `<${action}Response xmlns="${ASG_XMLNS}"><${action}Result>${toXml(result, "member")}</${action}Result><ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></${action}Response>`);
    }
    return send(res, 200, "application/x-amz-json-1.0", JSON.stringify(result));
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, "text/plain", `fake AWS: ${(err as Error).stack ?? String(err)}`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", resolve);
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get state() {
      return state;
    },
    outage(ms, status = 503) {
      outageUntil = Date.now() + ms;
      outageStatus = status;
    },
    fail: addFailure,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// The fake as its own process (fake-aws-bin.ts), driven over HTTP

/** A fake AWS process, driven over its control endpoints. */
export interface FakeAwsProcessClient {
  readonly url: string;
  state(): Promise<FakeAwsState>;
  setState(state: Partial<FakeAwsState>): Promise<void>;
  /** Every AWS call answers `status` (503) for `seconds`. */
  outage(seconds: number, status?: number): Promise<void>;
  calls(): Promise<FakeCall[]>;
  /** The state of one instance (transitions applied). */
  instanceState(id: string): Promise<FakeInstanceState | undefined>;
}

/** A client for the control endpoints of a fake at `url`. */
export function fakeAwsClient(url: string): FakeAwsProcessClient {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}/_fake/${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`fake AWS ${method} /_fake/${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  return {
    url,
    state: () => call<FakeAwsState>("GET", "state"),
    setState: async (s) => void (await call("PUT", "state", s)),
    outage: async (seconds, status = 503) => void (await call("POST", "outage", { seconds, status })),
    calls: () => call<FakeCall[]>("GET", "calls"),
    instanceState: async (id) => (await call<FakeAwsState>("GET", "state")).instances[id]?.state,
  };
}
