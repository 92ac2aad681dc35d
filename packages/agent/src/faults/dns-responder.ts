/**
 * The DNS responder of dns-fault: small UDP and TCP servers on loopback, one pair per resolver the
 * host's queries are steered away from (nftables redirects `<resolver>:53` to them, see
 * dns-plan.ts), so each query arrives at the listener of the resolver it was sent to.
 *
 * A query for a matching name gets the fault: an NXDOMAIN or SERVFAIL answer (header and question
 * only), or no answer (`timeout`). Every other query is forwarded, unchanged but for its id, to the
 * resolver it was sent to, and the resolver's answer relayed back. The forwards leave from sockets
 * the steering rules let through: one UDP socket per address family (its port excluded) and TCP
 * connections from a small range of local ports (excluded as a range).
 *
 * Bounded: UDP queries of at most 512 bytes, TCP messages of at most 64 KiB, names of at most 255
 * bytes, at most `maxUdpForwards` UDP forwards and one TCP forward per local port in flight, at
 * most `maxTcpConnections` TCP clients, each forward given up after `forwardTimeoutMs`.
 */
import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import type { RemoteInfo, Socket as UdpSocket } from "node:dgram";
import { connect, createServer } from "node:net";
import type { Server, Socket } from "node:net";
import type { DnsFaultMode } from "@firedrill/protocol";
import type { Logger } from "pino";
import { MAX_TCP_MESSAGE_BYTES, MAX_UDP_QUERY_BYTES, RCODE, faultAnswer, messageId, parseQuestion, withId } from "./dns-message.js";
import type { DnsQuestion } from "./dns-message.js";

/** A resolver the host's queries are steered away from: its address, canonical text. */
export interface DnsResolverTarget {
  address: string;
  family: 4 | 6;
}

/** Options of {@link startDnsResponder}. */
export interface DnsResponderOptions {
  /** Whether a queried name (lower case, no trailing dot; see parseQuestion) gets the fault. */
  matches(name: string): boolean;
  mode: DnsFaultMode;
  /** The resolvers whose queries are steered here: one UDP and one TCP listener each. */
  resolvers: readonly DnsResolverTarget[];
  /** The local ports TCP forwards leave from (one forward in flight per port). */
  tcpForwardPorts: readonly number[];
  /** The resolvers' port. @default 53 (tests use another) */
  upstreamPort?: number;
  /** How long a forward may wait for the resolver's answer. @default 5000 */
  forwardTimeoutMs?: number;
  /** UDP forwards in flight at most; more queries are dropped (counted as forward errors). @default 256 */
  maxUdpForwards?: number;
  /** TCP clients connected at most; more are closed at once. @default 64 */
  maxTcpConnections?: number;
  /** A TCP client connection idle this long is closed. @default 10000 */
  tcpIdleMs?: number;
  log: Logger;
}

/** Where the responder listens and what its forwards leave from. */
export interface DnsResponderPorts {
  /** Per resolver, in order: the loopback ports its UDP and TCP queries are redirected to. */
  listeners: { resolver: DnsResolverTarget; udp: number; tcp: number }[];
  /** The local ports of the UDP forwarding sockets (one per address family in use). */
  udpForwardPorts: number[];
  /** The local ports TCP forwards leave from. */
  tcpForwardPorts: number[];
}

/** What the responder did so far. */
export interface DnsResponderCounters {
  /** Queries for matching names: answered with the fault, or (timeout) left unanswered. */
  faulted: number;
  /** Queries sent on to their resolver. */
  forwarded: number;
  /** Forwards that brought no answer back: timed out, refused, over the in-flight bound. */
  forwardErrors: number;
  /** Messages neither answered nor forwarded: over the size bound, not a query, shorter than a header. */
  dropped: number;
}

/** A running responder. */
export interface DnsResponder {
  ports: DnsResponderPorts;
  counters(): DnsResponderCounters;
  /** Closes every socket and connection and clears every timer. Idempotent. */
  close(): Promise<void>;
}

const LOOPBACK = { 4: "127.0.0.1", 6: "::1" } as const;

interface PendingUdp {
  listener: UdpSocket;
  client: RemoteInfo;
  id: number;
  resolver: string;
  timer: NodeJS.Timeout;
}

function bindUdp(family: 4 | 6, address: string): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: family === 4 ? "udp4" : "udp6", ...(family === 6 ? { ipv6Only: true } : {}) });
    socket.once("error", reject);
    socket.bind({ address, port: 0, exclusive: true }, () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}

function listenTcp(server: Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: address, port: 0, exclusive: true, ipv6Only: address === LOOPBACK[6] }, () => {
      server.off("error", reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

function closeUdp(socket: UdpSocket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A DNS message with its two-byte TCP length prefix. */
function framed(msg: Uint8Array): Buffer {
  const out = Buffer.alloc(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  out.set(msg, 2);
  return out;
}

/**
 * Reads length-prefixed DNS messages off a TCP byte stream, one at a time. Holds at most one
 * message (64 KiB) plus what has arrived after it.
 */
class TcpFrames {
  private buffer: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }
  /** The next whole message, or undefined until it has arrived. */
  next(): Buffer | undefined {
    if (this.buffer.length < 2) return undefined;
    const len = this.buffer.readUInt16BE(0);
    if (this.buffer.length < 2 + len) return undefined;
    const msg = this.buffer.subarray(2, 2 + len);
    this.buffer = this.buffer.subarray(2 + len);
    return msg;
  }
  /** Bytes held, to bound a client that sends faster than its queries are answered. */
  get size(): number {
    return this.buffer.length;
  }
}

/**
 * Starts the responder: binds every listener and forwarding socket (ports chosen by the kernel on
 * loopback) before anything is steered to it.
 * Thrown when a socket cannot be bound (nothing is left open).
 */
export async function startDnsResponder(opts: DnsResponderOptions): Promise<DnsResponder> {
  const upstreamPort = opts.upstreamPort ?? 53;
  const forwardTimeoutMs = opts.forwardTimeoutMs ?? 5000;
  const maxUdpForwards = opts.maxUdpForwards ?? 256;
  const maxTcpConnections = opts.maxTcpConnections ?? 64;
  const tcpIdleMs = opts.tcpIdleMs ?? 10_000;
  const log = opts.log;
  const counters: DnsResponderCounters = { faulted: 0, forwarded: 0, forwardErrors: 0, dropped: 0 };
  const rcode = opts.mode === "SERVFAIL" ? RCODE.SERVFAIL : RCODE.NXDOMAIN;

  const udpSockets: UdpSocket[] = [];
  const servers: Server[] = [];
  const clients = new Set<Socket>();
  const upstreams = new Set<Socket>();
  const forwarders = new Map<4 | 6, { socket: UdpSocket; pending: Map<number, PendingUdp> }>();
  const busyTcpPorts = new Set<number>();
  let nextTcpPort = 0;
  let closed = false;

  /** A matching question, or undefined when the message is forwarded as it is. */
  const faultFor = (msg: Uint8Array): DnsQuestion | undefined => {
    const q = parseQuestion(msg);
    return typeof q === "object" && opts.matches(q.name) ? q : undefined;
  };

  // --- UDP -----------------------------------------------------------------------------------
  const forwardUdp = (family: 4 | 6, resolver: string, listener: UdpSocket, msg: Buffer, client: RemoteInfo): void => {
    const fwd = forwarders.get(family)!;
    const id = messageId(msg);
    if (id === undefined) return;
    if (fwd.pending.size >= maxUdpForwards) {
      counters.forwardErrors += 1;
      log.debug({ inFlight: fwd.pending.size }, "dns-fault: too many UDP forwards in flight; query dropped");
      return;
    }
    let ourId = randomInt(0x10000);
    while (fwd.pending.has(ourId)) ourId = (ourId + 1) & 0xffff;
    const timer = setTimeout(() => {
      if (fwd.pending.delete(ourId)) counters.forwardErrors += 1;
    }, forwardTimeoutMs);
    timer.unref();
    fwd.pending.set(ourId, { listener, client, id, resolver, timer });
    counters.forwarded += 1;
    fwd.socket.send(withId(msg, ourId), upstreamPort, resolver, (err) => {
      if (!err) return;
      const entry = fwd.pending.get(ourId);
      if (entry) {
        clearTimeout(entry.timer);
        fwd.pending.delete(ourId);
        counters.forwardErrors += 1;
      }
      log.debug({ err, resolver }, "dns-fault: UDP forward could not be sent");
    });
  };

  const onForwardAnswer = (family: 4 | 6) => (msg: Buffer, from: RemoteInfo) => {
    const fwd = forwarders.get(family)!;
    const id = messageId(msg);
    const entry = id === undefined ? undefined : fwd.pending.get(id);
    // Only the resolver asked, from its port, with an id in flight: anything else is not an answer.
    if (!entry || from.address !== entry.resolver || from.port !== upstreamPort) return;
    clearTimeout(entry.timer);
    fwd.pending.delete(id!);
    if (closed) return;
    entry.listener.send(withId(msg, entry.id), entry.client.port, entry.client.address, (err) => {
      if (err) log.debug({ err }, "dns-fault: could not relay an answer to its client");
    });
  };

  const onUdpQuery = (family: 4 | 6, resolver: string, listener: UdpSocket) => (msg: Buffer, client: RemoteInfo) => {
    if (closed) return;
    if (msg.length > MAX_UDP_QUERY_BYTES || msg.length < 12 || (msg[2]! & 0x80) !== 0) {
      counters.dropped += 1;
      return;
    }
    const q = faultFor(msg);
    if (q) {
      counters.faulted += 1;
      if (opts.mode !== "timeout") {
        listener.send(faultAnswer(msg, q, rcode), client.port, client.address, (err) => {
          if (err) log.debug({ err }, "dns-fault: could not send a fault answer");
        });
      }
      return;
    }
    forwardUdp(family, resolver, listener, msg, client);
  };

  // --- TCP -----------------------------------------------------------------------------------
  const takeTcpPort = (): number | undefined => {
    for (let i = 0; i < opts.tcpForwardPorts.length; i++) {
      const port = opts.tcpForwardPorts[(nextTcpPort + i) % opts.tcpForwardPorts.length]!;
      if (!busyTcpPorts.has(port)) {
        nextTcpPort = (nextTcpPort + i + 1) % opts.tcpForwardPorts.length;
        busyTcpPorts.add(port);
        return port;
      }
    }
    return undefined;
  };

  /** One query over TCP to the resolver, from one of the excluded local ports; its answer or undefined. */
  const forwardTcpOnce = (resolver: DnsResolverTarget, msg: Buffer, localPort: number): Promise<Buffer | "retry" | undefined> =>
    new Promise((resolve) => {
      const frames = new TcpFrames();
      const upstream = connect({ host: resolver.address, port: upstreamPort, localPort, family: resolver.family });
      upstreams.add(upstream);
      let done = false;
      const finish = (answer: Buffer | "retry" | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        upstreams.delete(upstream);
        // A reset, not a close: no TIME_WAIT keeps this local port from the next forward.
        if (upstream.destroyed) return resolve(answer);
        if (upstream.connecting || upstream.readyState !== "open") upstream.destroy();
        else upstream.resetAndDestroy();
        resolve(answer);
      };
      const timer = setTimeout(() => finish(undefined), forwardTimeoutMs);
      timer.unref();
      upstream.once("connect", () => upstream.write(framed(msg)));
      upstream.on("data", (chunk: Buffer) => {
        frames.push(chunk);
        const answer = frames.next();
        if (answer) finish(answer);
        else if (frames.size > MAX_TCP_MESSAGE_BYTES + 2) finish(undefined);
      });
      upstream.on("error", (err: NodeJS.ErrnoException) => {
        finish(err.code === "EADDRINUSE" || err.code === "EADDRNOTAVAIL" ? "retry" : undefined);
      });
      upstream.once("close", () => finish(undefined));
    });

  const forwardTcp = async (resolver: DnsResolverTarget, msg: Buffer): Promise<Buffer | undefined> => {
    const id = messageId(msg);
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = takeTcpPort();
      if (port === undefined) {
        log.debug("dns-fault: every TCP forward port is busy; query not forwarded");
        return undefined;
      }
      try {
        const answer = await forwardTcpOnce(resolver, msg, port);
        if (answer === "retry") continue;
        return answer && messageId(answer) === id ? answer : undefined;
      } finally {
        busyTcpPorts.delete(port);
      }
    }
    return undefined;
  };

  const onTcpClient = (resolver: DnsResolverTarget) => (client: Socket) => {
    if (closed || clients.size >= maxTcpConnections) {
      client.destroy();
      return;
    }
    clients.add(client);
    client.on("close", () => clients.delete(client));
    client.on("error", () => client.destroy());
    client.setTimeout(tcpIdleMs, () => client.destroy());
    const frames = new TcpFrames();
    let busy = false;
    const work = async () => {
      if (busy) return;
      busy = true;
      try {
        for (let msg = frames.next(); msg && !client.destroyed && !closed; msg = frames.next()) {
          if (msg.length < 12 || (msg[2]! & 0x80) !== 0) {
            counters.dropped += 1;
            continue;
          }
          const q = faultFor(msg);
          if (q) {
            counters.faulted += 1;
            if (opts.mode !== "timeout") client.write(framed(faultAnswer(msg, q, rcode)));
            continue;
          }
          counters.forwarded += 1;
          const answer = await forwardTcp(resolver, Buffer.from(msg));
          if (!answer) {
            counters.forwardErrors += 1;
            client.destroy(); // as the resolver's own connection failing would
            return;
          }
          if (!client.destroyed) client.write(framed(answer));
        }
      } finally {
        busy = false;
      }
    };
    client.on("data", (chunk: Buffer) => {
      frames.push(chunk);
      // A client far ahead of its answers: more than one whole message waiting beyond the one in work.
      if (frames.size > 2 * (MAX_TCP_MESSAGE_BYTES + 2)) {
        counters.dropped += 1;
        client.destroy();
        return;
      }
      void work();
    });
  };

  // --- start ---------------------------------------------------------------------------------
  const listeners: DnsResponderPorts["listeners"] = [];
  try {
    for (const family of [...new Set(opts.resolvers.map((r) => r.family))]) {
      const socket = await bindUdp(family, family === 4 ? "0.0.0.0" : "::");
      udpSockets.push(socket);
      forwarders.set(family, { socket, pending: new Map() });
      socket.on("message", onForwardAnswer(family));
      socket.on("error", (err) => log.warn({ err }, "dns-fault: forwarding socket error"));
    }
    for (const resolver of opts.resolvers) {
      const udp = await bindUdp(resolver.family, LOOPBACK[resolver.family]);
      udpSockets.push(udp);
      udp.on("message", onUdpQuery(resolver.family, resolver.address, udp));
      udp.on("error", (err) => log.warn({ err, resolver: resolver.address }, "dns-fault: UDP listener error"));
      const server = createServer(onTcpClient(resolver));
      servers.push(server);
      const tcp = await listenTcp(server, LOOPBACK[resolver.family]);
      server.on("error", (err) => log.warn({ err, resolver: resolver.address }, "dns-fault: TCP listener error"));
      listeners.push({ resolver, udp: udp.address().port, tcp });
    }
  } catch (err) {
    await Promise.all([...udpSockets.map(closeUdp), ...servers.map(closeServer)]);
    throw new Error(`could not open the DNS responder's sockets on loopback: ${(err as Error).message}`, { cause: err });
  }

  let closing: Promise<void> | undefined;
  return {
    ports: {
      listeners,
      udpForwardPorts: [...forwarders.values()].map((f) => f.socket.address().port),
      tcpForwardPorts: [...opts.tcpForwardPorts],
    },
    counters: () => ({ ...counters }),
    close() {
      closing ??= (async () => {
        closed = true;
        for (const fwd of forwarders.values()) {
          for (const entry of fwd.pending.values()) clearTimeout(entry.timer);
          fwd.pending.clear();
        }
        for (const c of clients) c.destroy();
        for (const u of upstreams) u.destroy();
        await Promise.all([...udpSockets.map(closeUdp), ...servers.map(closeServer)]);
      })();
      return closing;
    },
  };
}
