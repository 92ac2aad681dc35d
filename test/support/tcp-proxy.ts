/**
 * A TCP proxy on 127.0.0.1 between an agent and its control plane, whose link a test can break:
 * `cut()` destroys every connection (both sides see it at once) and refuses new ones until
 * `restore()`. The bytes are forwarded untouched (TLS stays end to end).
 */
import { connect, createServer } from "node:net";
import type { Socket } from "node:net";

/** A breakable link. */
export interface TcpProxy {
  /** `127.0.0.1:port`: give it to the agent as its server. */
  readonly address: string;
  /** Breaks every connection and refuses new ones until {@link restore}. */
  cut(): void;
  /** Accepts connections again. */
  restore(): void;
  /** Date.now() when the first connection after the last restore() was accepted (TCP), if any. */
  acceptedAfterRestore(): number | undefined;
  close(): Promise<void>;
}

/** Starts a proxy to `target` (`host:port`). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set<Socket>();
  let down = false;
  let restoredAt: number | undefined;
  let acceptedAt: number | undefined;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const server = createServer((client) => {
    track(client);
    if (down) {
      client.destroy();
      return;
    }
    if (restoredAt !== undefined && acceptedAt === undefined) acceptedAt = Date.now();
    const upstream = connect(port, host);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${own}`,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      down = false;
      restoredAt = Date.now();
      acceptedAt = undefined;
    },
    acceptedAfterRestore: () => acceptedAt,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
