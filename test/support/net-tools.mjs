// Echo servers and probes for the network fault tests, run inside test namespaces with
// `ip netns exec <ns> node test/support/net-tools.mjs <command> ...`. Plain JS so it starts fast.
// Every probe is bounded in count and time and prints one JSON line.
//
//   serve --tcp 8080,9090 --udp 7000 [--sink 5001]
//                                               TCP and UDP echo servers on 0.0.0.0, and TCP sinks for tcp-transfer;
//                                               prints "ready"
//   tcp-connect --host H --port P [--count N] [--timeout MS] [--local ADDR]
//                                               N sequential connect + echo attempts (from ADDR): {ok, failed, rttsMs}
//   tcp-session --host H --port P [--interval MS] [--duration MS]
//                                               one connection, a line "p" every interval for duration; prints
//                                               "connected", then "echo N" per line echoed, then {sent, received}
//   udp-echo --host H --port P --count N [--interval MS] [--wait MS]
//                                               N datagrams (numbered) paced by interval; counts the echoes
//                                               that came back within wait after the last: {sent, received, lossPercent}
//   udp-send --host H --port P --count N        N datagrams, no replies expected: {sent}
//   tcp-transfer --host H --port P [--warmup MS] [--measure MS]
//                                               streams data to a sink as fast as TCP lets it; the sink counts the
//                                               bytes it received over `measure` ms after `warmup` ms and sends the
//                                               count back: {bytes, ms, mbit} (received throughput, Mbit/s)
//   tcp-connect prints, besides {ok, failed, rttsMs}, `errors`: each failed attempt's error code
//                                               (ECONNREFUSED, TIMEOUT, ...) and `failMs`: how long each took to fail
//   udp-rtt --host H --port P --count N [--timeout MS]
//                                               N sequential echo round trips: {ok, lost, rttsMs}
import { createSocket } from "node:dgram";
import { createServer, connect } from "node:net";

const [command, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i += 2) opts[rest[i].replace(/^--/, "")] = rest[i + 1];
const num = (name, fallback) => (opts[name] === undefined ? fallback : Number(opts[name]));
const family = (host) => (host.includes(":") ? "udp6" : "udp4");

function serve() {
  const tcpPorts = (opts.tcp ?? "").split(",").filter(Boolean).map(Number);
  const udpPorts = (opts.udp ?? "").split(",").filter(Boolean).map(Number);
  const sinkPorts = (opts.sink ?? "").split(",").filter(Boolean).map(Number);
  let pending = tcpPorts.length + udpPorts.length + sinkPorts.length;
  const ready = () => {
    if (--pending === 0) console.log("ready");
  };
  for (const port of tcpPorts) {
    createServer((sock) => {
      sock.on("error", () => {});
      sock.pipe(sock);
    }).listen(port, "0.0.0.0", ready);
  }
  for (const port of sinkPorts) createServer(sinkConnection).listen(port, "0.0.0.0", ready);
  for (const port of udpPorts) {
    const sock = createSocket("udp4");
    sock.on("message", (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.bind(port, "0.0.0.0", ready);
  }
}

// A tcp-transfer sink: reads the header line "T <warmupMs> <measureMs>", then counts what arrives;
// after the window, writes {"bytes","ms"} back (the reverse direction is not the one under test).
// A rate limit lets data through in bursts (a 64 KiB TSO segment at a time: half a second apart at
// 1 Mbit/s), so the window is measured from the start of the first burst after the warm-up to the
// start of the last burst before its end — whole bursts only — else a window's ends would cut
// bursts in two and miscount by up to one burst.
function sinkConnection(sock) {
  sock.on("error", () => {});
  const GAP_MS = 2;
  let header = "";
  let total = 0;
  let started = false;
  let lastAt = 0;
  let armed = false;
  let armedAt = 0;
  let from; // { at, bytes }: the first burst's start once armed (or, steady, the first arrival 100 ms in)
  let lastBurst; // the last arrival after a gap, once `from` is set
  let lastEvent;
  const arrived = (bytes) => {
    const at = performance.now();
    const mark = { at, bytes: total };
    if (armed && !from) {
      if (at - lastAt > GAP_MS || at - armedAt > 100) from = mark;
    }
    else if (from) {
      lastEvent = mark;
      if (at - lastAt > GAP_MS) lastBurst = mark;
    }
    lastAt = at;
    total += bytes;
  };
  const startWindow = (warmup, measure) => {
    started = true;
    setTimeout(() => {
      armed = true;
      armedAt = performance.now();
      const windowStart = armedAt;
      setTimeout(() => {
        // Bursty: up to the start of the last burst in the second half; steady: up to the last arrival.
        const to = lastBurst && lastBurst.at - windowStart > measure / 2 ? lastBurst : lastEvent;
        const result = from && to ? { bytes: to.bytes - from.bytes, ms: Math.round((to.at - from.at) * 10) / 10 } : { bytes: 0, ms: measure };
        sock.end(`${JSON.stringify(result)}\n`);
      }, measure);
    }, warmup);
  };
  sock.on("data", (chunk) => {
    if (started) {
      arrived(chunk.length);
      return;
    }
    const text = chunk.toString("latin1");
    const nl = (header + text).indexOf("\n");
    if (nl < 0) {
      header += text;
      return;
    }
    const line = (header + text).slice(0, nl);
    total += chunk.length - (nl - header.length + 1);
    const [, warmup, measure] = line.split(" ").map(Number);
    startWindow(Math.min(warmup || 0, 60_000), Math.min(measure || 1000, 120_000));
  });
}

async function tcpTransfer() {
  const warmup = Math.min(num("warmup", 1000), 60_000);
  const measure = Math.min(num("measure", 3000), 120_000);
  const sock = connect({ host: opts.host, port: num("port") });
  const chunk = Buffer.alloc(64 * 1024);
  let reply = "";
  let failed;
  const timer = setTimeout(() => {
    failed = "TIMEOUT";
    sock.destroy();
  }, warmup + measure + 10_000);
  const done = new Promise((resolve) => {
    sock.on("data", (d) => {
      reply += d.toString();
      if (reply.includes("\n")) resolve();
    });
    sock.on("error", (err) => {
      failed ??= err.code ?? err.message;
      resolve();
    });
    sock.on("close", () => resolve());
  });
  sock.once("connect", () => {
    sock.write(`T ${warmup} ${measure}\n`);
    const pump = () => {
      while (!sock.destroyed && !reply.includes("\n") && sock.write(chunk));
    };
    sock.on("drain", pump);
    pump();
  });
  await done;
  clearTimeout(timer);
  sock.destroy();
  const line = reply.split("\n")[0];
  if (!line) {
    console.log(JSON.stringify({ error: failed ?? "no reply from the sink" }));
    return;
  }
  const { bytes, ms } = JSON.parse(line);
  console.log(JSON.stringify({ bytes, ms, mbit: Math.round(((bytes * 8) / ms / 1000) * 1000) / 1000 }));
}

function tcpOnce(host, port, timeoutMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    const sock = connect({ host, port, ...(opts.local ? { localAddress: opts.local } : {}) });
    const done = (ok, error) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ms: performance.now() - started, ok, error });
    };
    const timer = setTimeout(() => done(false, "TIMEOUT"), timeoutMs);
    sock.once("connect", () => sock.write("ping"));
    sock.once("data", () => done(true));
    sock.once("error", (err) => done(false, err.code ?? err.message));
  });
}

async function tcpConnect() {
  const count = Math.min(num("count", 1), 1000);
  const timeout = Math.min(num("timeout", 1000), 30_000);
  const rtts = [];
  const errors = [];
  const failMs = [];
  let failed = 0;
  for (let i = 0; i < count; i++) {
    const r = await tcpOnce(opts.host, num("port"), timeout);
    const ms = Math.round(r.ms * 10) / 10;
    if (r.ok) rtts.push(ms);
    else {
      failed++;
      errors.push(r.error);
      failMs.push(ms);
    }
  }
  console.log(JSON.stringify({ ok: rtts.length, failed, rttsMs: rtts, errors, failMs }));
}

async function udpEcho() {
  const count = Math.min(num("count", 100), 10_000);
  const interval = Math.min(num("interval", 2), 1000);
  const wait = Math.min(num("wait", 500), 10_000);
  const sock = createSocket(family(opts.host));
  const seen = new Set();
  sock.on("message", (msg) => seen.add(msg.toString()));
  await new Promise((r) => sock.bind(0, r));
  for (let i = 0; i < count; i++) {
    sock.send(`probe-${i}`, num("port"), opts.host);
    await new Promise((r) => setTimeout(r, interval));
  }
  await new Promise((r) => setTimeout(r, wait));
  sock.close();
  const received = seen.size;
  console.log(JSON.stringify({ sent: count, received, lossPercent: Math.round(((count - received) / count) * 1000) / 10 }));
}

async function udpSend() {
  const count = Math.min(num("count", 1), 10_000);
  const sock = createSocket(family(opts.host));
  for (let i = 0; i < count; i++) await new Promise((r) => sock.send(`probe-${i}`, num("port"), opts.host, r));
  sock.close();
  console.log(JSON.stringify({ sent: count }));
}

async function udpRtt() {
  const count = Math.min(num("count", 10), 1000);
  const timeout = Math.min(num("timeout", 2000), 30_000);
  const sock = createSocket(family(opts.host));
  await new Promise((r) => sock.bind(0, r));
  const rtts = [];
  let lost = 0;
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const got = await new Promise((resolve) => {
      const onMessage = (msg) => {
        if (msg.toString() !== `rtt-${i}`) return;
        clearTimeout(timer);
        sock.off("message", onMessage);
        resolve(true);
      };
      const timer = setTimeout(() => {
        sock.off("message", onMessage);
        resolve(false);
      }, timeout);
      sock.on("message", onMessage);
      sock.send(`rtt-${i}`, num("port"), opts.host);
    });
    if (got) rtts.push(Math.round((performance.now() - started) * 10) / 10);
    else lost++;
  }
  sock.close();
  console.log(JSON.stringify({ ok: rtts.length, lost, rttsMs: rtts }));
}

async function tcpSession() {
  const interval = Math.max(num("interval", 100), 10);
  const duration = Math.min(num("duration", 10_000), 120_000);
  const sock = connect({ host: opts.host, port: num("port") });
  let sent = 0;
  let received = 0;
  sock.setEncoding("utf8");
  sock.on("data", (text) => {
    for (const ch of text) if (ch === "\n") console.log(`echo ${++received}`);
  });
  sock.on("error", (err) => console.log(`error ${err.message}`));
  await new Promise((resolve) => sock.once("connect", resolve));
  console.log("connected");
  const timer = setInterval(() => {
    sock.write("p\n");
    sent++;
  }, interval);
  await new Promise((r) => setTimeout(r, duration));
  clearInterval(timer);
  sock.destroy();
  console.log(JSON.stringify({ sent, received }));
}

const commands = { serve, "tcp-connect": tcpConnect, "tcp-session": tcpSession, "tcp-transfer": tcpTransfer, "udp-echo": udpEcho, "udp-send": udpSend, "udp-rtt": udpRtt };
if (!commands[command]) {
  console.error(`unknown command ${command}; use one of: ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
await commands[command]();
