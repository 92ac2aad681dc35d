/** Hooks the pages share: the hash route, the error list, polling. */
import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";
import { messageOf } from "./api.js";

/** The route as path segments: `#/runs/r-1/report` -> ["runs", "r-1", "report"]. */
export function parseHash(hash: string): string[] {
  const path = hash.replace(/^#\/?/, "").split("?")[0] ?? "";
  return path
    .split("/")
    .filter((s) => s !== "")
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}

/** The current hash route, following changes. */
export function useRoute(): string[] {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

/** Where API errors go: one list on the page, one message per source (a page's poll, a button). */
export interface ErrorSink {
  report(source: string, err: unknown): void;
  clear(source: string): void;
}

export const ErrorContext = createContext<ErrorSink>({ report: () => undefined, clear: () => undefined });

export const useErrors = (): ErrorSink => useContext(ErrorContext);

/** The error list's state: a message per source, in the order they came. */
export function useErrorList(): { errors: [string, string][]; sink: ErrorSink; clearAll: () => void; dismiss: (source: string) => void } {
  const [errors, setErrors] = useState<[string, string][]>([]);
  const sink = useRef<ErrorSink>({
    report: (source, err) => setErrors((list) => [...list.filter(([s]) => s !== source), [source, messageOf(err)]]),
    clear: (source) => setErrors((list) => (list.some(([s]) => s === source) ? list.filter(([s]) => s !== source) : list)),
  }).current;
  const clearAll = useCallback(() => setErrors((list) => (list.length === 0 ? list : [])), []);
  return { errors, sink, clearAll, dismiss: sink.clear };
}

/**
 * Loads data now and every `intervalMs` (null: once) while mounted; again when a dependency
 * changes or `reload()` is called. A failure goes to the error list under `source` (and is
 * cleared by the next success); the last data stays shown.
 */
export function usePoll<T>(
  source: string,
  load: () => Promise<T>,
  intervalMs: number | null,
  deps: readonly unknown[],
): { data: T | undefined; reload: () => void; loaded: boolean } {
  const errors = useErrors();
  const [data, setData] = useState<T | undefined>(undefined);
  const [loaded, setLoaded] = useState(false);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const run = async () => {
      try {
        const value = await loadRef.current();
        if (stopped) return;
        setData(value);
        setLoaded(true);
        errors.clear(source);
      } catch (err) {
        if (!stopped) errors.report(source, err);
      } finally {
        if (!stopped && intervalMs !== null) timer = window.setTimeout(() => void run(), intervalMs);
      }
    };
    void run();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [...deps, tick, intervalMs, source]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, reload, loaded };
}

/**
 * Runs an action from a button: reports its failure under `source` (clearing it on success) and
 * says whether it is under way, so the button can be disabled meanwhile.
 */
export function useAction(source: string): [busy: boolean, run: (action: () => Promise<unknown>) => Promise<boolean>] {
  const errors = useErrors();
  const [busy, setBusy] = useState(false);
  const mounted = useRef(true);
  useEffect(
    () => () => {
      mounted.current = false;
    },
    [],
  );
  const run = useCallback(
    async (action: () => Promise<unknown>): Promise<boolean> => {
      setBusy(true);
      try {
        await action();
        errors.clear(source);
        return true;
      } catch (err) {
        errors.report(source, err);
        return false;
      } finally {
        if (mounted.current) setBusy(false);
      }
    },
    [errors, source],
  );
  return [busy, run];
}
