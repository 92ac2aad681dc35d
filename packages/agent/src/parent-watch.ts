/**
 * Noticing that the process that started the agent is gone. `pnpm firedrill-agent` runs the agent
 * under pnpm; when pnpm dies without passing a signal on (SIGKILL, a crash), the agent is
 * reparented and would run on unattended. Node has no prctl(PR_SET_PDEATHSIG), so the parent pid
 * is polled: a changed `process.ppid` means the parent exited.
 */

/** Options of {@link watchParent}. */
export interface ParentWatchOptions {
  /** How often to look. @default 500 */
  everyMs?: number;
  /** The parent pid now. @default () => process.ppid */
  ppid?: () => number;
}

/**
 * Calls `onGone` once, when this process's parent has exited (the parent pid changed). Returns a
 * function that stops watching. The timer does not keep the process alive.
 */
export function watchParent(onGone: (parentPid: number) => void, options: ParentWatchOptions = {}): () => void {
  const ppid = options.ppid ?? (() => process.ppid);
  const parent = ppid();
  const timer = setInterval(() => {
    if (ppid() === parent) return;
    clearInterval(timer);
    onGone(parent);
  }, options.everyMs ?? 500);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Whether the agent should stop with its parent: when a package manager script started it
 * (`pnpm firedrill-agent`, npm_lifecycle_event set), so that it ends with the command the user
 * started. Under systemd, a container runtime or `nohup`, the parent is a supervisor or nothing
 * the agent should follow.
 */
export function stopsWithParent(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.npm_lifecycle_event !== undefined && env.npm_lifecycle_event !== "";
}
