/**
 * The raw grpc-js floor of `pnpm bench fleet`: a process serving `AgentService.Connect` with no
 * firedrill logic at all, so the same simulated fleet and the same measurements can run against
 * it and show what grpc-js and the protocol cost on this machine by themselves.
 *
 * What it does on the agent stream: answers Hello with a Welcome (5 s heartbeats, 15 s lease: the
 * control plane's defaults), sends a LeaseRenewal every heartbeat interval, ignores heartbeats,
 * and counts fault events in memory (no store, no policy, no runs). On command it broadcasts a
 * StartFault to every connected agent, a StopFault for each fault it sent, or a StopAll.
 *
 * Controlled over a loopback HTTP endpoint (the bench polls it as it polls the control plane's API):
 *   GET  /stats                            {"connected", "acked", "reverted", "sent", "events": {type: count}}
 *   POST /start-fault?kind=K&durationMs=D  a StartFault to every connected agent (fault ids new; counts reset)
 *   POST /stop-faults                      a StopFault (reason ABORTED) for every fault the last /start-fault sent
 *   POST /stop-all                         a StopAll (reason HALT) to every connected agent
 * "acked" counts the faults of the last /start-fault that an ACCEPTED or STARTED came back for,
 * "reverted" those a REVERTED came back for.
 *
 * Run as a script: `fleet-floor.ts --grpc-addr 127.0.0.1:P --http-port Q`. From the bench:
 * {@link startFloor}.
 */
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { AgentService, ConnectResponseSchema, FaultEventType, RevertReason, addService, durationFromMs, faultEventTypeName } from "@firedrill/protocol";
import type { ConnectResponse } from "@firedrill/protocol";
import { ROOT, sleep, spawnNode } from "../test/support/processes.js";
import type { TestProcess } from "../test/support/processes.js";

/** Heartbeat interval the floor's Welcome gives (the control plane's default). */
const HEARTBEAT_MS = 5000;
/** Lease TTL the floor's Welcome gives (the control plane's default). */
const LEASE_TTL_MS = 15_000;

type GrpcServer = Parameters<typeof addService>[0];
type ServerCredentials = Parameters<GrpcServer["bindAsync"]>[1];

/** A message to the agent: the oneof case of ConnectResponse and its fields. */
type Outgoing = { case: NonNullable<ConnectResponse["message"]["case"]>; value: object };

// The very grpc-js and protobuf runtime @firedrill/protocol is built on (the root package depends
// on neither).
const fromProtocol = createRequire(join(ROOT, "packages/protocol/package.json"));
const grpc = fromProtocol("@grpc/grpc-js") as {
  Server: new (options?: Record<string, number>) => GrpcServer;
  ServerCredentials: { createInsecure(): ServerCredentials };
};
const { create } = fromProtocol("@bufbuild/protobuf") as {
  create(schema: typeof ConnectResponseSchema, init: { message: Outgoing }): ConnectResponse;
};

/** One welcomed agent stream. */
interface Session {
  write(message: Outgoing): void;
  /** Fault ids the last broadcast sent this agent. */
  faults: string[];
  renewals: NodeJS.Timeout;
}

/** Serves the floor until the process is killed. */
async function serveFloor(grpcAddr: string, httpPort: number): Promise<void> {
  const sessions = new Set<Session>();
  const events: Record<string, number> = {};
  let broadcast = 0;
  let sent = 0;
  let acked = new Set<string>();
  let reverted = new Set<string>();
  let prefix = "";

  const server = new grpc.Server({ "grpc.keepalive_time_ms": 30_000, "grpc.keepalive_timeout_ms": 10_000, "grpc.keepalive_permit_without_calls": 1 });
  addService(server, AgentService, {
    connect(call) {
      let session: Session | undefined;
      const close = () => {
        if (!session) return;
        clearInterval(session.renewals);
        sessions.delete(session);
        session = undefined;
      };
      const write = (message: Outgoing) => {
        if (call.cancelled || call.writableEnded) return;
        call.write(create(ConnectResponseSchema, { message }));
      };
      call.on("data", (request: { message: { case: string | undefined; value?: unknown } }) => {
        const message = request.message;
        if (message.case === "hello" && !session) {
          const hello = message.value as { agentId: string };
          write({ case: "welcome", value: { agentId: hello.agentId, heartbeatInterval: durationFromMs(HEARTBEAT_MS), leaseTtl: durationFromMs(LEASE_TTL_MS), serverVersion: "0.0.0-floor" } });
          const renewals = setInterval(() => write({ case: "leaseRenewal", value: { leaseTtl: durationFromMs(LEASE_TTL_MS) } }), HEARTBEAT_MS);
          session = { write, faults: [], renewals };
          sessions.add(session);
        } else if (message.case === "faultEvent") {
          const event = message.value as { faultId: string; type: FaultEventType };
          const name = faultEventTypeName(event.type);
          events[name] = (events[name] ?? 0) + 1;
          if (!event.faultId.startsWith(prefix)) return;
          if (event.type === FaultEventType.ACCEPTED || event.type === FaultEventType.STARTED) acked.add(event.faultId);
          else if (event.type === FaultEventType.REVERTED) reverted.add(event.faultId);
        }
      });
      call.on("error", close);
      call.on("cancelled", close);
      call.on("end", () => {
        close();
        call.end();
      });
    },
    enroll: (_call, callback) => callback({ code: 12, details: "the floor has no enrollment" } as never),
    renewCertificate: (_call, callback) => callback({ code: 12, details: "the floor has no enrollment" } as never),
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(grpcAddr, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );

  const http = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://floor");
    const reply = (body: unknown) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(body));
    };
    if (req.method === "GET" && url.pathname === "/stats") {
      reply({ connected: sessions.size, acked: acked.size, reverted: reverted.size, sent, events });
    } else if (req.method === "POST" && url.pathname === "/start-fault") {
      const kind = url.searchParams.get("kind") ?? "cpu-burn";
      const durationMs = Number(url.searchParams.get("durationMs") ?? 600_000);
      broadcast += 1;
      prefix = `floor${broadcast}-`;
      acked = new Set();
      reverted = new Set();
      sent = 0;
      for (const session of sessions) {
        const faultId = `${prefix}${sent++}`;
        session.faults = [faultId];
        session.write({ case: "startFault", value: { faultId, kind, params: { load: 5 }, duration: durationFromMs(durationMs), runId: `floor-run-${broadcast}` } });
      }
      reply({ sent });
    } else if (req.method === "POST" && url.pathname === "/stop-faults") {
      let stops = 0;
      for (const session of sessions) {
        for (const faultId of session.faults) {
          session.write({ case: "stopFault", value: { faultId, reason: RevertReason.ABORTED } });
          stops += 1;
        }
        session.faults = [];
      }
      reply({ sent: stops });
    } else if (req.method === "POST" && url.pathname === "/stop-all") {
      for (const session of sessions) {
        session.write({ case: "stopAll", value: { reason: RevertReason.HALT, message: "halt (floor)" } });
        session.faults = [];
      }
      reply({ sent: sessions.size });
    } else {
      res.statusCode = 404;
      reply({ error: `${req.method} ${url.pathname}: not a floor endpoint (GET /stats, POST /start-fault, /stop-faults, /stop-all)` });
    }
  });
  await new Promise<void>((resolve) => http.listen(httpPort, "127.0.0.1", resolve));
  console.log(`floor listening: gRPC ${grpcAddr}, control http://127.0.0.1:${httpPort}`);
}

/** What GET /stats of the floor answers. */
export interface FloorStats {
  connected: number;
  acked: number;
  reverted: number;
  sent: number;
  events: Record<string, number>;
}

/** A floor process started by the bench. */
export interface FloorHandle {
  proc: TestProcess;
  grpcAddr: string;
  stats(): Promise<FloorStats>;
  /** POSTs a command (`start-fault`, `stop-faults`, `stop-all`); resolves with how many messages were sent. */
  command(path: string): Promise<number>;
}

/**
 * Starts the floor as its own process on `grpcPort` (plain gRPC on loopback) with its control
 * endpoint on `httpPort`, and waits until it answers. Tracked by `killAll()` like every process the
 * benches start.
 */
export async function startFloor(grpcPort: number, httpPort: number): Promise<FloorHandle> {
  const grpcAddr = `127.0.0.1:${grpcPort}`;
  const base = `http://127.0.0.1:${httpPort}`;
  const proc = spawnNode(join(ROOT, "bench/fleet-floor.ts"), ["--grpc-addr", grpcAddr, "--http-port", String(httpPort)]);
  const stats = async (): Promise<FloorStats> => {
    const res = await fetch(`${base}/stats`, { signal: AbortSignal.timeout(30_000) });
    return (await res.json()) as FloorStats;
  };
  const deadline = performance.now() + 20_000;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`the floor exited with ${proc.child.exitCode}: ${proc.output().slice(-2000)}`);
    try {
      await stats();
      break;
    } catch {
      if (performance.now() > deadline) throw new Error(`the floor did not answer on ${base} within 20 s: ${proc.output().slice(-2000)}`);
      await sleep(50);
    }
  }
  return {
    proc,
    grpcAddr,
    stats,
    async command(path) {
      const res = await fetch(`${base}/${path}`, { method: "POST", signal: AbortSignal.timeout(60_000) });
      if (!res.ok) throw new Error(`floor ${path}: HTTP ${res.status} ${await res.text()}`);
      return ((await res.json()) as { sent: number }).sent;
    },
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    const value = i < 0 ? undefined : process.argv[i + 1];
    if (value === undefined) throw new Error(`fleet-floor: ${name} is required (fleet-floor.ts --grpc-addr 127.0.0.1:7070 --http-port 7081)`);
    return value;
  };
  await serveFloor(arg("--grpc-addr"), Number(arg("--http-port")));
}
