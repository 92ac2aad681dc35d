// Echo servers and probes for the network fault tests, run inside test namespaces with
// `ip netns exec <ns> node test/support/net-tools.mjs <command> ...`. Plain JS so it starts fast.
// Every probe is bounded in count and time and prints one JSON line.
//
//   serve --tcp 8080,9090 --udp 7000            TCP and UDP echo servers on 0.0.0.0; prints "ready"
//   tcp-connect --host H --port P [--count N] [--timeout MS] [--local ADDR]
//                                               N sequential connect + echo attempts (from ADDR): {ok, failed, rttsMs}
//   tcp-session --host H --port P [--interval MS] [--duration MS]
//                                               one connection, a line "p" every interval for duration; prints
//                                               "connected", then "echo N" per line echoed, then {sent, received}
//   udp-echo --host H --port P --count N [--interval MS] [--wait MS]
//                                               N datagrams (numbered) paced by interval; counts the echoes
//                                               that came back within wait after the last: {sent, received, lossPercent}
//   udp-send --host H --port P --count N        N datagrams, no replies expected: {sent}
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
  let pending = tcpPorts.length + udpPorts.length;
  const ready = () => {
    if (--pending === 0) console.log("ready");
  };
  for (const port of tcpPorts) {
    createServer((sock) => {
      sock.on("error", () => {});
      sock.pipe(sock);
    }).listen(port, "0.0.0.0", ready);
  }
  for (const port of udpPorts) {
    const sock = createSocket("udp4");
    sock.on("message", (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.bind(port, "0.0.0.0", ready);
  }
}

function tcpOnce(host, port, timeoutMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    const sock = connect({ host, port, ...(opts.local ? { localAddress: opts.local } : {}) });
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok ? performance.now() - started : undefined);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once("connect", () => sock.write("ping"));
    sock.once("data", () => done(true));
    sock.once("error", () => done(false));
  });
}

async function tcpConnect() {
  const count = Math.min(num("count", 1), 1000);
  const timeout = Math.min(num("timeout", 1000), 30_000);
  const rtts = [];
  let failed = 0;
  for (let i = 0; i < count; i++) {
    const rtt = await tcpOnce(opts.host, num("port"), timeout);
    if (rtt === undefined) failed++;
    else rtts.push(Math.round(rtt * 10) / 10);
  }
  console.log(JSON.stringify({ ok: rtts.length, failed, rttsMs: rtts }));
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

const commands = { serve, "tcp-connect": tcpConnect, "tcp-session": tcpSession, "udp-echo": udpEcho, "udp-send": udpSend, "udp-rtt": udpRtt };
if (!commands[command]) {
  console.error(`unknown command ${command}; use one of: ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
await commands[command]();
