/**
 * The step DAG: a step starts after every step in its `startAfter` has ended. Helpers for cycles,
 * ordering (which steps can overlap in time) and the critical path.
 */

/** The part of a step the DAG needs. */
export interface DagStep {
  name: string;
  startAfter: readonly string[];
  durationMs: number;
}

/**
 * Cycles in `startAfter` edges, each as the list of names along it, first name repeated at the
 * end (`["a", "b", "a"]`: a starts after b, which starts after a). Unknown names are ignored.
 */
export function findCycles(steps: readonly { name: string; startAfter: readonly string[] }[]): string[][] {
  const edges = new Map<string, readonly string[]>();
  for (const s of steps) if (!edges.has(s.name)) edges.set(s.name, s.startAfter);
  const state = new Map<string, "active" | "done">();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (name: string): void => {
    state.set(name, "active");
    stack.push(name);
    for (const next of edges.get(name) ?? []) {
      if (!edges.has(next)) continue;
      const s = state.get(next);
      if (s === "active") cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(name, "done");
  };
  for (const name of edges.keys()) if (!state.has(name)) visit(name);
  return cycles;
}

/** For each step, every step that must have ended before it starts (transitively). */
export function ancestorsOf(steps: readonly { name: string; startAfter: readonly string[] }[]): Map<string, Set<string>> {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const memo = new Map<string, Set<string>>();
  const walk = (name: string, path: Set<string>): Set<string> => {
    const known = memo.get(name);
    if (known) return known;
    const result = new Set<string>();
    path.add(name);
    for (const parent of byName.get(name)?.startAfter ?? []) {
      if (!byName.has(parent) || path.has(parent)) continue; // cycles are rejected by the parser
      result.add(parent);
      for (const a of walk(parent, path)) result.add(a);
    }
    path.delete(name);
    memo.set(name, result);
    return result;
  };
  for (const s of steps) walk(s.name, new Set());
  return memo;
}

/** Whether two steps may run at the same time: neither is ordered after the other. */
export function mayOverlap(a: string, b: string, ancestors: ReadonlyMap<string, ReadonlySet<string>>): boolean {
  if (a === b) return false;
  return !(ancestors.get(a)?.has(b) ?? false) && !(ancestors.get(b)?.has(a) ?? false);
}

/** The longest chain of steps, start to end, and its duration in ms. */
export function criticalPath(steps: readonly DagStep[]): { durationMs: number; chain: string[] } {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const memo = new Map<string, { end: number; chain: string[] }>();
  const finish = (step: DagStep, path: Set<string>): { end: number; chain: string[] } => {
    const known = memo.get(step.name);
    if (known) return known;
    path.add(step.name);
    let best: { end: number; chain: string[] } = { end: 0, chain: [] };
    for (const name of step.startAfter) {
      const parent = byName.get(name);
      if (!parent || path.has(name)) continue;
      const f = finish(parent, path);
      if (f.end > best.end) best = f;
    }
    path.delete(step.name);
    const result = { end: best.end + step.durationMs, chain: [...best.chain, step.name] };
    memo.set(step.name, result);
    return result;
  };
  let longest: { end: number; chain: string[] } = { end: 0, chain: [] };
  for (const s of steps) {
    const f = finish(s, new Set());
    if (f.end > longest.end) longest = f;
  }
  return { durationMs: longest.end, chain: longest.chain };
}
