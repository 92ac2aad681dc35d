/**
 * PostgreSQL LISTEN/NOTIFY between replicas.
 *
 * Listening needs a connection of its own that stays open, so {@link createNotifyListener} keeps a
 * dedicated asynchronous `pg` Client in the main thread (not the synchronous store engine). When
 * that connection drops (PostgreSQL restarted, network cut, or a ping unanswered) it reconnects,
 * 100 ms to 2 s apart, LISTENs again on every channel, then calls the `onReconnect` hooks: a
 * notification sent while it was away is lost, so the caller re-reads what it may have missed.
 *
 * Sending ({@link notify}) goes through the synchronous store, so it can be part of a transaction
 * (PostgreSQL delivers it at COMMIT, never for a rolled-back transaction). Payloads are bounded by
 * PostgreSQL (under 8000 bytes): send ids, not data.
 */
import pg from "pg";
import type { Logger } from "pino";
import { redactPostgresUrl } from "../store/postgres/database.js";
import type { SqlDatabase } from "../store/sql/types.js";

/** Largest payload {@link notify} accepts, in UTF-8 bytes (PostgreSQL's limit is 8000). */
export const MAX_NOTIFY_PAYLOAD_BYTES = 7999;

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

function checkChannel(channel: string): void {
  if (!CHANNEL.test(channel)) throw new Error(`notification channel ${JSON.stringify(channel)} must be 1-63 characters a-z, 0-9 or _, not starting with a digit`);
}

/**
 * Sends `payload` on `channel` (`SELECT pg_notify(?, ?)` on the synchronous store). Inside a
 * transaction it is sent at commit. Throws when the payload is 8000 bytes or more.
 */
export function notify(db: SqlDatabase, channel: string, payload = ""): void {
  checkChannel(channel);
  const size = Buffer.byteLength(payload, "utf8");
  if (size > MAX_NOTIFY_PAYLOAD_BYTES) throw new Error(`a notification payload on ${channel} is ${size} bytes, over PostgreSQL's limit (${MAX_NOTIFY_PAYLOAD_BYTES}): send ids, not data`);
  db.prepare("SELECT pg_notify(CAST(? AS TEXT), CAST(? AS TEXT))").get(channel, payload);
}

/** Options of {@link createNotifyListener}. */
export interface NotifyListenerOptions {
  /** The store's URL (`postgres://…`). */
  url: string;
  logger: Logger;
  /** Called after every reconnection, once LISTEN is in place again (not after the first connection). */
  onReconnect?: () => void;
  /** Period of the liveness ping on the listening connection. @default 5000 */
  pingMs?: number;
  /** How long connecting or a ping may take before the connection is dropped and retried. @default 5000 */
  timeoutMs?: number;
}

/** A handler of one channel's notifications. */
export type NotificationHandler = (payload: string) => void;

/** The listening connection. */
export interface NotifyListener {
  /** Subscribes `handler` to `channel` (LISTEN when it is the channel's first); returns an unsubscribe. */
  listen(channel: string, handler: NotificationHandler): () => void;
  /** Adds a hook called after every reconnection; returns a remove function. */
  onReconnect(hook: () => void): () => void;
  /** True while connected and listening. */
  readonly connected: boolean;
  /** Resolves once connected and listening on every channel subscribed so far (or rejects after `ms`). */
  ready(ms?: number): Promise<void>;
  /** Closes the connection for good. */
  close(): Promise<void>;
}

/** Opens the listening connection (in the background; see {@link NotifyListener.ready}). */
export function createNotifyListener(options: NotifyListenerOptions): NotifyListener {
  const log = options.logger.child({ component: "ha-notify", store: redactPostgresUrl(options.url) });
  const pingMs = options.pingMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 5000;
  const handlers = new Map<string, Set<NotificationHandler>>();
  const hooks = new Set<() => void>();
  if (options.onReconnect !== undefined) hooks.add(options.onReconnect);
  let client: pg.Client | undefined;
  let listening = false;
  let closed = false;
  let everConnected = false;
  let backoff = 100;
  let retry: NodeJS.Timeout | undefined;
  let ping: NodeJS.Timeout | undefined;
  let waiters: (() => void)[] = [];
  let downLogged = false;

  const onNotification = (msg: pg.Notification) => {
    const set = handlers.get(msg.channel);
    if (set === undefined) return;
    for (const handler of [...set]) {
      try {
        handler(msg.payload ?? "");
      } catch (err) {
        log.error({ err, channel: msg.channel }, "a notification handler failed");
      }
    }
  };

  const drop = (c: pg.Client, err: unknown) => {
    if (client !== c) return;
    client = undefined;
    listening = false;
    if (ping !== undefined) clearInterval(ping);
    ping = undefined;
    c.removeAllListeners("notification");
    c.on("error", () => undefined); // a late error of the dropped client must not crash the process
    c.end().catch(() => undefined);
    if (closed) return;
    if (!downLogged) log.warn({ err }, "the notification connection to PostgreSQL is down; reconnecting");
    downLogged = true;
    schedule();
  };

  const schedule = () => {
    if (closed || retry !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      void connect();
    }, backoff);
    retry.unref();
    backoff = Math.min(backoff * 2, 2000);
  };

  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: options.url, application_name: "firedrill-listen", connectionTimeoutMillis: timeoutMs, keepAlive: true, query_timeout: timeoutMs });
    client = c;
    c.on("error", (err) => drop(c, err));
    c.on("end", () => drop(c, new Error("the server closed the connection")));
    c.on("notification", onNotification);
    try {
      await c.connect();
      for (const channel of handlers.keys()) await c.query(`LISTEN "${channel}"`);
    } catch (err) {
      drop(c, err);
      return;
    }
    if (client !== c || closed) {
      c.end().catch(() => undefined);
      return;
    }
    // Unref the socket: the listener alone must not keep the process alive.
    (c as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
    listening = true;
    backoff = 100;
    if (downLogged) log.info("the notification connection to PostgreSQL is back; listening again");
    downLogged = false;
    ping = setInterval(() => {
      c.query("SELECT 1").catch((err: unknown) => drop(c, err));
    }, pingMs);
    ping.unref();
    const wasConnected = everConnected;
    everConnected = true;
    for (const w of waiters.splice(0)) w();
    if (wasConnected) {
      for (const hook of [...hooks]) {
        try {
          hook();
        } catch (err) {
          log.error({ err }, "a reconnect hook failed");
        }
      }
    }
  };

  void connect();

  return {
    listen(channel, handler) {
      checkChannel(channel);
      let set = handlers.get(channel);
      if (set === undefined) {
        set = new Set();
        handlers.set(channel, set);
        if (client !== undefined && listening) {
          const c = client;
          listening = false; // ready() waits for this LISTEN
          c.query(`LISTEN "${channel}"`).then(
            () => {
              if (client === c) {
                listening = true;
                for (const w of waiters.splice(0)) w();
              }
            },
            (err: unknown) => drop(c, err),
          );
        }
      }
      set.add(handler);
      return () => {
        const s = handlers.get(channel);
        if (s === undefined) return;
        s.delete(handler);
        if (s.size === 0) {
          handlers.delete(channel);
          if (client !== undefined && listening) client.query(`UNLISTEN "${channel}"`).catch(() => undefined);
        }
      };
    },
    onReconnect(hook) {
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
    get connected() {
      return listening;
    },
    ready(ms = 10_000) {
      if (listening) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          waiters = waiters.filter((w) => w !== done);
          reject(new Error(`the notification connection to PostgreSQL was not ready within ${ms} ms`));
        }, ms);
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        waiters.push(done);
      });
    },
    async close() {
      closed = true;
      if (retry !== undefined) clearTimeout(retry);
      if (ping !== undefined) clearInterval(ping);
      const c = client;
      client = undefined;
      listening = false;
      hooks.clear();
      handlers.clear();
      if (c !== undefined) {
        c.removeAllListeners("notification");
        c.on("error", () => undefined);
        await c.end().catch(() => undefined);
      }
    },
  };
}
