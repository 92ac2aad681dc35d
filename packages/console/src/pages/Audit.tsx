/** Audit: who did what, newest first, filtered by principal and time. */
import { useState } from "preact/hooks";
import { get } from "../api.js";
import type { AuditJson } from "../api.js";
import { ListTable } from "../components/ListTable.js";
import { fmtTime } from "../format.js";
import { usePoll } from "../hooks.js";

const PAGE = 200;
/** The server's bound on one listing. */
const MAX_ENTRIES = 10_000;

export function AuditPage() {
  const [actor, setActor] = useState("");
  const [since, setSince] = useState("");
  const [filter, setFilter] = useState({ actor: "", since: "" });
  const [limit, setLimit] = useState(PAGE);
  const audit = usePoll(
    "audit",
    () => {
      const q = new URLSearchParams({ limit: String(limit) });
      if (filter.actor) q.set("actor", filter.actor);
      if (filter.since) q.set("since", filter.since);
      return get<{ entries: AuditJson[] }>(`/api/v1/audit?${q.toString()}`);
    },
    10_000,
    [filter.actor, filter.since, limit],
  );
  const entries = audit.data?.entries ?? [];
  return (
    <main>
      <h1>Audit log</h1>
      <form
        class="filter"
        onSubmit={(e) => {
          e.preventDefault();
          setLimit(PAGE);
          setFilter({ actor: actor.trim(), since: since.trim() });
        }}
      >
        <label for="audit-actor">Principal</label>
        <input id="audit-actor" name="actor" value={actor} onInput={(e) => setActor((e.currentTarget as HTMLInputElement).value)} />
        <label for="audit-since">Since</label>
        <input id="audit-since" name="since" placeholder="1h, 7d or 2026-01-31T10:00:00Z" value={since} onInput={(e) => setSince((e.currentTarget as HTMLInputElement).value)} />
        <button type="submit">Show</button>
      </form>
      <ListTable testid="audit" columns={["Time", "Who", "Call", "Targets", "Result", "Detail"]}>
        {entries.map((e) => (
          <tr key={e.id} data-audit-id={e.id} class={e.outcome === "ok" ? "" : "refused"}>
            <td class="small nowrap">{fmtTime(e.time)}</td>
            <td>
              {e.principal ?? <span class="muted">unauthenticated</span>}
              {e.role && <span class="muted"> ({e.role})</span>}
              <div class="small muted">{e.source}</div>
            </td>
            <td class="small">
              <code>
                {e.method} {e.path}
              </code>
            </td>
            <td class="small">{e.targets.join(", ")}</td>
            <td>
              {e.status} {e.outcome}
            </td>
            <td class="small">{e.detail}</td>
          </tr>
        ))}
      </ListTable>
      {audit.loaded && entries.length === 0 && <p class="muted">No entry.</p>}
      {entries.length >= limit && limit < MAX_ENTRIES && (
        <button type="button" onClick={() => setLimit((l) => Math.min(MAX_ENTRIES, l + 1000))}>
          Show older entries
        </button>
      )}
    </main>
  );
}
