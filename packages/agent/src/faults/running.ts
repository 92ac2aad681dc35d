/**
 * Small pieces every running fault repeats: a measurement poll that never overlaps itself, and a
 * revert that runs once (concurrent calls share it) but may be retried after it failed.
 */

/**
 * Calls `read` every `ms` (the timer does not keep the process alive); a read still running when
 * the next is due is not overlapped. Failures go to `onError`. Returns the timer and `poll`, which
 * runs one read now (awaitable).
 */
export function pollEvery(ms: number, read: () => Promise<void>, onError: (err: unknown) => void): { timer: NodeJS.Timeout; poll: () => Promise<void> } {
  let polling = false;
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      await read();
    } catch (err) {
      onError(err);
    } finally {
      polling = false;
    }
  };
  const timer = setInterval(() => void poll(), ms);
  timer.unref();
  return { timer, poll };
}

/** Wraps `undo` so that it runs once; when it fails, the next call runs it again (the runtime retries). */
export function revertOnce(undo: () => Promise<void>): () => Promise<void> {
  let reverted: Promise<void> | undefined;
  return () => {
    reverted ??= undo().catch((err: unknown) => {
      reverted = undefined;
      throw err;
    });
    return reverted;
  };
}
