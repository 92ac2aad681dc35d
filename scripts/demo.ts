/**
 * The demo game day: a control plane, a login with its bootstrap admin token, one local agent, and
 * a 20 s cpu-burn at 50% of one core, showing the load the agent measures while it runs and
 * proving it is gone afterwards; then an experiment run twice — once with the service healthy
 * (completed), once with its health check breaking mid-run (aborted, reverted) — with plan, live
 * timeline and report (also as a self-contained HTML file); last, the audit log of it all and its
 * verification. The web console is served all along: its URL and login token are printed at the
 * start, to watch the game day in a browser while it runs. Every step runs the
 * real `firedrill` and `firedrill-agent` commands; nothing is simulated. The CLI's config file
 * lives in the demo's temp dir: your own ~/.config/firedrill is neither read nor written.
 *
 *   pnpm demo
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const NODE = [process.execPath, "--conditions=@firedrill/source", "--import", "tsx"];
const CLI = join(ROOT, "packages/cli/src/bin.ts");
const AGENT = join(ROOT, "packages/agent/src/bin.ts");
const LOAD = 50;
const DURATION_S = 20;

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s: string) => console.log(`\n${bold(`▶ ${s}`)}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/**
 * The environment of the demo's CLI calls: the demo's own config file, and none of the caller's
 * FIREDRILL_SERVER / FIREDRILL_TOKEN, so every call uses what `firedrill login` saved.
 */
function cliEnv(configFile: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FIREDRILL_CONFIG: configFile };
  delete env.FIREDRILL_SERVER;
  delete env.FIREDRILL_TOKEN;
  return env;
}

function cli(args: string[], env: NodeJS.ProcessEnv): string {
  console.log(`$ firedrill ${args.join(" ")}`);
  const r = spawnSync(NODE[0]!, [...NODE.slice(1), CLI, ...args], { cwd: ROOT, env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`firedrill ${args.join(" ")} failed (exit ${r.status}):\n${r.stderr}`);
  process.stdout.write(r.stdout);
  return r.stdout.trim();
}

/** Runs the CLI without blocking this process (the demo's health endpoint must keep answering). */
function cliLive(args: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  console.log(`$ firedrill ${args.join(" ")}`);
  const child = spawn(NODE[0]!, [...NODE.slice(1), CLI, ...args], { cwd: ROOT, env, stdio: ["ignore", "inherit", "inherit"] });
  return new Promise((resolve) => child.once("exit", resolve));
}

function gameDay(healthUrl: string): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata: { name: demo-game-day }
spec:
  hypothesis: "the demo service stays healthy while its host burns CPU"
  targets:
    demo: { selector: { labels: { app: demo } }, mode: { all: true } }
  steps:
    - { name: burn, fault: cpu-burn, target: demo, params: { load: 30, cores: 1 }, duration: 8s }
    - { name: cool-down, wait: 2s, startAfter: [burn] }
  stopConditions:
    - { http: { url: "${healthUrl}", intervalMs: 500, failuresToAbort: 2 } }
`;
}

function burnerThreads(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).filter((t) => {
      try {
        return readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim() === "fd-cpu-burn";
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "firedrill-demo-"));
  const children: ChildProcess[] = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    const httpUrl = `http://127.0.0.1:${httpPort}`;
    const dataDir = join(work, "cp");
    const env = cliEnv(join(work, "cli", "config.json"));

    say(`Starting the control plane (gRPC 127.0.0.1:${grpcPort}, HTTP ${httpUrl}, data in ${dataDir})`);
    const server = spawn(
      NODE[0]!,
      [...NODE.slice(1), CLI, "server", "--data-dir", dataDir, "--grpc-addr", `127.0.0.1:${grpcPort}`, "--http-addr", `127.0.0.1:${httpPort}`, "--log-level", "error"],
      { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] },
    );
    children.push(server);
    for (let i = 0; ; i++) {
      if (i > 100) throw new Error("the control plane did not come up within 20 s");
      if (server.exitCode !== null) throw new Error("the control plane exited during start-up");
      if (await fetch(`${httpUrl}/healthz`).then((r) => r.ok, () => false)) break;
      await sleep(200);
    }

    // Every API call needs a token. On its first start the server wrote an admin token to the
    // data dir (mode 0600): log in with it once; every later command uses the saved login.
    const adminTokenFile = join(dataDir, "admin-token");
    const adminToken = readFileSync(adminTokenFile, "utf8").trim();
    // Printed on purpose, once: this throwaway server's admin token is the console's login.
    say("The web console, live while the demo runs (same port as the API)");
    console.log(`  open:    ${httpUrl}/`);
    console.log(`  log in:  ${adminToken}`);
    console.log("           (the login for the console: this demo server's admin token, printed only because the server is thrown away at the end)");
    say(`Logging in with the admin token the server wrote to ${adminTokenFile} (the CLI config goes to ${env.FIREDRILL_CONFIG}, not your ~/.config)`);
    cli(["login", "--server", httpUrl, "--token-file", adminTokenFile], env);
    cli(["whoami"], env);
    /** The demo's own reads of the API, with the same token. */
    const getJson = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${httpUrl}${path}`, { headers: { authorization: `Bearer ${adminToken}` } });
      if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };

    say(
      "Starting one agent on this host: it dials out over TLS, checks the server against the CA its join token pins, enrolls once " +
        "(a client certificate for its own id), then speaks mTLS only; the label firedrill:opt-in=true lets faults onto it",
    );
    const agent = spawn(
      NODE[0]!,
      [...NODE.slice(1), AGENT, "--server", `127.0.0.1:${grpcPort}`, "--token-file", join(dataDir, "join-token"), "--state-dir", join(work, "agent"), "--labels", "app=demo,firedrill:opt-in=true", "--imds", "off", "--log-level", "warn"],
      { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] },
    );
    children.push(agent);
    let agentId = "";
    for (let i = 0; !agentId; i++) {
      if (i > 100) throw new Error("the agent did not register within 20 s");
      const list = await getJson<{ agents: { id: string; connected: boolean }[] }>("/api/v1/agents");
      agentId = list.agents.find((a) => a.connected)?.id ?? "";
      if (!agentId) await sleep(200);
    }
    cli(["agents"], env);

    say(`Game day: burn ${LOAD}% of one core for ${DURATION_S}s`);
    const faultId = cli(
      ["fault", "start", "--agent", agentId, "--kind", "cpu-burn", "--param", `load=${LOAD}`, "--param", "cores=1", "--duration", `${DURATION_S}s`],
      env,
    );
    console.log(`\n  time   asked   burner thread   core 0 busy   machine busy (${cpus().length} ${cpus().length === 1 ? "core" : "cores"})   (measured by the agent from /proc)`);
    const burnerSamples: number[] = [];
    const t0 = Date.now();
    let state = "";
    let reason = "";
    let printed = 0;
    while (Date.now() - t0 < (DURATION_S + 15) * 1000) {
      await sleep(1000);
      const detail = await getJson<{
        fault: { state: string; reason: string | null };
        events: { type: string; measurements: Record<string, number> | null }[];
      }>(`/api/v1/faults/${faultId}`);
      state = detail.fault.state;
      reason = detail.fault.reason ?? "";
      const progress = detail.events.filter((e) => e.type === "progress" && e.measurements);
      for (const e of progress.slice(printed)) {
        const m = e.measurements!;
        burnerSamples.push(m.burner_percent ?? 0);
        const secs = Math.round((Date.now() - t0) / 1000);
        console.log(
          `  ${String(secs).padStart(3)}s   ${String(LOAD).padStart(4)}%   ${String(m.burner_percent).padStart(12)}%   ${String(m.cpu0_percent).padStart(10)}%   ${String(m.cpu_percent_machine).padStart(12)}%`,
        );
      }
      printed = progress.length;
      if (state === "reverted" || state === "failed") break;
    }
    if (state !== "reverted") throw new Error(`the burn did not end as expected (state: ${state})`);
    const steady = burnerSamples.slice(1);
    const avg = steady.reduce((a, b) => a + b, 0) / Math.max(1, steady.length);

    say("After the duration: the fault is reverted");
    cli(["fault", "list", "--all"], env);
    const left = burnerThreads(agent.pid!);
    console.log(`\n  asked ${LOAD}% of one core · measured ${avg.toFixed(1)}% on average · reverted (${reason}) · burner threads left: ${left}`);
    if (left !== 0) throw new Error("burner threads are still running after the revert");

    // Part two: a game day as an experiment file, with a stop condition.
    let healthy = true;
    const health = createHttpServer((_req, res) => {
      res.statusCode = healthy ? 200 : 500;
      res.end(healthy ? "ok" : "broken");
    });
    children.push({ kill: () => health.close(), exitCode: null } as unknown as ChildProcess);
    await new Promise<void>((r) => health.listen(0, "127.0.0.1", r));
    const healthUrl = `http://127.0.0.1:${(health.address() as { port: number }).port}/health`;
    const file = join(work, "demo-game-day.yaml");
    writeFileSync(file, gameDay(healthUrl));
    say(`A game day as an experiment file (${file}), with an HTTP health check as stop condition`);
    console.log(readFileSync(file, "utf8"));
    cli(["validate", file], env);
    await cliLive(["plan", file], env);

    say("Run it: the hypothesis holds, the run completes");
    const first = await cliLive(["run", file, "--follow"], env);
    if (first !== 0) throw new Error(`the first run should have completed (exit ${first})`);

    say("Run it again, and break the service 3 s in: the stop condition aborts the run and everything is reverted");
    const following = cliLive(["run", file, "--follow"], env);
    let runId = "";
    for (let i = 0; i < 150 && !runId; i++) {
      await sleep(200);
      const { runs } = await getJson<{ runs: { id: string; state: string }[] }>("/api/v1/runs?state=active");
      runId = runs.find((r) => r.state === "running")?.id ?? "";
    }
    await sleep(3000);
    healthy = false;
    console.log("  (demo: the health endpoint now answers 500)");
    const second = await following;
    healthy = true;
    if (second !== 2) throw new Error(`the second run should have been aborted (exit ${second})`);
    await cliLive(["report", runId], env);
    cli(["report", runId, "--html", join(work, "report.html")], env);
    if (burnerThreads(agent.pid!) !== 0) throw new Error("burner threads are still running after the abort");
    health.close();

    say("The audit log: every change (and every refused call) with who, from where, and the outcome; hash-chained");
    cli(["audit", "--since", "10m"], env);
    cli(["audit", "verify"], env);

    say("Shutting down the agent and the control plane");
    for (const c of [agent, server]) {
      c.kill("SIGTERM");
      await Promise.race([new Promise((r) => c.once("exit", r)), sleep(5000)]);
    }
    console.log("\nDemo complete: the chaos started, was measured, and stopped.");
  } finally {
    cleanup();
  }
}

main().catch((err: Error) => {
  console.error(`\ndemo failed: ${err.message}`);
  process.exit(1);
});
