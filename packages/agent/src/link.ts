/**
 * The agent link: dials the control plane, says Hello, keeps one bidirectional stream alive with
 * heartbeats, and reconnects with jittered exponential backoff when it breaks. Each attempt first
 * asks `prepare` for its channel (pinning and enrollment happen there, before anything is sent);
 * what a refusal means is the agent's decision, given whether the channel was verified.
 *
 * With several addresses (replicas of one control plane) there is still one stream at a time: a
 * failed attempt or a broken stream moves on to the next address after a short jittered pause, and
 * the backoff applies between full rounds (every address failed in turn).
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
  /** The address that refused. */
  server: string;
}

/**
 * What to do after a refusal: stop for good (the agent exits), retry with the usual backoff, or
 * retry with a backoff capped at `maxDelayMs`.
 */
export type RefusalDecision = "stop" | { retry: true; maxDelayMs?: number };

/** Options of the agent link. */
export interface AgentLinkOptions {
  /**
   * Control plane gRPC addresses, host:port: one, or several replicas of one control plane (they
   * share its CA and database), tried in turn starting with the first.
   */
  servers: readonly string[];
  /**
   * Readies each connect attempt to `server`: the channel to dial (credentials, metadata, agent
   * id), or wait. Pinning and enrollment happen here, before anything is sent on Connect.
   */
  prepare: (server: string) => Promise<PrepareResult>;
  log: Logger;
  /** Builds the Hello for each (re)connect. */
  hello: (channel: LinkChannel) => Promise<Hello> | Hello;
  /** Every message from the control plane, Welcome included. */
  onMessage: (message: ConnectResponse) => void;
  /** The link is up: Welcome received from the control plane at `server`. */
  onConnected: (welcome: Welcome, server: string) => void;
  /** The link to `server` went down; the next attempt goes to `next` (the same with one address). */
  onDisconnected: (error: Error | undefined, server: string, next: string) => void;
  /** A connect attempt to `server` failed before the Welcome: why, in words an operator can act on. */
  onConnectFailed?: (message: string, server: string) => void;
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
  /** Longest pause before trying the next address within a round (jittered from 0). @default 250 */
  hopDelayMaxMs?: number;
}

/**
 * Which address to try next and how long to wait first, over a list of addresses: round-robin from
 * the one after the last that failed; a short jittered pause between addresses within a round, the
 * exponential backoff once every address has failed in turn. With one address, every failure is a
 * full round (the backoff of a single-server link).
 */
export class ServerRotation {
  private index = 0;
  /** Consecutive failures in the current round. */
  private failedInRound = 0;
  /** Full rounds failed since the last success (the backoff's attempt). */
  private rounds = 0;

  constructor(
    readonly servers: readonly string[],
    private readonly opts: { backoffInitialMs: number; backoffMaxMs: number; hopDelayMaxMs: number; random?: () => number },
  ) {
    if (servers.length === 0) throw new Error("no control plane address");
  }

  /** The address of the current (or next) attempt. */
  get current(): string {
    return this.servers[this.index]!;
  }

  /** The address tried after the current one fails. */
  get next(): string {
    return this.servers[(this.index + 1) % this.servers.length]!;
  }

  /** A Welcome came from the current address: the next failure starts a new round. */
  succeeded(): void {
    this.failedInRound = 0;
    this.rounds = 0;
  }

  /**
   * The current address failed (or its stream broke): moves to the next one and returns the delay
   * before trying it. `maxDelayMs` caps the backoff (a refusal's decision); `fullRound` makes this
   * failure end the round (the control plane's answer holds for every replica, e.g. a refusal).
   */
  failed(options: { maxDelayMs?: number | undefined; fullRound?: boolean } = {}): number {
    const random = this.opts.random ?? Math.random;
    this.index = (this.index + 1) % this.servers.length;
    this.failedInRound++;
    if (!options.fullRound && this.failedInRound < this.servers.length) {
      return Math.round(random() * this.opts.hopDelayMaxMs);
    }
    this.failedInRound = 0;
    return backoffDelay(this.rounds++, this.opts.backoffInitialMs, options.maxDelayMs ?? this.opts.backoffMaxMs, random);
  }
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
  private readonly rotation: ServerRotation;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private lastHeard = 0;

  constructor(private readonly opts: AgentLinkOptions) {
    this.rotation = new ServerRotation(opts.servers, {
      backoffInitialMs: opts.backoffInitialMs ?? 500,
      backoffMaxMs: opts.backoffMaxMs ?? 30_000,
      hopDelayMaxMs: opts.hopDelayMaxMs ?? 250,
    });
  }

  /**
   * The client for `channel` to `server`: a new one whenever the address or the channel's
   * credentials changed (enrolled, renewed); the previous one is closed (one stream at a time).
   */
  private clientFor(channel: LinkChannel, server: string): ClientOf<typeof AgentService> {
    const key = `${channel.key} ${server}`;
    if (this.client && this.clientKey === key) return this.client;
    this.client?.close();
    this.client = new this.Client(server, channel.credentials, {
      // Reconnect timing is ours (jittered backoff); keep grpc's own short.
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 1000,
    });
    this.clientKey = key;
    return this.client;
  }

  /** Whether a Welcome was received on the current stream. */
  get connected(): boolean {
    return this.stream !== undefined && this.welcome !== undefined;
  }

  /** The address of the live stream, or of the attempt under way (or next) when not connected. */
  get server(): string {
    return this.rotation.current;
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
    const server = this.rotation.current;
    let prepared: PrepareResult;
    try {
      prepared = await this.opts.prepare(server);
    } catch (err) {
      this.opts.log.error({ err, server }, "could not prepare the connection; retrying");
      return this.scheduleReconnect({ fullRound: true });
    }
    if (this.closed) return;
    // A wait with its own cap (no join token, refused, limit) holds for every replica alike; any
    // other failed preparation (the pinning handshake) is this address's.
    if (!("channel" in prepared)) {
      return this.scheduleReconnect(prepared.maxDelayMs !== undefined ? { maxDelayMs: prepared.maxDelayMs, fullRound: true } : {});
    }
    const channel = prepared.channel;
    let hello: Hello;
    try {
      hello = await this.opts.hello(channel);
    } catch (err) {
      this.opts.log.error({ err }, "could not build the hello; retrying");
      return this.scheduleReconnect({ fullRound: true });
    }
    if (this.closed) return;
    const metadata = channel.metadata?.clone() ?? new grpc.Metadata();
    this.opts.log.debug({ server }, "connecting to the control plane");
    const stream: Stream = this.clientFor(channel, server).connect(metadata);
    this.stream = stream;
    this.welcome = undefined;
    let ended = false;
    const welcomeTimer = setTimeout(() => {
      if (!this.welcome && this.stream === stream) {
        this.opts.log.warn({ server }, "no welcome from the control plane in time; reconnecting");
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
        const decision = this.opts.onRefused({ error: serviceError, refusal: refusalOf(serviceError), verified: channel.verified, server });
        if (decision === "stop") return;
        // Replicas share one database: another one would answer the same.
        return this.scheduleReconnect({ maxDelayMs: decision.maxDelayMs, fullRound: true });
      }
      if (wasConnected) this.opts.onDisconnected(error, server, this.rotation.next);
      else {
        const failure = describeConnectFailure(server, error);
        this.opts.log.warn({ server, reason: failure.reason }, failure.message);
        this.opts.onConnectFailed?.(failure.message, server);
      }
      this.scheduleReconnect();
    };

    stream.on("data", (message: ConnectResponse) => {
      this.lastHeard = performance.now();
      if (message.message.case === "welcome") {
        clearTimeout(welcomeTimer);
        this.welcome = message.message.value;
        this.rotation.succeeded();
        this.startTimers(this.welcome);
        this.opts.onConnected(this.welcome, server);
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

  private scheduleReconnect(options: { maxDelayMs?: number | undefined; fullRound?: boolean } = {}): void {
    if (this.closed) return;
    const delay = this.rotation.failed(options);
    this.opts.log.debug({ delayMs: delay, next: this.rotation.current }, "reconnecting");
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
