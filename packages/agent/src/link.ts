/**
 * The agent link: dials the control plane, says Hello, keeps one bidirectional stream alive with
 * heartbeats, and reconnects with jittered exponential backoff when it breaks. Each attempt first
 * asks `prepare` for its channel (pinning and enrollment happen there, before anything is sent);
 * what a refusal means is the agent's decision, given whether the channel was verified.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  AgentService,
  ConnectRequestSchema,
  HeartbeatSchema,
  createClientConstructor,
  durationToMs,
  timestampFromMs,
} from "@firedrill/protocol";
import type { ClientOf, ConnectRequest, ConnectResponse, Hello, Refusal, Welcome } from "@firedrill/protocol";
import type { Logger } from "pino";
import { describeConnectFailure } from "./connect-error.js";
import { refusalOf } from "./enroll.js";
import type { LinkChannel, PrepareResult } from "./enroll.js";

/** A refused Connect, as the link saw it. */
export interface LinkRefusal {
  error: grpc.ServiceError;
  /** The `firedrill-refusal` trailer, if any. */
  refusal: Refusal | undefined;
  /** Whether the channel was verified against the pinned CA (only then is the refusal believed). */
  verified: boolean;
}

/**
 * What to do after a refusal: stop for good (the agent exits), retry with the usual backoff, or
 * retry with a backoff capped at `maxDelayMs`.
 */
export type RefusalDecision = "stop" | { retry: true; maxDelayMs?: number };

/** Options of the agent link. */
export interface AgentLinkOptions {
  /** Control plane gRPC address, host:port. */
  server: string;
  /**
   * Readies each connect attempt: the channel to dial (credentials, metadata, agent id), or wait.
   * Pinning and enrollment happen here, before anything is sent on Connect.
   */
  prepare: () => Promise<PrepareResult>;
  log: Logger;
  /** Builds the Hello for each (re)connect. */
  hello: (channel: LinkChannel) => Promise<Hello> | Hello;
  /** Every message from the control plane, Welcome included. */
  onMessage: (message: ConnectResponse) => void;
  /** The link is up: Welcome received. */
  onConnected: (welcome: Welcome) => void;
  /** The link went down. */
  onDisconnected: (error: Error | undefined) => void;
  /** A connect attempt failed before the Welcome: why, in words an operator can act on. */
  onConnectFailed?: (message: string) => void;
  /** The control plane refused the agent (UNAUTHENTICATED or PERMISSION_DENIED): the agent decides. */
  onRefused: (refusal: LinkRefusal) => RefusalDecision;
  /** Active fault count for heartbeats. */
  activeFaults: () => number;
  /** First reconnect delay. @default 500 */
  backoffInitialMs?: number;
  /** Longest reconnect delay. @default 30000 */
  backoffMaxMs?: number;
  /** How long to wait for the Welcome. @default 10000 */
  welcomeTimeoutMs?: number;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with "equal jitter"
 * (half fixed, half random) so a fleet that lost its control plane does not reconnect in lockstep.
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

type Stream = grpc.ClientDuplexStream<ConnectRequest, ConnectResponse>;

/** A self-healing link to the control plane. */
export class AgentLink {
  private readonly Client = createClientConstructor(AgentService);
  private client: ClientOf<typeof AgentService> | undefined;
  private clientKey: string | undefined;
  private stream: Stream | undefined;
  private welcome: Welcome | undefined;
  private attempt = 0;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private lastHeard = 0;

  constructor(private readonly opts: AgentLinkOptions) {}

  /** The client for `channel`: a new one whenever the channel's credentials changed (enrolled, renewed). */
  private clientFor(channel: LinkChannel): ClientOf<typeof AgentService> {
    if (this.client && this.clientKey === channel.key) return this.client;
    this.client?.close();
    this.client = new this.Client(this.opts.server, channel.credentials, {
      // Reconnect timing is ours (jittered backoff); keep grpc's own short.
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 1000,
    });
    this.clientKey = channel.key;
    return this.client;
  }

  /** Whether a Welcome was received on the current stream. */
  get connected(): boolean {
    return this.stream !== undefined && this.welcome !== undefined;
  }

  /** Starts connecting. */
  start(): void {
    void this.connect();
  }

  /**
   * Writes a message on the live stream. Returns false (and writes nothing) when the link is down.
   * `onFlushed` runs once the message has been handed to the transport.
   */
  send(message: ConnectRequest, onFlushed?: () => void): boolean {
    if (!this.connected || !this.stream) return false;
    this.stream.write(message, onFlushed);
    return true;
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    let prepared: PrepareResult;
    try {
      prepared = await this.opts.prepare();
    } catch (err) {
      this.opts.log.error({ err }, "could not prepare the connection; retrying");
      return this.scheduleReconnect();
    }
    if (this.closed) return;
    if (!("channel" in prepared)) return this.scheduleReconnect(prepared.maxDelayMs);
    const channel = prepared.channel;
    let hello: Hello;
    try {
      hello = await this.opts.hello(channel);
    } catch (err) {
      this.opts.log.error({ err }, "could not build the hello; retrying");
      return this.scheduleReconnect();
    }
    if (this.closed) return;
    const metadata = channel.metadata?.clone() ?? new grpc.Metadata();
    const stream: Stream = this.clientFor(channel).connect(metadata);
    this.stream = stream;
    this.welcome = undefined;
    let ended = false;
    const welcomeTimer = setTimeout(() => {
      if (!this.welcome && this.stream === stream) {
        this.opts.log.warn({ server: this.opts.server }, "no welcome from the control plane in time; reconnecting");
        stream.cancel();
      }
    }, this.opts.welcomeTimeoutMs ?? 10_000);

    const onEnd = (error: Error | undefined) => {
      if (ended) return;
      ended = true;
      clearTimeout(welcomeTimer);
      this.stopTimers();
      const wasConnected = this.welcome !== undefined;
      if (this.stream === stream) {
        this.stream = undefined;
        this.welcome = undefined;
      }
      if (this.closed) return;
      const status = (error as grpc.ServiceError | undefined)?.code;
      if (status === grpc.status.UNAUTHENTICATED || status === grpc.status.PERMISSION_DENIED) {
        const serviceError = error as grpc.ServiceError;
        const decision = this.opts.onRefused({ error: serviceError, refusal: refusalOf(serviceError), verified: channel.verified });
        if (decision === "stop") return;
        return this.scheduleReconnect(decision.maxDelayMs);
      }
      if (wasConnected) this.opts.onDisconnected(error);
      else {
        const failure = describeConnectFailure(this.opts.server, error);
        this.opts.log.warn({ server: this.opts.server, reason: failure.reason }, failure.message);
        this.opts.onConnectFailed?.(failure.message);
      }
      this.scheduleReconnect();
    };

    stream.on("data", (message: ConnectResponse) => {
      this.lastHeard = performance.now();
      if (message.message.case === "welcome") {
        clearTimeout(welcomeTimer);
        this.welcome = message.message.value;
        this.attempt = 0;
        this.startTimers(this.welcome);
        this.opts.onConnected(this.welcome);
      }
      this.opts.onMessage(message);
    });
    stream.on("error", (err: Error) => onEnd(err));
    stream.on("end", () => onEnd(undefined));
    stream.on("close", () => onEnd(undefined));
    stream.write(create(ConnectRequestSchema, { message: { case: "hello", value: hello } }));
  }

  private startTimers(welcome: Welcome): void {
    const interval = Math.max(200, durationToMs(welcome.heartbeatInterval) || 5000);
    this.heartbeatTimer = setInterval(() => {
      this.send(
        create(ConnectRequestSchema, {
          message: {
            case: "heartbeat",
            value: create(HeartbeatSchema, { time: timestampFromMs(Date.now()), activeFaults: this.opts.activeFaults() }),
          },
        }),
      );
    }, interval);
    // The control plane renews the lease every interval: a silent stream is a dead one.
    const silenceLimit = 2 * interval + 1000;
    // One timer, set for when the silence would pass the limit (an idle link wakes for it about
    // once per limit, not every second); a message heard meanwhile moves that moment later.
    const checkSilence = () => {
      const silentFor = performance.now() - this.lastHeard;
      if (silentFor > silenceLimit && this.stream) {
        this.opts.log.warn({ silentForMs: Math.round(silentFor) }, "control plane went silent; reconnecting");
        this.stream.cancel();
        return;
      }
      this.silenceTimer = setTimeout(checkSilence, Math.max(1, Math.ceil(silenceLimit - silentFor) + 1));
    };
    checkSilence();
  }

  private stopTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.silenceTimer);
    this.heartbeatTimer = undefined;
    this.silenceTimer = undefined;
  }

  private scheduleReconnect(maxDelayMs?: number): void {
    if (this.closed) return;
    const delay = backoffDelay(this.attempt++, this.opts.backoffInitialMs ?? 500, maxDelayMs ?? this.opts.backoffMaxMs ?? 30_000);
    this.opts.log.debug({ delayMs: delay, attempt: this.attempt }, "reconnecting");
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  /** Closes the link for good: ends the stream gracefully and stops reconnecting. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.stopTimers();
    const stream = this.stream;
    this.stream = undefined;
    this.welcome = undefined;
    if (stream) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        stream.once("finish", () => {
          clearTimeout(timer);
          resolve();
        });
        stream.end();
      });
      stream.cancel();
    }
    this.client?.close();
  }
}
