import { createSocket } from "node:dgram";
import type { RemoteInfo, Socket as UdpSocket } from "node:dgram";
import { connect, createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { captureLog } from "../testing/log-capture.js";
import { buildAnswer, buildQuery } from "../testing/dns-query.js";
import { defaultTcpForwardPorts } from "./dns-fault.js";
import { parseQuestion, withId } from "./dns-message.js";
import { startDnsResponder } from "./dns-responder.js";
import type { DnsResponder, DnsResponderOptions } from "./dns-responder.js";

/**
 * A resolver on 127.0.0.1 (UDP and TCP on one port): answers every name with 10.9.0.1 except
 * `silent.*`, which it never answers, `otherport.*`, answered (right id) from another port, and
 * `wrongid.*`, answered from its port with another id; remembers where each query came from.
 */
async function fakeResolver() {
  const seen: { transport: "udp" | "tcp"; name: string; id: number; fromPort: number }[] = [];
  const udp = createSocket("udp4");
  const other = createSocket("udp4");
  await new Promise<void>((r) => other.bind(0, "127.0.0.1", () => r()));
  const tcp: Server = createServer((s: Socket) => {
    let buf = Buffer.alloc(0);
    s.on("error", () => {});
    s.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const q = parseQuestion(msg);
        if (typeof q !== "object") continue;
        seen.push({ transport: "tcp", name: q.name, id: q.id, fromPort: s.remotePort! });
        if (q.name.startsWith("silent.")) continue;
        const answer = buildAnswer(Buffer.from(msg), "10.9.0.1");
        const framed = Buffer.alloc(2 + answer.length);
        framed.writeUInt16BE(answer.length, 0);
        answer.copy(framed, 2);
        s.write(framed);
      }
    });
  });
  udp.on("message", (msg: Buffer, from: RemoteInfo) => {
    const q = parseQuestion(msg);
    if (typeof q !== "object") return;
    seen.push({ transport: "udp", name: q.name, id: q.id, fromPort: from.port });
    if (q.name.startsWith("silent.")) return;
    const answer = buildAnswer(msg, "10.9.0.1");
    if (q.name.startsWith("otherport.")) other.send(answer, from.port, from.address);
    else if (q.name.startsWith("wrongid.")) udp.send(withId(answer, q.id ^ 1), from.port, from.address);
    else udp.send(answer, from.port, from.address);
  });
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
  const port = udp.address().port;
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    port,
    seen,
    close: async () => {
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => other.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

/** Sends one UDP query to 127.0.0.1:port; the answer, or undefined after `waitMs`. */
async function udpAsk(port: number, msg: Buffer, waitMs = 2000): Promise<Buffer | undefined> {
  const socket: UdpSocket = createSocket("udp4");
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), waitMs);
      socket.on("message", (answer: Buffer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      socket.send(msg, port, "127.0.0.1");
    });
  } finally {
    socket.close();
  }
}

/** Sends one query over TCP to 127.0.0.1:port; the answer, "closed", or undefined after `waitMs`. */
async function tcpAsk(port: number, msg: Buffer, waitMs = 2000): Promise<Buffer | "closed" | undefined> {
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  try {
    return await new Promise((resolve) => {
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => resolve(undefined), waitMs);
      socket.on("close", () => {
        clearTimeout(timer);
        resolve("closed");
      });
      socket.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          clearTimeout(timer);
          resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        }
      });
      const framed = Buffer.alloc(2 + msg.length);
      framed.writeUInt16BE(msg.length, 0);
      msg.copy(framed, 2);
      socket.write(framed);
    });
  } finally {
    socket.destroy();
  }
}

const rcodeOf = (msg: Buffer | "closed" | undefined) => (Buffer.isBuffer(msg) ? msg[3]! & 0x0f : msg);
const idOf = (msg: Buffer | "closed" | undefined) => (Buffer.isBuffer(msg) ? msg.readUInt16BE(0) : msg);
/** The A record's address at the end of an answer from fakeResolver. */
const addressOf = (msg: Buffer | "closed" | undefined) => (Buffer.isBuffer(msg) ? [...msg.subarray(msg.length - 4)].join(".") : msg);

describe("the dns-fault responder", () => {
  const open: { close: () => Promise<void> }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });

  async function setup(overrides: Partial<DnsResponderOptions> = {}) {
    const resolver = await fakeResolver();
    open.push(resolver);
    const { log } = captureLog();
    const tcpForwardPorts = defaultTcpForwardPorts().slice(0, 4);
    const responder: DnsResponder = await startDnsResponder({
      matches: (name) => name.endsWith(".payments.internal"),
      mode: "NXDOMAIN",
      resolvers: [{ address: "127.0.0.1", family: 4 }],
      upstreamPort: resolver.port,
      tcpForwardPorts,
      forwardTimeoutMs: 300,
      log,
      ...overrides,
    });
    open.push(responder);
    const listener = responder.ports.listeners[0]!;
    return { resolver, responder, listener, tcpForwardPorts };
  }

  it("answers matching names with NXDOMAIN and forwards the rest to the resolver, over UDP, from its excluded port", async () => {
    const { resolver, responder, listener } = await setup();
    const faulted = await udpAsk(listener.udp, buildQuery("API.payments.internal", { id: 7 }));
    expect(rcodeOf(faulted)).toBe(3);
    expect(idOf(faulted)).toBe(7);
    const forwarded = await udpAsk(listener.udp, buildQuery("web.example.internal", { id: 8, edns: true }));
    expect(rcodeOf(forwarded)).toBe(0);
    expect(idOf(forwarded)).toBe(8);
    expect(addressOf(forwarded)).toBe("10.9.0.1");
    // The resolver saw only the forwarded one, from the forwarding socket's port (the one nftables lets through).
    expect(resolver.seen).toEqual([{ transport: "udp", name: "web.example.internal", id: expect.any(Number), fromPort: responder.ports.udpForwardPorts[0] }]);
    expect(responder.counters()).toEqual({ faulted: 1, forwarded: 1, forwardErrors: 0, dropped: 0 });
  });

  it("does the same over TCP, forwarding from one of the excluded local ports", async () => {
    const { resolver, responder, listener, tcpForwardPorts } = await setup({ mode: "SERVFAIL" });
    expect(rcodeOf(await tcpAsk(listener.tcp, buildQuery("api.payments.internal", { id: 9 })))).toBe(2);
    for (let i = 0; i < 6; i++) {
      const answer = await tcpAsk(listener.tcp, buildQuery("web.example.internal", { id: 100 + i }));
      expect(idOf(answer)).toBe(100 + i);
      expect(addressOf(answer)).toBe("10.9.0.1");
    }
    expect(resolver.seen).toHaveLength(6);
    for (const s of resolver.seen) expect(tcpForwardPorts).toContain(s.fromPort);
    // Ports are reused (reset, no TIME_WAIT holds them): 6 forwards over 4 ports.
    expect(new Set(resolver.seen.map((s) => s.fromPort)).size).toBeLessThanOrEqual(4);
    expect(responder.counters()).toEqual({ faulted: 1, forwarded: 6, forwardErrors: 0, dropped: 0 });
  });

  it("timeout: matching names get no answer at all, the rest still resolve", async () => {
    const { responder, listener } = await setup({ mode: "timeout" });
    expect(await udpAsk(listener.udp, buildQuery("api.payments.internal"), 500)).toBeUndefined();
    expect(await tcpAsk(listener.tcp, buildQuery("api.payments.internal"), 500)).toBeUndefined();
    expect(addressOf(await udpAsk(listener.udp, buildQuery("web.example.internal")))).toBe("10.9.0.1");
    expect(responder.counters()).toMatchObject({ faulted: 2, forwarded: 1 });
  });

  it("a resolver that does not answer: the forward is given up after its timeout and counted", async () => {
    const { responder, listener } = await setup();
    expect(await udpAsk(listener.udp, buildQuery("silent.example.internal"), 800)).toBeUndefined();
    expect(await tcpAsk(listener.tcp, buildQuery("silent.example.internal"), 1500)).toBe("closed");
    expect(responder.counters()).toEqual({ faulted: 0, forwarded: 2, forwardErrors: 2, dropped: 0 });
  });

  it("bounds: UDP queries over 512 bytes and non-queries are dropped; UDP forwards in flight are capped", async () => {
    const { responder, listener } = await setup({ maxUdpForwards: 2, forwardTimeoutMs: 2000 });
    const big = Buffer.concat([buildQuery("web.example.internal"), Buffer.alloc(600)]);
    expect(await udpAsk(listener.udp, big, 300)).toBeUndefined();
    expect(await udpAsk(listener.udp, buildQuery("web.example.internal", { flags: 0x8180 }), 300)).toBeUndefined();
    expect(responder.counters()).toMatchObject({ dropped: 2, forwarded: 0 });
    // Two silent forwards fill the bound; the third query is not forwarded.
    const sender = createSocket("udp4");
    await new Promise<void>((r) => sender.bind(0, "127.0.0.1", () => r()));
    for (let i = 0; i < 3; i++) sender.send(buildQuery(`silent.n${i}.internal`, { id: i }), listener.udp, "127.0.0.1");
    await new Promise((r) => setTimeout(r, 300));
    sender.close();
    expect(responder.counters()).toMatchObject({ forwarded: 2, forwardErrors: 1 });
  });

  it("an answer from another port, or with an id not in flight, is not relayed (the forward times out)", async () => {
    const { resolver, responder, listener } = await setup();
    expect(await udpAsk(listener.udp, buildQuery("otherport.example.internal"), 600)).toBeUndefined();
    expect(await udpAsk(listener.udp, buildQuery("wrongid.example.internal"), 600)).toBeUndefined();
    expect(resolver.seen.map((s) => s.name)).toEqual(["otherport.example.internal", "wrongid.example.internal"]);
    expect(responder.counters()).toMatchObject({ forwarded: 2, forwardErrors: 2 });
  });

  it("close() frees every port, and is idempotent", async () => {
    const { responder, listener } = await setup();
    await responder.close();
    await responder.close();
    const again = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject);
      again.bind(listener.udp, "127.0.0.1", () => resolve());
    });
    again.close();
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listener.tcp, "127.0.0.1", () => resolve());
    });
    await new Promise<void>((r) => server.close(() => r()));
  });
});
