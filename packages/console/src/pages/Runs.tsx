/** Runs: the list (refreshed every 5 s), and a new run from an experiment spec: plan it, then start it. */
import { useState } from "preact/hooks";
import { get, post, seg } from "../api.js";
import type { RunPlan, RunSummaryJson } from "../api.js";
import { ListTable } from "../components/ListTable.js";
import { fmtDuration, fmtTime, plural } from "../format.js";
import { useAction, usePoll } from "../hooks.js";

/** The spec being written, kept while the console is open (not stored anywhere). */
let specDraft = "";

const EXAMPLE = `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: cpu-burn-web
spec:
  hypothesis: "The web tier keeps answering /health within 1 s while one host runs at 80% CPU"
  targets:
    web:
      selector:
        labels: { app: web }
      mode: { count: 1 }
  steps:
    - name: hot
      fault: cpu-burn
      target: web
      params: { load: 80, cores: all }
      duration: 2m
  stopConditions:
    - http: { url: "http://web.internal/health", expectStatus: 200, timeoutMs: 1000, failuresToAbort: 3 }
`;

function faultCountsText(counts: Record<string, number> | undefined): string {
  if (!counts) return "";
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${n} ${state}`);
  return parts.join(", ");
}

export function PlanView({ plan, experiment }: { plan: RunPlan; experiment?: { name: string; hypothesis: string } }) {
  return (
    <section class="plan card" data-testid="plan-result" data-allowed={String(plan.allowed)}>
      <h3>
        Plan of {experiment?.name ?? plan.experiment}: {plan.allowed ? <span class="ok">allowed</span> : <span class="bad">refused</span>}
      </h3>
      <p>
        <strong>Hypothesis:</strong> {plan.hypothesis}
      </p>
      <p>
        {plural(plan.steps.length, "step")}, about {fmtDuration(plan.estimatedDurationMs)} end to end.
      </p>
      {plan.halt && (
        <p class="bad">
          Halted by {plan.halt.actor} since {fmtTime(plan.halt.at)}: {plan.halt.reason}
        </p>
      )}
      <h4>Guardrails</h4>
      <ul class="verdicts">
        {plan.guardrails.map((v, i) => (
          <li key={`${v.rule}-${i}`} class={v.ok ? "ok" : "bad"}>
            {v.ok ? "✓" : "✗"} <strong>{v.rule}</strong>: {v.message}
          </li>
        ))}
      </ul>
      <h4>Steps</h4>
      <ListTable columns={["Step", "Does", "Hosts", "Duration", "After", "Dry run on the hosts"]}>
        {plan.steps.map((s) => {
          const previews = s.previews ?? [];
          const refused = previews.filter((p) => p.status === "refused");
          const unavailable = previews.filter((p) => p.status === "unavailable");
          return (
            <tr key={s.name}>
              <td>{s.name}</td>
              <td>{s.type === "wait" ? "wait" : `${s.fault ?? s.type}${s.summary ? `: ${s.summary}` : ""}${s.target ? ` on ${s.target}` : ""}`}</td>
              <td class="small">
                {s.instances ? plural(s.instances.length, "instance") : plural(s.hosts.length, "host")}
                {s.hosts.length > 0 && s.hosts.length <= 5 && `: ${s.hosts.map((h) => h.hostname).join(", ")}`}
              </td>
              <td>{fmtDuration(s.durationMs)}</td>
              <td>{s.startAfter.join(", ") || "—"}</td>
              <td class="small">
                {previews.length === 0
                  ? "—"
                  : `${previews.length - refused.length - unavailable.length} ok, ${refused.length} refused, ${unavailable.length} unavailable`}
                {refused.slice(0, 3).map((p) => (
                  <div key={p.hostId} class="bad">
                    {p.hostname}: {p.error}
                  </div>
                ))}
                {previews
                  .filter((p) => p.status === "ok")
                  .slice(0, 2)
                  .flatMap((p) => p.details.slice(0, 3).map((d, i) => <div key={`${p.hostId}-${i}`}>{`${p.hostname}: ${d}`}</div>))}
              </td>
            </tr>
          );
        })}
      </ListTable>
      <h4>Targets</h4>
      <ul>
        {Object.entries(plan.targets).map(([name, t]) => (
          <li key={name}>
            {name}: {t.selected.length} selected of {t.eligible} eligible ({t.matching} matching)
            {t.excluded.length > 0 && `; excluded: ${t.excluded.slice(0, 5).map((e) => `${e.hostname} (${e.why})`).join(", ")}${t.excluded.length > 5 ? ", …" : ""}`}
          </li>
        ))}
      </ul>
      <h4>Stop conditions</h4>
      <ul>
        {plan.stopConditions.length === 0 ? <li>none</li> : plan.stopConditions.map((c, i) => <li key={i}>{c}</li>)}
      </ul>
    </section>
  );
}

function NewRun() {
  const [spec, setSpec] = useState(specDraft);
  const [plan, setPlan] = useState<{ plan: RunPlan; experiment: { name: string; hypothesis: string } } | null>(null);
  const [planning, runPlan] = useAction("plan");
  const [starting, runStart] = useAction("start-run");

  const update = (text: string) => {
    specDraft = text;
    setSpec(text);
  };

  return (
    <section class="card new-run">
      <h2>New run</h2>
      <form onSubmit={(e) => e.preventDefault()}>
        <label for="run-spec">Experiment (YAML)</label>
        <textarea id="run-spec" name="spec" rows={14} spellcheck={false} placeholder={EXAMPLE} value={spec} onInput={(e) => update((e.currentTarget as HTMLTextAreaElement).value)} />
        <div class="buttons">
          <button
            type="button"
            data-testid="plan"
            disabled={planning}
            onClick={() =>
              void runPlan(async () => {
                setPlan(null);
                setPlan(await post<{ plan: RunPlan; experiment: { name: string; hypothesis: string } }>("/api/v1/plan", { spec }));
              })
            }
          >
            {planning ? "Planning…" : "Plan"}
          </button>
          <button
            type="button"
            class="primary"
            data-testid="start-run"
            disabled={starting}
            onClick={() =>
              void runStart(async () => {
                const started = await post<{ run: RunSummaryJson }>("/api/v1/runs", { spec });
                location.hash = `#/runs/${seg(started.run.id)}`;
              })
            }
          >
            {starting ? "Starting…" : "Start run"}
          </button>
          {spec === "" && (
            <button type="button" onClick={() => update(EXAMPLE)}>
              Insert an example
            </button>
          )}
        </div>
      </form>
      {plan && <PlanView plan={plan.plan} experiment={plan.experiment} />}
    </section>
  );
}

export function RunsPage() {
  const runs = usePoll("runs", () => get<{ runs: RunSummaryJson[] }>("/api/v1/runs?limit=100"), 5000, []);
  const list = runs.data?.runs ?? [];
  return (
    <main>
      <h1>Runs</h1>
      <ListTable testid="runs" columns={["Run", "State", "By", "Started", "Ended", "Faults"]}>
        {list.map((r) => (
          <tr key={r.id} data-run-id={r.id} data-state={r.state}>
            <td>
              <a href={`#/runs/${seg(r.id)}`}>{r.name}</a>
              <div class="muted small">{r.id}</div>
            </td>
            <td>
              <span class={`state state-${r.state}`}>{r.state}</span>
              {r.reason && <div class="small">{r.reason}</div>}
            </td>
            <td>{r.actor}</td>
            <td class="small nowrap">{fmtTime(r.startedAt ?? r.createdAt)}</td>
            <td class="small nowrap">{fmtTime(r.endedAt)}</td>
            <td class="small">
              {faultCountsText(r.faultCounts)}
              {r.cloudRevertsUnconfirmed > 0 && <div class="bad">{plural(r.cloudRevertsUnconfirmed, "cloud revert")} not confirmed</div>}
            </td>
          </tr>
        ))}
      </ListTable>
      {runs.loaded && list.length === 0 && <p class="muted">No run yet.</p>}
      <p class="hint">The newest 100 runs.</p>
      <NewRun />
    </main>
  );
}
