/**
 * The step DAG of a run: a column per depth (a step stands right of every step it starts after),
 * each step with its state from the run's events.
 */
import type { RunPlan } from "../api.js";
import { fmtDuration, plural } from "../format.js";

export type StepState = "pending" | "running" | "done" | "failed" | "skipped";

type PlanStep = RunPlan["steps"][number];

/** Depth of each step: 0 without known predecessors, else one more than the deepest of them. */
export function stepDepths(steps: readonly Pick<PlanStep, "name" | "startAfter">[]): Map<string, number> {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const depth = new Map<string, number>();
  const visit = (name: string, path: Set<string>): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    path.add(name);
    let d = 0;
    for (const parent of byName.get(name)?.startAfter ?? []) {
      if (byName.has(parent) && !path.has(parent)) d = Math.max(d, visit(parent, path) + 1);
    }
    path.delete(name);
    depth.set(name, d);
    return d;
  };
  for (const s of steps) visit(s.name, new Set());
  return depth;
}

/**
 * A step's state: `running` from its step-started event, `done` from step-ended; once the run has
 * ended, a step that started and never ended `failed` (the run was aborted or failed during it),
 * and one that never started was `skipped`.
 */
export function stepState(progress: "running" | "done" | undefined, runEnded: boolean, runCompleted: boolean): StepState {
  if (progress === "done") return "done";
  if (progress === "running") return runEnded ? (runCompleted ? "done" : "failed") : "running";
  return runEnded ? "skipped" : "pending";
}

export function Dag({ steps, progress, runEnded, runCompleted }: { steps: readonly PlanStep[]; progress: ReadonlyMap<string, "running" | "done">; runEnded: boolean; runCompleted: boolean }) {
  const depths = stepDepths(steps);
  const columns: PlanStep[][] = [];
  for (const s of steps) (columns[depths.get(s.name) ?? 0] ??= []).push(s);
  return (
    <div class="dag" data-testid="dag" role="list" aria-label="Steps">
      {columns.map((col, d) => (
        <div class="dag-col" key={d}>
          {col.map((s) => {
            const state = stepState(progress.get(s.name), runEnded, runCompleted);
            return (
              <div key={s.name} class={`dag-node dag-${state}`} role="listitem" data-step={s.name} data-state={state}>
                <div class="dag-name">{s.name}</div>
                <div class="small">
                  {s.type === "wait" ? "wait" : s.summary ? `${s.fault}: ${s.summary}` : s.fault} · {fmtDuration(s.durationMs)}
                  {s.type !== "wait" && ` · ${s.instances ? plural(s.instances.length, "instance") : plural(s.hosts.length, "host")}`}
                </div>
                {s.startAfter.length > 0 && <div class="small muted">after {s.startAfter.join(", ")}</div>}
                <div class="dag-state">{state}</div>
              </div>
            );
          })}
        </div>
      ))}
    </div>
  );
}
