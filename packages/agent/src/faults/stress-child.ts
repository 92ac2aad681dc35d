/**
 * The child processes of memory-stress and io-stress: `node -e <source>` started by the agent, with
 * its stdin a pipe only the agent holds (EOF: the agent is gone, the child exits by itself) and its
 * stdout a stream of JSON lines (`{"t": "ready", ...}`). The journal records each child by pid and
 * start time (see held-child.ts), so the guard or a restarted agent kills it if it outlives its
 * agent anyway (stopped, stuck).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readProcessStartTime } from "../proc.js";
import type { ProcessRef } from "./process-signal.js";

/** A message from a stress child: one JSON line, `t` its type. */
export interface ChildMessage {
  t: string;
  [key: string]: unknown;
}

/** A running stress child. */
export interface StressChild {
  proc: ChildProcess;
  /** Pid and start time, for the journal. */
  ref: ProcessRef;
  /** Resolves once the child has exited (and been reaped). */
  exited: Promise<void>;
  /** Whether it has exited. */
  hasExited(): boolean;
  /** Calls `handler` with every message from now on. */
  onMessage(handler: (msg: ChildMessage) => void): void;
  /** The first message of type `t` from now on. Rejected when the child exits first, or after `timeoutMs`. */
  waitFor(t: string, timeoutMs: number): Promise<ChildMessage>;
  /** Writes one line to the child's stdin. */
  send(line: string): void;
  /** The last lines the child wrote to stderr (for error messages). */
  stderrTail(): string;
}

/** Options of {@link spawnStressChild}. */
export interface StressChildOptions {
  /** The program, plain JavaScript (CommonJS: `require`). It reads its config from the last argv entry. */
  source: string;
  /** Its name in `ps` and messages: `firedrill-memory-stress`. */
  name: string;
  faultId: string;
  config: unknown;
  /** Options of node itself (e.g. --expose-gc). */
  nodeArgs?: string[];
  /** File descriptors of the agent handed to the child as its fd 3, 4... */
  fds?: number[];
  /** Extra environment (the child gets only PATH and this: no NODE_OPTIONS of the agent's). */
  env?: Record<string, string>;
}

/** Starts a stress child and waits until it runs (its pid and start time known). Thrown: it could not start. */
export async function spawnStressChild(opts: StressChildOptions): Promise<StressChild> {
  const proc = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), "-e", opts.source, opts.name, opts.faultId, JSON.stringify(opts.config)],
    {
      stdio: ["pipe", "pipe", "pipe", ...(opts.fds ?? [])],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...opts.env },
    },
  );
  let exitedFlag = false;
  let exitInfo = "";
  const exited = new Promise<void>((resolve) => {
    proc.once("exit", (code, signal) => {
      exitedFlag = true;
      exitInfo = signal ? `killed by ${signal}` : `exited with ${code}`;
      resolve();
    });
  });
  const spawned = await new Promise<Error | undefined>((resolve) => {
    proc.once("spawn", () => resolve(undefined));
    proc.once("error", (err) => resolve(err));
  });
  if (spawned) throw new Error(`could not start ${opts.name} (${process.execPath}): ${spawned.message}`);
  // Errors after the start (EPIPE on a child that died) must not crash the agent.
  proc.on("error", () => {});
  proc.stdin!.on("error", () => {});
  let stderr = "";
  proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4096);
  });
  const handlers: ((msg: ChildMessage) => void)[] = [];
  let buffered = "";
  proc.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let msg: ChildMessage;
      try {
        msg = JSON.parse(line) as ChildMessage;
      } catch {
        continue;
      }
      if (typeof msg?.t !== "string") continue;
      for (const h of [...handlers]) h(msg);
    }
    if (buffered.length > 65536) buffered = "";
  });
  const pid = proc.pid!;
  const startTime = readProcessStartTime(pid);
  if (startTime === undefined) {
    await exited;
    throw new Error(`${opts.name} (pid ${pid}) ended at once (${exitInfo}): ${stderr.trim().slice(-500) || "no output"}`);
  }
  const child: StressChild = {
    proc,
    ref: { pid, startTime },
    exited,
    hasExited: () => exitedFlag,
    onMessage: (handler) => handlers.push(handler),
    waitFor(t, timeoutMs) {
      return new Promise<ChildMessage>((resolve, reject) => {
        const handler = (msg: ChildMessage) => {
          if (msg.t !== t) return;
          cleanup();
          resolve(msg);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${opts.name} (pid ${pid}) did not report "${t}" within ${Math.round(timeoutMs / 1000)} s`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`${opts.name} (pid ${pid}) ${exitInfo} before it was ready: ${stderr.trim().slice(-500) || "no output"}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          const i = handlers.indexOf(handler);
          if (i >= 0) handlers.splice(i, 1);
          proc.off("exit", onExit);
        };
        handlers.push(handler);
        if (exitedFlag) onExit();
        else proc.once("exit", onExit);
      });
    },
    send(line) {
      if (!exitedFlag && proc.stdin!.writable) proc.stdin!.write(`${line}\n`);
    },
    stderrTail: () => stderr,
  };
  return child;
}
