/**
 * The worker thread that owns the PostgreSQL connection of a {@link createPostgresDatabase}
 * (CommonJS, run with `eval`: no build step, and the same in the sources, the tests and a release).
 *
 * It answers one request at a time on its MessagePort and wakes the waiting thread through the
 * shared Int32 (Atomics.notify). When the connection drops it answers at once with `down` (never
 * making the caller wait for a dead server) and reconnects in the background, 100 ms to 2 s apart.
 */
export const WORKER_SOURCE = String.raw`
"use strict";
const { workerData } = require("node:worker_threads");
const pg = require(workerData.pgPath);
const signal = new Int32Array(workerData.signal);
const port = workerData.port;
const types = {
  getTypeParser(oid, format) {
    if (oid === 20 || oid === 1700) return (v) => (v === null ? null : Number(v)); // int8, numeric: numbers, like SQLite
    return pg.types.getTypeParser(oid, format);
  },
};
let client;
let state = "connecting";
let lastError = "not connected yet";
let backoff = 100;
let reconnectTimer;
let closing = false;

function wake(message) {
  port.postMessage(message);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

async function connect() {
  reconnectTimer = undefined;
  if (closing) return;
  const c = new pg.Client({
    connectionString: workerData.url,
    application_name: workerData.applicationName,
    statement_timeout: workerData.statementTimeoutMs,
    lock_timeout: workerData.statementTimeoutMs,
    idle_in_transaction_session_timeout: workerData.statementTimeoutMs * 4,
    connectionTimeoutMillis: workerData.connectTimeoutMs,
    keepAlive: true,
    types,
  });
  c.on("error", (error) => lost(c, error));
  c.on("end", () => lost(c, new Error("the server closed the connection")));
  try {
    await c.connect();
  } catch (error) {
    lost(c, error);
    return;
  }
  if (closing) {
    c.end().catch(() => undefined);
    return;
  }
  client = c;
  state = "up";
  backoff = 100;
}

function lost(c, error) {
  lastError = (error && error.message) || String(error);
  if (client === c) client = undefined;
  if (closing) return;
  state = "down";
  c.end().catch(() => undefined);
  if (reconnectTimer === undefined) {
    reconnectTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 2000);
  }
}

function describe(error) {
  return {
    message: (error && error.message) || String(error),
    code: error && typeof error.code === "string" ? error.code : undefined,
    detail: error && typeof error.detail === "string" ? error.detail : undefined,
  };
}

async function handle(msg) {
  const { seq, op } = msg;
  if (op === "state") return wake({ seq, state, error: state === "up" ? undefined : lastError });
  if (op === "reset") {
    // The caller gave up waiting: a statement may still run; drop the session (its transaction with it).
    if (client) {
      const c = client;
      client = undefined;
      state = "down";
      lastError = "reset after a timeout";
      c.end().catch(() => undefined);
      if (reconnectTimer === undefined) reconnectTimer = setTimeout(connect, 50);
    }
    return wake({ seq, state });
  }
  if (op === "close") {
    closing = true;
    if (reconnectTimer !== undefined) clearTimeout(reconnectTimer);
    const c = client;
    client = undefined;
    if (c) await c.end().catch(() => undefined);
    wake({ seq, closed: true });
    port.close();
    return;
  }
  if (state !== "up" || !client) return wake({ seq, down: true, error: { message: lastError } });
  try {
    const result = await client.query(msg.values === undefined ? msg.text : { text: msg.text, values: msg.values });
    const last = Array.isArray(result) ? result[result.length - 1] : result;
    wake({ seq, rows: last && last.rows ? last.rows : [], rowCount: last && typeof last.rowCount === "number" ? last.rowCount : 0 });
  } catch (error) {
    // A broken connection shows up here too: the 'error' handler reconnects.
    wake({ seq, error: describe(error), down: !client || state !== "up" });
  }
}

let chain = Promise.resolve();
port.on("message", (msg) => {
  chain = chain.then(() => handle(msg)).catch((error) => wake({ seq: msg.seq, error: describe(error) }));
});
connect();
`;
